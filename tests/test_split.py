"""The zh-en data split: deterministic, and no sentence on two sides."""

import os
import subprocess
import sys

from helpers import ROOT, tmpdir

sys.path.insert(0, os.path.join(ROOT, "tools"))
from split_tatoeba import split  # noqa: E402


def test_shared_sentences_stay_on_one_side():
    rows = [(f"e{i}", f"z{i}") for i in range(3000)]
    rows += [("e5", "z-extra"), ("e-extra", "z5"), ("e7", "z8")]  # links e5/z5 and e7/e8 groups
    sides = split(rows)
    where = {}
    for side, pairs in sides.items():
        for en, zh in pairs:
            for key in (("en", en), ("zh", zh)):
                assert where.setdefault(key, side) == side, f"{key} on {where[key]} and {side}"
    assert sum(len(v) for v in sides.values()) == len(rows)
    assert 0 < len(sides["test"]) < len(rows) * 0.1 and 0 < len(sides["dev"]) < len(rows) * 0.1


def test_split_tool_is_deterministic():
    d = tmpdir()
    src = os.path.join(d, "in.tsv")
    open(src, "w").write("".join(f"english {i}\t中文 {i % 900}\tCC-BY\n" for i in range(2000)))
    outs = []
    for name in ("a", "b"):
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "split_tatoeba.py"), src,
                        os.path.join(d, name)], check=True, capture_output=True)
        outs.append([open(os.path.join(d, name, f"{s}.tsv")).read() for s in ("train", "dev", "test")])
    assert outs[0] == outs[1]
