"""``tunebridge report``: a Markdown + self-contained HTML parity report for runs or logs."""

from __future__ import annotations

from pathlib import Path

from ..backends.result import RunResult
from ..backends.stacks import stacks_for
from ..io.atomic import check_output
from .compare import add_run_arguments, curve_verdicts, load_runs, print_verdicts


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write report.md and a self-contained report.html for runs or logs "
        "(exit 1 when a verdict fails; the report is written either way)",
    )
    add_run_arguments(p, 1)
    p.add_argument("--out", required=True, help="report directory (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing report directory")
    p.add_argument("--recipe", help="the recipe the runs came from: its text, parameter table and checks")
    p.set_defaults(func=run)


def param_checks(recipe, runs: dict[str, RunResult]) -> tuple[list, list]:
    """The per-backend parameter table and verdicts: across backends, and accounted vs each run's model.

    A log's count is what the framework printed: MindFormers' "Network Parameters" (trainable), PEFT's line in
    MindSpeed-LLM logs (TP/PP rank 0's share), the torch backend's trainable and base + adapter total.
    """
    from ..parity.verdicts import params_across, params_instantiated

    reports = {b: recipe.param_report(b) for b in stacks_for(recipe.spec)[0]}
    table = [r.to_dict() for r in reports.values()]
    verdicts = [params_across(list(reports.values()), recipe.spec)]
    for name, run in runs.items():
        report = reports.get(run.backend)
        if report is None or run.trainable_params is None:
            continue
        if report.per_rank_trainable:
            rank0 = report.per_rank_trainable[0]["trainable"]
            report = type(report)(**{**report.to_dict(), "trainable_params": rank0, "per_rank_trainable": None})
        v = params_instantiated(report, run.trainable_params, run.total_params if run.backend == "torch" else None)
        v.name += f" ({name})"
        if run.backend == "mindspeed-llm" and reports[run.backend].per_rank_trainable:
            v.explanation += "; the log's count is TP/PP rank 0's share, compared with the accounting's rank 0"
        verdicts.append(v)
        next(row for row in table if row["backend"] == run.backend)["instantiated"] = run.trainable_params
    return table, verdicts


def run(args) -> int:
    from ..parity.report import write_report
    from ..recipe.schema import ParityTolerances, load_recipe

    check_output(args.out, args.force)
    runs = load_runs(args.runs, args.names, args.rank, args.min_runs)
    recipe = load_recipe(args.recipe) if args.recipe else None
    tol = recipe.parity if recipe else ParityTolerances()
    verdicts = curve_verdicts(runs, tol) if len(runs) > 1 else []
    params_table, recipe_text = None, None
    if recipe:
        recipe_text = Path(args.recipe).read_text(encoding="utf-8")
        params_table, param_verdicts = param_checks(recipe, runs)
        verdicts = param_verdicts + verdicts
    out = write_report(args.out, runs, verdicts, params_table=params_table, recipe=recipe_text, force=args.force)
    print_verdicts(verdicts)
    print(f"report: {out / 'report.html'} (and report.md)")
    return 0 if all(v.passed for v in verdicts) else 1
