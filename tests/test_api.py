"""The public C API (include/fanyi.h), used by a program that knows nothing else of fanyi."""

import os
import subprocess

from helpers import BUILD, run, text_model, tmpdir


def test_embedding_program_matches_cli():
    d = os.path.join(tmpdir(), "m")
    text_model(d, seed=3)
    p = subprocess.run([os.path.join(BUILD, "api_example"), d], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "sentence 0: 2 hypotheses" and "sentence 1: 0 hypotheses" in lines
    cli = run(["-m", d, "--beam", "4", "--nbest", "2"], "a man rides a horse\n", check=0).stdout.decode()
    cli_hyps = [(float(x.split(" ||| ")[2]), x.split(" ||| ")[1]) for x in cli.splitlines()]
    api_hyps = [(float(x.split("\t")[0]), x.split("\t", 1)[1]) for x in lines[1:3]]
    assert [h for _, h in api_hyps] == [h for _, h in cli_hyps]
    assert all(abs(a - b) < 1e-5 for (a, _), (b, _) in zip(api_hyps, cli_hyps))
    assert lines[-2].startswith("nbest > beam: code 1, message: n-best 9 is larger than the beam size 4")
    assert lines[-1] == "negative length: code 1, message: sentence 1: length -3 without ids"


def test_load_error_through_api():
    p = subprocess.run([os.path.join(BUILD, "api_example"), os.path.join(tmpdir(), "none")], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "load failed (2)" in p.stderr and "config.json" in p.stderr


def test_context_reuses_threads_and_memory():
    """A warm execution context allocates nothing but results, and one sentence per call equals one call."""
    from helpers import BUILD, random_model, tmpdir
    d = os.path.join(tmpdir(), "ctx")
    random_model(d, seed=3)
    p = subprocess.run([os.path.join(BUILD, "context_check"), d], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    facts = dict(line.split() for line in p.stdout.splitlines())
    assert facts == {"same_as_one_call": "40/40", "extra_allocations_per_warm_call": "0", "threads_mismatch": "1",
                     "context_threads": "2"}, facts


def test_allocation_failure_is_reported_and_leaks_nothing():
    """Every allocation of a load and a translation, failed in turn: FANYI_ERR_MEMORY with a message, or the
    same output as without failures; never another code or a crash (and no leak under the sanitizers)."""
    from helpers import BUILD, text_model, tmpdir
    for dtype in ("f32", "int8"):
        d = os.path.join(tmpdir(), "alloc-" + dtype)
        text_model(d, seed=3, dtype=dtype)
        p = subprocess.run([os.path.join(BUILD, "alloc_failure"), d], capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        facts = dict(line.rsplit(" ", 1) for line in p.stdout.splitlines() if line.count(" ") == 1)
        total, memory, same = int(facts["allocations"]), int(facts["reported_as_memory"]), int(
            facts["survived_same_output"])
        assert facts["wrong"] == "0", p.stdout
        assert total > 200 and memory + same == total and memory > total * 0.9, facts
