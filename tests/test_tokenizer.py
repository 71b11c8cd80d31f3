"""fanyi's C SentencePiece against Debian's python3-sentencepiece and spm_encode/spm_decode."""

import gzip
import os
import subprocess

import sentencepiece as spm

from helpers import ROOT, need_shared, run, tmpdir

ADVERSARIAL = os.path.join(ROOT, "data", "adversarial.txt")
_TRAINED = {}


def _lines_file(lines, name):
    path = os.path.join(tmpdir(), name)
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return path


def _multi30k_lines():
    base = need_shared("multi30k")
    lines = []
    for lang in ("en", "de", "fr", "cs"):
        with gzip.open(os.path.join(base, f"train.{lang}.gz"), "rt", encoding="utf-8") as f:
            lines += [line.rstrip("\n") for line in f]
    return lines


def _trained(kind):
    """SentencePiece models trained on Multi30k by the test itself (a few seconds each)."""
    if kind in _TRAINED:
        return _TRAINED[kind]
    lines = _multi30k_lines()
    d = tmpdir()
    text = _lines_file(lines, "corpus.txt")
    opts = dict(input=text, vocab_size=2000, num_threads=2, input_sentence_size=60000, shuffle_input_sentence=True,
                minloglevel=2)
    extra = {
        "unigram": dict(model_type="unigram"),
        "bpe": dict(model_type="bpe"),
        "bpe_bytes": dict(model_type="bpe", byte_fallback=True, user_defined_symbols=["<sep>", "foo"],
                          character_coverage=0.98),
        "unigram_bytes": dict(model_type="unigram", byte_fallback=True, user_defined_symbols=["<sep>", "http"],
                              character_coverage=0.98),
        "unigram_identity": dict(model_type="unigram", normalization_rule_name="identity",
                                 remove_extra_whitespaces=False, add_dummy_prefix=False),
    }[kind]
    prefix = os.path.join(d, kind)
    spm.SentencePieceTrainer.train(model_prefix=prefix, **opts, **extra)
    _TRAINED[kind] = prefix + ".model"
    return _TRAINED[kind]


def _compare_ids(model, path, label):
    """fanyi spm-encode == python sentencepiece on every line; decoding matches too."""
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    got = run(["spm-encode", "--model", model, "--output_format=id"], open(path, "rb").read(), check=0)
    got_lines = got.stdout.decode().split("\n")[:-1]
    assert len(got_lines) == len(lines), f"{label}: {len(got_lines)} output lines for {len(lines)} input lines"
    expected = sp.encode(lines)
    bad = [i for i, (g, e) in enumerate(zip(got_lines, expected)) if g != " ".join(map(str, e))]
    assert not bad, (f"{label}: {len(bad)} of {len(lines)} lines differ, first line {bad[0] + 1}: "
                     f"{lines[bad[0]]!r}: fanyi {got_lines[bad[0]]} spm {expected[bad[0]]}")
    ids_text = "".join(" ".join(map(str, e)) + "\n" for e in expected)
    dec = run(["spm-decode", "--model", model, "--input_format=id"], ids_text.encode(), check=0)
    dec_lines = dec.stdout.decode("utf-8").split("\n")[:-1]
    want = [sp.decode(e) for e in expected]
    bad = [i for i, (g, e) in enumerate(zip(dec_lines, want)) if g != e]
    assert len(dec_lines) == len(want) and not bad, f"{label}: decoding differs on line {bad[0] + 1 if bad else '?'}"
    return len(lines)


def _compare_pieces(model, path, label):
    got = run(["spm-encode", "--model", model, "--output_format=piece"], open(path, "rb").read(), check=0).stdout
    ref = subprocess.run(["spm_encode", "--model", model, "--output_format=piece"], stdin=open(path, "rb"),
                         capture_output=True, check=True).stdout
    assert got == ref, f"{label}: pieces differ from spm_encode"
    dec = run(["spm-decode", "--model", model, "--input_format=piece"], ref, check=0).stdout
    ref_dec = subprocess.run(["spm_decode", "--model", model, "--input_format=piece"], input=ref,
                             capture_output=True, check=True).stdout
    assert dec == ref_dec, f"{label}: piece decoding differs from spm_decode"


def _tatoeba_side(column):
    path = need_shared("tatoeba-cmn-eng", "cmn-eng.tsv")
    with open(path, encoding="utf-8") as f:
        return _lines_file([line.rstrip("\n").split("\t")[column] for line in f], f"tatoeba{column}.txt")


