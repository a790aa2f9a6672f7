"""Math accuracy: the final number of a free-text answer compared numerically with the gold answer.

Extraction (:func:`extract_number`): text is NFKC-normalized (full-width digits, signs and commas become
ASCII); after the last answer marker ("答案是", "答案为", "answer is", "=", "等于") the first number counts,
otherwise the last number in the text. Numbers may carry a sign, thousands separators ("1,234.5"), a
fraction ("3/4"), a percent sign ("12.5%" -> 0.125) or an exponent ("1.2e-3").

Comparison (:func:`numbers_equal`): equal when the prediction, rounded half-up to as many decimals as the
gold answer is written with, equals the gold; or, with ``rel_tol``, when within that relative tolerance.
A percent prediction also matches a gold written as the percentage ("12.5%" vs "12.5").

Seed 004's lenient rule (:func:`contains_answer`): the gold answer's text appears in the prediction.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

from ..errors import TunebridgeError

_NUMBER = re.compile(r"(?<![\w.])([-+]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?)(?:\s*/\s*(\d+))?(%?)")
_MARKERS = re.compile(r"(答案是|答案为|答案：|答案:|answer is|answer:|=|等于)", re.IGNORECASE)


def _numbers(text: str) -> list[tuple[Decimal, bool]]:
    out = []
    for sign, body, denom, pct in _NUMBER.findall(text):
        try:
            value = Decimal(body.replace(",", ""))
        except InvalidOperation:
            continue
        if denom:
            if int(denom) == 0:
                continue
            frac = Fraction(str(value)) / int(denom)
            value = (Decimal(frac.numerator) / Decimal(frac.denominator)).quantize(Decimal(1).scaleb(-12))
        if sign == "-":
            value = -value
        out.append((value, bool(pct)))
    return out


def extract_number(text: str) -> tuple[Decimal, bool] | None:
    """(value, was_percent) of the final answer in ``text``, or None; percent values are not divided yet."""
    text = unicodedata.normalize("NFKC", text or "").replace("−", "-")
    markers = list(_MARKERS.finditer(text))
    if markers:
        after = _numbers(text[markers[-1].end():])
        if after:
            return after[0]
    found = _numbers(text)
    return found[-1] if found else None


def _decimals(gold: str) -> int:
    mantissa = gold.strip().lstrip("+-").split("e")[0].split("E")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def numbers_equal(prediction: str, gold: str, rel_tol: float = 0.0) -> bool:
    g = extract_number(gold)
    p = extract_number(prediction)
    if g is None:
        raise TunebridgeError(f"gold answer {gold!r} holds no number")
    if p is None:
        return False
    gold_value = g[0] / 100 if g[1] else g[0]
    candidates = [p[0] / 100, p[0]] if p[1] else [p[0]]
    places = Decimal(1).scaleb(-_decimals(gold))
    for value in candidates:
        if value.quantize(places, rounding=ROUND_HALF_UP) == gold_value.quantize(places, rounding=ROUND_HALF_UP):
            return True
        if rel_tol and abs(value - gold_value) <= Decimal(str(rel_tol)) * abs(gold_value):
            return True
    return False


def contains_answer(prediction: str, gold: str) -> bool:
    return gold.strip() in (prediction or "")


def accuracy(predictions: list[str], golds: list[str], rel_tol: float = 0.0) -> dict:
    if len(predictions) != len(golds):
        raise TunebridgeError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not golds:
        raise TunebridgeError("no predictions to score")
    numeric = sum(numbers_equal(p, g, rel_tol) for p, g in zip(predictions, golds))
    contains = sum(contains_answer(p, g) for p, g in zip(predictions, golds))
    n = len(golds)
    return {"numeric_accuracy": numeric / n, "contains_accuracy": contains / n, "count": n,
            "numeric_rule": f"final number rounded to the gold's decimals{f', or rel. tol. {rel_tol}' if rel_tol else ''}",
            "contains_rule": "gold text appears in the prediction (seed 004)"}
