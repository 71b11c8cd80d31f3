"""The shipped models: they load, stay within the size limit, and translate sensibly.

Quality is measured by tools/evaluate_model.py on the held-out test sets; these
checks, on sentences of our own, catch a broken or mismatched model quickly.
"""

import os

from helpers import ROOT, run

MODELS = os.path.join(ROOT, "models")


def _size_mb(name):
    d = os.path.join(MODELS, name)
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 1e6


def test_shipped_models_exist_with_readme_and_size_limit():
    for name in ("en-de", "zh-en"):
        d = os.path.join(MODELS, name)
        for f in ("config.json", "model.safetensors", "README.md"):
            assert os.path.exists(os.path.join(d, f)), f"models/{name}/{f} is missing"
        assert _size_mb(name) <= 25, f"models/{name} is {_size_mb(name):.1f} MB"


def test_en_de_translates_content_words():
    src = ["A black dog runs through the snow.", "Two children are playing with a ball.",
           "A woman is reading a book."]
    out = run(["-m", os.path.join(MODELS, "en-de")], "".join(s + "\n" for s in src), check=0).stdout.decode()
    lines = out.split("\n")[:-1]
    assert len(lines) == 3
    for line, words in zip(lines, [("Hund", "Schnee"), ("Kinder", "Ball"), ("Frau", "Buch")]):
        assert all(w in line for w in words), f"{line!r} lacks {words}"


def test_zh_en_translates_the_seed_example():
    out = run(["-m", os.path.join(MODELS, "zh-en")], "我爱你。\n你好。\n", check=0).stdout.decode().split("\n")
    assert "love" in out[0].lower(), out[0]
    assert out[1].strip(), "empty translation"


def test_default_model_is_en_de():
    a = run([], "A dog.\n", check=0, env={"FANYI_MODEL": ""}).stdout
    b = run(["-m", os.path.join(MODELS, "en-de")], "A dog.\n", check=0).stdout
    assert a == b


def test_engine_and_reference_agree_on_the_shipped_model():
    """The real f16 model, beam 5, with its configured guards: fanyi's output is the PyTorch reference's,
    token for token."""
    import sentencepiece as spm

    from fanyi_ref import build, load_model_dir
    from fanyi_ref.search import Options, translate
    d = os.path.join(MODELS, "en-de")
    cfg, state = load_model_dir(d)
    model = build(cfg, state)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, cfg.source_spm))
    lines = open(os.path.join(ROOT, "data", "sample.en"), encoding="utf-8").read().split("\n")[:-1]
    ref = translate(model, sp.encode(lines), Options(beam_size=5, max_length=cfg.max_length,
                                                     max_length_ratio=cfg.max_length_ratio,
                                                     length_penalty=cfg.length_penalty,
                                                     no_repeat_ngram=cfg.no_repeat_ngram_size,
                                                     repetition_penalty=cfg.repetition_penalty))
    got = run(["-m", d, "-b", "5", "--output", "ids"], "".join(s + "\n" for s in lines), check=0).stdout.decode()
    assert got.split("\n")[:-1] == [" ".join(map(str, r[0].tokens)) for r in ref]
