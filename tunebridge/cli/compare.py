"""``tunebridge compare``: loss curves of two or more runs or logs, step by step, with the parity verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..backends.result import RunResult
from ..errors import TunebridgeError
from .args import nonnegative_int

if TYPE_CHECKING:
    from ..parity.verdicts import Verdict
    from ..recipe.schema import ParityTolerances


def add_run_arguments(p, minimum: int) -> None:
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_OR_LOG",
        help="run directory (result.json / metrics.jsonl / worker_*.log) or log file "
        "(MindFormers, Megatron / MindSpeed-LLM, JSONL, CSV); the first is the reference",
    )
    p.add_argument("--names", help="comma-separated display names, one per run")
    p.add_argument("--rank", type=nonnegative_int, help="keep this rank's lines of logs that interleave several ranks")
    p.set_defaults(min_runs=minimum)


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare loss curves of runs or logs (exit 1 when a verdict fails)")
    add_run_arguments(p, 2)
    p.set_defaults(func=run)


def run_name(path: Path) -> str:
    """A run's display name: its directory's name, or the log file's stem."""
    if path.name in ("result.json", "metrics.jsonl"):
        return path.parent.name
    return path.name if path.is_dir() else path.stem


def load_runs(paths: list[str], names: str | None, rank: int | None, minimum: int) -> dict[str, RunResult]:
    from ..parity.logs import load_run

    if len(paths) < minimum:
        raise TunebridgeError(f"need at least {minimum} runs or logs, got {len(paths)}")
    labels = [n.strip() for n in names.split(",")] if names else [run_name(Path(p)) for p in paths]
    if len(labels) != len(paths):
        raise TunebridgeError(f"--names gives {len(labels)} names for {len(paths)} runs")
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return {label: load_run(p, rank=rank) for label, p in zip(unique, paths)}


def curve_verdicts(runs: dict[str, RunResult], tol: ParityTolerances | None = None) -> list[Verdict]:
    from ..parity.verdicts import loss_checks
    from ..recipe.schema import ParityTolerances

    tol = tol or ParityTolerances()
    names = list(runs)
    return [v for other in names[1:] for v in loss_checks(runs[names[0]], runs[other], names[0], other, tol)]


def step_table(runs: dict[str, RunResult]) -> list[str]:
    names = list(runs)
    by_run = [{s.step: s.loss for s in runs[n].steps} for n in names]
    ref = by_run[0]
    steps = sorted(set().union(*by_run))
    headers = ["step", *names, *(f"rel {n}" for n in names[1:])]
    rows = []
    for step in steps:
        rels = [
            f"{100 * abs(b[step] - ref[step]) / abs(ref[step]):.3g}%" if step in b and ref.get(step) else "-"
            for b in by_run[1:]
        ]
        rows.append([str(step), *(f"{b[step]:.6f}" if step in b else "-" for b in by_run), *rels])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return [fmt(headers), *map(fmt, rows)]


def print_verdicts(verdicts: list[Verdict]) -> None:
    for v in verdicts:
        print(f"{'PASS' if v.passed else 'FAIL'}  {v.name}: {v.figure()} (tolerance: {v.tolerance})")
        print(f"      {v.explanation}")


def run(args) -> int:
    runs = load_runs(args.runs, args.names, args.rank, args.min_runs)
    for name, r in runs.items():
        for note in r.notes[1:]:
            print(f"note: {name}: {note}")
    print("\n".join(step_table(runs)))
    print()
    verdicts = curve_verdicts(runs)
    print_verdicts(verdicts)
    return 0 if all(v.passed for v in verdicts) else 1
