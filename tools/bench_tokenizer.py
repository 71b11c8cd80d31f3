#!/usr/bin/python3
"""Tokenization throughput: fanyi's C encoder vs SentencePiece's C++ encoder, one thread.

    /usr/bin/python3 tools/bench_tokenizer.py [--fanyi ./fanyi] [--repeat 5]

Encodes the Chinese side of Tatoeba with opus-mt-zh-en's source.spm and the
English side of Multi30k with target.spm, three ways, in the same run:
`fanyi spm-encode`, `spm_encode` (the C++ CLI), and python3-sentencepiece's
encode() on the whole list (C++ inside, one thread). Prints lines/s and MB/s;
the best of --repeat runs counts, so a noisy neighbour costs less.
"""

import argparse
import gzip
import os
import subprocess
import tempfile
import time

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def best_of(n, fn):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tsv = os.path.join(SHARED, "tatoeba-cmn-eng", "cmn-eng.tsv")
    zh = [line.split("\t")[1] for line in open(tsv, encoding="utf-8").read().splitlines()]
    with gzip.open(os.path.join(SHARED, "multi30k", "train.en.gz"), "rt", encoding="utf-8") as f:
        en = f.read().splitlines()
    cases = [("zh source.spm (Tatoeba)", "source.spm", zh * 4), ("en target.spm (Multi30k)", "target.spm", en)]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    print(f"{'corpus':28} {'lines':>7} {'MB':>6}  {'fanyi':>14} {'spm_encode':>14} {'python spm':>14}  fanyi/spm_encode")
    for label, model_name, lines in cases:
        model = os.path.join(SHARED, "opus-mt-zh-en", model_name)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            path = f.name
        mb = os.path.getsize(path) / 1e6

        def run_cli(cmd):
            with open(path, "rb") as inp:
                subprocess.run(cmd, stdin=inp, stdout=subprocess.DEVNULL, check=True, env=env)

        t_fanyi = best_of(args.repeat, lambda: run_cli([args.fanyi, "spm-encode", "--model", model,
                                                        "--output_format=id"]))
        t_spm = best_of(args.repeat, lambda: run_cli(["spm_encode", "--model", model, "--output_format=id"]))
        sp = spm.SentencePieceProcessor(model_file=model)
        t_py = best_of(args.repeat, lambda: sp.encode(lines, num_threads=1) if "num_threads" in
                       spm.SentencePieceProcessor.encode.__code__.co_varnames else sp.encode(lines))
        n = len(lines)

        def rate(t):
            return f"{n / t / 1000:7.0f}k l/s"

        print(f"{label:28} {n:7d} {mb:6.1f}  {rate(t_fanyi):>14} {rate(t_spm):>14} {rate(t_py):>14}  "
              f"{t_spm / t_fanyi:.2f}x")
        os.unlink(path)


if __name__ == "__main__":
    main()
