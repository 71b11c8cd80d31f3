"""BLEU and chrF on cases checked by hand against sacreBLEU's definitions."""

import math
import os
import subprocess

from fanyi_ref.metrics import bleu_stats, corpus_bleu, corpus_chrf, tokenize_13a, tokenize_zh
from helpers import ROOT, tmpdir


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol


def test_13a_tokenization():
    assert tokenize_13a("Hello, world!") == "Hello , world !"
    assert tokenize_13a("It costs $3.50, or 1,000.") == "It costs $ 3.50 , or 1,000 ."
    assert tokenize_13a("A 5-year-old &amp; a dog.") == "A 5 - year-old & a dog ."
    assert tokenize_13a("don't") == "don't"


def test_zh_tokenization_isolates_cjk():
    assert tokenize_zh("我爱你。") == "我 爱 你 。"
    assert tokenize_zh("Hello世界!") == "Hello 世 界 !"


def test_perfect_match_is_100():
    refs = ["The cat sat on the mat.", "A dog runs in the park."]
    assert close(corpus_bleu(refs, refs), 100.0)
    assert close(corpus_chrf(refs, refs), 100.0)


def test_hand_computed_bleu():
    # hyp: "the the cat" (3 tokens) vs ref "the cat sat on it" (5 tokens)
    # 1-grams: the(min(2,1)=1) + cat(1) = 2/3; 2-grams: "the the"(0), "the cat"(1) = 1/2
    # 3-grams: "the the cat" 0/1 -> smoothed 100/(2*1) = 50%; 4-grams: 0 hyp n-grams -> BLEU 0
    assert corpus_bleu(["the the cat"], ["the cat sat on it"]) == 0.0
    # hyp "the cat sat on the" vs ref "the cat sat on the mat": p = 5/5, 4/4, 3/3, 2/2; BP = exp(1 - 6/5)
    expected = 100 * math.exp(1 - 6 / 5)
    assert close(corpus_bleu(["the cat sat on the"], ["the cat sat on the mat"]), expected, 1e-9)
    # exp smoothing: one order with no match
    m, t, h, r = bleu_stats(["a b c d e"], ["a b x d e"])
    assert m == [4, 2, 0, 0] and t == [5, 4, 3, 2]
    p = [100 * 4 / 5, 100 * 2 / 4, 100 / (2 * 3), 100 / (4 * 2)]
    assert close(corpus_bleu(["a b c d e"], ["a b x d e"]), math.exp(sum(math.log(x) for x in p) / 4), 1e-9)


def test_hand_computed_chrf():
    # "ab" vs "abc": 1-grams hyp {a,b} ref {a,b,c}: P=1, R=2/3; 2-grams hyp {ab} ref {ab,bc}: P=1, R=1/2;
    # orders 3..6: hyp has no n-grams -> not counted. avgP = 1, avgR = 7/12.
    p, r = 1.0, 7 / 12
    expected = 100 * 5 * p * r / (4 * p + r)
    assert close(corpus_chrf(["ab"], ["abc"]), expected, 1e-9)
    assert close(corpus_chrf(["a b"], ["ab c"]), expected, 1e-9)  # whitespace is ignored


def test_evaluate_tool():
    d = tmpdir()
    h, r = os.path.join(d, "h"), os.path.join(d, "r")
    open(h, "w").write("the cat sat on the\n")
    open(r, "w").write("the cat sat on the mat\n")
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tools", "evaluate.py"), h, r, "--json"],
                         capture_output=True, text=True, check=True).stdout
    import json
    got = json.loads(out)
    assert got["bleu"] == round(100 * math.exp(1 - 6 / 5), 2) and got["sentences"] == 1


def test_looping_outputs():
    from fanyi_ref.metrics import is_looping, looping_rate
    # the issue's own examples
    assert is_looping("Hünsssssy führt diese Wort?")
    assert is_looping("Der Wetter um die Wette zu bringen, um sie nicht zu ernnnnnen.")
    assert is_looping("Ein Mann die die die die Straße.")
    assert is_looping("Ein Hund im Wasser, im Wasser, im Wasser, im Wasser.")
    # ordinary text, with repeated words that are not consecutive, digit and punctuation runs
    assert not is_looping("Die Katze und die Maus und die Kuh und die Ziege.")
    assert not is_looping("Er zahlte 1000000 Euro ----- und ging.")
    assert not is_looping("Sssss, sagte sie.".replace("Sssss", "Sss"))
    assert not is_looping("Das ist das, was das Kind das sagte.")
    assert is_looping("nein, nein, nein, nein!")
    assert not is_looping("nein, nein, nein!")
    assert looping_rate(["ok", "aaaaa", "fine", "fine fine fine fine"]) == 50.0
    assert looping_rate([]) == 0.0
