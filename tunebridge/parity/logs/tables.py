"""Loss curves written as data: the torch backend's ``metrics.jsonl`` and ``result.json``, and plain CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields
from pathlib import Path

from ...backends.result import RunResult, StepRecord
from ...errors import TunebridgeError
from .lines import read_text

RECORD_FIELDS = [f.name for f in fields(StepRecord)]
CSV_ALIASES = {
    "iteration": "step",
    "learning_rate": "lr",
    "grad norm": "grad_norm",
    "global_norm": "grad_norm",
    "lm loss": "loss",
}
CSV_DEFAULT_COLUMNS = ("step", "loss", "lr", "grad_norm")


def _value(name: str, raw):
    if raw is None or raw == "":
        return None
    if name in ("step", "tokens"):
        return int(raw)
    if name == "skipped":
        return raw in (True, "True", "true", "1")
    return float(raw)


def _record(d: dict, where: str) -> StepRecord:
    for key in ("step", "loss"):
        if d.get(key) is None or d.get(key) == "":
            raise TunebridgeError(f"{where}: no {key!r} value")
    try:
        return StepRecord(**{k: _value(k, d.get(k)) for k in RECORD_FIELDS})
    except (TypeError, ValueError) as e:
        raise TunebridgeError(f"{where}: {e}") from None


def _rows(path: Path) -> tuple[list[tuple[int, str]], bool]:
    """Non-empty lines with their numbers, and whether the last one ended with a newline."""
    text = read_text(path)
    lines = [(i + 1, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    return lines, text.endswith("\n")


def read_jsonl(path: Path) -> tuple[list[StepRecord], list[str]]:
    lines, terminated = _rows(path)
    records, notes = [], []
    for k, (number, line) in enumerate(lines):
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            if k == len(lines) - 1 and not terminated:
                notes.append(f"{path}:{number}: truncated last line ignored")
                break
            raise TunebridgeError(f"{path}:{number}: not JSON ({e.msg})") from None
        if not isinstance(d, dict):
            raise TunebridgeError(f"{path}:{number}: expected a JSON object per line")
        records.append(_record(d, f"{path}:{number}"))
    return records, notes


def read_csv(path: Path) -> tuple[list[StepRecord], list[str]]:
    lines, terminated = _rows(path)
    if not lines:
        return [], []
    first = next(csv.reader([lines[0][1]]))
    header = [CSV_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in first]
    if "step" in header or "loss" in header:
        columns, body = header, lines[1:]
        missing = [c for c in ("step", "loss") if c not in columns]
        if missing:
            raise TunebridgeError(f"{path}:1: CSV header has no {' or '.join(missing)} column (has {first})")
    else:
        columns, body = list(CSV_DEFAULT_COLUMNS[: len(first)]), lines
    records, notes = [], []
    for k, (number, line) in enumerate(body):
        values = next(csv.reader(io.StringIO(line)))
        # A last line without its newline is complete only if it has every column and parses.
        if k == len(body) - 1 and not terminated:
            try:
                if len(values) != len(columns):
                    raise TunebridgeError("short row")
                records.append(_record(dict(zip(columns, values)), f"{path}:{number}"))
            except TunebridgeError:
                notes.append(f"{path}:{number}: truncated last line ignored")
            break
        if len(values) != len(columns):
            raise TunebridgeError(f"{path}:{number}: {len(values)} values for {len(columns)} columns {columns}")
        records.append(_record(dict(zip(columns, values)), f"{path}:{number}"))
    return records, notes


def read_result(path: Path) -> RunResult:
    try:
        run = RunResult.load(path)
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: no such file") from None
    except (json.JSONDecodeError, TypeError, AttributeError) as e:  # AttributeError: not a JSON object
        raise TunebridgeError(f"{path}: not a tunebridge result.json ({e})") from None
    run.source = run.source or str(path)
    return run