def test_opus_source_spm_on_tatoeba_chinese():
    model = need_shared("opus-mt-zh-en", "source.spm")
    n = _compare_ids(model, _tatoeba_side(1), "source.spm/zh")
    assert n > 20000


def test_opus_target_spm_on_tatoeba_english():
    model = need_shared("opus-mt-zh-en", "target.spm")
    _compare_ids(model, _tatoeba_side(0), "target.spm/en")


def test_opus_models_on_adversarial_file():
    for name in ("source.spm", "target.spm"):
        model = need_shared("opus-mt-zh-en", name)
        _compare_ids(model, ADVERSARIAL, f"{name}/adversarial")
        _compare_pieces(model, ADVERSARIAL, f"{name}/adversarial")


def test_trained_models_on_multi30k_and_adversarial():
    corpus = None
    for kind in ("unigram", "bpe", "bpe_bytes", "unigram_bytes", "unigram_identity"):
        model = _trained(kind)
        if corpus is None:
            corpus = _lines_file(_multi30k_lines()[::7], "m30k-sample.txt")
        _compare_ids(model, corpus, f"{kind}/multi30k")
        _compare_ids(model, ADVERSARIAL, f"{kind}/adversarial")
        _compare_pieces(model, ADVERSARIAL, f"{kind}/adversarial")


def test_committed_fixture_model():
    """A small BPE model with byte fallback committed in tests/: runs without ../shared."""
    model = os.path.join(ROOT, "tests", "fixtures", "bpe-bytes.model")
    _compare_ids(model, ADVERSARIAL, "fixture/adversarial")
    _compare_pieces(model, ADVERSARIAL, "fixture/adversarial")


def test_invalid_utf8_matches_spm_encode_and_warns():
    model = os.path.join(ROOT, "tests", "fixtures", "bpe-bytes.model")
    data = b"ok \xff\xfe bad\nhalf \xe4\xb8 end\n\xed\xa0\x80 surrogate\nfine\nover\xc0\xaflong\n\n"
    got = run(["spm-encode", "--model", model, "--output_format=id"], data, check=0)
    ref = subprocess.run(["spm_encode", "--model", model, "--output_format=id"], input=data, capture_output=True,
                         check=True).stdout
    assert got.stdout == ref
    assert got.stdout.count(b"\n") == 6
    err = got.stderr.decode()
    for line in (1, 2, 3, 5):
        assert f"line {line}:" in err, err
    assert "line 4:" not in err


def test_unknown_model_file_is_a_clear_error():
    d = tmpdir()
    bad = os.path.join(d, "bad.model")
    open(bad, "wb").write(b"\x0a\x05hello not a model")
    p = run(["spm-encode", "--model", bad], b"x\n", check=2)
    assert b"bad.model" in p.stderr
    p = run(["spm-encode", "--model", os.path.join(d, "missing.model")], b"x\n", check=2)
    assert b"missing.model" in p.stderr


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def _enc_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _fields(b):
    """Top-level protobuf fields as (number, wire type, raw bytes of the whole field)."""
    i = 0
    while i < len(b):
        start = i
        key, i = _varint(b, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            i += n
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        yield key >> 3, wire, b[start:i]


def _without_charsmap(model_bytes):
    """The model with normalizer_spec.precompiled_charsmap removed (its name still says nmt_nfkc)."""
    out = bytearray()
    for number, wire, raw in _fields(model_bytes):
        if number == 3 and wire == 2:
            _, body_start = _varint(raw, 0)
            length, body_start = _varint(raw, body_start)
            body = raw[body_start:]
            kept = b"".join(r for n, w, r in _fields(body) if n != 2)
            raw = raw[:1] + _enc_varint(len(kept)) + kept
        out += raw
    return bytes(out)


def test_nfkc_fallback_when_a_model_names_nfkc_but_has_no_charsmap():
    """utf8proc applies NFKC for a model that asks for it by name but carries no compiled map."""
    src = os.path.join(ROOT, "tests", "fixtures", "unigram.model")
    d = tmpdir()
    stripped = os.path.join(d, "nomap.model")
    open(stripped, "wb").write(_without_charsmap(open(src, "rb").read()))
    text = "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ﬁne ① café\n"
    with_map = run(["spm-encode", "--model", src, "--output_format=piece"], text, check=0).stdout
    fallback = run(["spm-encode", "--model", stripped, "--output_format=piece"], text, check=0).stdout
    assert fallback == with_map, (fallback, with_map)
    assert len(open(stripped, "rb").read()) < len(open(src, "rb").read()) - 100000
