#!/usr/bin/python3
"""Scores a model directory on its test sets with fanyi; optionally tunes the length penalty on dev.

    /usr/bin/python3 tools/evaluate_model.py en-de [--tune-length-penalty] [--beam 5]
    /usr/bin/python3 tools/evaluate_model.py zh-en --data work/zh-en-data [--tune-length-penalty]
    /usr/bin/python3 tools/evaluate_model.py en-de --model DIR --tune-length-penalty --dev-only

en-de uses ../shared/data/multi30k (val for tuning; test_2016_flickr,
test_2017_flickr, test_2017_mscoco for scores). zh-en uses the split made by
tools/split_tatoeba.py (dev.tsv, test.tsv: English<TAB>Chinese). Tuning picks
the length penalty with the best dev BLEU among 0.6, 0.8, 1.0, 1.2 and writes
it into the model's config.json (the test sets play no part in it). Prints a
Markdown table: test set, sentences, BLEU, chrF, beam, model size.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from fanyi_ref.metrics import corpus_bleu, corpus_chrf  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def read_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def read_tsv(path, column):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t")[column] for line in f]


def datasets(name, data_dir):
    """name -> (dev (src, ref), [(test name, src, ref)], BLEU tokenizer)."""
    if name == "en-de":
        m = os.path.join(SHARED, "multi30k")
        dev = (read_gz(os.path.join(m, "val.en.gz")), read_gz(os.path.join(m, "val.de.gz")))
        tests = [(t, read_gz(os.path.join(m, f"{t}.en.gz")), read_gz(os.path.join(m, f"{t}.de.gz")))
                 for t in ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")]
        return dev, tests, "13a"
    if name == "zh-en":
        dev = (read_tsv(os.path.join(data_dir, "dev.tsv"), 1), read_tsv(os.path.join(data_dir, "dev.tsv"), 0))
        tests = [("tatoeba-test", read_tsv(os.path.join(data_dir, "test.tsv"), 1),
                  read_tsv(os.path.join(data_dir, "test.tsv"), 0))]
        return dev, tests, "13a"
    raise SystemExit(f"evaluate_model: unknown model {name}")


def translate(fanyi, model, lines, beam, length_penalty=None):
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    cmd = [fanyi, "-m", model, "-b", str(beam), path]
    if length_penalty is not None:
        cmd += ["--length-penalty", str(length_penalty)]
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
    ap.add_argument("--data", default=os.path.join(ROOT, "work", "zh-en-data"), help="zh-en split directory")
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--tune-length-penalty", action="store_true")
    ap.add_argument("--dev-only", action="store_true",
                    help="score dev only, leaving the test sets untouched (for choosing between models)")
    args = ap.parse_args()
    model = args.model or os.path.join(ROOT, "models", args.name)
    dev, tests, tok = datasets(args.name, args.data)
    dev_hyps = None
    if args.tune_length_penalty:
        scores, tried = {}, {}
        for lp in (0.6, 0.8, 1.0, 1.2):
            tried[lp], _ = translate(args.fanyi, model, dev[0], args.beam, lp)
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
    print(f"| model | test set | sentences | BLEU | chrF | beam | size |")
    print("|---|---|---|---|---|---|---|")
    if dev_hyps is None:
        dev_hyps, _ = translate(args.fanyi, model, dev[0], args.beam)
    print(f"| {args.name} | dev ({len(dev[0])}, used for selection) | {len(dev[0])} | "
          f"{corpus_bleu(dev_hyps, dev[1], tok):.2f} | {corpus_chrf(dev_hyps, dev[1]):.2f} | {args.beam} | {size:.1f} MB |")
    for name, src, ref in [] if args.dev_only else tests:
        hyps, elapsed = translate(args.fanyi, model, src, args.beam)
        print(f"| {args.name} | {name} | {len(src)} | {corpus_bleu(hyps, ref, tok):.2f} | {corpus_chrf(hyps, ref):.2f} | "
              f"{args.beam} | {size:.1f} MB |", flush=True)


if __name__ == "__main__":
    main()
