"""``tunebridge sweep``: run (or render) a grid over recipe fields and report a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

from ..backends import get_backend
from ..backends.stacks import STACK_NAMES
from ..errors import TunebridgeError
from ..evaluation.units import UNITS, header
from ..io.atomic import atomic_dir, check_output
from .args import positive_int
from .tables import console, table


def register(sub) -> None:
    p = sub.add_parser("sweep", help="a grid over recipe fields (lab ablations): run or render every point")
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument(
        "--set",
        dest="axes",
        action="append",
        required=True,
        metavar="FIELD=V1,V2",
        help="e.g. finetune.lora.rank=4,8,16 (repeat for more axes)",
    )
    p.add_argument("--backend", choices=STACK_NAMES, default="torch", help="backend that runs each point")
    p.add_argument("--render", action="store_true", help="only render each point's launch artifacts")
    p.add_argument("--weights", help="HF model directory (default: the recipe's model.weights)")
    p.add_argument("--max-steps", type=positive_int, help="stop each point's run after N optimizer steps")
    p.add_argument("--out", required=True, help="sweep directory (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing sweep directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backends.inputs import RunInputs
    from ..recipe.schema import load_recipe
    from ..workflows.sweep import grid, parse_axis, plot, with_values

    check_output(args.out, args.force)
    recipe = load_recipe(args.recipe)
    axes = [parse_axis(a) for a in args.axes]
    points = [(assignment, with_values(recipe, assignment)) for assignment in grid(axes)]  # all checked first
    weights = (
        Path(args.weights) if args.weights else (recipe.path(recipe.model.weights) if recipe.model.weights else None)
    )
    if not args.render:
        if weights is None:
            raise TunebridgeError(f"{args.recipe}: no model weights (set model.weights or pass --weights)")
        for _, point in points:
            get_backend(args.backend).plan(point, weights, Path(args.out))
    rows = []
    with atomic_dir(args.out, force=args.force) as tmp:
        for i, (assignment, point) in enumerate(points):
            label = ", ".join(f"{k}={v}" for k, v in assignment.items())
            print(f"sweep point {i + 1}/{len(points)}: {label}")
            report = point.param_report(args.backend if not args.render else "torch")
            row = {
                "point": label,
                **{k: v for k, v in assignment.items()},
                "trainable_params": report.trainable_params,
                "low_param_ratio": report.low_param_ratio,
            }
            where = tmp / f"point-{i:02d}"
            if args.render:
                for backend in ("mindformers", "mindspeed-llm"):
                    get_backend(backend).render(point, where / backend)
            else:
                assert weights is not None, "checked before the points run"
                overrides = {"max_steps": args.max_steps} if args.max_steps else {}
                inputs = RunInputs.make(point, [args.backend], weights, where / "inputs", overrides, progress=False)
                plan = get_backend(args.backend).plan(point, weights, where / args.backend)
                result = get_backend(args.backend).run(plan, inputs, progress=False)
                losses = [s.loss for s in result.steps]
                row.update(
                    first_loss=losses[0],
                    final_loss=losses[-1],
                    mean_loss=sum(losses) / len(losses),
                    instantiated=result.trainable_params,
                    losses=losses,
                )
            rows.append(row)
        (tmp / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        if not args.render:
            plot(rows, tmp / "sweep.png")
        (tmp / "sweep.md").write_text(_markdown(recipe.name, axes, rows), encoding="utf-8")
    _print(rows)
    print(f"wrote {Path(args.out) / 'sweep.md'}")
    return 0


COLUMNS = ("trainable_params", "low_param_ratio", "first_loss", "final_loss", "mean_loss")


def _title(column: str) -> str:
    return header(column) if column in UNITS else column.replace("_", " ")


def _cell(v) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:.6g}" if isinstance(v, float) else str(v)


def _markdown(name: str, axes, rows: list[dict]) -> str:
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    lines = [
        f"# sweep of {name}",
        "",
        "axes: " + "; ".join(f"{a.field} in {list(a.values)}" for a in axes),
        "",
        "| point | " + " | ".join(map(_title, cols)) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    lines += ["| " + r["point"] + " | " + " | ".join(_cell(r.get(c, "-")) for c in cols) + " |" for r in rows]
    if any("losses" in r for r in rows):
        lines += ["", "![loss per step](sweep.png)"]
    return "\n".join(lines) + "\n"


def _print(rows: list[dict]) -> None:
    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    t = table("sweep", {"point": "left", **{_title(c): "right" for c in cols}})
    for r in rows:
        t.add_row(r["point"], *(_cell(r.get(c, "-")) for c in cols))
    console().print(t)
