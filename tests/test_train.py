"""tools/train.py end to end on a handful of lines: trains, resumes, exports; C agrees with PyTorch."""

import json
import os
import random
import subprocess

from helpers import ROOT, run, tmpdir
from test_engine import INT8_TOL, _check_logprobs, _check_search

WORDS = "the a man woman dog cat runs walks in on park street red blue small big house ball".split()
WÖRTER = "der die ein eine mann frau hund katze läuft geht im auf park straße rot blau klein groß haus ball".split()


def _corpus(d, n=120, seed=0):
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        idx = [rng.randrange(len(WORDS)) for _ in range(rng.randrange(2, 7))]
        src.append(" ".join(WORDS[i] for i in idx))
        tgt.append(" ".join(WÖRTER[i] for i in idx))
    paths = []
    for name, lines in (("train.src", src), ("train.tgt", tgt)):
        p = os.path.join(d, name)
        open(p, "w", encoding="utf-8").write("\n".join(lines) + "\n")
        paths.append(p)
    return paths


def _train(d, src, tgt, *extra):
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "tools", "train.py"), "--workdir", os.path.join(d, "work"),
           "--train-src", src, "--train-tgt", tgt, "--valid-src", src, "--valid-tgt", tgt, "--joint-vocab", "70",
           "--d-model", "32", "--heads", "2", "--d-ff", "64", "--layers", "1", "--max-positions", "32",
           "--max-tokens", "300", "--warmup", "10", "--bleu-sentences", "10", "--average", "2", "--threads", "1"]
    p = subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p.stdout


def test_train_resume_export_and_agree():
    d = tmpdir()
    src, tgt = _corpus(d)
    out = _train(d, src, tgt, "--epochs", "1")
    assert "epoch 1" in out and "BLEU" in out
    # Running again continues from the checkpoint instead of starting over.
    out = _train(d, src, tgt, "--epochs", "2", "--export", os.path.join(d, "model"), "--dtype", "f32")
    assert "resumed from" in out and "epoch 2" in out and "exported" in out
    model_dir = os.path.join(d, "model")
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    assert cfg["format"] == "fanyi" and os.path.exists(os.path.join(model_dir, cfg["source_spm"]))
    model = _check_logprobs(model_dir)
    _check_search(model, model_dir, beam=1, nbest=1)
    _check_search(model, model_dir, beam=3, nbest=2)
    p = run(["-m", model_dir], "the man runs\n", check=0)
    assert p.stdout.count(b"\n") == 1
    for dtype in ("f16", "int8"):
        _train(d, src, tgt, "--epochs", "2", "--export", os.path.join(d, dtype), "--dtype", dtype, "--export-only")
        _check_logprobs(os.path.join(d, dtype), tol=INT8_TOL if dtype == "int8" else 1e-4)
