"""Record transforms from the recipe's ``data.transforms``, applied in order, each reporting its counts.

Every transform is deterministic: random choices draw from ``random.Random(seed)`` with the recipe seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from ..errors import TunebridgeError
from .readers import Record

TEXT_FIELDS = ("prompt", "query", "response", "system")

# Seed 001 stripped these from MindFormers' converted Alpaca conversations.
BOILERPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:",
    "### Response:",
    "### Input:",
)


@dataclass(frozen=True)
class TransformReport:
    name: str
    kept: int
    changed: int
    dropped: int


def _text(r: Record, field: str) -> str:
    if field in TEXT_FIELDS:
        return getattr(r, field) or ""
    value = r.fields.get(field)
    if value is None:
        raise TunebridgeError(f"{r.where}: no field {field!r} (the record has: {', '.join(map(str, r.fields))})")
    return str(value)


def _with(r: Record, field: str, value: str) -> Record:
    if field in TEXT_FIELDS:
        text: dict[str, Any] = {field: value}
        return replace(r, **text)
    return replace(r, fields={**r.fields, field: value})


def _edit(records: list[Record], name: str, fields: list[str], fn: Callable[[str], str]):
    out, changed = [], 0
    for r in records:
        new = r
        for f in fields:
            new = _with(new, f, fn(_text(new, f)))
        changed += new != r
        out.append(new)
    return out, TransformReport(name, len(out), changed, 0)


def prefix(records, field: str = "prompt", text: str = "", **_):
    return _edit(records, "prefix", [field], lambda s: text + s)


def suffix(records, field: str = "prompt", text: str = "", **_):
    return _edit(records, "suffix", [field], lambda s: s + text)


def strip(records, fields: Sequence[str] = ("prompt", "response"), patterns: Sequence[str] = BOILERPLATE, **_):
    def clean(s: str) -> str:
        for p in patterns:
            s = s.replace(p, "")
        return s.strip()

    return _edit(records, "strip", list(fields), clean)


# A decimal number with 3+ decimals, not part of a longer number or of scientific notation.
_LONG_DECIMAL = re.compile(r"(?<![\d.])(-?\d+\.\d{3,})(?![\d.]|[eE][-+]?\d)")


def format_number_text(text: str, decimals: int = 2, mode: str = "truncate") -> str:
    """Numbers with more than ``decimals`` decimals cut to ``decimals`` (truncate: toward zero, as seed 002's
    "仅保留小数点后两位" reads; round: half away from zero); others, integers and 1.5e-3 forms untouched."""
    rounding = {"truncate": ROUND_DOWN, "round": ROUND_HALF_UP}[mode]
    quantum = Decimal(1).scaleb(-decimals)

    def cut(m: re.Match) -> str:
        value = Decimal(m.group(1)).quantize(quantum, rounding=rounding)
        return str(abs(value) if value.is_zero() else value)  # -0.001 -> 0.00, not -0.00

    return _LONG_DECIMAL.sub(cut, text)


def format_numbers(
    records, fields: Sequence[str] = ("prompt", "response"), decimals: int = 2, mode: str = "truncate", **_
):
    if mode not in ("truncate", "round"):
        raise TunebridgeError(f"format_numbers: mode {mode!r} is not truncate or round")
    return _edit(records, "format_numbers", list(fields), lambda s: format_number_text(s, decimals, mode))


def filter_regex(records, field: str = "prompt", pattern: str = "", action: str = "drop", **_):
    if action not in ("drop", "keep"):
        raise TunebridgeError(f"filter_regex: action {action!r} is not drop or keep")
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise TunebridgeError(f"filter_regex: bad pattern {pattern!r} ({e})") from None
    out = [r for r in records if bool(rx.search(_text(r, field))) == (action == "keep")]
    return out, TransformReport("filter_regex", len(out), 0, len(records) - len(out))


def dedup(records, fields: Sequence[str] = ("prompt", "response"), **_):
    seen, out = set(), []
    for r in records:
        key = (tuple(_text(r, f) for f in fields), r.history)  # conversations differing in earlier turns stay
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out, TransformReport("dedup", len(out), 0, len(records) - len(out))


def allot(n: int, ratios: dict) -> dict:
    """Split ``n`` by ``ratios``: floors first, then the remainder one each to the largest fractional parts
    (ties go to the stratum listed first)."""
    total = sum(ratios.values())
    exact = {k: n * v / total for k, v in ratios.items()}
    counts = {k: int(x) for k, x in exact.items()}
    order = sorted(ratios, key=lambda k: (-(exact[k] - counts[k]), list(ratios).index(k)))
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def sample(
    records,
    strategy: str = "head",
    n: int | None = None,
    field: str | None = None,
    ratios: dict | None = None,
    subsets: list[dict] | None = None,
    seed: int = 0,
    **_,
):
    """head N; random N; stratified by ``field`` with ``ratios`` (seed 002: 4:3:2:1 over difficulty 1-4);
    subsets: [{range: [start, end], n}] by record index (seed 001: 88,800 of the first 800,000, 1,200 of the rest)."""
    rng = random.Random(seed)
    if strategy == "head":
        out = records[:n]
    elif strategy == "random":
        out = _draw(records, n, rng, "random")
    elif strategy == "subsets":
        out = []
        for s in subsets or []:
            start, end = s["range"]
            out += _draw(records[start:end], s["n"], rng, f"subset {s['range']}")
    elif strategy == "stratified":
        if not field or not ratios or n is None:
            raise TunebridgeError("sample: stratified needs n, field and ratios")
        counts = allot(n, {str(k): v for k, v in ratios.items()})
        strata: dict[str, list[Record]] = {k: [] for k in counts}
        for r in records:
            key = str(r.fields.get(field))
            if key in strata:
                strata[key].append(r)
        chosen = {id(r) for k, c in counts.items() for r in _draw(strata[k], c, rng, f"{field}={k}")}
        out = [r for r in records if id(r) in chosen]
    else:
        raise TunebridgeError(f"sample: unknown strategy {strategy!r} (head, random, subsets, stratified)")
    return out, TransformReport(f"sample:{strategy}", len(out), 0, len(records) - len(out))


def _draw(records: list[Record], n: int | None, rng: random.Random, what: str) -> list[Record]:
    if n is None:
        raise TunebridgeError(f"sample: {what}: n is required")
    if n > len(records):
        raise TunebridgeError(f"sample: {what}: asked for {n} records, only {len(records)} available")
    picked = sorted(rng.sample(range(len(records)), n))
    return [records[i] for i in picked]


Transform = Callable[..., tuple[list[Record], TransformReport]]
TRANSFORMS: dict[str, Transform] = {
    "prefix": prefix,
    "suffix": suffix,
    "strip": strip,
    "format_numbers": format_numbers,
    "filter_regex": filter_regex,
    "dedup": dedup,
    "sample": sample,
}


def apply(records: list[Record], steps: list[dict], seed: int) -> tuple[list[Record], list[TransformReport]]:
    """Apply ``steps`` ([{name: {options}}, ...]) in order; an empty result is an error, not an empty file."""
    reports = []
    for i, step in enumerate(steps):
        ((name, options),) = step.items()
        if name not in TRANSFORMS:
            raise TunebridgeError(f"data.transforms[{i}]: unknown transform {name!r} (known: {', '.join(TRANSFORMS)})")
        try:
            records, report = TRANSFORMS[name](records, seed=seed + i, **(options or {}))
        except TypeError as e:
            raise TunebridgeError(f"data.transforms[{i}].{name}: {e}") from None
        reports.append(report)
        if not records:
            raise TunebridgeError(f"data.transforms[{i}] ({name}) left no records")
    return records, reports


def split(records: list[Record], validation: float, seed: int) -> tuple[list[Record], list[Record]]:
    """A deterministic train/validation split (validation share rounded to whole records)."""
    if not validation:
        return records, []
    n_val = round(len(records) * validation)
    val_idx = set(random.Random(seed).sample(range(len(records)), n_val))
    return ([r for i, r in enumerate(records) if i not in val_idx], [r for i, r in enumerate(records) if i in val_idx])
