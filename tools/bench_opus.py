#!/usr/bin/python3
"""fanyi at the size of a real Opus-MT model, against the PyTorch reference (`make bench`).

    /usr/bin/python3 tools/bench_opus.py [--fanyi ./fanyi] [--sentences 64] [--length 20]

The model is made here with random weights in the Opus-MT shape (d_model 512,
8 heads, 6 + 6 post-norm layers, feed-forward 2048, swish, one shared
vocabulary of 65,000 tied to the output layer) and stored as f32 and int8 in
work/bench-opus. Its logits bias rules out the end of sentence, so every
output is exactly --length tokens and every run does the same number of
decoder steps. Sources are random ids of 20 tokens. For f32 and int8, beam 1
and 4, 1 and 2 threads it prints ms per decoder step (the encoder included)
and per output token, for fanyi and for the
PyTorch reference decoding (fanyi_ref.search, inference mode, cached keys and
values, the same batches of 32 and thread count; int8: dynamic quantization).
A step is one more token for every sentence (all batches): translation time /
--length. Loading is not timed.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
BATCH = 32
SHAPE = dict(src_vocab_size=65000, tgt_vocab_size=65000, d_model=512, n_heads=8, d_ff=2048, encoder_layers=6,
             decoder_layers=6, max_positions=512, activation="swish", norm="post", positions="sinusoidal-halves",
             scale_embeddings=True, shared_embeddings=True, tied_output=True, logits_bias=True, pad_id=64999,
             eos_id=0, unk_id=1, decoder_start_id=64999, beam_size=4, max_length=256)


def make_models(dest):
    """The random Opus-MT-shaped model in f32 and int8 (made once, kept in dest)."""
    import torch
    from fanyi_ref import Config, build, save_model_dir
    paths = {dtype: os.path.join(dest, dtype) for dtype in ("f32", "int8")}
    if all(os.path.exists(os.path.join(p, "config.json")) for p in paths.values()):
        return paths
    torch.manual_seed(0)
    cfg = Config(**SHAPE)
    model = build(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name == "logits_bias":
                p.zero_()
                p[cfg.eos_id] = -1e4  # never ends early: every output is --length tokens
            else:
                p.normal_(0.0, 0.02)
    for dtype, path in paths.items():
        save_model_dir(path, cfg, model.state_dict(), dtype)
    return paths


def torch_worker(args):
    import torch
    from bench import torch_reference
    from fanyi_ref.search import Options, translate
    _, model = torch_reference(args.model, args.threads)
    sources = [[int(x) for x in line.split()] for line in sys.stdin.read().splitlines()]
    opts = Options(beam_size=args.beam, nbest=1, max_length=args.length, length_penalty=1.0)
    start = time.perf_counter()
    lengths = []
    with torch.inference_mode():
        for b in range(0, len(sources), BATCH):
            lengths += [len(h[0].tokens) for h in translate(model, sources[b:b + BATCH], opts)]
    print(json.dumps({"seconds": time.perf_counter() - start, "lengths": lengths}))


def fanyi_seconds(fanyi, model, src_path, beam, threads, length):
    """Translation time: the run's wall time less that of the same run on no input (loading)."""
    cmd = [fanyi, "-m", model, "--input", "ids", "--output", "ids", "-b", str(beam), "-t", str(threads),
           "--max-length", str(length)]

    def wall(path):
        t = time.perf_counter()
        with open(path, "rb") as f:
            out = subprocess.run(cmd, stdin=f, capture_output=True, check=True).stdout
        return time.perf_counter() - t, out
    load, _ = min((wall(os.devnull) for _ in range(3)), key=lambda r: r[0])
    total, out = wall(src_path)
    lengths = [len(line.split()) for line in out.decode().splitlines()]
    return total - load, lengths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--sentences", type=int, default=96)
    ap.add_argument("--length", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--beam", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    models = make_models(os.path.join(ROOT, "work", "bench-opus"))
    rng = random.Random(1)
    src_path = os.path.join(ROOT, "work", "bench-opus", "sources.txt")
    with open(src_path, "w") as f:
        for _ in range(args.sentences):
            f.write(" ".join(str(rng.randrange(2, 64999)) for _ in range(20)) + "\n")
    steps = args.length  # a step: one more token for every sentence (all batches)
    tokens = args.sentences * args.length
    print(f"Opus-MT shape (d 512, 6+6 layers, ffn 2048, vocabulary 65,000), random weights; {args.sentences} "
          f"sentences of 20 ids, every output {args.length} tokens, batches of {BATCH}; ms/step = translation time / "
          f"{steps} steps\n")
    print("| weights | beam | threads | fanyi ms/step | fanyi ms/token | PyTorch ms/step | PyTorch ms/token | "
          "fanyi speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in ("f32", "int8"):
        for beam in (1, 4):
            for threads in (1, 2):
                seconds, lengths = fanyi_seconds(args.fanyi, models[dtype], src_path, beam, threads, args.length)
                assert set(lengths) == {args.length}, f"outputs of {set(lengths)} tokens, not {args.length}"
                row = f"| {dtype} | {beam} | {threads} | {1e3 * seconds / steps:.1f} | {1e3 * seconds / tokens:.2f} |"
                if args.no_torch:
                    print(row + " | | |", flush=True)
                    continue
                with open(src_path, "rb") as f:
                    p = subprocess.run([sys.executable, __file__, "--torch-worker", "--model", models[dtype], "--beam",
                                        str(beam), "--threads", str(threads), "--length", str(args.length)],
                                       stdin=f, capture_output=True, check=True)
                ref = json.loads(p.stdout)
                assert set(ref["lengths"]) == {args.length}
                print(row + f" {1e3 * ref['seconds'] / steps:.1f} | {1e3 * ref['seconds'] / tokens:.2f} | "
                      f"{ref['seconds'] / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
