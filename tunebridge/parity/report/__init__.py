"""Parity reports: ``report.md`` (plots as PNG files beside it) and one self-contained ``report.html``."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ... import __version__
from ...backends.result import RunResult
from ...evaluation.units import fmt, header
from ...io.atomic import atomic_dir
from ...model.accounting import contest_score
from ..verdicts import Verdict
from .document import Block, Image, Table, to_html, to_markdown
from .plots import loss_figure

FOLD_ROWS = 12  # per-step tables longer than this are folded in the HTML page


def _rel(value: float) -> str:
    """A relative error in percent, with the digits a tiny one needs (1.2e-06 %, not 0.000 %)."""
    return f"{100 * value:.3g} %"


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.6g}"


def _steps_text(run: RunResult) -> str:
    return f"{len(run.steps)} ({run.steps[0].step}-{run.steps[-1].step})" if run.steps else "0"


def runs_section(runs: dict[str, RunResult]) -> list[Block]:
    rows = [
        [
            name,
            r.backend,
            _steps_text(r),
            _num(r.steps[0].loss) if r.steps else "-",
            _num(r.steps[-1].loss) if r.steps else "-",
            _num(r.trainable_params),
            r.source or "-",
        ]
        for name, r in runs.items()
    ]
    blocks = [
        Block("h2", "Runs"),
        Block("table", Table(["run", "backend", "steps", "first loss", "last loss", "trainable", "source"], rows)),
    ]
    for name, r in runs.items():
        for note in r.notes:
            blocks.append(Block("p", f"{name}: {note}"))
    return blocks


def loss_section(runs: dict[str, RunResult]) -> list[Block]:
    names = list(runs)
    blocks = [
        Block("h2", "Loss curves"),
        Block("image", Image("loss.png", loss_figure(runs), "loss curves and relative error")),
    ]
    if len(names) < 2:
        return blocks
    ref = {s.step: s.loss for s in runs[names[0]].steps}
    by_run = [{s.step: s.loss for s in runs[n].steps} for n in names]
    steps = sorted(set().union(*by_run))
    headers = ["step", *names, *(f"rel err {n} vs {names[0]}" for n in names[1:])]
    rows = []
    for step in steps:
        losses = [_num(b.get(step)) for b in by_run]
        rels = [
            _rel(abs(b[step] - ref[step]) / abs(ref[step])) if step in b and ref.get(step) else "-" for b in by_run[1:]
        ]
        rows.append([str(step), *losses, *rels])
    folded = f"loss per step ({len(rows)} steps)" if len(rows) > FOLD_ROWS else ""
    blocks.append(Block("table", Table(headers, rows, folded=folded)))
    return blocks


def _as_dict(row) -> dict:
    if hasattr(row, "to_dict"):
        return row.to_dict()
    return asdict(row) if is_dataclass(row) and not isinstance(row, type) else dict(row)


def params_section(params_table: list) -> list[Block]:
    """Rows are ParamReports or dicts with their keys; ``instantiated`` and ``accuracy`` add columns, the latter
    the contest score = (1 - low-param ratio) * 0.3 + accuracy * 0.7. Every figure in its unit (``units``)."""
    rows = [_as_dict(r) for r in params_table]
    with_inst = any("instantiated" in r for r in rows)
    with_score = any(r.get("accuracy") is not None for r in rows)
    headers = [
        "backend",
        "total",
        "trainable",
        *(["instantiated"] if with_inst else []),
        header("low_param_ratio"),
        header("peft_trainable_percent"),
        "exact",
        *([header("accuracy"), header("contest_score")] if with_score else []),
    ]
    body = []
    for r in rows:
        line = [r["backend"], _num(r["total_params"]), _num(r["trainable_params"])]
        if with_inst:
            line.append(_num(r.get("instantiated")))
        line += [
            f"{r['low_param_ratio']:.6g}",
            f"{r.get('peft_trainable_percent', 0):.6g}",
            "yes" if r.get("exact", True) else "no",
        ]
        if with_score:
            acc = r.get("accuracy")
            line += (
                ["-", "-"] if acc is None else [fmt("accuracy", acc), f"{contest_score(r['low_param_ratio'], acc):.6f}"]
            )
        body.append(line)
    blocks = [
        Block("h2", "Parameters"),
        Block("table", Table(headers, body)),
        Block(
            "p",
            "low-param ratio = trainable / base total (the contests' definition); "
            "PEFT trainable % = trainable / (base + adapter).",
        ),
    ]
    blocks += [Block("p", f"{r['backend']}: {r['note']}") for r in rows if r.get("note")]
    return blocks


def metrics_section(metrics_table: dict[str, dict[str, float]]) -> list[Block]:
    """Rows of metrics by their keys (``units.UNITS``), each column headed with its unit."""
    metrics = list(dict.fromkeys(k for row in metrics_table.values() for k in row))
    rows = [[name, *(fmt(k, row.get(k)) for k in metrics)] for name, row in metrics_table.items()]
    return [Block("h2", "Metrics"), Block("table", Table(["run", *(header(k) for k in metrics)], rows))]


def evaluation_section(runs: dict[str, RunResult]) -> list[Block]:
    """The stacks' own evaluation results (``RunResult.evaluation``: MindSpeed-LLM's evaluate stage)."""
    rows = [
        [name, task, f"{s['correct']}/{s['questions']}", f"{100 * s['accuracy']:.2f} %", str(len(s["subjects"]))]
        for name, r in runs.items()
        for task, s in r.evaluation.items()
    ]
    if not rows:
        return []
    return [
        Block("h2", "Evaluation (as each stack reported it)"),
        Block("table", Table(["run", "task", "correct / questions", "accuracy", "subjects"], rows)),
    ]


# The figure that ranks the verdicts of a kind, in order of preference: the largest is the worst.
WORST_OF = ("max rel error", "rel error", "mean rel error", "max |Δ|")


def _badness(v: Verdict) -> tuple:
    key = next((k for k in WORST_OF if isinstance(v.measured.get(k), (int, float))), None)
    return (not v.passed, v.measured[key] if key else 0.0)


def summary_section(verdicts: list[Verdict]) -> list[Block]:
    """The verdicts first: how many pass and fail, and per kind of check the worst one with its figures."""
    passed = sum(v.passed for v in verdicts)
    kinds: dict[str, list[Verdict]] = {}
    for v in verdicts:
        kinds.setdefault(v.name.split(":")[0], []).append(v)
    rows, classes = [], []
    for kind, group in kinds.items():
        worst = max(group, key=_badness)
        failed = sum(not v.passed for v in group)
        rows.append([kind, str(len(group) - failed), str(failed), worst.name, worst.figure(), worst.tolerance])
        classes.append("fail" if failed else "pass")
    verdict = "every check passes" if passed == len(verdicts) else f"{len(verdicts) - passed} FAIL"
    return [
        Block("h2", "Summary"),
        Block("p", f"{passed} of {len(verdicts)} checks pass ({verdict})."),
        Block("table", Table(["kind of check", "pass", "fail", "worst", "its figures", "tolerance"], rows, classes)),
    ]


def verdicts_section(verdicts: list[Verdict]) -> list[Block]:
    rows = [["PASS" if v.passed else "FAIL", v.name, v.figure(), v.tolerance, v.explanation] for v in verdicts]
    return [
        Block("h2", "Parity verdicts"),
        Block(
            "table",
            Table(
                ["verdict", "check", "measured", "tolerance", "explanation"],
                rows,
                ["pass" if v.passed else "fail" for v in verdicts],
            ),
        ),
    ]


def environment_section(runs: dict[str, RunResult]) -> list[Block]:
    host = {
        "tunebridge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "-",
        "cpus": str(os.cpu_count()),
    }
    rows = [["report host", k, v] for k, v in host.items()]
    rows += [[name, k, str(v)] for name, r in runs.items() for k, v in r.environment.items()]
    return [Block("h2", "Versions and hardware"), Block("table", Table(["where", "item", "value"], rows))]


def build(
    runs: dict[str, RunResult],
    verdicts: list[Verdict],
    params_table=None,
    metrics_table=None,
    recipe: str | None = None,
) -> list[Block]:
    blocks = [
        Block("h1", "tunebridge parity report"),
        Block("p", f"Runs: {', '.join(f'{n} ({r.backend})' for n, r in runs.items())}."),
    ]
    if verdicts:
        blocks += summary_section(verdicts) + verdicts_section(verdicts)
    if params_table:
        blocks += params_section(params_table)
    blocks += runs_section(runs) + loss_section(runs)
    if metrics_table:
        blocks += metrics_section(metrics_table)
    blocks += evaluation_section(runs)
    if recipe:
        blocks += [Block("h2", "Recipe"), Block("pre", recipe)]
    blocks += environment_section(runs)
    return blocks


def write_report(
    out_dir: str | Path,
    runs: dict[str, RunResult],
    verdicts: list[Verdict],
    params_table=None,
    metrics_table=None,
    recipe: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Write ``report.md``, ``loss.png`` and the self-contained ``report.html`` into ``out_dir`` (atomically;
    an existing ``out_dir`` only with ``force``). ``recipe`` is YAML text or a path to it."""
    if isinstance(recipe, Path):
        recipe = recipe.read_text(encoding="utf-8")
    blocks = build(runs, verdicts, params_table, metrics_table, recipe)
    with atomic_dir(out_dir, force=force) as tmp:
        (tmp / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
        (tmp / "report.html").write_text(to_html(blocks, "tunebridge parity report"), encoding="utf-8")
        for b in blocks:
            if isinstance(b.content, Image):
                (tmp / b.content.filename).write_bytes(b.content.png)
    return Path(out_dir)
