"""Runs the C unit tests (tests/unit_tests.c) and reports each of them."""

import os
import subprocess

from helpers import BUILD


def test_c_unit_tests():
    bits = {}
    for kernel in ("default", "portable"):
        env = dict(os.environ, FANYI_GEMM=kernel)
        p = subprocess.run([os.path.join(BUILD, "unit_tests")], capture_output=True, text=True, timeout=120, env=env)
        print(p.stdout, end="")
        assert p.returncode == 0 and "FAIL" not in p.stdout, p.stdout + p.stderr
        assert p.stdout.count("ok ") >= 10
        bits[kernel] = [line for line in p.stdout.splitlines() if line.startswith("bits ")]
    # The vector kernels and their portable twins give the same bits.
    assert bits["default"] and bits["default"] == bits["portable"], bits


def test_portable_kernel_matches_avx2():
    """FANYI_GEMM=portable forces the C kernel; the whole translation must not change by one bit."""
    from helpers import random_model, run, tmpdir
    d = os.path.join(tmpdir(), "k")
    random_model(d, seed=5)
    args = ["-m", d, "--input", "ids", "--output", "ids", "--beam", "3", "--scores"]
    src = "5 6 7 8\n9 10\n11 12 13 14 15 16\n"
    a = run(args, src, check=0).stdout
    b = run(args, src, check=0, env={"FANYI_GEMM": "portable"}).stdout
    assert a == b and a.count(b"\n") == 3
