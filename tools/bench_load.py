#!/usr/bin/python3
"""fanyi on a busy machine (`make bench`): oversubscription, measured.

    /usr/bin/python3 tools/bench_load.py [--fanyi ./fanyi] [--model models/en-de] [--sentences 500]

1. Two fanyi processes with 2 threads each, started together, against the
   same two runs one after the other: on 2 cores the pair should take no
   longer than the sequence.
2. With the machine loaded (busy-loop processes, twice as many as cores),
   fanyi with 2 threads against 1 thread: 2 threads should never be slower.
Both for the en-de model stored as int8 at beam 1 (many short jobs per step,
the hardest case) and as f32 at beam 5; each time is the median of 5 runs.
Prints a Markdown table.
"""

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def start(cmd, src):
    return subprocess.Popen(cmd, stdin=open(src, "rb"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(procs):
    t = time.perf_counter()
    for p in procs:
        p.wait()
    return time.perf_counter() - t


def median(run, n=5):
    """A busy machine's scheduler is noisy: the median of n runs."""
    return sorted(run() for _ in range(n))[n // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "en-de"))
    ap.add_argument("--sentences", type=int, default=500)
    args = ap.parse_args()
    test = os.path.join(SHARED, "multi30k", "test_2016_flickr.en.gz")
    lines = (gzip.open(test, "rt").read().splitlines() if os.path.exists(test)
             else open(os.path.join(ROOT, "data", "sample.en")).read().splitlines())
    work = tempfile.mkdtemp(prefix="fanyi-load-")
    src = os.path.join(work, "src.txt")
    with open(src, "w") as f:
        f.write("\n".join((lines * (1 + args.sentences // max(1, len(lines))))[: args.sentences]) + "\n")
    from bench import reencode
    models = {"f32": args.model, "int8": reencode(args.model, "int8", os.path.join(work, "int8"))}
    cores = os.cpu_count() or 2
    print(f"{args.sentences} sentences of multi30k test_2016_flickr, {cores} cores\n")
    print("| weights | beam | 2 processes x 2 threads: together / one after the other | loaded machine: 2 threads / 1 "
          "thread |")
    print("|---|---|---|---|")
    for dtype, beam in (("int8", 1), ("f32", 5)):
        cmd = lambda t: [args.fanyi, "-m", models[dtype], "-b", str(beam), "-t", str(t)]  # noqa: E731
        sequence = median(lambda: timed([start(cmd(2), src)]) + timed([start(cmd(2), src)]))
        together = median(lambda: timed([start(cmd(2), src), start(cmd(2), src)]))
        busy = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2 * cores)]
        try:
            one = median(lambda: timed([start(cmd(1), src)]))
            two = median(lambda: timed([start(cmd(2), src)]))
        finally:
            for b in busy:
                b.kill()
                b.wait()
        print(f"| {dtype} | {beam} | {together:.2f} s / {sequence:.2f} s = {together / sequence:.2f} | "
              f"{two:.2f} s / {one:.2f} s = {two / one:.2f} |", flush=True)


if __name__ == "__main__":
    main()
