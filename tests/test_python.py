"""import fanyi: the Python module over libfanyi (ctypes), from the build tree and after make install."""

import json
import os
import subprocess
import sys

from helpers import BUILD, ROOT, run, text_model, tmpdir, cached

SCRIPT = r'''
import json, sys
import fanyi
model_dir, lines = sys.argv[1], json.loads(sys.argv[2])
out = {}
with fanyi.Model(model_dir, threads=2) as m:
    res = m.translate(lines, beam=3, nbest=2)
    out["texts"] = [t.text for t in res]
    out["scores"] = [[h.score for h in t.nbest] for t in res]
    out["nbest"] = [[h.text for h in t.nbest] for t in res]
    out["ids"] = [t.nbest[0].ids if t.nbest else [] for t in res]
    out["greedy"] = [t.text for t in m.translate(lines, beam=1, max_length=4, no_repeat_ngram=2)]
    out["langs"] = m.target_langs()
    errors = {}
    for name, kwargs in (("nbest", dict(beam=2, nbest=3)), ("lang", dict(target_lang="fra")),
                         ("penalty", dict(length_penalty=float("nan")))):
        try:
            m.translate(lines, **kwargs)
        except fanyi.Error as e:
            errors[name] = [e.code, str(e)]
    out["errors"] = errors
try:
    fanyi.Model(model_dir + "-missing")
except fanyi.Error as e:
    out["load_error"] = [e.code, str(e)]
print(json.dumps(out))
'''

LINES = ["a man rides a horse", "", "two dogs play in the snow . the woman is walking"]


def model():
    def make():
        d = os.path.join(tmpdir(), "py")
        text_model(d, seed=4)
        return d
    return cached("python-model", make)


def check(out, d):
    cli = [json.loads(line) for line in run(["-m", d, "-b", "3", "-n", "2", "--format", "jsonl"],
                                            "\n".join(LINES) + "\n", check=0).stdout.decode().splitlines()]
    assert out["texts"] == [c["translation"] for c in cli]
    assert out["nbest"] == [[h["translation"] for h in c["nbest"]] for c in cli]
    for mine, theirs in zip(out["scores"], cli):
        assert all(abs(a - h["score"]) < 1e-5 for a, h in zip(mine, theirs["nbest"]))
    ids = run(["-m", d, "-b", "3", "--output", "ids"], "\n".join(LINES) + "\n", check=0).stdout.decode()
    assert out["ids"] == [[int(x) for x in line.split()] for line in ids.splitlines()]
    greedy = run(["-m", d, "-b", "1", "--max-length", "4", "--no-repeat-ngram", "2"], "\n".join(LINES) + "\n",
                 check=0).stdout.decode().splitlines()
    assert out["greedy"] == greedy
    assert out["langs"] == []
    assert out["errors"]["nbest"][0] == 1 and "n-best 3 is larger than the beam size 2" in out["errors"]["nbest"][1]
    assert out["errors"]["lang"][0] == 1 and "single target language" in out["errors"]["lang"][1]
    assert out["errors"]["penalty"][0] == 1
    assert out["load_error"][0] == 2 and "config.json" in out["load_error"][1]


def test_python_module_from_the_build_tree():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"),
               FANYI_LIBRARY=os.path.join(BUILD, "libfanyi.so.0.1.0"))
    d = model()
    p = subprocess.run([sys.executable, "-c", SCRIPT, d, json.dumps(LINES)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    check(json.loads(p.stdout), d)


def test_python_module_after_make_install():
    dest = tmpdir()
    p = subprocess.run(["make", "-s", "install", "PREFIX=/usr/local", f"DESTDIR={dest}"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    found = [os.path.join(r, f) for r, _, fs in os.walk(dest) for f in fs if f == "fanyi.py" and "dist-packages" in r]
    assert len(found) == 1, found
    assert '_LIBDIR = "/usr/local/lib"' in open(found[0]).read()
    lib = os.path.join(dest, "usr", "local", "lib", "libfanyi.so.0")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(found[0]), FANYI_LIBRARY=lib)
    d = model()
    p = subprocess.run([sys.executable, "-c", SCRIPT, d, json.dumps(LINES)], env=env, capture_output=True, text=True,
                       timeout=300, cwd="/")
    assert p.returncode == 0, p.stderr
    check(json.loads(p.stdout), d)
