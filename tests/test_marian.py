"""Opus-MT / MarianMT models: the converter, and the C engine against MarianMT's own semantics."""

import json
import os
import random
import shutil
import subprocess

import sentencepiece as spm
import torch

from fanyi_ref import build, load_model_dir
from fanyi_ref.search import Options, translate
from helpers import ROOT, c_logprobs, ids_line, logprob_diff, need_shared, run, tmpdir
from marian_oracle import marian_logprobs, random_marian_state

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "marian-tiny")
CONVERT = os.path.join(ROOT, "tools", "convert_marian.py")


def convert(src, dtype="f32", check=True):
    out = os.path.join(tmpdir(), "converted")
    p = subprocess.run(["/usr/bin/python3", CONVERT, src, out, "--dtype", dtype], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, p.stderr
    return out, p


def marian_ids(marian_dir, text, side="source"):
    """What MarianTokenizer does: SentencePiece pieces, mapped through vocab.json (unknown -> <unk>)."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(marian_dir, f"{side}.spm"))
    vocab = json.load(open(os.path.join(marian_dir, "vocab.json"), encoding="utf-8"))
    return [vocab.get(p, vocab["<unk>"]) for p in sp.encode(text, out_type=str)]


def check_against_oracle(marian_dir, converted, sentences, tol=1e-4):
    cfg = json.load(open(os.path.join(marian_dir, "config.json")))
    bin_path = os.path.join(marian_dir, "pytorch_model.bin")
    state = torch.load(bin_path, map_location="cpu")
    rng = random.Random(0)
    v_tgt = cfg.get("decoder_vocab_size") or cfg["vocab_size"]
    pairs = [(marian_ids(marian_dir, s), [rng.randrange(1, v_tgt - 1) for _ in range(rng.randrange(0, 6))])
             for s in sentences]
    for (s, t), got in zip(pairs, c_logprobs(converted, pairs)):
        ref = marian_logprobs(state, cfg, s, t)
        diff = logprob_diff(got, ref)
        assert diff <= tol, f"log-prob difference {diff} > {tol} for source ids {s}"
    return pairs


def check_text_path(marian_dir, converted, sentences, beam, max_length=12):
    """Text in through fanyi equals Marian ids in; beam output equals the reference's; text out decodes as Marian."""
    cfg, state, quantized = load_model_dir(converted, with_quantized=True)
    model = build(cfg, state, quantized)
    src_ids = [marian_ids(marian_dir, s) for s in sentences]
    common = ["-m", converted, "--beam", str(beam), "--max-length", str(max_length)]
    by_text = run(common + ["--output", "ids"], "".join(s + "\n" for s in sentences), check=0).stdout
    by_ids = run(common + ["--input", "ids", "--output", "ids"], "".join(ids_line(s) + "\n" for s in src_ids),
                 check=0).stdout
    assert by_text == by_ids
    ref = translate(model, src_ids, Options(beam_size=beam, nbest=1, max_length=max_length,
                                            max_length_ratio=cfg.max_length_ratio, length_penalty=cfg.length_penalty))
    got = by_ids.decode().split("\n")[:-1]
    assert got == [ids_line(r[0].tokens) for r in ref]
    # Detokenization: ids -> vocab pieces -> SentencePiece decoding, as MarianTokenizer.decode does.
    vocab_file = "target_vocab.json" if os.path.exists(os.path.join(marian_dir, "target_vocab.json")) else "vocab.json"
    inv = {v: k for k, v in json.load(open(os.path.join(marian_dir, vocab_file), encoding="utf-8")).items()}
    tsp = spm.SentencePieceProcessor(model_file=os.path.join(marian_dir, "target.spm"))
    text = run(common, "".join(s + "\n" for s in sentences), check=0).stdout.decode().split("\n")[:-1]
    assert text == [tsp.decode_pieces([inv[i] for i in r[0].tokens]) for r in ref]


def test_fixture_converts_and_matches_marian_semantics():
    converted, _ = convert(FIXTURE)
    cfg = json.load(open(os.path.join(converted, "config.json")))
    assert cfg["positions"] == "sinusoidal-halves" and cfg["activation"] == "swish" and cfg["logits_bias"]
    assert cfg["decoder_start_id"] == cfg["pad_id"] == 299 and cfg["eos_id"] == 0 and cfg["beam_size"] == 4
    sentences = ["a man rides a horse", "Two dogs play in the snow.", "unknown ß∂ƒ characters", "x"]
    check_against_oracle(FIXTURE, converted, sentences)
    check_text_path(FIXTURE, converted, sentences, beam=1)
    check_text_path(FIXTURE, converted, sentences, beam=4)


def test_fixture_f16_and_int8_match_the_reference():
    sentences = ["a man rides a horse", "Two dogs play in the snow."]
    for dtype in ("f16", "int8"):
        converted, _ = convert(FIXTURE, dtype)
        check_text_path(FIXTURE, converted, sentences, beam=3)


def test_separate_target_vocabulary():
    """MarianTokenizer's separate_vocabs layout: target_vocab.json and a decoder table of its own size."""
    d = os.path.join(tmpdir(), "sep")
    shutil.copytree(FIXTURE, d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    vocab = json.load(open(os.path.join(d, "vocab.json"), encoding="utf-8"))
    pieces = [p for p in vocab if p not in ("</s>", "<unk>", "<pad>")]
    random.Random(5).shuffle(pieces)
    target = {"</s>": 0, "<unk>": 1}
    for p in pieces[:246]:
        target[p] = len(target)
    target["<pad>"] = len(target)
    json.dump(target, open(os.path.join(d, "target_vocab.json"), "w", encoding="utf-8"), ensure_ascii=False)
    cfg.update(decoder_vocab_size=len(target), share_encoder_decoder_embeddings=False,
               pad_token_id=len(target) - 1, decoder_start_token_id=len(target) - 1,
               bad_words_ids=[[len(target) - 1]])
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    # The source side keeps its own pad at the end of vocab.json.
    torch.save(random_marian_state(cfg, seed=4, std=0.3), os.path.join(d, "pytorch_model.bin"))
    converted, _ = convert(d)
    out_cfg = json.load(open(os.path.join(converted, "config.json")))
    assert out_cfg["target_vocab"] == "target_vocab.json" and out_cfg["tgt_vocab_size"] == len(target)
    assert not out_cfg["shared_embeddings"]
    sentences = ["a man rides a horse", "Two dogs play in the snow."]
    check_against_oracle(d, converted, sentences)
    check_text_path(d, converted, sentences, beam=3)


def test_converter_refuses_what_fanyi_cannot_represent():
    cases = [("normalize_embedding", True, "normalize_embedding"), ("decoder_attention_heads", 4, "heads"),
             ("activation_function", "tanh", "activation_function"), ("bad_words_ids", [[3, 4]], "bad_words_ids")]
    for key, value, needle in cases:
        d = os.path.join(tmpdir(), "m")
        shutil.copytree(FIXTURE, d)
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg[key] = value
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        out, p = convert(d, check=False)
        assert p.returncode != 0 and needle in p.stderr and not os.path.exists(out), (key, p.stderr)
    d = os.path.join(tmpdir(), "m")
    shutil.copytree(FIXTURE, d)
    os.remove(os.path.join(d, "vocab.json"))
    out, p = convert(d, check=False)
    assert p.returncode != 0 and "vocab.json" in p.stderr


def test_real_opus_mt_zh_en_shapes_on_tatoeba():
    """opus-mt-zh-en's real config, tokenizers and vocab, with random weights of the real shapes."""
    real = need_shared("opus-mt-zh-en")
    tsv = need_shared("tatoeba-cmn-eng", "cmn-eng.tsv")
    d = os.path.join(tmpdir(), "opus-zh-en")
    os.makedirs(d)
    for name in ("config.json", "source.spm", "target.spm", "vocab.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(real, name), d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    torch.save(random_marian_state(cfg, seed=3, std=0.05), os.path.join(d, "pytorch_model.bin"))
    converted, _ = convert(d)
    lines = [line.split("\t")[1] for line in open(tsv, encoding="utf-8").read().splitlines()]
    rng = random.Random(1)
    sentences = lines[:3] + rng.sample(lines, 3) + ["我爱你。"]
    check_against_oracle(d, converted, sentences)
    check_text_path(d, converted, sentences[:4], beam=6, max_length=8)
