"""From parsed log lines to one loss curve: pick a rank, resolve restarts, note what was done."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...backends.result import RunResult, StepRecord
from ...errors import TunebridgeError


@dataclass(frozen=True)
class Parsed:
    line: int
    rank: int | None
    record: StepRecord
    step_time_s: float | None = None


def _span(steps: list[int]) -> str:
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}-{steps[-1]}"


def choose_rank(parsed: list[Parsed], path: Path, rank: int | None) -> tuple[list[Parsed], list[str]]:
    """Keep one rank's lines: ``rank`` if given, else the rank with the most loss lines (the lowest on a tie)."""
    ranks = sorted({p.rank for p in parsed}, key=lambda r: -1 if r is None else r)
    chosen: int | None
    if rank is not None:
        if rank not in ranks:
            raise TunebridgeError(
                f"{path}: no loss lines from rank {rank} (ranks with loss lines: "
                f"{', '.join('unprefixed' if r is None else str(r) for r in ranks)})"
            )
        chosen = rank
    elif len(ranks) == 1:
        return parsed, []
    else:
        chosen = max(ranks, key=lambda r: (sum(p.rank == r for p in parsed), -(-1 if r is None else r)))
    label = "unprefixed lines" if chosen is None else f"rank {chosen}"
    others = [("unprefixed" if r is None else str(r)) for r in ranks if r != chosen]
    return [p for p in parsed if p.rank == chosen], [
        f"loss lines from several ranks; kept {label} (also present: {', '.join(others)})"
    ]


def resolve_restarts(parsed: list[Parsed]) -> tuple[list[Parsed], list[str]]:
    """A step at or below the last one seen is a restart: the run resumed from before it, so every earlier
    record from that step on is superseded (the last occurrence of a repeated step wins)."""
    kept: list[Parsed] = []
    notes = []
    for p in parsed:
        if kept and p.record.step <= kept[-1].record.step:
            dropped = [q.record.step for q in kept if q.record.step >= p.record.step]
            kept = [q for q in kept if q.record.step < p.record.step]
            notes.append(
                f"restart at line {p.line}: training resumed at step {p.record.step}; the earlier records "
                f"of {_span(dropped)} are superseded (the last occurrence of a step wins)"
            )
        kept.append(p)
    return kept, notes


def build_run(
    parsed: list[Parsed], path: Path, backend: str, fmt: str, rank: int | None = None, notes: list[str] | None = None
) -> RunResult:
    if not parsed:
        raise TunebridgeError(f"{path}: no loss lines found in this {fmt} log")
    parsed, rank_notes = choose_rank(parsed, path, rank)
    parsed, restart_notes = resolve_restarts(parsed)
    steps = [p.record for p in parsed]
    times = [p.step_time_s for p in parsed if p.step_time_s is not None]
    gaps = {b.step - a.step for a, b in zip(steps, steps[1:])}
    interval = (
        [f"logged every {gaps.pop()} steps (Megatron averages the loss over each log interval)"]
        if fmt == "megatron" and len(gaps) == 1 and 1 not in gaps
        else []
    )
    return RunResult(
        backend=backend,
        steps=steps,
        step_time_s=sum(times) / len(times) if times else None,
        environment={"log_format": fmt},
        source=str(path),
        notes=[f"read from {path} ({fmt} log)", *(notes or []), *rank_notes, *restart_notes, *interval],
    )
