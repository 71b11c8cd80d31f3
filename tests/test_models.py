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


def _translate(model, lines):
    out = run(["-m", os.path.join(MODELS, model)], "".join(s + "\n" for s in lines), check=0).stdout.decode()
    got = out.split("\n")[:-1]
    assert len(got) == len(lines), out
    return got


def _assert_content_words(model, cases):
    """Each sentence (captions, everyday, news: our own, in no training or test set) translates with its
    content words, and none of the outputs loops."""
    from fanyi_ref.metrics import is_looping
    got = _translate(model, [src for src, _ in cases])
    for line, (src, words) in zip(got, cases):
        assert all(w.lower() in line.lower() for w in words), f"{src!r} -> {line!r} lacks {words}"
        assert not is_looping(line), f"{src!r} -> {line!r} loops"


def test_en_de_translates_content_words():
    _assert_content_words("en-de", [
        ("A black dog runs through the snow.", ("Hund", "Schnee")),
        ("Two children are playing with a ball.", ("Kinder", "Ball")),
        ("A woman is reading a book.", ("Frau", "Buch")),
        ("How much does this jacket cost?", ("kostet", "Jacke")),
        ("Where is the nearest train station?", ("Bahnhof",)),
        ("The government announced new taxes on Monday.", ("Regierung", "Steuern", "Montag")),
    ])


ZH_CASES = [
    ("我爱你。", ("love",)),
    ("这件夹克多少钱？", ("how much", "jacket")),
    ("我想喝一杯咖啡。", ("coffee",)),
    ("最近的火车站在哪里？", ("station",)),
    ("中国政府周一宣布了新的经济政策。", ("government", "policy")),
]


def test_zh_en_translates_content_words():
    _assert_content_words("zh-en", ZH_CASES)
    assert _translate("zh-en", ["你好。"])[0].strip(), "empty translation"


def test_default_model_is_en_de():
    a = run([], "A dog.\n", check=0, env={"FANYI_MODEL": ""}).stdout
    b = run(["-m", os.path.join(MODELS, "en-de")], "A dog.\n", check=0).stdout
    assert a == b


def _assert_engine_is_reference(name, lines):
    """The real f16 model, beam 5, with its configured length penalty and guards: fanyi's output is the
    PyTorch reference's, token for token."""
    import sentencepiece as spm

    from fanyi_ref import build, load_model_dir
    from fanyi_ref.search import Options, translate
    d = os.path.join(MODELS, name)
    cfg, state = load_model_dir(d)
    model = build(cfg, state)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, cfg.source_spm))
    ref = translate(model, sp.encode(lines), Options.from_config(cfg, beam_size=5))
    got = run(["-m", d, "-b", "5", "--output", "ids"], "".join(s + "\n" for s in lines), check=0).stdout.decode()
    assert got.split("\n")[:-1] == [" ".join(map(str, r[0].tokens)) for r in ref]


def test_engine_and_reference_agree_on_the_shipped_en_de():
    lines = open(os.path.join(ROOT, "data", "sample.en"), encoding="utf-8").read().split("\n")[:-1]
    _assert_engine_is_reference("en-de", lines)


def test_engine_and_reference_agree_on_the_shipped_zh_en():
    _assert_engine_is_reference("zh-en", [src for src, _ in ZH_CASES] + [
        "他每天早上六点起床，然后去公园跑步。", "这个问题很难，我们需要更多的时间来讨论。"])
