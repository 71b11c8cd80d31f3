#!/usr/bin/python3
"""Corpus BLEU and chrF of a translation against references, sacreBLEU-compatible.

    /usr/bin/python3 tools/evaluate.py HYPOTHESES REFERENCES [--tokenize 13a|zh]

Both files: one detokenized, cased sentence per line (gzip accepted). BLEU uses
sacreBLEU's defaults (13a tokenization, or zh for Chinese targets; exp
smoothing); chrF is chrF2 (character 6-grams, beta 2). Prints
"BLEU = xx.xx chrF = yy.yy" (--json: a JSON object).
"""

import argparse
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fanyi_ref.metrics import corpus_bleu, corpus_chrf  # noqa: E402


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hypotheses")
    ap.add_argument("references")
    ap.add_argument("--tokenize", default="13a", choices=["13a", "zh", "none"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    hyps, refs = read(args.hypotheses), read(args.references)
    if len(hyps) != len(refs):
        sys.exit(f"evaluate: {args.hypotheses} has {len(hyps)} lines but {args.references} has {len(refs)}")
    bleu, chrf = corpus_bleu(hyps, refs, args.tokenize), corpus_chrf(hyps, refs)
    if args.json:
        print(json.dumps({"bleu": round(bleu, 2), "chrf": round(chrf, 2), "sentences": len(hyps),
                          "tokenize": args.tokenize}))
    else:
        print(f"BLEU = {bleu:.2f} chrF = {chrf:.2f} ({len(hyps)} sentences, {args.tokenize})")


if __name__ == "__main__":
    main()
