"""Training step time (not a test).

    .venv/bin/python benchmarks/train.py [--steps 30]

1. The torch backend against a bare transformers + PEFT loop, on the same tiny model, adapter, batches and
   optimizer, in one process: the backend's overhead per step (target: <= 5 %).
2. The CPU step time of each backend (torch, MindFormers' own Trainer on MindSpore, megatron-core over gloo) on
   recipes/tiny-parity-lora.yaml, from the same inputs (``step_time_s``; MindFormers: its own per_step_time of
   steps 2..N, after its graph compilation).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunebridge.backends import get_backend  # noqa: E402
from tunebridge.backends.inputs import RunInputs  # noqa: E402
from tunebridge.backends.pytorch import build_model, collate, read_tokenized, token_losses, train  # noqa: E402
from tunebridge.recipe.schema import load_recipe  # noqa: E402
from tunebridge.train.optim import decay_groups, make_adamw  # noqa: E402
from tunebridge.train.order import micro_batches  # noqa: E402

RECIPE = ROOT / "recipes" / "tiny-parity-lora.yaml"


def bare_loop(inputs: RunInputs, cfg, steps: int) -> list[float]:
    """What a user would write with transformers + PEFT alone: same model, batches and update rule."""
    records = read_tokenized(inputs.data("jsonl"))
    model = build_model(inputs.hf_weights, cfg, torch.device("cpu"), str(inputs.adapter("peft")))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = make_adamw(decay_groups(params.items(), cfg.weight_decay), cfg)
    model.train()
    times = []
    for batch in inputs.batches[:steps]:
        t0 = time.perf_counter()
        micro = micro_batches(batch, cfg.micro_batch_size)
        tokens = sum(sum(1 for x in records[i]["labels"][1:] if x != -100) for i in batch)
        for mb in micro:
            ids, labels = collate([records[i] for i in mb], cfg.pad_id, torch.device("cpu"))
            loss_sum, count = token_losses(model(input_ids=ids).logits, labels)
            (loss_sum / tokens if cfg.loss_average == "token" else loss_sum / count / len(micro)).backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--skip-backends", action="store_true", help="only the torch overhead measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(RECIPE)
    weights = recipe.path(recipe.model.weights)
    with tempfile.TemporaryDirectory(prefix="tunebridge-bench-") as scratch:
        root = Path(scratch)
        names = ["torch"] if args.skip_backends else ["torch", "mindformers", "mindspeed-llm"]
        inputs = RunInputs.make(recipe, names, weights, root / "inputs", {"max_steps": args.steps}, progress=False)
        cfg = dataclasses.replace(inputs.config(recipe, "torch"))
        bare, backend = [], []
        for rep in range(args.reps):  # interleaved, each first in turn, so machine load hits both alike
            order = ("bare", "backend") if rep % 2 == 0 else ("backend", "bare")
            for which in order:
                if which == "bare":
                    bare.append(statistics.mean(bare_loop(inputs, cfg, args.steps)))
                else:
                    result = train(weights, inputs.data("jsonl"), root / f"torch-{rep}", cfg,
                                   init_adapter=str(inputs.adapter("peft")), progress=False)
                    backend.append(result.step_time_s)
        b, t = statistics.median(bare), statistics.median(backend)
        print(f"torch backend vs bare transformers + PEFT loop ({args.steps} steps x {args.reps}, tiny-llama, LoRA o+down, "
              f"global batch {cfg.global_batch_size} = {cfg.global_batch_size // cfg.micro_batch_size} x micro "
              f"{cfg.micro_batch_size}):")
        print(f"  bare loop   {1000 * b:8.2f} ms/step (median of run means)")
        print(f"  backend     {1000 * t:8.2f} ms/step (median of run means)")
        print(f"  overhead    {100 * (t - b) / b:+8.2f} %")
        if args.skip_backends:
            return
        print("CPU step time per backend, same inputs (torch, megatron-core: mean over steps; MindFormers' Trainer: "
              "its per_step_time, steps 2..N):")
        for name in names:
            plan = get_backend(name).plan(recipe, weights, root / f"bench-{name}")
            started = time.perf_counter()
            r = get_backend(name).run(plan, inputs, progress=False)
            wall = time.perf_counter() - started
            print(f"  {name:14s} {1000 * (r.step_time_s or 0):8.1f} ms/step   wall {wall:6.1f} s "
                  f"(incl. start-up)   final loss {r.steps[-1].loss:.4f}   {r.executor}")


if __name__ == "__main__":
    main()
