"""Product output held as a reviewed JSON snapshot (tests/snapshots/<name>.json): the exact words and figures
users read (verdicts, notes). Regenerate after an intended change, then review the diff:
TUNEBRIDGE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/<the test file>"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

SNAPSHOTS = Path(__file__).parent / "snapshots"


def _plain(value):
    """JSON-safe: non-finite floats as strings, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def assert_snapshot(name: str, value) -> None:
    path = SNAPSHOTS / f"{name}.json"
    got = _plain(value)
    if os.environ.get("TUNEBRIDGE_UPDATE_SNAPSHOTS"):
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: run with TUNEBRIDGE_UPDATE_SNAPSHOTS=1 and review it"
    assert got == json.loads(path.read_text(encoding="utf-8")), f"{path} differs (see the module's docstring)"
