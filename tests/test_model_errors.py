"""Broken model directories: one clear message naming the file, key or tensor; exit 2; never a crash."""

import json
import os
import shutil
import struct

from fanyi_ref.modeldir import read_safetensors, write_safetensors
from helpers import cached, random_model, run, tmpdir


def base():
    def make():
        d = os.path.join(tmpdir(), "base")
        random_model(d, seed=9)
        return d
    return cached("errors-base-model", make)


def broken(mutate):
    d = os.path.join(tmpdir(), "broken")
    shutil.copytree(base(), d)
    mutate(d)
    return d


def expect_error(d, *needles):
    p = run(["-m", d, "--input", "ids"], b"5 6 7\n", check=2)
    err = p.stderr.decode()
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    assert p.stdout == b"" and err.count("\n") == 1, err


def edit_config(d, **changes):
    path = os.path.join(d, "config.json")
    cfg = json.load(open(path))
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    json.dump(cfg, open(path, "w"))


def edit_tensors(d, fn):
    path = os.path.join(d, "model.safetensors")
    t = read_safetensors(path)
    fn(t)
    write_safetensors(path, t)


def test_config_errors_name_the_key():
    expect_error(broken(lambda d: open(os.path.join(d, "config.json"), "w").write("{nope")), "config.json",
                 "not a JSON object")
    expect_error(broken(lambda d: edit_config(d, d_model=None)), "config.json", "'d_model'")
    expect_error(broken(lambda d: edit_config(d, activation="tanh")), "'activation'", "relu")
    expect_error(broken(lambda d: edit_config(d, n_heads=5)), "n_heads")
    expect_error(broken(lambda d: edit_config(d, eos_id=500)), "'eos_id'")
    expect_error(broken(lambda d: edit_config(d, format="marian")), "'format'")
    expect_error(broken(lambda d: edit_config(d, weights="../../etc/passwd")), "'weights'", "inside the model")
    expect_error(broken(lambda d: edit_config(d, format_version=2)), "format_version")
    expect_error(broken(lambda d: os.remove(os.path.join(d, "config.json"))), "config.json")


def test_missing_extra_and_misshapen_tensors():
    expect_error(broken(lambda d: edit_tensors(d, lambda t: t.pop("decoder.layers.1.ffn.fc2.bias"))),
                 "missing tensor 'decoder.layers.1.ffn.fc2.bias'")
    expect_error(broken(lambda d: edit_tensors(d, lambda t: t.__setitem__("stray.weight", t["logits_bias"]
                                                                          if "logits_bias" in t else
                                                                          t["src_embed.weight"][0]))),
                 "unknown tensor 'stray.weight'")
    expect_error(broken(lambda d: edit_tensors(d, lambda t: t.__setitem__(
        "encoder.layers.0.ffn.fc1.weight", t["encoder.layers.0.ffn.fc1.weight"][:, :5].contiguous()))),
        "'encoder.layers.0.ffn.fc1.weight'", "shape [48, 5]", "[48, 32]")
    expect_error(broken(lambda d: edit_config(d, encoder_layers=3)), "missing tensor 'encoder.layers.2.")


def _raw_edit(d, fn):
    path = os.path.join(d, "model.safetensors")
    data = bytearray(open(path, "rb").read())
    open(path, "wb").write(fn(data))


def _header(data):
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    return n, json.loads(bytes(data[8:8 + n]))


def _with_header(data, header):
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    n, _ = _header(data)
    return struct.pack("<Q", len(h)) + h + bytes(data[8 + n:])


def test_corrupt_weight_files():
    expect_error(broken(lambda d: _raw_edit(d, lambda b: b[:4])), "model.safetensors", "too short")
    expect_error(broken(lambda d: _raw_edit(d, lambda b: b[:len(b) // 2])), "model.safetensors")
    expect_error(broken(lambda d: _raw_edit(d, lambda b: struct.pack("<Q", 1 << 40) + bytes(b[8:]))),
                 "header length")
    expect_error(broken(lambda d: _raw_edit(d, lambda b: b[:8] + b"\xff" * 16 + bytes(b[24:]))), "header")

    def overlap(b):
        n, h = _header(b)
        names = sorted(k for k in h if k != "__metadata__")
        h[names[1]]["data_offsets"] = list(h[names[0]]["data_offsets"])
        h[names[1]]["shape"] = h[names[0]]["shape"]
        h[names[1]]["dtype"] = h[names[0]]["dtype"]
        return _with_header(b, h)
    expect_error(broken(lambda d: _raw_edit(d, overlap)), "overlap")

    def bad_dtype(b):
        n, h = _header(b)
        k = sorted(x for x in h if x != "__metadata__")[0]
        h[k]["dtype"] = "BF16"
        return _with_header(b, h)
    expect_error(broken(lambda d: _raw_edit(d, bad_dtype)), "unsupported dtype 'BF16'")

    def bad_size(b):
        n, h = _header(b)
        k = sorted(x for x in h if x != "__metadata__")[0]
        h[k]["shape"] = [h[k]["shape"][0] + 1] + h[k]["shape"][1:]
        return _with_header(b, h)
    expect_error(broken(lambda d: _raw_edit(d, bad_size)), "bytes of data")


def test_int8_without_scales():
    def drop_scale(t):
        k = [n for n in t if n.endswith(".scale")][0]
        t.pop(k)
    d = os.path.join(tmpdir(), "q")
    random_model(d, seed=9, dtype="int8")
    edit_tensors(d, drop_scale)
    expect_error(d, "per-row scales")


def test_mismatched_tokenizer_files():
    from helpers import text_model
    d = os.path.join(tmpdir(), "tok")
    text_model(d, seed=2)
    os.remove(os.path.join(d, "spm.model"))
    expect_error(d, "spm.model")
    text_model(d, seed=2, src_vocab_size=100, tgt_vocab_size=100)
    expect_error(d, "do not fit")


def test_fused_projections_must_share_a_kind():
    """q, k and v are multiplied as one matrix: an int8 k beside float q and v is refused, naming both."""
    from fanyi_ref.modeldir import dequantize_rows

    def float_k(t):
        name = "decoder.layers.1.self_attn.k.weight"
        t[name] = dequantize_rows(t[name], t.pop(name + ".scale"))
    d = os.path.join(tmpdir(), "mixed")
    random_model(d, seed=9, dtype="int8")
    edit_tensors(d, float_k)
    expect_error(d, "decoder.layers.1.self_attn.q.weight", "decoder.layers.1.self_attn.k.weight", "I8")
