"""Prediction and reference files made elsewhere: JSONL, and the seeds' ``.npy`` list of strings.

An object ``.npy`` is a pickle; it is read with an unpickler that allows only numpy's array
reconstruction, so a crafted file cannot run code.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ..errors import TunebridgeError

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")


def _npy_strings(path: Path) -> list[str]:
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
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


def _jsonl(path: Path) -> list[dict | str]:
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise TunebridgeError(f"{path}:{n}:{e.colno}: malformed JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise TunebridgeError(f"{path}: not UTF-8 text (byte offset {e.start})") from None
    return out


def read_predictions(path: str | Path) -> list[str]:
    """Strings from a .npy, or from JSONL lines that are strings or objects with "prediction"/"text"."""
    path = Path(path)
    if not path.exists():
        raise TunebridgeError(f"{path}: no such predictions file")
    if path.suffix == ".npy":
        return _npy_strings(path)
    out = []
    for n, row in enumerate(_jsonl(path), 1):
        value = row if isinstance(row, str) else (row.get("prediction", row.get("text")) if isinstance(row, dict)
                                                  else None)
        if not isinstance(value, str):
            raise TunebridgeError(f"{path}: record {n} has no 'prediction' text")
        out.append(value)
    return out


def read_references(path: str | Path, task: str) -> list:
    """SQuAD: lists of gold answers ("answers"); math: gold answer strings ("solution" or "answer")."""
    path = Path(path)
    if not path.exists():
        raise TunebridgeError(f"{path}: no such references file")
    keys = ("answers",) if task == "squad" else ("solution", "answer")
    out = []
    for n, row in enumerate(_jsonl(path), 1):
        key = next((k for k in keys if isinstance(row, dict) and k in row), None)
        if key is None:
            have = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise TunebridgeError(f"{path}: record {n} lacks {' or '.join(keys)} (it has: {have})")
        out.append(row[key] if task == "math" else list(row[key]))
    return out
