"""``tunebridge params``: exact total and trainable parameters of a recipe on each backend."""

from __future__ import annotations

import json
import sys

from ..backends.stacks import STACK_NAMES, stacks_for
from ..errors import TunebridgeError
from ..evaluation.units import header
from ..model.accounting import ParamReport
from .tables import console as make_console, table


def register(sub) -> None:
    p = sub.add_parser("params", help="total / trainable parameters, low-param ratio and PEFT's trainable %%")
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument("--backend", choices=(*STACK_NAMES, "all"), default="all", help="one backend, or all (default)")
    p.add_argument("--json", action="store_true", help="print JSON (an object for one backend, a list for all)")
    p.add_argument("--strict", action="store_true", help="fail when a backend cannot express the targets exactly")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..recipe.schema import load_recipe

    recipe = load_recipe(args.recipe)
    backends, notes = stacks_for(recipe.spec) if args.backend == "all" else ([args.backend], [])
    for note in notes:
        print(f"note: not counted for {note}", file=sys.stderr)
    reports = [recipe.param_report(b) for b in backends]
    if args.json:
        data = [r.to_dict() for r in reports]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        _print_tables(reports)
    inexact = [r for r in reports if not r.exact]
    if args.strict and inexact:
        raise TunebridgeError(
            "; ".join(f"{r.backend} cannot express the recipe's LoRA targets exactly: {r.note}" for r in inexact)
        )
    return 0


def _print_tables(reports: list[ParamReport]) -> None:
    console = make_console()
    ratio, peft = header("low_param_ratio"), header("peft_trainable_percent")
    numbers = ("total", "trainable", ratio, peft)
    t = table(
        f"parameters of {reports[0].model}",
        {
            col: "right" if col in numbers else "left"
            for col in ("backend", "total", "trainable", ratio, peft, "exact", "native targets")
        },
    )
    for r in reports:  # each figure in its unit, as in --json
        t.add_row(
            r.backend,
            f"{r.total_params:,}",
            f"{r.trainable_params:,}",
            f"{r.low_param_ratio:.6g}",
            f"{r.peft_trainable_percent:.6g}",
            "yes" if r.exact else "NO",
            " ".join(r.native_targets) or "-",
        )
    console.print(t)
    console.print(
        "low-param ratio = trainable / base total (the contests' definition); "
        "PEFT trainable = 100 x trainable / (base + adapter)."
    )
    for r in reports:
        if r.note:
            console.print(f"[bold]{r.backend}[/bold]: {r.note}")
        if r.per_rank_trainable:
            ranks = ("pp_rank", "tp_rank", "ep_rank")
            shown = [k for k in ranks if k in r.per_rank_trainable[0]]  # ep_rank: an expert-parallel model
            pr = table(
                f"{r.backend}: trainable parameters per rank (Megatron's per-rank count)",
                dict.fromkeys((*(k.replace("_", " ") for k in shown), "layers", "trainable"), "right"),
            )
            for row in r.per_rank_trainable:
                pr.add_row(*(str(row[k]) for k in shown), str(row["layers"]), f"{row['trainable']:,}")
            console.print(pr)
