"""MindFormers' ``EmF1Metric`` semantics, which the contests' SQuAD retention numbers come from.

It is not the official SQuAD metric: the prediction is stripped and cut to its first line; text is
lower-cased; a fixed list of (mostly Chinese) punctuation is removed (no articles, no ASCII ".,!?");
segments are single CJK characters and jieba's words for everything else (spaces included); F1 uses the
longest common *contiguous* run of segments; EM compares the strings with that punctuation removed.
Each figure is x100 and averaged over questions; results name the protocol.
"""

from __future__ import annotations

import logging
import re

from ..errors import TunebridgeError

PROTOCOL = "mindformers-emf1"
# MindFormers' list; its "……" entry is two characters, so it never matches the single characters it is tested on.
PUNCT = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _jieba_words(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return list(jieba.cut(text))


def segments(text: str, drop_punct: bool) -> list[str]:
    out, run = [], ""
    for ch in str(text).lower().strip():
        if drop_punct and ch in PUNCT:
            continue
        if _CJK.match(ch) or ch in PUNCT:
            if run:
                out += _jieba_words(run)
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out += _jieba_words(run)
    return out


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def first_line(prediction: str) -> str:
    return prediction.strip().split("\n")[0]


def f1(prediction: str, gold: str) -> float:
    gold_segs, pred_segs = segments(gold, True), segments(first_line(prediction), True)
    common = _longest_common_run(gold_segs, pred_segs)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_segs), common / len(gold_segs)
    return 2 * precision * recall / (precision + recall)


def _strip_punct(text: str) -> str:
    return "".join(ch for ch in str(text).lower().strip() if ch not in PUNCT)


def exact(prediction: str, gold: str) -> float:
    return float(_strip_punct(first_line(prediction)) == _strip_punct(gold))


def score(predictions: list[str], golds: list[str]) -> dict:
    """{"F1", "Em", "count", "protocol"} over (prediction, gold answer) pairs, as EmF1Metric.eval() reports."""
    if len(predictions) != len(golds):
        raise TunebridgeError(f"{len(predictions)} predictions for {len(golds)} answers")
    if not predictions:
        raise TunebridgeError("no predictions to score")
    n = len(predictions)
    return {
        "F1": 100.0 * sum(f1(p, g) for p, g in zip(predictions, golds)) / n,
        "Em": 100.0 * sum(exact(p, g) for p, g in zip(predictions, golds)) / n,
        "count": n,
        "protocol": PROTOCOL,
    }
