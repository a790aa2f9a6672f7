"""Training logs of every stack read into one loss-curve type, ``RunResult``.

Formats: MindFormers worker logs (``MFLossMonitor`` lines), Megatron-LM / MindSpeed-LLM logs (``training_log``
lines), the torch backend's ``metrics.jsonl`` and ``result.json``, and CSV (``step,loss[,lr,grad_norm]``).
"""

from __future__ import annotations

from pathlib import Path

from ...backends.result import RunResult
from ...backends.stacks import stack_of
from ...errors import TunebridgeError
from . import megatron, mindformers
from .assemble import Parsed, build_run
from .lines import Line, clean_lines
from .tables import read_csv, read_jsonl, read_result

FORMATS = ("mindformers", "megatron", "jsonl", "csv", "result")
TEXT_PARSERS = {"mindformers": mindformers.parse_line, "megatron": megatron.parse_line}
STEP_MARKERS = {"mindformers": mindformers.STEP_MARKER, "megatron": megatron.ITERATION}
LOOKED_FOR = (
    "MindFormers MFLossMonitor lines ('{ Epoch:[ 1/ 1], step:[ 1/ 9], loss: ...'), Megatron / "
    "MindSpeed-LLM lines ('iteration 1/9 | ... | lm loss: ... |'), JSONL records with step and loss, "
    "or CSV with a step,loss header"
)


def _backend_of(fmt: str) -> str:
    """The stack whose runs write logs of ``fmt`` (a CSV is nobody's: it is labelled csv)."""
    stack = stack_of(log=fmt)
    return stack.name if stack else fmt


def detect_format(path: str | Path) -> str:
    """``result``, ``jsonl``, ``csv``, ``mindformers`` or ``megatron``, from the name, else from the content."""
    path = Path(path)
    if path.suffix == ".json":
        return "result"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".csv":
        return "csv"
    lines = clean_lines(path)
    for line in lines:
        for fmt, parse in TEXT_PARSERS.items():
            if parse(line.text):
                return fmt
    first = next((line.text.strip() for line in lines), "")
    if first.startswith("{"):
        return "jsonl"
    if "," in first and "step" in first.lower() and "loss" in first.lower():
        return "csv"
    if not lines:
        raise TunebridgeError(f"{path}: empty log file")
    raise TunebridgeError(f"{path}: no loss lines found (looked for {LOOKED_FOR})")


def _parse_text(lines: list[Line], path: Path, fmt: str, rank: int | None) -> RunResult:
    parse = TEXT_PARSERS[fmt]
    parsed, notes = [], []
    trainable = total = None
    for line in lines:
        if not line.terminated and STEP_MARKERS[fmt].search(line.text):
            notes.append(f"{path}:{line.number}: truncated last line ignored")
            continue
        got = parse(line.text)
        if got is None:
            if fmt == "mindformers" and (n := mindformers.trainable_params(line.text)) is not None:
                trainable = n
            elif fmt == "megatron" and (pair := megatron.peft_params(line.text)) is not None:
                trainable, total = pair
            continue
        parsed.append(Parsed(line.number, line.rank, *got))
    run = build_run(parsed, path, _backend_of(fmt), fmt, rank, notes)
    run.trainable_params, run.total_params = trainable, total
    return run


def parse_log(path: str | Path, fmt: str | None = None, rank: int | None = None) -> RunResult:
    """The loss curve in the log at ``path`` (format detected unless ``fmt``); ``rank`` picks one rank's lines."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise TunebridgeError(f"unknown log format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "result":
        return read_result(path)
    if fmt in TEXT_PARSERS:
        return _parse_text(clean_lines(path), path, fmt, rank)
    records, notes = (read_jsonl if fmt == "jsonl" else read_csv)(path)
    parsed = [Parsed(i + 1, None, r) for i, r in enumerate(records)]
    return build_run(parsed, path, _backend_of(fmt), fmt, None, notes)


def parse_worker_logs(directory: Path, rank: int | None = None) -> RunResult:
    """An ``msrun_log`` directory: every ``worker_N.log``, as one log with the rank from each file name."""
    files = sorted(directory.glob("worker_*.log"))
    lines = [line for f in files for line in clean_lines(f)]
    fmt = next((f for f, parse in TEXT_PARSERS.items() if any(parse(line.text) for line in lines)), None)
    if fmt is None:
        raise TunebridgeError(
            f"{directory}: no loss lines found in {', '.join(f.name for f in files)} (looked for {LOOKED_FOR})"
        )
    return _parse_text(lines, directory, fmt, rank)


def load_run(path: str | Path, rank: int | None = None) -> RunResult:
    """A RUN argument: a run directory (``result.json``, else ``metrics.jsonl``, else ``worker_*.log``) or a log."""
    path = Path(path)
    if path.is_dir():
        for name in ("result.json", "metrics.jsonl"):
            if (path / name).exists():
                return parse_log(path / name)
        if any(path.glob("worker_*.log")):
            return parse_worker_logs(path, rank)
        raise TunebridgeError(f"{path}: a directory without result.json, metrics.jsonl or worker_*.log")
    if not path.exists():
        raise TunebridgeError(f"{path}: no such run directory or log file")
    return parse_log(path, rank=rank)
