"""The C engine against the PyTorch reference, on tiny random models of every variant."""

import os
import random

import torch

from fanyi_ref import build, load_model_dir
from fanyi_ref.search import Options, length_limit, normalized, source_ids, teacher_forced_logprobs, translate
from helpers import c_logprobs, ids_line, logprob_diff, random_model, run, tmpdir

# Every architectural switch of config.json, each at least once off and on.
VARIANTS = {
    "paper": dict(norm="post", activation="relu", positions="sinusoidal-interleaved", scale_embeddings=True),
    "marian": dict(norm="post", activation="swish", positions="sinusoidal-halves", shared_embeddings=True,
                   src_vocab_size=36, tied_output=True, logits_bias=True, forbidden_ids=[1]),
    "prenorm_gelu_learned": dict(norm="pre", activation="gelu", positions="learned", encoder_final_norm=True,
                                 decoder_final_norm=True, scale_embeddings=False),
    "untied": dict(tied_output=False, logits_bias=True, norm="pre", encoder_final_norm=True),
    "separate_start": dict(decoder_start_id=3, source_eos=False, layernorm_eps=1e-6, n_heads=2,
                           encoder_layers=1, decoder_layers=3),
}

SOURCES = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15, 16], [17], [3, 3, 3, 3], [20, 21, 22, 23, 24, 25]]


def _check_logprobs(model_dir, tol=1e-4):
    cfg, state, quantized = load_model_dir(model_dir, with_quantized=True)
    model = build(cfg, state, quantized)
    rng = random.Random(1)
    pairs = [(s, [rng.randrange(3, cfg.tgt_vocab_size) for _ in range(rng.randrange(0, 7))]) for s in SOURCES]
    got = c_logprobs(model_dir, pairs)
    assert len(got) == len(pairs)
    for (s, t), c in zip(pairs, got):
        ref = teacher_forced_logprobs(model, s, t)
        diff = logprob_diff(c, ref)
        assert diff <= tol, f"{model_dir}: source {s}: log-prob difference {diff} > {tol}"
    return model


def _cli_nbest(model_dir, sources, beam, nbest, extra=()):
    stdin = "".join(ids_line(s) + "\n" for s in sources)
    p = run(["-m", model_dir, "--input", "ids", "--output", "ids", "--beam", str(beam), "--nbest", str(nbest),
             "--format", "jsonl"] + list(extra), stdin, check=0)
    import json
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def _check_search(model, model_dir, beam, nbest, max_length=20, tol=1e-4, no_repeat_ngram=0, repetition_penalty=1.0):
    # The engine takes the length ratio and penalty from config.json unless told otherwise; so does this.
    ref = translate(model, SOURCES, Options(beam_size=beam, nbest=nbest, max_length=max_length,
                                            max_length_ratio=model.cfg.max_length_ratio,
                                            length_penalty=model.cfg.length_penalty,
                                            no_repeat_ngram=no_repeat_ngram, repetition_penalty=repetition_penalty))
    guards = ["--no-repeat-ngram", str(no_repeat_ngram), "--repetition-penalty", str(repetition_penalty)]
    got = _cli_nbest(model_dir, SOURCES, beam, nbest, ["--max-length", str(max_length)] + guards)
    assert len(got) == len(SOURCES)
    for i, (r, g) in enumerate(zip(ref, got)):
        assert len(g["nbest"]) == len(r), f"sentence {i}: {len(g['nbest'])} hypotheses, reference {len(r)}"
        for h_ref, h in zip(r, g["nbest"]):
            assert abs(h["score"] - h_ref.score) < tol, f"sentence {i}: score {h['score']} != {h_ref.score}"
            if h["translation"] != h_ref.tokens:
                # Two hypotheses closer than the engines' rounding may swap; the engine's must still
                # be scored right, and so be as good as the reference's within tol.
                if no_repeat_ngram or repetition_penalty != 1.0:
                    raise AssertionError(f"sentence {i} beam {beam}: {h['translation']} != {h_ref.tokens}")
                rescored = _reference_score(model, SOURCES[i], h["translation"], max_length)
                assert abs(rescored - h["score"]) < tol, \
                    f"sentence {i} beam {beam}: {h['translation']} != {h_ref.tokens} (rescored {rescored})"


def _reference_score(model, src, tokens, max_length):
    """The reference's length-normalized score of a given hypothesis (EOS appended unless cut at the limit)."""
    cfg = model.cfg
    opts = Options(max_length=max_length, max_length_ratio=cfg.max_length_ratio, length_penalty=cfg.length_penalty)
    limit = length_limit(cfg, opts, len(source_ids(cfg, src)))
    lp = teacher_forced_logprobs(model, src, tokens)
    steps = list(tokens) + ([cfg.eos_id] if len(tokens) < limit else [])
    total = sum(lp[t][tok].item() for t, tok in enumerate(steps))
    return normalized(total, len(steps), model.cfg.length_penalty)


