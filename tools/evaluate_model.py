#!/usr/bin/python3
"""Scores a model directory on every dev and test set with fanyi; optionally tunes the length penalty on dev.

    /usr/bin/python3 tools/evaluate_model.py en-de [--tune-length-penalty] [--beam 5]
    /usr/bin/python3 tools/evaluate_model.py zh-en --model DIR --dev-only [--fanyi-args "--no-repeat-ngram 4"]

The sets are those written by tools/prepare_general.py (default directory
work/general-data/NAME; `sh tools/train_general.sh prepare` makes them):
dev.tsv is the selection set (en-de: Tatoeba dev, newstest2014, Multi30k val;
zh-en: Tatoeba dev, newstest2019); the rest are scored one by one. Tuning picks
the length penalty with the best dev BLEU among 0.6, 0.8, 1.0, 1.2, 1.4 and writes
it into the model's config.json (the test sets play no part in it). Prints a
Markdown table: set, sentences, BLEU, chrF, looping outputs (%, see
fanyi_ref.metrics.is_looping), seconds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from fanyi_ref.metrics import corpus_bleu, corpus_chrf, looping_rate  # noqa: E402

SETS = {
    "en-de": ["tatoeba-dev", "newstest2014", "multi30k-val", "tatoeba-test", "test_2016_flickr",
              "test_2017_flickr", "test_2017_mscoco"],
    "zh-en": ["tatoeba-dev", "newstest2019", "tatoeba-test"],
}


def read_pairs(path):
    """(sources, references) of a TSV file with the source first."""
    if not os.path.exists(path):
        raise SystemExit(f"evaluate_model: {path} is missing; run `sh tools/train_general.sh prepare` first")
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    return [r[0] for r in rows], [r[1] for r in rows]


def datasets(name, data_dir):
    """name -> (dev (src, ref), [(set name, src, ref)], BLEU tokenizer)."""
    dev = read_pairs(os.path.join(data_dir, "dev.tsv"))
    tests = [(t, *read_pairs(os.path.join(data_dir, t + ".tsv"))) for t in SETS[name]]
    return dev, tests, "13a"


def translate(fanyi, model, lines, beam, length_penalty=None, extra=()):
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    cmd = [fanyi, "-m", model, "-b", str(beam), path]
    if length_penalty is not None:
        cmd += ["--length-penalty", str(length_penalty)]
    cmd += list(extra)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8")
    elapsed = time.perf_counter() - t
    os.unlink(path)
    hyps = out.split("\n")[:-1]
    assert len(hyps) == len(lines), f"{len(hyps)} lines out for {len(lines)} in"
    return hyps, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=["en-de", "zh-en"])
    ap.add_argument("--model", help="model directory (default models/NAME)")
    ap.add_argument("--data", help="directory of the sets (default work/general-data/NAME)")
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--fanyi-args", default="", help="more fanyi options, e.g. \"--no-repeat-ngram 4\"")
    ap.add_argument("--tune-length-penalty", action="store_true")
    ap.add_argument("--sets", help="comma-separated sets to score (default: all of them)")
    ap.add_argument("--save", metavar="DIR", help="write each set's translations to DIR/SET.txt")
    ap.add_argument("--dev-only", action="store_true",
                    help="score dev only, leaving the test sets untouched (for choosing between models)")
    args = ap.parse_args()
    model = args.model or os.path.join(ROOT, "models", args.name)
    dev, tests, tok = datasets(args.name, args.data or os.path.join(ROOT, "work", "general-data", args.name))
    extra = args.fanyi_args.split()
    if args.sets:  # checked before any decoding, which takes minutes
        wanted = args.sets.split(",")
        unknown = set(wanted) - set(SETS[args.name])
        if unknown:
            sys.exit(f"evaluate_model: no set {', '.join(sorted(unknown))} for {args.name} "
                     f"(sets: {', '.join(SETS[args.name])})")
        tests = [t for t in tests if t[0] in wanted]
    dev_hyps = None
    if args.tune_length_penalty:
        scores, tried = {}, {}
        for lp in (0.6, 0.8, 1.0, 1.2, 1.4):
            tried[lp], _ = translate(args.fanyi, model, dev[0], args.beam, lp, extra)
            scores[lp] = corpus_bleu(tried[lp], dev[1], tok)
            print(f"dev: length penalty {lp}: BLEU {scores[lp]:.2f}", file=sys.stderr)
        best = max(scores, key=lambda k: (scores[k], -abs(k - 1.0)))
        cfg_path = os.path.join(model, "config.json")
        cfg = json.load(open(cfg_path))
        cfg["length_penalty"] = best
        cfg["beam_size"] = args.beam
        json.dump(cfg, open(cfg_path, "w"), indent=2)
        open(cfg_path, "a").write("\n")
        print(f"chose length penalty {best} (dev BLEU {scores[best]:.2f}); written to {cfg_path}", file=sys.stderr)
        dev_hyps = tried[best]  # what the model now decodes by default; no need to decode dev again
    size = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)) / 1e6
    print(f"{args.name}, {model} ({size:.1f} MB), beam {args.beam} {args.fanyi_args}".rstrip())
    print("| set | sentences | BLEU | chrF | looping | seconds |")
    print("|---|---|---|---|---|---|")
    if dev_hyps is None:
        dev_hyps, _ = translate(args.fanyi, model, dev[0], args.beam, extra=extra)
    row("dev (selection)", dev_hyps, dev[1], tok, None)
    for name, src, ref in [] if args.dev_only else tests:
        hyps, elapsed = translate(args.fanyi, model, src, args.beam, extra=extra)
        row(name, hyps, ref, tok, elapsed)
        if args.save:
            os.makedirs(args.save, exist_ok=True)
            with open(os.path.join(args.save, name + ".txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(hyps) + "\n")


def row(name, hyps, refs, tok, seconds):
    took = "" if seconds is None else f"{seconds:.1f}"
    print(f"| {name} | {len(refs)} | {corpus_bleu(hyps, refs, tok):.2f} | {corpus_chrf(hyps, refs):.2f} | "
          f"{looping_rate(hyps):.1f}% | {took} |", flush=True)


if __name__ == "__main__":
    main()
