#!/usr/bin/python3
"""Deterministic train/dev/test split of Tatoeba's cmn-eng.tsv for the zh-en model.

    /usr/bin/python3 tools/split_tatoeba.py ../shared/data/tatoeba-cmn-eng/cmn-eng.tsv OUT_DIR

Pairs that share a sentence (the same English or the same Chinese text) are
joined into one group (union-find), and a whole group goes to one side, so no
test sentence is seen in training. A group's side comes from the SHA-1 of its
smallest sentence: < 4% test, 4-8% dev, the rest train. Writes train.tsv,
dev.tsv and test.tsv (English<TAB>Chinese, the attribution column dropped) and
prints the counts. The same input always gives the same split.
"""

import hashlib
import os
import sys


def find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def split(rows):
    parent = {}
    for en, zh in rows:
        for key in (("en", en), ("zh", zh)):
            parent.setdefault(key, key)
        a, b = find(parent, ("en", en)), find(parent, ("zh", zh))
        if a != b:
            parent[max(a, b)] = min(a, b)
    smallest = {}
    for en, zh in rows:
        root = find(parent, ("en", en))
        smallest[root] = min(smallest.get(root, en), en, zh)
    sides = {"train": [], "dev": [], "test": []}
    for en, zh in rows:
        h = int(hashlib.sha1(smallest[find(parent, ("en", en))].encode("utf-8")).hexdigest(), 16) % 100
        sides["test" if h < 4 else "dev" if h < 8 else "train"].append((en, zh))
    return sides


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    rows = []
    with open(src, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0].strip() and parts[1].strip():
                rows.append((parts[0].strip(), parts[1].strip()))
    os.makedirs(out, exist_ok=True)
    sides = split(rows)
    for name, pairs in sides.items():
        with open(os.path.join(out, f"{name}.tsv"), "w", encoding="utf-8") as f:
            for en, zh in pairs:
                f.write(f"{en}\t{zh}\n")
    print(" ".join(f"{k}={len(v)}" for k, v in sides.items()))


if __name__ == "__main__":
    main()
