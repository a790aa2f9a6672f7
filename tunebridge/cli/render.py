"""``tunebridge render``: launch artifacts for MindFormers and MindSpeed-LLM."""

from __future__ import annotations

import sys
from pathlib import Path

from ..backends.mindspeed_llm import render as msl
from ..backends.stacks import RENDERABLE, stacks_for
from ..io.atomic import check_output
from .args import positive_int


def register(sub) -> None:
    p = sub.add_parser("render", help="write a recipe's launch artifacts for MindFormers / MindSpeed-LLM")
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument(
        "--backend", choices=(*RENDERABLE, "all"), default="all", help="one stack's artifacts, or both (default)"
    )
    p.add_argument("--out", required=True, help="output directory (one subdirectory per backend with 'all')")
    p.add_argument(
        "--num-samples", type=positive_int, help="training samples, to compute --train-iters from the epochs"
    )
    p.add_argument(
        "--mindspeed-llm-version",
        choices=msl.VERSIONS,
        default=msl.DEFAULT_VERSION,
        help="MindSpeed-LLM version whose flags and entry points to render (default: %(default)s)",
    )
    p.add_argument(
        "--device",
        choices=("ascend", "cpu"),
        default="ascend",
        help="MindFormers profile: ascend (NPU runs, the default) or cpu (MindSpore CPU, with tunebridge's "
        "CPU op adapters)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backends.render import render
    from ..recipe.schema import load_recipe

    recipe = load_recipe(args.recipe)
    backends, notes = (
        stacks_for(recipe.spec, RENDERABLE, render=True) if args.backend == "all" else ([args.backend], [])
    )
    for note in notes:
        print(f"note: not rendered for {note}", file=sys.stderr)
    outs = {b: Path(args.out) / b if args.backend == "all" else Path(args.out) for b in backends}
    for out in outs.values():
        check_output(out, args.force)
    for b, out in outs.items():
        for path in render(
            recipe,
            b,
            out,
            force=args.force,
            num_samples=args.num_samples,
            version=args.mindspeed_llm_version,
            device=args.device,
        ):
            print(f"{b}: {path}")
    if "mindformers" in backends and (recipe.data is None or recipe.data.train is None):
        print(
            f"note: {args.recipe} has no data.train: the MindFormers prepare_{recipe.name}.sh makes the weights "
            f"but cannot make the MindRecord until the recipe names its training data (data.train.path)",
            file=sys.stderr,
        )
    return 0
