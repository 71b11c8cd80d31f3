"""Corpus BLEU and chrF with sacreBLEU's default semantics, on detokenized, cased text.

BLEU: 13a tokenization (or `zh`, which first isolates CJK characters), n-grams
1..4, brevity penalty, 'exp' smoothing. chrF: character 6-grams, beta 2,
whitespace removed, statistics summed over the corpus, precision and recall
averaged over the orders that have n-grams.
"""

import math
import re
from collections import Counter
from typing import List, Sequence

_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period/comma unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... unless before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
]

# CJK ranges isolated by sacreBLEU's zh tokenizer.
_ZH_RANGES = [
    (0x3400, 0x4DB5), (0x4E00, 0x9FA5), (0x9FA6, 0x9FBB), (0xF900, 0xFA2D), (0xFA30, 0xFA6A),
    (0xFA70, 0xFAD9), (0x20000, 0x2A6D6), (0x2F800, 0x2FA1D), (0xFF00, 0xFFEF), (0x2E80, 0x2EFF),
    (0x3000, 0x303F), (0x31C0, 0x31EF), (0x2F00, 0x2FDF), (0x2FF0, 0x2FFF), (0x3100, 0x312F),
    (0x31A0, 0x31BF), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0x2600, 0x26FF), (0x2700, 0x27BF),
    (0x3200, 0x32FF), (0x3300, 0x33FF),
]


def _regexp_tokenize(line: str) -> str:
    for rule, repl in _13A_RULES:
        line = rule.sub(repl, line)
    return " ".join(line.split())


def tokenize_13a(line: str) -> str:
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    return _regexp_tokenize(f" {line} ")


def _is_zh(ch: str) -> bool:
    c = ord(ch)
    return any(lo <= c <= hi for lo, hi in _ZH_RANGES)


def tokenize_zh(line: str) -> str:
    line = line.strip()
    return _regexp_tokenize("".join(f" {ch} " if _is_zh(ch) else ch for ch in line))


TOKENIZERS = {"13a": tokenize_13a, "zh": tokenize_zh, "none": lambda s: s}


def _ngrams(words: List[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu_stats(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a"):
    """Returns (matches[4], totals[4], hyp_len, ref_len) summed over the corpus."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    tok = TOKENIZERS[tokenize]
    matches, totals = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for h, r in zip(hyps, refs):
        hw, rw = tok(h.rstrip("\n")).split(), tok(r.rstrip("\n")).split()
        hyp_len += len(hw)
        ref_len += len(rw)
        for n in range(1, 5):
            hc, rc = _ngrams(hw, n), _ngrams(rw, n)
            matches[n - 1] += sum((hc & rc).values())
            totals[n - 1] += max(0, len(hw) - n + 1)
    return matches, totals, hyp_len, ref_len


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a") -> float:
    matches, totals, hyp_len, ref_len = bleu_stats(hyps, refs, tokenize)
    if hyp_len == 0:
        return 0.0
    precisions = []
    smooth = 1.0
    for m, t in zip(matches, totals):
        if t == 0:
            # sacreBLEU: an order with no n-grams at all makes BLEU zero.
            return 0.0
        if m == 0:
            smooth *= 2
            precisions.append(100.0 / (smooth * t))
        else:
            precisions.append(100.0 * m / t)
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(sum(math.log(p) for p in precisions) / 4)


def chrf_stats(hyps: Sequence[str], refs: Sequence[str], order: int = 6):
    stats = [0] * (3 * order)
    for h, r in zip(hyps, refs):
        h, r = "".join(h.split()), "".join(r.split())
        for n in range(1, order + 1):
            hc = Counter(h[i:i + n] for i in range(len(h) - n + 1))
            rc = Counter(r[i:i + n] for i in range(len(r) - n + 1))
            stats[3 * (n - 1)] += sum(hc.values())
            stats[3 * (n - 1) + 1] += sum(rc.values())
            stats[3 * (n - 1) + 2] += sum((hc & rc).values())
    return stats


def corpus_chrf(hyps: Sequence[str], refs: Sequence[str], order: int = 6, beta: float = 2.0) -> float:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    stats = chrf_stats(hyps, refs, order)
    prec = rec = 0.0
    effective = 0
    for n in range(order):
        n_hyp, n_ref, n_match = stats[3 * n: 3 * n + 3]
        if n_hyp > 0 and n_ref > 0:
            prec += n_match / n_hyp
            rec += n_match / n_ref
            effective += 1
    if effective == 0:
        return 0.0
    prec, rec = prec / effective, rec / effective
    if prec + rec == 0:
        return 0.0
    b2 = beta * beta
    return 100.0 * (1 + b2) * prec * rec / (b2 * prec + rec)


_LETTER_RUN = re.compile(r"([^\W\d_])\1{4,}")


def is_looping(line: str, max_phrase: int = 4, repeats: int = 4) -> bool:
    """A degenerate output: the same letter 5+ times in a row ("ernnnnnen"), or
    the same phrase of 1..max_phrase words `repeats`+ times in a row ("die die
    die die", "in the water in the water ..."). Words are compared in lower case
    without surrounding punctuation. Digits and punctuation runs ("100000",
    "-----") do not count: references have them."""
    if _LETTER_RUN.search(line):
        return True
    words = [w.strip(".,;:!?\"'()«»„“”‚‘’").lower() for w in line.split()]
    for n in range(1, max_phrase + 1):
        for start in range(0, len(words) - n * repeats + 1):
            phrase = words[start:start + n]
            if not any(phrase):
                continue
            if all(words[start + k * n:start + (k + 1) * n] == phrase for k in range(1, repeats)):
                return True
    return False


def looping_rate(lines: Sequence[str]) -> float:
    """Percentage of lines that is_looping() flags."""
    return 100.0 * sum(map(is_looping, lines)) / max(len(lines), 1)
