"""Read instruction data (JSON array, JSONL, CSV, Parquet) into records, keeping where each came from.

Record formats: ``alpaca`` (instruction/input/output, or any keys through ``map_keys`` as MindSpeed-LLM's
``--map-keys`` names them: prompt/query/response, and system and history, which are read only when named, as
MindSpeed-LLM reads them; history is a list of [user, assistant] pairs), ``math`` (problem/solution), ``sharegpt``
(``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}``, MindFormers' converter output) and
``mc`` (question,A,B,C,D,answer: C-Eval / MMLU / CMMLU rows).

A conversation becomes one record as MindSpeed-LLM's sharegpt converter aligns it: an optional leading system
turn, then human / gpt turns alternating from human, even in number; the last pair is ``prompt`` / ``response``,
the earlier pairs are ``history`` (so the prompt transforms edit the last user turn). MindSpeed-LLM skips a
conversation that breaks these rules with a warning; tunebridge stops and names it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ..errors import TunebridgeError, unknown

RECORD_FORMATS = ("alpaca", "math", "sharegpt", "mc")
ALPACA_KEYS = {"prompt": "instruction", "query": "input", "response": "output"}
MapKey = Literal["prompt", "query", "response", "system", "history"]
MAP_KEYS: tuple[MapKey, ...] = get_args(MapKey)
MAP_FIELDS = {"alpaca": MAP_KEYS, "math": ("prompt", "response")}  # the fields each record format reads


@dataclass
class Record:
    """One instruction sample: the user turn's parts and the answer, plus the raw fields (for filters).
    ``history`` holds the (user, assistant) turns before them, oldest first."""

    prompt: str
    response: str
    query: str = ""
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    fields: dict = field(default_factory=dict)
    where: str = ""


def rows(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(location, row) pairs; the location is ``file:line`` (or ``file:row N`` for Parquet)."""
    path = Path(path)
    if not path.exists():
        raise TunebridgeError(f"{path}: no such data file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from jsonl_objects(path)
    elif suffix == ".json":
        yield from _json_array(path)
    elif suffix == ".csv":
        yield from _csv(path)
    elif suffix == ".parquet":
        yield from _parquet(path)
    else:
        raise TunebridgeError(f"{path}: unknown data file type {suffix!r} (.json, .jsonl, .csv, .parquet)")


def _open_text(path: Path):
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise TunebridgeError(f"{path}: cannot open ({e})") from None


def _decode_guard(path: Path, fn):
    try:
        yield from fn()
    except UnicodeDecodeError as e:
        raise TunebridgeError(f"{path}: not UTF-8 text (byte offset {e.start})") from None


def jsonl_objects(path: Path) -> Iterator[tuple[str, dict]]:
    """(``file:line``, object) for each non-blank line of a JSONL file; bad bytes and JSON name file:line."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TunebridgeError(f"{path}: cannot open ({e})") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TunebridgeError(
                    f"{path}:{n}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TunebridgeError(f"{path}:{n}:{e.colno}: malformed JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise TunebridgeError(f"{path}:{n}: expected a JSON object, found {type(row).__name__}")
            yield f"{path}:{n}", row


def _json_array(path: Path) -> Iterator[tuple[str, dict]]:
    def gen():
        with _open_text(path) as f:
            text = f.read()
        decoder = json.JSONDecoder()
        pos = _skip(text, 0)
        if pos >= len(text) or text[pos] != "[":
            raise TunebridgeError(f"{path}:1: expected a JSON array of records (use .jsonl for one per line)")
        pos = _skip(text, pos + 1)
        line, counted = 1, 0  # the line of offset `counted`; counting on from there keeps the reading linear
        while pos < len(text) and text[pos] != "]":
            line, counted = line + text.count("\n", counted, pos), pos
            try:
                row, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise TunebridgeError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise TunebridgeError(f"{path}:{line}: expected a JSON object, found {type(row).__name__}")
            yield f"{path}:{line}", row
            pos = _skip(text, pos)
            if pos < len(text) and text[pos] == ",":
                pos = _skip(text, pos + 1)
            elif pos < len(text) and text[pos] != "]":
                raise TunebridgeError(f"{path}:{line + text.count(chr(10), counted, pos)}: expected ',' or ']'")
        if pos >= len(text):
            raise TunebridgeError(f"{path}: the JSON array is not closed (truncated file?)")

    yield from _decode_guard(path, gen)


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _csv(path: Path) -> Iterator[tuple[str, dict]]:
    def gen():
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise TunebridgeError(f"{path}:1: empty CSV (a header row is needed)")
            for row in reader:
                yield f"{path}:{reader.line_num}", dict(row)

    yield from _decode_guard(path, gen)


def _parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}:row {n}", row


def _get(row: dict, key: str, where: str, required: bool = True) -> str:
    if key not in row or row[key] is None:
        if not required:
            return ""
        if key in row:
            raise TunebridgeError(f"{where}: {key!r} is null; expected text")
        raise TunebridgeError(f"{where}: missing key {key!r} (the record has: {', '.join(map(str, row)) or 'nothing'})")
    value = row[key]
    if not isinstance(value, (str, int, float)):
        raise TunebridgeError(f"{where}: {key!r} should be text, found {type(value).__name__}")
    return str(value)


def to_record(fmt: str, row: dict, where: str, map_keys: dict[str, str] | None = None) -> Record:
    if fmt == "alpaca":
        keys = {**ALPACA_KEYS, **(map_keys or {})}
        return Record(
            prompt=_get(row, keys["prompt"], where),
            query=_get(row, keys["query"], where, False),
            response=_get(row, keys["response"], where),
            system=_get(row, keys["system"], where, False) if "system" in keys else None,
            history=_history(row, keys["history"], where) if "history" in keys else (),
            fields=row,
            where=where,
        )
    if fmt == "math":
        keys = {"prompt": "problem", "response": "solution", **(map_keys or {})}
        return Record(
            prompt=_get(row, keys["prompt"], where),
            response=_get(row, keys["response"], where),
            fields=row,
            where=where,
        )
    if fmt == "sharegpt":
        return _sharegpt(row, where)
    if fmt == "mc":
        question = _get(row, "question", where)
        options = "\n".join(f"{c}. {_get(row, c, where)}" for c in "ABCD")
        return Record(prompt=f"{question}\n{options}", response=_get(row, "answer", where), fields=row, where=where)
    raise TunebridgeError(f"unknown record format {fmt!r} (known: {', '.join(RECORD_FORMATS)})")


def _history(row: dict, key: str, where: str) -> tuple[tuple[str, str], ...]:
    value = row.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(t, str) for t in p) for p in value
    ):
        raise TunebridgeError(f"{where}: {key!r} should be a list of [user, assistant] text pairs")
    return tuple((q, a) for q, a in value)


def _sharegpt(row: dict, where: str) -> Record:
    turns = row.get("conversations")
    if not isinstance(turns, list):
        raise TunebridgeError(f"{where}: missing key 'conversations' (the record has: {', '.join(map(str, row))})")
    texts = [_turn_text(t, i, where) for i, t in enumerate(turns)]
    roles = [t.get("from") for t in turns]
    system = None
    if roles[:1] == ["system"]:
        system, texts, roles = texts[0], texts[1:], roles[1:]
    for i, role in enumerate(roles):
        if role != ("human", "gpt")[i % 2]:
            raise TunebridgeError(
                f"{where}: conversations[{i + (system is not None)}] is from {role!r} where "
                f"{('human', 'gpt')[i % 2]!r} is expected (an optional system turn first, then "
                f"human and gpt alternating; found {roles})"
            )
    if not roles or len(roles) % 2:
        raise TunebridgeError(f"{where}: a conversation must end with a gpt turn after each human turn (found {roles})")
    pairs = tuple(zip(texts[::2], texts[1::2]))
    return Record(
        prompt=pairs[-1][0], response=pairs[-1][1], system=system, history=pairs[:-1], fields=row, where=where
    )


def _turn_text(turn, i: int, where: str) -> str:
    if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
        raise TunebridgeError(f"{where}: conversations[{i}] should be an object with a text 'value'")
    return turn["value"]


def check_map_keys(map_keys: dict | None, fmt: str) -> None:
    """MindSpeed-LLM's --map-keys names only these fields, each to a key of the records, and only the fields the
    record format reads (one it does not read would be ignored)."""
    fields = MAP_FIELDS.get(fmt, ())
    for name, key in (map_keys or {}).items():
        if not fields:
            raise TunebridgeError(f"{fmt} records take no map_keys")
        if name not in MAP_KEYS:
            raise TunebridgeError(unknown("map_keys field", name, fields))
        if name not in fields:
            raise TunebridgeError(
                f"map_keys field {name!r} is not read from {fmt} records (they take: {', '.join(fields)})"
            )
        if not isinstance(key, str):
            raise TunebridgeError(f"map_keys: {name!r} should name a record key, found {key!r}")


def read_records(path: str | Path, fmt: str, map_keys: dict[str, str] | None = None) -> Iterator[Record]:
    check_map_keys(map_keys, fmt)
    for where, row in rows(path):
        yield to_record(fmt, row, where, map_keys)
