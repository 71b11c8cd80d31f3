"""`make fuzz` builds its libFuzzer targets (clang) and runs each briefly without a crash."""

import os
import subprocess

from helpers import ROOT


def test_fuzz_targets_build_and_run():
    p = subprocess.run(["make", "-s", "fuzz", "FUZZ_SECONDS=2"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0 and "fuzzing: no crash" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
