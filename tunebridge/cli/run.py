"""``tunebridge run``: execute a recipe here, on one backend or all three from the same inputs."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..backends import BACKEND_NAMES, get_backend
from ..errors import TunebridgeError
from ..recipe import load_recipe
from ..render.mindspeed_llm import DEFAULT_VERSION as MSL_DEFAULT
from ..render.mindspeed_llm import VERSIONS as MSL_VERSIONS


def register(sub) -> None:
    p = sub.add_parser("run", help="fine-tune a recipe here: torch (transformers + PEFT), mindformers (MindSpore "
                                   "CPU), mindspeed-llm (megatron-core CPU), or all from the same inputs")
    p.add_argument("recipe")
    p.add_argument("--backend", choices=(*BACKEND_NAMES, "all"), default="torch")
    p.add_argument("--out", required=True, help="run directory: inputs/ (data, adapters, weights), one directory "
                                                "per backend (metrics, logs, checkpoints, result.json)")
    p.add_argument("--weights", help="HF model directory (default: the recipe's model.weights)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--save-every", type=int, default=0, help="torch: checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="torch: continue from the newest checkpoint; mindspeed-llm "
                                                          "on an Ascend host: from the first unfinished stage")
    p.add_argument("--mindformers-home", type=Path, help="a MindFormers checkout: launched when an NPU is here")
    p.add_argument("--mindspeed-llm-home", type=Path, help="a MindSpeed-LLM checkout: on an Ascend host (npu-smi), "
                                                           "its own programs run the rendered stages")
    p.add_argument("--mindspeed-llm-version", choices=MSL_VERSIONS, default=MSL_DEFAULT,
                   help="the checkout's MindSpeed-LLM version, whose scripts to render (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..backends.inputs import RunInputs
    recipe = load_recipe(args.recipe)
    weights = Path(args.weights) if args.weights else (recipe.path(recipe.model.weights) if recipe.model.weights
                                                       else None)
    if weights is None:
        raise TunebridgeError(f"{args.recipe}: no model weights to fine-tune (set model.weights or pass --weights)")
    names = list(BACKEND_NAMES) if args.backend == "all" else [args.backend]
    out = Path(args.out)
    homes = {"mindformers": args.mindformers_home, "mindspeed-llm": args.mindspeed_llm_home}
    plans = [get_backend(n).plan(recipe, weights, out / n, homes.get(n)) for n in names]  # every check first
    launching = [p for p in plans if p.launch and p.backend == "mindspeed-llm"]  # MindFormers launches in its run
    if launching and len(plans) > 1:
        raise TunebridgeError("MindSpeed-LLM's stages launch on their own: use --backend mindspeed-llm")
    if args.resume and names != ["torch"] and not launching:
        raise TunebridgeError("--resume is for the torch backend, or for a launch of MindSpeed-LLM's stages")
    for plan in plans:
        print(f"run {plan.describe()}")
    if launching:
        return _launch(launching[0], args)
    overrides = {"save_every": args.save_every}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    inputs_dir = out / "inputs"
    rank = _distributed(names)
    if rank <= 0:
        if args.resume and (out / "torch" / "result.json").exists() and inputs_dir.exists():
            inputs = RunInputs.load(inputs_dir, weights, overrides)
        else:
            inputs = RunInputs.make(recipe, names, weights, inputs_dir, overrides)
    if rank >= 0:
        import torch
        torch.distributed.barrier()  # rank 0 has made the inputs
    if rank > 0:
        inputs = RunInputs.load(inputs_dir, weights, overrides)
    results = {}
    for plan in plans:
        if plan.backend == "torch" and args.resume:
            from ..backends.pytorch import train
            results["torch"] = train(plan.weights, inputs.data("jsonl"), plan.out, inputs.config(recipe, "torch"),
                                     resume=True, init_adapter=str(inputs.adapter("peft")) if inputs.has_adapter
                                     else None)
        else:
            results[plan.backend] = get_backend(plan.backend).run(plan, inputs)
    if rank > 0:
        return 0  # rank 0 reports
    _print(recipe, results)
    problems = []
    for name, result in results.items():
        expected = recipe.param_report(name).trainable_params
        print(f"{name}: trainable parameters {result.trainable_params:,} (tunebridge params: {expected:,}); "
              f"wrote {out / name / 'result.json'}")
        if result.trainable_params != expected:
            problems.append(f"{name} instantiated {result.trainable_params:,} trainable parameters, "
                            f"accounted {expected:,}")
    if problems:
        raise TunebridgeError("; ".join(problems))
    return 0


def _launch(plan, args) -> int:
    """MindSpeed-LLM's stages on this Ascend host (:mod:`tunebridge.backends.mindspeed_llm_launch`)."""
    from ..backends.mindspeed_llm_launch import launch
    from ..data.readers import read_records
    from ..render import train_iters
    recipe = plan.recipe
    source = recipe.data.train
    steps = args.max_steps or train_iters(recipe, sum(1 for _ in read_records(recipe.path(source.path), source.format,
                                                                               source.map_keys)))
    result = launch(plan, args.mindspeed_llm_version, steps, resume=args.resume)
    print(f"{plan.backend}: {len(result.steps)} logged steps, last loss "
          f"{result.steps[-1].loss if result.steps else '-'}; wrote {Path(plan.out) / 'result.json'}")
    for task, scores in result.evaluation.items():
        print(f"{plan.backend}: {task} accuracy {scores['accuracy']:.4f} ({scores['correct']}/{scores['questions']}, "
              f"as MindSpeed-LLM reports it)")
    return 0


def _distributed(names: list[str]) -> int:
    """Under torchrun (several devices, torch backend): this process's rank, after joining the group; else -1.

    Rank 0 makes the shared inputs, the others wait at a barrier and read them."""
    import os
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return -1
    if names != ["torch"]:
        raise TunebridgeError("under torchrun only the torch backend runs (the others launch their own ranks)")
    import torch

    from ..backends.pytorch import detect_device
    device = detect_device()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("hccl" if device.type == "npu" else
                                             "nccl" if device.type == "cuda" else "gloo")
    return torch.distributed.get_rank()


def _print(recipe, results: dict) -> None:
    names = list(results)
    t = Table(title=f"{recipe.name}: loss per step")
    t.add_column("step", justify="right")
    for name in names:
        t.add_column(f"{name} loss", justify="right")
        t.add_column("lr", justify="right")
        t.add_column("grad norm", justify="right")
    for i in range(max(len(r.steps) for r in results.values())):
        row = [str(i + 1)]
        for name in names:
            steps = results[name].steps
            s = steps[i] if i < len(steps) else None
            row += [f"{s.loss:.5f}", f"{s.lr:.3g}", f"{s.grad_norm:.3g}" if s.grad_norm is not None else "-"] \
                if s else ["-", "-", "-"]
        t.add_row(*row)
    Console(width=160).print(t)
