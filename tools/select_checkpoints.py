#!/usr/bin/python3
"""Chooses, on dev only, which epochs of a general-domain run to average, and exports them.

    /usr/bin/python3 tools/select_checkpoints.py en-de [--last 1,3,5,8] [--out models/en-de]

For each k in --last, the last k epoch checkpoints of work/PAIR-general are
averaged and exported (f16, as shipped) by `sh tools/train_general.sh export`;
fanyi translates work/general-data/PAIR/dev.tsv with beam 5 and the average
with the best dev BLEU wins (ties: fewer checkpoints). Without --out it only
prints the table; with --out the winner replaces that directory's config,
weights and vocabulary (its README.md stays). No test set is looked at: score
the result with tools/evaluate_model.py.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from evaluate_model import read_pairs, translate  # noqa: E402
from fanyi_ref.metrics import corpus_bleu, corpus_chrf, looping_rate  # noqa: E402

MODEL_FILES = ("config.json", "model.safetensors", "spm.model", "source.model", "target.model")


def export(pair, checkpoints, out_dir, dtype):
    names = ",".join(os.path.basename(c) for c in checkpoints)
    subprocess.run(["sh", os.path.join(HERE, "train_general.sh"), "export", pair, names, out_dir, dtype],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def install(staged, out_dir):
    """Replaces the model files of out_dir by those of staged, keeping anything else (its README)."""
    os.makedirs(out_dir, exist_ok=True)
    for name in MODEL_FILES:
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    for name in os.listdir(staged):
        shutil.copyfile(os.path.join(staged, name), os.path.join(out_dir, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair", choices=["en-de", "zh-en"])
    ap.add_argument("--last", default="1,3,5,8", help="candidate numbers of last epochs to average")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--dtype", default="f16", choices=["f32", "f16", "int8"])
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--out", help="model directory to install the winner into")
    args = ap.parse_args()

    epochs = sorted(glob.glob(os.path.join(ROOT, "work", f"{args.pair}-general", "epoch[0-9][0-9][0-9].pt")))
    if not epochs:
        sys.exit(f"select_checkpoints: no epoch checkpoints in work/{args.pair}-general; train first")
    src, refs = read_pairs(os.path.join(ROOT, "work", "general-data", args.pair, "dev.tsv"))
    counts = sorted({min(int(k), len(epochs)) for k in args.last.split(",")})
    print(f"{args.pair}: {len(epochs)} epochs kept, last is {os.path.basename(epochs[-1])}; dev {len(src)} "
          f"sentences, beam {args.beam}, {args.dtype}")
    print("| averaged | dev BLEU | chrF | looping |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        best = None
        for k in counts:
            chosen = epochs[-k:]
            staged = os.path.join(tmp, f"last{k}")
            export(args.pair, chosen, staged, args.dtype)
            hyps, _ = translate(args.fanyi, staged, src, args.beam)
            bleu = corpus_bleu(hyps, refs)
            label = ", ".join(os.path.basename(c)[5:8].lstrip("0") for c in chosen)
            print(f"| epochs {label} | {bleu:.2f} | {corpus_chrf(hyps, refs):.2f} | {looping_rate(hyps):.1f}% |",
                  flush=True)
            if best is None or bleu > best[0]:
                best = (bleu, k, staged)
        print(f"best: the last {best[1]} epoch(s), dev BLEU {best[0]:.2f}")
        if args.out:
            install(best[2], args.out)
            print(f"installed into {args.out}")


if __name__ == "__main__":
    main()