def test_variants_logprobs_and_search():
    for name, overrides in VARIANTS.items():
        d = os.path.join(tmpdir(), name)
        random_model(d, seed=len(name), **overrides)
        model = _check_logprobs(d)
        _check_search(model, d, beam=1, nbest=1)
        _check_search(model, d, beam=4, nbest=3)


def test_repetition_guards_match_the_reference():
    """--no-repeat-ngram and --repetition-penalty: Hugging Face's processors, as the reference applies them."""
    d = os.path.join(tmpdir(), "guards")
    random_model(d, seed=11, weight_std=0.5)
    cfg, state, quantized = load_model_dir(d, with_quantized=True)
    model = build(cfg, state, quantized)
    for beam, n, penalty in ((1, 2, 1.0), (4, 2, 1.0), (4, 3, 1.0), (1, 0, 1.3), (4, 0, 2.0), (4, 2, 1.5), (3, 1, 1.0)):
        _check_search(model, d, beam=beam, nbest=min(beam, 2), no_repeat_ngram=n, repetition_penalty=penalty)
    # The guard holds: no bigram twice in any hypothesis.
    for r in _cli_nbest(d, SOURCES, 4, 4, ["--no-repeat-ngram", "2"]):
        for h in r["nbest"]:
            bigrams = list(zip(h["translation"], h["translation"][1:]))
            assert len(bigrams) == len(set(bigrams)), h
    # Without guards this model repeats itself, so the test above can fail.
    plain = [h["translation"] for r in _cli_nbest(d, SOURCES, 4, 4, []) for h in r["nbest"]]
    assert any(len(set(zip(t, t[1:]))) < len(t) - 1 for t in plain)


def test_hf_processor_semantics():
    """The reference's processors on hand-computed cases (Hugging Face's definitions)."""
    from fanyi_ref.search import no_repeat_ngram, repetition_penalty
    lp = torch.full((8,), -2.0)
    no_repeat_ngram(lp, [0, 5, 6, 5], 2)  # after 5 came 6: ban 6
    assert lp[6] == float("-inf") and (lp[torch.arange(8) != 6] == -2.0).all()
    lp = torch.full((8,), -2.0)
    no_repeat_ngram(lp, [0, 5, 6, 5], 3)  # (6, 5) never started a trigram
    assert (lp == -2.0).all()
    lp = torch.full((8,), -2.0)
    no_repeat_ngram(lp, [0, 5, 6, 5, 6], 3)  # (5, 6) was followed by 5
    assert lp[5] == float("-inf") and lp[6] == -2.0
    lp = torch.full((8,), -2.0)
    no_repeat_ngram(lp, [0, 5], 4)  # too short to repeat a 4-gram
    assert (lp == -2.0).all()
    lp = torch.tensor([-1.0, 0.5, -3.0, -4.0])
    repetition_penalty(lp, [0, 1, 2, 2], 2.0)  # each id once; a positive score is divided
    assert lp.tolist() == [-2.0, 0.25, -6.0, -4.0]


