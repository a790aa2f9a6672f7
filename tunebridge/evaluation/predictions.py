"""Prediction and reference files made elsewhere, and how they are paired.

Predictions: the seeds' ``.npy`` list of strings; JSONL of strings or of objects with ``prediction`` (or
``text``) and an optional ``id``; the official SQuAD predictions JSON ``{id: text}``. References: JSONL with
``answers`` (SQuAD) or ``solution``/``answer`` (math) and an optional ``id``.

Pairing (:func:`paired`): when both sides carry ids they are paired by id — a missing, extra or repeated id
is an error naming it; predictions without ids are paired by position and the counts must agree; ids on the
predictions only are an error (nothing to pair them with).

SQuAD gold answers (:func:`gold_answers`) are a non-empty list of strings, or the official/HF shapes of it
(``[{"text": ...}, ...]``, ``{"text": [...]}``); anything else is refused. A math gold is a string or a JSON
number (its shortest decimal form).

An object ``.npy`` is a pickle; it is read with an unpickler that allows only numpy's array
reconstruction, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TunebridgeError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _npy_strings(path: Path) -> list[str]:
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(f)
        except ValueError as e:
            raise TunebridgeError(f"{path}: not a .npy file ({e})") from None
        if dtype.hasobject:
            try:
                array = _ArrayUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError) as e:
                raise TunebridgeError(f"{path}: refused to unpickle: {e}") from None
        else:
            f.seek(0)
            array = np.load(f, allow_pickle=False)
    values = np.asarray(array).reshape(-1).tolist()
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise TunebridgeError(f"{path}: item {bad[0]} is {type(values[bad[0]]).__name__}, not a string")
    return values


def _jsonl(path: Path) -> list[tuple[int, object]]:
    """(line number, value) of each non-blank line."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append((n, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise TunebridgeError(f"{path}:{n}:{e.colno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise TunebridgeError(f"{path}: not UTF-8 text (byte offset {e.start})") from None
    return out


@dataclass(frozen=True)
class Records:
    """Values read from a file, each with where it came from, and their ids (None: the file has none)."""

    values: list
    where: list[str]
    ids: list[str] | None


def _ids(path: Path, rows: list[tuple[str, object]]) -> list[str] | None:
    """Every record's ``id`` as a string, or None when no record has one; some but not all is an error."""
    given = [(where, row["id"]) for where, row in rows if isinstance(row, dict) and "id" in row]
    if not given:
        return None
    if len(given) < len(rows):
        where = next(w for w, row in rows if not (isinstance(row, dict) and "id" in row))
        raise TunebridgeError(f"{where}: no 'id', while other records have one (give every record an id, or none)")
    ids = []
    for where, value in given:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise TunebridgeError(f"{where}: 'id' must be a string or an integer, got {json.dumps(value)}")
        ids.append(str(value))
    return ids


def _official_predictions(path: Path) -> Records:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise TunebridgeError(f"{path}: not UTF-8 text (byte offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise TunebridgeError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise TunebridgeError(
            f"{path}: expected the official predictions object {{id: text}}, found a JSON {type(data).__name__}"
        )
    bad = next((k for k, v in data.items() if not isinstance(v, str)), None)
    if bad is not None:
        raise TunebridgeError(f"{path}: the prediction for id {bad!r} is {json.dumps(data[bad])}, not a string")
    return Records(list(data.values()), [f"{path}: id {k!r}" for k in data], list(data))


def read_predictions(path: str | Path) -> Records:
    """Prediction texts, with ids when the file carries them (official JSON, JSONL objects with "id")."""
    path = Path(path)
    if not path.exists():
        raise TunebridgeError(f"{path}: no such predictions file")
    if path.suffix == ".npy":
        values = _npy_strings(path)
        return Records(values, [f"{path}: item {i}" for i in range(len(values))], None)
    if path.suffix == ".json":
        return _official_predictions(path)
    rows = [(f"{path}:{n}", row) for n, row in _jsonl(path)]
    values = []
    for where, row in rows:
        value = (
            row if isinstance(row, str) else (row.get("prediction", row.get("text")) if isinstance(row, dict) else None)
        )
        if not isinstance(value, str):
            raise TunebridgeError(f"{where}: no 'prediction' text")
        values.append(value)
    return Records(values, [w for w, _ in rows], _ids(path, rows))


def gold_answers(value: object, where: str) -> list[str]:
    """A SQuAD record's gold answers as a list of strings; a malformed field is an error naming ``where``."""
    if isinstance(value, dict) and "text" in value:  # HF datasets: {"text": [...], "answer_start": [...]}
        value = value["text"]
    if isinstance(value, str):
        raise TunebridgeError(
            f"{where}: 'answers' is the string {value!r}; expected a list of answer strings "
            f"(e.g. [{json.dumps(value, ensure_ascii=False)}])"
        )
    if not isinstance(value, list) or not value:
        raise TunebridgeError(f"{where}: 'answers' must be a non-empty list of strings, got {json.dumps(value)}")
    out = []
    for i, answer in enumerate(value):
        if isinstance(answer, dict) and "text" in answer:  # the official file: [{"text": ..., "answer_start": ...}]
            answer = answer["text"]
        if not isinstance(answer, str):
            raise TunebridgeError(f"{where}: answers[{i}] is {json.dumps(answer, ensure_ascii=False)}, not a string")
        out.append(answer)
    return out


def math_gold(value: object, where: str) -> str:
    """A math gold answer as text: strings as they are, JSON numbers in their shortest decimal form."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    raise TunebridgeError(f"{where}: the gold answer is {json.dumps(value)}, expected a string or a number")


def read_references(path: str | Path, task: str) -> Records:
    """SQuAD: lists of gold answers ("answers"); math: gold answer strings ("solution" or "answer")."""
    path = Path(path)
    if not path.exists():
        raise TunebridgeError(f"{path}: no such references file")
    keys = ("answers",) if task == "squad" else ("solution", "answer")
    rows = [(f"{path}:{n}", row) for n, row in _jsonl(path)]
    values = []
    for where, row in rows:
        key = next((k for k in keys if k in row), None) if isinstance(row, dict) else None
        if key is None or not isinstance(row, dict):
            have = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise TunebridgeError(f"{where}: lacks {' or '.join(keys)} (it has: {have})")
        values.append(gold_answers(row[key], where) if task == "squad" else math_gold(row[key], where))
    return Records(values, [w for w, _ in rows], _ids(path, rows))


def _repeated(ids: list[str], where: list[str]) -> None:
    seen: dict[str, str] = {}
    for i, w in zip(ids, where):
        if i in seen:
            raise TunebridgeError(f"{w}: id {i!r} repeats {seen[i]}")
        seen[i] = w


def paired(predictions: Records, references: Records, pred_path: str | Path, ref_path: str | Path) -> list:
    """The prediction for each reference, in the references' order (by id when both sides have ids)."""
    if predictions.ids is None:
        if len(predictions.values) != len(references.values):
            raise TunebridgeError(
                f"{pred_path} has {len(predictions.values)} predictions, {ref_path} has "
                f"{len(references.values)} references"
            )
        return list(predictions.values)
    if references.ids is None:
        raise TunebridgeError(f"{pred_path} pairs predictions by id, but {ref_path} has no ids to pair them with")
    _repeated(predictions.ids, predictions.where)
    _repeated(references.ids, references.where)
    by_id = dict(zip(predictions.ids, predictions.values))
    missing = [i for i in references.ids if i not in by_id]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TunebridgeError(f"{pred_path}: no prediction for id {missing[0]!r}{more}, which {ref_path} has")
    known = set(references.ids)
    extra = [i for i in predictions.ids if i not in known]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise TunebridgeError(f"{pred_path}: id {extra[0]!r}{more} is not in {ref_path}")
    return [by_id[i] for i in references.ids]
