"""``tunebridge run``: execute a recipe here. The torch backend for now (transformers + PEFT)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import TunebridgeError
from ..recipe import load_recipe


def register(sub) -> None:
    p = sub.add_parser("run", help="fine-tune a recipe here (torch backend: transformers + PEFT, CPU/CUDA/NPU)")
    p.add_argument("recipe")
    p.add_argument("--backend", choices=("torch",), default="torch")
    p.add_argument("--out", required=True, help="run directory: data/, checkpoints/, metrics.jsonl, result.json")
    p.add_argument("--weights", help="HF model directory (default: the recipe's model.weights)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backends.pytorch import TorchTrainConfig, train
    from ..data.prepare import prepare
    recipe = load_recipe(args.recipe)
    weights = Path(args.weights) if args.weights else (recipe.path(recipe.model.weights) if recipe.model.weights
                                                       else None)
    if weights is None or not (weights / "config.json").is_file():
        raise TunebridgeError(f"{args.recipe}: no model weights to fine-tune (set model.weights or pass --weights)")
    if recipe.data is None or recipe.data.train is None:
        raise TunebridgeError(f"{args.recipe}: no data.train section: nothing to train on")
    out = Path(args.out)
    data_dir = out / "data"
    if not (args.resume and (data_dir / "torch" / "train.jsonl").exists()):
        prepare(recipe, ["torch"], data_dir, force=True)
    overrides = {"save_every": args.save_every}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    cfg = TorchTrainConfig.from_recipe(recipe, **overrides)
    print(f"torch backend: {weights} on {data_dir / 'torch' / 'train.jsonl'} ({cfg.dtype}, "
          f"global batch {cfg.global_batch_size} = micro {cfg.micro_batch_size} x accumulation)")
    result = train(weights, data_dir / "torch" / "train.jsonl", out, cfg, resume=args.resume)
    expected = recipe.param_report("torch").trainable_params
    t = Table(title=f"{recipe.name}: torch backend, {len(result.steps)} steps")
    for col in ("step", "loss", "lr", "grad norm", "tokens"):
        t.add_column(col, justify="right")
    for s in result.steps:
        t.add_row(str(s.step), f"{s.loss:.4f}", f"{s.lr:.3g}", f"{s.grad_norm:.3g}", str(s.tokens))
    Console(width=120).print(t)
    print(f"trainable parameters: {result.trainable_params:,} (tunebridge params: {expected:,})")
    print(f"wrote {out / 'result.json'}, {out / 'metrics.jsonl'}, {result.checkpoints[-1]}")
    if result.trainable_params != expected:
        raise TunebridgeError(f"instantiated {result.trainable_params:,} trainable parameters, accounted {expected:,}")
    return 0
