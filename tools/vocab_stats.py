#!/usr/bin/python3
"""Trains SentencePiece vocabularies of several sizes and reports how finely each cuts held-out text.

    /usr/bin/python3 tools/vocab_stats.py --train work/general-data/en-de/train.tsv --sizes 8000,16000,32000 \\
        --side joint --eval work/general-data/en-de/newstest2014.tsv work/general-data/en-de/tatoeba-dev.tsv

--side joint trains one vocabulary on both columns; --side 0 or 1 on that column alone (coverage
0.9995 for a Chinese side is set with --coverage). For each size and held-out file it prints the
pieces per whitespace word (or per character with --per-char, for Chinese) of the chosen columns,
and the share of unknown pieces. Models go to --workdir (default work/vocab-stats).
"""

import argparse
import os
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import train_spm  # noqa: E402  the settings the models are trained with


def columns(path, side):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            out += cols[:2] if side == "joint" else [cols[int(side)]]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True)
    p.add_argument("--eval", nargs="+", required=True)
    p.add_argument("--sizes", default="8000,16000,32000")
    p.add_argument("--side", default="joint", help="joint, 0 or 1")
    p.add_argument("--coverage", type=float, default=1.0)
    p.add_argument("--per-char", action="store_true", help="pieces per non-space character (Chinese)")
    p.add_argument("--workdir", default="work/vocab-stats")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    train_lines = columns(args.train, args.side)
    print("size\t" + "\t".join(os.path.basename(e) for e in args.eval))
    for size in (int(s) for s in args.sizes.split(",")):
        prefix = os.path.join(args.workdir, f"spm-{args.side}-{size}")
        train_spm(prefix, train_lines, size, "unigram", args.coverage)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        cells = []
        for path in args.eval:
            held_out = columns(path, args.side)
            ids = sp.encode(held_out)
            pieces = sum(len(x) for x in ids)
            unk = sum(x.count(sp.unk_id()) for x in ids)
            units = sum(len(s.replace(" ", "")) if args.per_char else len(s.split()) for s in held_out)
            cells.append(f"{pieces / max(1, units):.3f} ({100 * unk / max(1, pieces):.2f}% unk)")
        print(f"{size}\t" + "\t".join(cells), flush=True)


if __name__ == "__main__":
    main()