def test_guard_options_are_checked():
    d = os.path.join(tmpdir(), "guards-cli")
    random_model(d, seed=11, weight_std=0.5)
    for bad in (["--no-repeat-ngram", "-1"], ["--repetition-penalty", "0"], ["--repetition-penalty", "inf"],
                ["--no-repeat-ngram", "x"], ["--repetition-penalty", "101"]):
        run(["-m", d, "--input", "ids"] + bad, b"", check=1)
    # A model's default guard is on unless --no-repeat-ngram 0 turns it off.
    import json
    cfg_path = os.path.join(d, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["no_repeat_ngram_size"] = 1
    json.dump(cfg, open(cfg_path, "w"))
    out = _cli_nbest(d, SOURCES, 1, 1, [])
    assert all(len(set(h["translation"])) == len(h["translation"]) for r in out for h in r["nbest"]), out
    off = _cli_nbest(d, SOURCES, 1, 1, ["--no-repeat-ngram", "0"])
    assert off != out


# int8 layers quantize their input rows: an activation within 1e-7 of a rounding
# boundary can round the other way in C and in PyTorch (their exp and attention
# round differently), moving a log-probability by ~1e-4. int8 is held to 1e-3.
INT8_TOL = 1e-3


def test_f16_and_int8_storage():
    """f16 and int8 files load, and the engine computes what the reference computes on them (int8: int8 semantics)."""
    for dtype in ("f16", "int8"):
        d = os.path.join(tmpdir(), dtype)
        random_model(d, seed=7, dtype=dtype, norm="pre", encoder_final_norm=True, decoder_final_norm=True)
        tol = INT8_TOL if dtype == "int8" else 1e-4
        model = _check_logprobs(d, tol=tol)
        _check_search(model, d, beam=3, nbest=2, tol=tol)


def _check_batch_invariance(env=None):
    d = os.path.join(tmpdir(), "inv")
    random_model(d, seed=3, weight_std=0.25)
    rng = random.Random(5)
    sources = [[rng.randrange(3, 40) for _ in range(rng.randrange(1, 30))] for _ in range(40)]
    stdin = "".join(ids_line(s) + "\n" for s in sources)
    base = ["-m", d, "--input", "ids", "--output", "ids", "--beam", "4", "--scores"]
    together = run(base + ["--batch-size", "40"], stdin, check=0, env=env).stdout.decode().splitlines()
    alone = [run(base, ids_line(s) + "\n", check=0, env=env).stdout.decode().strip("\n") for s in sources[:8]]
    assert together[:8] == alone
    for batch_size, threads in ((3, 1), (7, 2), (16, 1)):
        lines = run(base + ["--batch-size", str(batch_size), "--threads", str(threads)], stdin,
                    check=0, env=env).stdout.decode().splitlines()
        assert lines == together, f"batch size {batch_size}, threads {threads} changed the output"
    order = list(range(len(sources)))
    rng.shuffle(order)
    shuffled = run(base + ["--batch-size", "40"], "".join(ids_line(sources[i]) + "\n" for i in order),
                   check=0, env=env).stdout.decode().splitlines()
    assert [shuffled[order.index(i)] for i in range(len(sources))] == together
    return d, together


def test_batch_invariance():
    """A sentence's translation is byte-identical alone, in any batch, in any order, with any threads."""
    _check_batch_invariance()


def test_openblas_backend_is_batch_invariant_and_agrees():
    """FANYI_GEMM=openblas (the f32 backend where fanyi has no SIMD kernel): the same invariance, and the
    reference's log-probabilities within 1e-4."""
    env = {"FANYI_GEMM": "openblas"}
    d, blas = _check_batch_invariance(env)
    own = _check_batch_invariance()[1]
    assert [line.split("\t")[1] for line in blas] == [line.split("\t")[1] for line in own]
    assert all(abs(float(a.split("\t")[0]) - float(b.split("\t")[0])) < 1e-4 for a, b in zip(blas, own))
    old = os.environ.get("FANYI_GEMM")
    os.environ["FANYI_GEMM"] = "openblas"  # c_logprobs runs tests/dump_logprobs in this environment
    try:
        _check_logprobs(d)
    finally:
        if old is None:
            del os.environ["FANYI_GEMM"]
        else:
            os.environ["FANYI_GEMM"] = old


def test_forbidden_ids_never_produced():
    d = os.path.join(tmpdir(), "forbid")
    # Make token 7 overwhelmingly likely, then forbid it.
    cfg = random_model(d, seed=11, logits_bias=True, forbidden_ids=[7])
    from fanyi_ref.modeldir import read_safetensors, write_safetensors
    path = os.path.join(d, cfg.weights)
    tensors = read_safetensors(path)
    tensors["logits_bias"] = tensors["logits_bias"].clone()
    tensors["logits_bias"][7] = 50.0
    write_safetensors(path, tensors)
    for beam in ("1", "4"):
        p = run(["-m", d, "--input", "ids", "--output", "ids", "--beam", beam, "--nbest", beam],
                "5 6 7\n9 9\n", check=0)
        for line in p.stdout.decode().splitlines():
            toks = line.split("|||")[1].split() if "|||" in line else line.split()
            assert "7" not in toks and "0" not in toks, f"forbidden id produced: {line}"


def test_max_length_and_ratio():
    d = os.path.join(tmpdir(), "len")
    random_model(d, seed=2)
    p = run(["-m", d, "--input", "ids", "--output", "ids", "--beam", "2", "--max-length", "3"], "5 6 7\n", check=0)
    assert len(p.stdout.split()) <= 3
    p = run(["-m", d, "--input", "ids", "--output", "ids", "--beam", "2", "--max-length-ratio", "0.5"],
            "5 6 7 8 9 10 11\n", check=0)  # 7 tokens + EOS -> at most 4
    assert len(p.stdout.split()) <= 4
    cfg, state = load_model_dir(d)
    ref = translate(build(cfg, state), [[5, 6, 7, 8, 9, 10, 11]], Options(beam_size=2, max_length_ratio=0.5))
    assert p.stdout.decode().split() == [str(t) for t in ref[0][0].tokens]


def test_empty_lines_stay_empty():
    d = os.path.join(tmpdir(), "empty")
    random_model(d, seed=4)
    p = run(["-m", d, "--input", "ids", "--output", "ids"], "5 6\n\n\n7\n", check=0)
    lines = p.stdout.decode().split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[2] == "" and lines[0] and lines[3], lines


def test_source_ids_outside_vocabulary_are_an_input_error():
    d = os.path.join(tmpdir(), "oov")
    random_model(d, seed=4)
    p = run(["-m", d, "--input", "ids"], "5 6\n999\n", check=3)
    assert b"999" in p.stderr and b"vocabulary" in p.stderr
    p = run(["-m", d, "--input", "ids"], "5 x6\n", check=3)
    assert b"line 1" in p.stderr or b":1:" in p.stderr


def test_long_source_is_truncated_with_a_warning():
    d = os.path.join(tmpdir(), "long")
    random_model(d, seed=4, max_positions=16)
    p = run(["-m", d, "--input", "ids", "--output", "ids"], " ".join(["5"] * 40) + "\n", check=0)
    assert b"warning" in p.stderr and p.stdout.count(b"\n") == 1
