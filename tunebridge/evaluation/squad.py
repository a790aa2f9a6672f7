"""SQuAD v1.1's official metric: normalized exact match and bag-of-tokens F1, max over gold answers, x100.

The official v1.1 script scores F1 = 0 whenever no token is shared, even when prediction and gold both
normalize to nothing ("the" vs "a"); SQuAD v2.0's script, and torchmetrics' ``SQuAD``, score F1 = 1 when
both are empty. ``empty_match=True`` selects that rule; results name the protocol they used.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from ..errors import TunebridgeError

PROTOCOL = "squad-v1.1-official"
PROTOCOL_EMPTY_MATCH = "squad-v1.1+empty-match (v2.0 rule, torchmetrics)"
_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """Lower case, drop punctuation, drop articles, collapse whitespace (the official script's order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact(prediction: str, gold: str) -> float:
    return float(normalize(prediction) == normalize(gold))


def f1(prediction: str, gold: str, empty_match: bool = False) -> float:
    pred, ref = normalize(prediction).split(), normalize(gold).split()
    if empty_match and (not pred or not ref):
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def score(predictions: list[str], answers: list[list[str]], empty_match: bool = False) -> dict:
    """{"exact_match", "f1", "count", "protocol"}; each prediction takes its best gold answer."""
    if len(predictions) != len(answers):
        raise TunebridgeError(f"{len(predictions)} predictions for {len(answers)} questions")
    if not predictions:
        raise TunebridgeError("no predictions to score")
    if any(not golds for golds in answers):
        raise TunebridgeError("a question has no gold answer")
    em = sum(max(exact(p, g) for g in golds) for p, golds in zip(predictions, answers))
    fs = sum(max(f1(p, g, empty_match) for g in golds) for p, golds in zip(predictions, answers))
    n = len(predictions)
    return {
        "exact_match": 100.0 * em / n,
        "f1": 100.0 * fs / n,
        "count": n,
        "protocol": PROTOCOL_EMPTY_MATCH if empty_match else PROTOCOL,
    }
