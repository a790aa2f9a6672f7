"""``tunebridge render``: launch artifacts for MindFormers and MindSpeed-LLM."""
from __future__ import annotations

from pathlib import Path

from ..recipe import load_recipe
from ..render import RENDER_BACKENDS, render
from ..render import mindspeed_llm as msl


def register(sub) -> None:
    p = sub.add_parser("render", help="write a recipe's launch artifacts for MindFormers / MindSpeed-LLM")
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument("--backend", choices=(*RENDER_BACKENDS, "all"), default="all")
    p.add_argument("--out", required=True, help="output directory (one subdirectory per backend with 'all')")
    p.add_argument("--num-samples", type=int, help="training samples, to compute --train-iters from the epochs")
    p.add_argument("--mindspeed-llm-version", choices=msl.VERSIONS, default=msl.DEFAULT_VERSION,
                   help="MindSpeed-LLM version whose flags and entry points to render (default: %(default)s)")
    p.add_argument("--device", choices=("ascend", "cpu"), default="ascend",
                   help="MindFormers profile: ascend (NPU runs, the default) or cpu (MindSpore CPU, with tunebridge's "
                        "CPU op adapters)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    recipe = load_recipe(args.recipe)
    backends = RENDER_BACKENDS if args.backend == "all" else (args.backend,)
    for b in backends:
        out = Path(args.out) / b if args.backend == "all" else Path(args.out)
        for path in render(recipe, b, out, force=args.force, num_samples=args.num_samples,
                           version=args.mindspeed_llm_version, device=args.device):
            print(f"{b}: {path}")
    return 0
