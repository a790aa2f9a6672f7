"""Math accuracy: the final answer of a free-text solution compared with the gold answer by value.

The rule (``RULE``), as a person grades:

1. Where the answer is: the last ``\\boxed{...}``; else the clause after the last answer marker (答案 / 最终答案
   / 所以 / 因此 / "answer is" / "answer:" / "final answer" / "therefore" / "thus" / "result is", up to the end of
   its sentence), taking the number after the last "=" in that clause, else its first number; else the first
   number after the last "=" (or 等于); else the last number. A check step after a boxed or marked answer
   ("\\boxed{12}. Check: 12 + 3 = 15") does not override it.
2. What a number is: signs (ASCII, Unicode minus, "- 5" where no number precedes the sign), thousands
   separators (commas, spaces, thin spaces, LaTeX ``\\,``), decimals (also ``.5``), fractions ``3/4`` and
   ``\\frac``/``\\dfrac``/``\\tfrac``, mixed numbers ``2 1/2``, percents (``%``, "percent", 百分之…), exponents
   (``1.2e-3``, ``2×10^3``, ``10^{3}``, ``10³``), full-width digits, and Chinese numerals (五, 一百二十, 三分之一,
   百分之五十, 负三, 零点五) when the chosen text holds no Arabic number. Exponents beyond ±1000 are unreadable.
3. Equal when, by exact rational value:
   - the gold is written as an integer (incl. ``1e2``): the prediction's value equals it (12.0 = 12; 12.4 ≠ 12);
   - the gold is a decimal: the prediction is within half a unit of the gold's last written place
     (gold 3412.88 accepts 3412.875 .. 3412.885; gold 2.5e-3 accepts 0.00245 .. 0.00255);
   - the gold is a fraction: the value equals it, or the prediction is a decimal of at least two significant
     digits that is the fraction rounded to the prediction's own places (1/3: 0.33 and 0.333, not 0.3);
   - a percent on either side may be read as its number or as that number / 100 (gold 50 % accepts 0.5,
     50 and 50 %; 12.5 % does not accept 13 %);
   - with ``rel_tol``, also within that relative tolerance of the gold.

Seed 004's lenient rule (:func:`contains_answer`) is reported beside it, labelled: the gold answer's text
appears in the prediction.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from ..errors import TunebridgeError

RULE = (
    "by value: last \\boxed{} > answer marker > last '=' > last number; integer golds exact, decimal golds "
    "within half a unit of their last place, fractions exact or correctly rounded to >= 2 significant digits, "
    "percents as number or /100"
)
CONTAINS_RULE = "gold text appears in the prediction (seed 004)"
MAX_EXPONENT = 1000

_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_MINUS = dict.fromkeys(map(ord, "\u2212\u2012\u2013\ufe63\uff0d"), "-")
_MARKER = re.compile(r"最终答案|答案|答[:：]|所以|因此|final answer|answer\s*(?:is|:)|result\s*is|therefore|thus", re.I)
_EQUALS = re.compile(r"=|等于")
_CLAUSE_END = re.compile(r"[。！？!?;；\n]|\.(?!\d)")
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9.])(?P<sign>[-+]\s?)?"
    r"(?:(?P<whole>\d+)\s+(?=\d+\s*/\s*\d))?"
    r"(?P<num>\d+(?:\.\d+)?|\.\d+)(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?"
    r"(?P<pct>\s*(?:%|percent\b|per cent\b))?",
    re.I,
)
_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10**4, "亿": 10**8}
_CN_NUMERAL = "".join(_CN_DIGITS) + "".join(_CN_UNITS) + "".join(_CN_BIG)
_CN_NUMBER = re.compile(
    rf"(?P<neg>负)?(?:(?P<pct>百分之)|(?P<den>[{_CN_NUMERAL}]+)分之)?"
    rf"(?P<num>[{_CN_NUMERAL}]+(?:点[{''.join(_CN_DIGITS)}]+)?)"
)
_GROUPED = re.compile(r"(?<![\d.])\d{1,3}([,\u00a0\u2009\u202f ])\d{3}(?:\1\d{3})*(?!\d)")


@dataclass(frozen=True)
class Number:
    """A number as written: its value, whether it carried a percent sign, and how precisely it was written."""

    value: Fraction
    percent: bool = False
    kind: str = "integer"  # "integer", "decimal" or "fraction"
    unit: Fraction = Fraction(0)  # one unit of the last written place (decimals only)
    significant: int = 0  # significant digits written (decimals only)


# --- reading text ---------------------------------------------------------------------------------------


def _latex(text: str) -> str:
    text = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\\[dt]?frac\s*(\d)(\d)", r"\1/\2", text)
    text = re.sub(r"\((\s*-?[\d.]+\s*)\)/\((\s*[\d.]+\s*)\)", r"\1/\2", text)  # (a)/(b) of plain numbers
    text = re.sub(r"\\(?:text|mathrm|mathbf|textbf)\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"(?<=\d)\\,(?=\d{3})", "", text)  # 1\,000
    text = text.replace("\\%", "%").replace("\\times", "×").replace("\\cdot", "×").replace("$", "")
    text = re.sub(r"\\(?:left|right)\b|\\[!,;:]", " ", text)
    return re.sub(r"\^\{\s*(-?\d+)\s*\}", r"^\1", text)


def normalize(text: str) -> str:
    """One spelling for every way of writing the same number (see the module's rule, part 2)."""
    text = re.sub(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^" + m.group(0).translate(_SUPERSCRIPT), str(text))
    text = unicodedata.normalize("NFKC", text).translate(_MINUS)
    text = _latex(text)
    text = _GROUPED.sub(lambda m: m.group(0).replace(m.group(1), ""), text)  # 1,000,000 / 1 000 000
    text = re.sub(r"(\d(?:\.\d+)?)\s*[×xX*·]\s*10\s*\^\s*(-?\d+)", r"\1e\2", text)
    return re.sub(r"(?<![\d.])10\s*\^\s*(-?\d+)", r"1e\1", text)


def _decimal_number(m: re.Match) -> Number | None:
    mantissa = m.group("num")
    if len(m.group("exp") or "") > 6:
        return None
    exponent = int(m.group("exp") or 0)
    try:
        value = Decimal(mantissa)
    except InvalidOperation:
        return None
    if abs(exponent) > MAX_EXPONENT or (value and abs(value.adjusted() + exponent) > MAX_EXPONENT):
        return None
    places = len(mantissa.split(".")[1]) if "." in mantissa else 0
    number = Fraction(value) * Fraction(10) ** exponent
    kind, unit = ("decimal", Fraction(10) ** (exponent - places)) if places else ("integer", Fraction(0))
    significant = len(mantissa.replace(".", "").lstrip("0"))
    if m.group("den"):
        den = Fraction(Decimal(m.group("den")))
        if den == 0:
            return None
        number, kind, unit = number / den, "fraction", Fraction(0)
    if m.group("whole"):
        number += Fraction(Decimal(m.group("whole")))
    if (m.group("sign") or "").startswith("-"):
        number = -number
    return Number(number, bool(m.group("pct")), kind, unit, significant)


def _operator(text: str, m: re.Match) -> bool:
    """A spaced minus after a number or a closing bracket ("10 - 5") is an operator, not the number's sign."""
    return (m.group("sign") or "") == "- " and re.search(r"[\d)\]}]\s*$", text[: m.start()]) is not None


def _arabic(text: str) -> list[Number]:
    out = []
    for m in _NUMBER.finditer(text):
        number = _decimal_number(m)
        if number is not None:
            out.append(replace(number, value=-number.value) if _operator(text, m) else number)
    return out


def _cn_integer(text: str) -> int:
    total, section, digit = 0, 0, None
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch] if digit is None else digit * 10 + _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            section += (1 if digit is None else digit) * _CN_UNITS[ch]
            digit = None
        else:  # 万, 亿
            total = (total + section + (digit or 0)) * _CN_BIG[ch]
            section, digit = 0, None
    return total + section + (digit or 0)


def _cn_number(text: str) -> Number:
    whole, _, fraction = text.partition("点")
    value = Fraction(_cn_integer(whole))
    for i, ch in enumerate(fraction, 1):
        value += Fraction(_CN_DIGITS[ch], 10**i)
    if not fraction:
        return Number(value)
    return Number(
        value,
        kind="decimal",
        unit=Fraction(1, 10 ** len(fraction)),
        significant=len(str(_cn_integer(whole)).lstrip("0") + fraction),
    )


def _chinese(text: str) -> list[Number]:
    out = []
    for m in _CN_NUMBER.finditer(text):
        number = _cn_number(m.group("num"))
        if m.group("den"):
            den = _cn_number(m.group("den")).value
            if den == 0:
                continue
            number = Number(number.value / den, kind="fraction")
        if m.group("neg"):
            number = replace(number, value=-number.value)
        out.append(replace(number, percent=bool(m.group("pct"))))
    return out


def _numbers(text: str) -> list[Number]:
    return _arabic(text) or _chinese(text)


def _boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (braces balanced), if any."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    depth, i = 1, starts[-1]
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[starts[-1] : i - 1 if depth == 0 else i]


def _after_equals(text: str) -> Number | None:
    marks = list(_EQUALS.finditer(text))
    if marks:
        found = _numbers(text[marks[-1].end() :])
        if found:
            return found[0]
    return None


def read_answer(text: str) -> Number | None:
    """The final answer of ``text`` by the rule's part 1, or None when it holds no readable number."""
    text = normalize(text or "")
    boxed = _boxed(text)
    if boxed is not None:
        found = _after_equals(boxed) or next(iter(_numbers(boxed)), None)
        if found is not None:
            return found
    markers = list(_MARKER.finditer(text))
    if markers:
        clause = text[markers[-1].end() :]
        end = _CLAUSE_END.search(clause)
        clause = clause[: end.start()] if end else clause
        found = _after_equals(clause) or next(iter(_numbers(clause)), None)
        if found is not None:
            return found
    found = _after_equals(text)
    if found is not None:
        return found
    numbers = _numbers(text)
    return numbers[-1] if numbers else None


# --- comparing ------------------------------------------------------------------------------------------


def _value(number: Number) -> Number:
    """A percent as the fraction it means (its unit too)."""
    return (
        replace(number, value=number.value / 100, unit=number.unit / 100, percent=False) if number.percent else number
    )


def _close(p: Number, g: Number, rel_tol: float) -> bool:
    if p.value == g.value:
        return True
    if g.kind == "decimal" and abs(p.value - g.value) * 2 <= g.unit:
        return True
    if g.kind == "fraction" and p.kind == "decimal" and p.significant >= 2 and abs(p.value - g.value) * 2 <= p.unit:
        return True
    return bool(rel_tol) and abs(p.value - g.value) <= Fraction(rel_tol) * abs(g.value)


def equal(prediction: Number, gold: Number, rel_tol: float = 0.0) -> bool:
    """The rule's part 3: the values, or a percent on one side read as its bare number."""
    pairs = [(_value(prediction), _value(gold))]
    if prediction.percent != gold.percent:
        pairs.append((prediction, gold))  # both as written: the percent's bare number
    return any(_close(p, g, rel_tol) for p, g in pairs)


def gold_number(gold: str) -> Number:
    number = read_answer(gold)
    if number is None:
        raise TunebridgeError(f"gold answer {gold!r} holds no number this rule reads")
    return number


def numbers_equal(prediction: str, gold: str, rel_tol: float = 0.0) -> bool:
    g = gold_number(gold)
    p = read_answer(prediction)
    return p is not None and equal(p, g, rel_tol)


def contains_answer(prediction: str, gold: str) -> bool:
    return gold.strip() in (prediction or "")


def accuracy(predictions: list[str], golds: list[str], rel_tol: float = 0.0) -> dict:
    """Both figures over (prediction, gold) pairs, each labelled; every gold must hold a number."""
    if len(predictions) != len(golds):
        raise TunebridgeError(f"{len(predictions)} predictions for {len(golds)} questions")
    if not golds:
        raise TunebridgeError("no predictions to score")
    gold_numbers = []
    for i, gold in enumerate(golds):
        try:
            gold_numbers.append(gold_number(gold))
        except TunebridgeError as e:
            raise TunebridgeError(f"question {i + 1}: {e}") from None
    numeric = sum(p is not None and equal(p, g, rel_tol) for p, g in zip(map(read_answer, predictions), gold_numbers))
    contains = sum(contains_answer(p, g) for p, g in zip(predictions, golds))
    n = len(golds)
    return {
        "numeric_accuracy": numeric / n,
        "contains_accuracy": contains / n,
        "count": n,
        "numeric_rule": RULE + (f"; or within rel. tol. {rel_tol}" if rel_tol else ""),
        "contains_rule": CONTAINS_RULE,
    }
