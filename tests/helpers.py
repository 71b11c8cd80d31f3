"""Shared helpers of the fanyi tests: paths, running the CLI, random models."""

import os
import shutil
import struct
import subprocess
import tempfile

import torch

from fanyi_ref import Config, build, save_model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, os.environ.get("FANYI_BIN", "fanyi"))
BUILD = os.path.join(ROOT, os.environ.get("FANYI_BUILD", "build/release"))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


class Skip(Exception):
    """Raised by a test that cannot run here; the runner counts it as skipped."""


def need_shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        raise Skip(f"{path} is absent (the shared data lives in ../shared/data beside the checkout)")
    return path


def tmpdir():
    d = tempfile.mkdtemp(prefix="fanyi-test-")
    return d


def run(args, stdin=b"", check=None, timeout=300, env=None):
    """Runs fanyi with args; returns CompletedProcess (bytes). check: expected exit code."""
    if isinstance(stdin, str):
        stdin = stdin.encode()
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run([BIN] + list(args), input=stdin, capture_output=True, timeout=timeout, env=full_env)
    if check is not None and p.returncode != check:
        raise AssertionError(f"fanyi {' '.join(args)}: exit {p.returncode}, expected {check}\n"
                             f"stderr: {p.stderr.decode(errors='replace')}")
    return p


def random_model(path, seed=0, weight_std=0.3, dtype="f32", **overrides):
    """Writes a tiny random model directory; returns (config, f32 state dict as stored)."""
    torch.manual_seed(seed)
    args = dict(src_vocab_size=40, tgt_vocab_size=36, d_model=32, n_heads=4, d_ff=48, encoder_layers=2,
                decoder_layers=2, max_positions=48, pad_id=0, eos_id=2, unk_id=1, decoder_start_id=0,
                beam_size=4, max_length=20)
    args.update(overrides)
    cfg = Config(**args)
    model = build(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, weight_std)
    if os.path.exists(path):
        shutil.rmtree(path)
    save_model_dir(path, cfg, model.state_dict(), dtype)
    return cfg


def logprob_diff(got, ref):
    """Largest difference between two log-prob tensors; -inf (pad) must sit at the same places."""
    got_inf, ref_inf = torch.isinf(got), torch.isinf(ref)
    if not torch.equal(got_inf, ref_inf):
        return float("inf")
    return (got[~got_inf] - ref[~ref_inf]).abs().max().item()


def read_logprob_dump(path):
    """Reads the dump_logprobs output: a list of [rows, vocab] tensors."""
    data = open(path, "rb").read()
    out, off = [], 0
    while off < len(data):
        rows, vocab = struct.unpack("<ii", data[off:off + 8])
        off += 8
        n = rows * vocab
        out.append(torch.frombuffer(bytearray(data[off:off + 4 * n]), dtype=torch.float32).reshape(rows, vocab))
        off += 4 * n
    return out


def ids_line(ids):
    return " ".join(str(i) for i in ids)


def text_model(path, seed=0, **overrides):
    """A random model with the committed fixture tokenizer, so text goes in and out."""
    spm_model = os.path.join(ROOT, "tests", "fixtures", "unigram.model")
    args = dict(src_vocab_size=300, tgt_vocab_size=300, shared_embeddings=True, source_spm="spm.model",
                target_spm="spm.model", pad_id=0, eos_id=2, unk_id=0, decoder_start_id=0)
    # The fixture's special pieces: <unk>=0, <s>=1, </s>=2.
    args["pad_id"], args["unk_id"], args["decoder_start_id"] = 1, 0, 1
    args.update(overrides)
    cfg = random_model(path, seed=seed, **args)
    shutil.copy(spm_model, os.path.join(path, "spm.model"))
    return cfg


_CACHE = {}


def cached(key, factory):
    """A fixture built once per test run (a model directory, say): factory() the first time."""
    if key not in _CACHE:
        _CACHE[key] = factory()
    return _CACHE[key]


def c_logprobs(model_dir, pairs):
    """The C engine's teacher-forced log-probs for (source ids, target ids) pairs (tests/dump_logprobs.c)."""
    pairs_file = os.path.join(model_dir, "pairs.txt")
    with open(pairs_file, "w") as f:
        for s, t in pairs:
            f.write(f"{ids_line(s)}\t{ids_line(t)}\n")
    out = os.path.join(model_dir, "logprobs.bin")
    subprocess.run([os.path.join(BUILD, "dump_logprobs"), model_dir, pairs_file, out], check=True)
    return read_logprob_dump(out)
