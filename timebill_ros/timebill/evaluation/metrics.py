"""Answer quality: ROUGE-L and token F1 against the best reference (NarrativeQA), yes/no accuracy (QASPER)."""
from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> list[str]:
    """SQuAD-style normalisation: lower case, no punctuation or articles, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split()


def lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    p, r = normalize(prediction), normalize(reference)
    if not p or not r:
        return 0.0
    n = lcs(p, r)
    if n == 0:
        return 0.0
    prec, rec = n / len(p), n / len(r)
    return 2 * prec * rec / (prec + rec)


def token_f1(prediction: str, reference: str) -> float:
    p, r = normalize(prediction), normalize(reference)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def best(metric, prediction: str, references: list[str]) -> float:
    return max((metric(prediction, ref) for ref in references), default=0.0)


def yes_no(prediction: str) -> str | None:
    """The first yes/no word of an answer, or None when it gives neither."""
    for word in normalize(prediction)[:20]:
        if word in ("yes", "no"):
            return word
    return None


def yes_no_accuracy(prediction: str, answer: str) -> float:
    return float(yes_no(prediction) == answer.strip().lower())
