"""Questions per second of the batched HF scorer against a one-question-at-a-time loop (not a test).

    .venv/bin/python benchmarks/eval.py [--questions 64] [--batch-size 16] [--shots 2] [--threads 1]

The same randomly initialised tiny-llama (built from its catalogue config) answers the same C-Eval-style
questions (the test fixtures, repeated, numbered) under both protocols: greedy generation of 4 tokens and the
log-likelihood of the four option letters. Each protocol is timed batched and one at a time in this run,
after a warm-up, and the predictions of both ways must agree.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.data.encode import load_tokenizer
from tunebridge.evaluation import multiple_choice as mc
from tunebridge.evaluation.hf_scorer import HFScorer
from tunebridge.models import get_model

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ceval"


def predict(scorer: HFScorer, items: list[mc.Item], protocol: str, batch_size: int) -> list[str | None]:
    out: list[str | None] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        if protocol == "generate":
            out += [mc.letter_of(t) for t in scorer.generate([i.prompt for i in chunk], 4)]
        else:
            pairs = [p for i in chunk for p in mc.option_pairs(i)]
            flat = scorer.loglikelihood([c for c, _ in pairs], [x for _, x in pairs])
            out += [mc.best_letter(flat[k:k + 4]) for k in range(0, len(flat), 4)]
    return out


def timed(scorer: HFScorer, items: list[mc.Item], protocol: str, batch_size: int) -> tuple[float, list]:
    predict(scorer, items[:batch_size], protocol, batch_size)  # warm-up
    t = time.perf_counter()
    predictions = predict(scorer, items, protocol, batch_size)
    return len(items) / (time.perf_counter() - t), predictions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shots", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = get_model("tiny-llama")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config())).eval()
    scorer = HFScorer(model, load_tokenizer(None), torch.device("cpu"))
    base = mc.load_items("ceval", FIXTURES, shots=args.shots)
    # repeated fixtures, each made unique by a number in front (identical prompts would share work)
    items = [mc.Item(i.question, f"{k}. {i.prompt}", i.letter_prefix)
             for k, i in enumerate((base * (args.questions // len(base) + 1))[:args.questions])]
    items.sort(key=lambda i: len(i.prompt))  # as the runner batches: similar lengths together
    print(f"tiny-llama ({spec.total_params():,} parameters), {len(items)} C-Eval-style questions, "
          f"{args.shots}-shot, CPU, {args.threads} thread(s)")
    print(f"{'protocol':<10} {'batched q/s':>12} {'one-at-a-time q/s':>18} {'ratio':>7}")
    for protocol in ("generate", "loglik"):
        fast, p_batched = timed(scorer, items, protocol, args.batch_size)
        slow, p_single = timed(scorer, items, protocol, 1)
        agree = sum(a == b for a, b in zip(p_batched, p_single))
        print(f"{protocol:<10} {fast:>12.1f} {slow:>18.1f} {fast / slow:>6.2f}x   "
              f"(batch {args.batch_size}; predictions agree on {agree}/{len(items)})")
        if fast <= slow:
            raise SystemExit(f"{protocol}: batched is not faster than one at a time")


if __name__ == "__main__":
    main()
