"""``tunebridge run``: execute a recipe here, on one backend or all three from the same inputs.

The run directory is a resumable work directory, not an atomic output: it is refused if it exists (unless
--force, which empties it first, or --resume), locked while the run writes it, and, when the run fails or is
interrupted, removed unless it holds a checkpoint to resume from (then it is kept and the message says so).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends import get_backend
from ..backends.mindspeed_llm.render import DEFAULT_VERSION as MSL_DEFAULT, VERSIONS as MSL_VERSIONS
from ..backends.stacks import STACK_NAMES, stacks_for
from ..errors import TunebridgeError
from ..io.atomic import check_output, output_lock
from .args import nonnegative_int, positive_int
from .tables import console, table

if TYPE_CHECKING:
    from rich.text import JustifyMethod


def register(sub) -> None:
    p = sub.add_parser(
        "run",
        help="fine-tune a recipe here: torch (transformers + PEFT), mindformers (MindSpore "
        "CPU), mindspeed-llm (megatron-core CPU), or all from the same inputs",
    )
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument(
        "--backend",
        choices=(*STACK_NAMES, "all"),
        default="torch",
        help="backend that trains (default torch), or all three from the same inputs",
    )
    p.add_argument(
        "--out",
        required=True,
        help="run directory: inputs/ (data, adapters, weights), one directory "
        "per backend (metrics, logs, checkpoints, result.json); refused "
        "if it exists, unless --force or --resume",
    )
    p.add_argument("--force", action="store_true", help="empty an existing run directory and start afresh")
    p.add_argument("--weights", help="HF model directory (default: the recipe's model.weights)")
    p.add_argument("--max-steps", type=positive_int, help="stop after N optimizer steps")
    p.add_argument("--save-every", type=nonnegative_int, default=0, help="torch: checkpoint every N steps")
    p.add_argument(
        "--resume",
        action="store_true",
        help="torch: continue the run in --out from its newest checkpoint (same --max-steps); "
        "mindspeed-llm on an Ascend host: from the first unfinished stage",
    )
    p.add_argument("--mindformers-home", type=Path, help="a MindFormers checkout: launched when an NPU is here")
    p.add_argument(
        "--mindspeed-llm-home",
        type=Path,
        help="a MindSpeed-LLM checkout: on an Ascend host (npu-smi), its own programs run the rendered stages",
    )
    p.add_argument(
        "--mindspeed-llm-version",
        choices=MSL_VERSIONS,
        default=MSL_DEFAULT,
        help="the checkout's MindSpeed-LLM version, whose scripts to render (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..recipe.schema import load_recipe

    recipe = load_recipe(args.recipe)
    weights = (
        Path(args.weights) if args.weights else (recipe.path(recipe.model.weights) if recipe.model.weights else None)
    )
    if weights is None:
        raise TunebridgeError(f"{args.recipe}: no model weights to fine-tune (set model.weights or pass --weights)")
    names, notes = stacks_for(recipe.spec) if args.backend == "all" else ([args.backend], [])
    for note in notes:
        print(f"note: not run on {note}", file=sys.stderr)
    if args.resume and args.force:
        raise TunebridgeError("--resume continues the run in --out, --force discards it: give one of them")
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
    if launching:  # the stage launcher refuses or resumes its own stages
        with output_lock(out):
            return _launch(launching[0], args)
    rank = _distributed(names)
    if rank > 0:  # rank 0 checks, locks and reports
        _train(args, recipe, plans, out, weights, rank)
        return 0
    if not args.resume:
        check_output(out, args.force)
    with output_lock(out):
        if args.resume and _finished(out / "torch", args.max_steps):
            return 0
        if args.resume:
            _check_resumable(out / "torch")
        elif out.exists():  # --force
            shutil.rmtree(out)
        try:
            results = _train(args, recipe, plans, out, weights, rank)
        except BaseException as e:
            kept = _keep_or_remove(out, resumed=args.resume)
            if isinstance(e, KeyboardInterrupt):
                raise KeyboardInterrupt(kept) from None
            if isinstance(e, (TunebridgeError, OSError)):
                raise TunebridgeError(f"{e}; {kept}") from None
            raise
    _print(recipe, results)
    problems = []
    for name, result in results.items():
        expected = recipe.param_report(name).trainable_params
        print(
            f"{name}: trainable parameters {result.trainable_params:,} (tunebridge params: {expected:,}); "
            f"wrote {out / name / 'result.json'}"
        )
        if result.trainable_params != expected:
            problems.append(
                f"{name} instantiated {result.trainable_params:,} trainable parameters, accounted {expected:,}"
            )
    if problems:
        raise TunebridgeError("; ".join(problems))
    return 0


def _finished(torch_out: Path, max_steps: int | None) -> bool:
    """True (with a message) when the run in ``torch_out`` is complete: --resume has nothing to do."""
    record = torch_out / "result.json"
    if not record.exists():
        return False
    steps = len(json.loads(record.read_text(encoding="utf-8")).get("steps", []))
    if max_steps is not None and max_steps != steps:
        raise TunebridgeError(
            f"{record}: the run finished after {steps} steps; --max-steps {max_steps} on resume "
            f"would restart its learning-rate schedule: start a new run (another --out)"
        )
    print(f"{torch_out}: the run finished ({steps} steps in result.json): nothing to resume")
    return True


def _check_resumable(torch_out: Path) -> None:
    from ..backends.pytorch import latest_checkpoint

    if not torch_out.is_dir():
        raise TunebridgeError(f"{torch_out}: no run to resume (start it without --resume)")
    if latest_checkpoint(torch_out) is None:
        raise TunebridgeError(
            f"{torch_out}: no checkpoint to resume from (checkpoints are written with "
            f"--save-every N); start afresh with --force"
        )


def _keep_or_remove(out: Path, resumed: bool) -> str:
    """After a failed or interrupted run: keep ``out`` if it can be resumed, else remove it. What was done, in words."""
    from ..backends.pytorch import latest_checkpoint

    ckpt = latest_checkpoint(out / "torch") if (out / "torch").is_dir() else None
    if ckpt is not None:
        return (
            f"{out} is kept: its newest checkpoint is {ckpt.name}; continue with --resume "
            f"(steps after it are run again)"
        )
    if resumed:
        return f"{out} is kept as it was"
    shutil.rmtree(out, ignore_errors=True)
    return f"{out} was removed (no checkpoint to resume from): nothing was left half-written"


def _train(args, recipe, plans, out: Path, weights: Path, rank: int) -> dict:
    from ..backends.inputs import RunInputs

    overrides = {"save_every": args.save_every}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    inputs_dir = out / "inputs"
    names = [plan.backend for plan in plans]
    if rank <= 0:
        if args.resume:
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

            results["torch"] = train(
                plan.weights,
                inputs.data("jsonl"),
                plan.out,
                inputs.config(recipe, "torch"),
                resume=True,
                init_adapter=str(inputs.adapter("peft")) if inputs.has_adapter else None,
            )
        else:
            results[plan.backend] = get_backend(plan.backend).run(plan, inputs)
    return results


def _launch(plan, args) -> int:
    """MindSpeed-LLM's stages on this Ascend host (:mod:`tunebridge.backends.mindspeed_llm.launch`)."""
    from ..backends.mindspeed_llm.launch import launch
    from ..backends.render import train_iters
    from ..data.readers import read_records

    recipe = plan.recipe
    source = recipe.data.train
    steps = args.max_steps or train_iters(
        recipe, sum(1 for _ in read_records(recipe.path(source.path), source.format, source.map_keys))
    )
    assert steps is not None, "train_iters is known once the sample count is"
    result = launch(plan, args.mindspeed_llm_version, steps, resume=args.resume)
    print(
        f"{plan.backend}: {len(result.steps)} logged steps, last loss "
        f"{result.steps[-1].loss if result.steps else '-'}; wrote {Path(plan.out) / 'result.json'}"
    )
    for task, scores in result.evaluation.items():
        print(
            f"{plan.backend}: {task} accuracy {scores['accuracy']:.4f} ({scores['correct']}/{scores['questions']}, "
            f"as MindSpeed-LLM reports it)"
        )
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
        torch.distributed.init_process_group(
            "hccl" if device.type == "npu" else "nccl" if device.type == "cuda" else "gloo"
        )
    return torch.distributed.get_rank()


def _print(recipe, results: dict) -> None:
    names = list(results)
    by_step = {name: {s.step: s for s in r.steps} for name, r in results.items()}
    columns: dict[str, JustifyMethod] = {"step": "right"}
    for name in names:
        columns.update({f"{name} loss": "right", f"{name} lr": "right", f"{name} grad norm": "right"})
    t = table(f"{recipe.name}: loss per step", columns)
    for step in sorted(set().union(*by_step.values())):
        row = [str(step)]
        for name in names:
            s = by_step[name].get(step)
            row += (
                [f"{s.loss:.5f}", f"{s.lr:.3g}", f"{s.grad_norm:.3g}" if s.grad_norm is not None else "-"]
                if s
                else ["-", "-", "-"]
            )
        t.add_row(*row)
    console().print(t)
