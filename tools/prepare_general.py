#!/usr/bin/python3
"""Builds the training and dev sets of the general-domain en-de and zh-en models.

    /usr/bin/python3 tools/prepare_general.py ../shared/data work/general-data

Writes, under OUT_DIR/en-de and OUT_DIR/zh-en, TSV files with the source in the
first column and the target in the second:

  en-de/train.tsv       Multi30k train + Tatoeba en-de (train side) + newstest 2008-2013, 2015-2018
  en-de/dev.tsv         the selection set train.py validates on: 1000 pairs each of the three dev sets,
                        interleaved
  en-de/tatoeba-dev.tsv, tatoeba-test.tsv
                        Tatoeba en-de held out by tools/split_tatoeba.py's group-aware hash (never trained on)
  en-de/newstest2014.tsv, multi30k-val.tsv, test_2016_flickr.tsv, test_2017_flickr.tsv, test_2017_mscoco.tsv
  zh-en/train.tsv       Tatoeba cmn-eng (train side) + newstest 2017, 2018, 2020 + TICO-19
  zh-en/dev.tsv         1000 pairs each of Tatoeba dev and newstest2019, interleaved
  zh-en/tatoeba-dev.tsv, tatoeba-test.tsv, newstest2019.tsv

The Tatoeba splits are the same as the ones the shipped models were scored on.
A pair whose source or target equals a dev or test sentence is dropped from
training. Prints the counts. The same input always gives the same output.
"""

import gzip
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from split_tatoeba import split  # noqa: E402


def read_tsv(path, src_col, tgt_col):
    opener = gzip.open if path.endswith(".gz") else open
    pairs = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > max(src_col, tgt_col):
                s, t = cols[src_col].strip(), cols[tgt_col].strip()
                if s and t:
                    pairs.append((s, t))
    return pairs


def read_parallel(src_path, tgt_path):
    with gzip.open(src_path, "rt", encoding="utf-8") as fs, gzip.open(tgt_path, "rt", encoding="utf-8") as ft:
        return [(s.strip(), t.strip()) for s, t in zip(fs, ft)]


def write_tsv(path, pairs):
    with open(path, "w", encoding="utf-8") as f:
        for s, t in pairs:
            f.write(f"{s}\t{t}\n")


def clean_training(train, held_out):
    seen = {s for p in held_out for s in p}
    kept, out = [], set()
    for s, t in train:
        if s in seen or t in seen or "\t" in s or "\t" in t or (s, t) in out:
            continue
        out.add((s, t))
        kept.append((s, t))
    return kept


def tatoeba_sides(pairs_en_first):
    """split_tatoeba's groups and hash, on (English, other) pairs."""
    sides = split(pairs_en_first)
    return sides["train"], sides["dev"], sides["test"]


def build(out, train_parts, dev_sets, test_sets):
    os.makedirs(out, exist_ok=True)
    held_out = [p for pairs in list(dev_sets.values()) + list(test_sets.values()) for p in pairs]
    train = clean_training([p for part in train_parts for p in part], held_out)
    write_tsv(os.path.join(out, "train.tsv"), train)
    for name, pairs in list(dev_sets.items()) + list(test_sets.items()):
        write_tsv(os.path.join(out, f"{name}.tsv"), pairs)
    # Interleaved, so that the first N lines (train.py --bleu-sentences) sample every dev set.
    firsts = [pairs[:1000] for pairs in dev_sets.values()]
    write_tsv(os.path.join(out, "dev.tsv"), [p for row in zip(*firsts) for p in row])
    counts = {"train": len(train), **{k: len(v) for k, v in {**dev_sets, **test_sets}.items()}}
    print(out, " ".join(f"{k}={v}" for k, v in counts.items()))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data, out = sys.argv[1], sys.argv[2]
    m30k = os.path.join(data, "multi30k")
    gende = os.path.join(data, "general-en-de")
    gzhen = os.path.join(data, "general-zh-en")

    tat_train, tat_dev, tat_test = tatoeba_sides(read_tsv(os.path.join(gende, "tatoeba.en-de.tsv.gz"), 0, 1))
    build(os.path.join(out, "en-de"),
          [read_parallel(os.path.join(m30k, "train.en.gz"), os.path.join(m30k, "train.de.gz")), tat_train,
           read_tsv(os.path.join(gende, "newstest2008-2018.en-de.tsv.gz"), 0, 1)],
          {"tatoeba-dev": tat_dev,
           "newstest2014": read_tsv(os.path.join(gende, "newstest2014.en-de.tsv.gz"), 0, 1),
           "multi30k-val": read_parallel(os.path.join(m30k, "val.en.gz"), os.path.join(m30k, "val.de.gz"))},
          {"tatoeba-test": tat_test,
           **{name: read_parallel(os.path.join(m30k, f"{name}.en.gz"), os.path.join(m30k, f"{name}.de.gz"))
              for name in ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")}})

    cmn = read_tsv(os.path.join(data, "tatoeba-cmn-eng", "cmn-eng.tsv"), 0, 1)
    zh_train, zh_dev, zh_test = (
        [(zh, en) for en, zh in side] for side in tatoeba_sides(cmn))
    build(os.path.join(out, "zh-en"),
          [zh_train, read_tsv(os.path.join(gzhen, "newstest2017-2020.zh-en.tsv.gz"), 0, 1),
           read_tsv(os.path.join(gzhen, "tico19.zh-en.tsv.gz"), 0, 1)],
          {"tatoeba-dev": zh_dev,
           "newstest2019": read_tsv(os.path.join(gzhen, "newstest2019.zh-en.tsv.gz"), 0, 1)},
          {"tatoeba-test": zh_test})


if __name__ == "__main__":
    main()
