"""Questions per second of the batched HF scorer against one question at a time (not a test).

    .venv/bin/python benchmarks/eval.py [--questions 64] [--batch-size 16] [--shots 0,2] [--threads 1]

The same randomly initialised tiny-llama (built from its catalogue config) answers the same C-Eval questions
(the test fixtures' 5 subjects, repeated to ``--questions``, each made unique by a number in its question, so
a subject's shot text stays shared as in a real benchmark) under both protocols: greedy generation of 4 tokens
and the log-likelihood of the four option letters. Questions are ordered as ``eval run`` orders them (by
subject, then length; a batch holds one subject). Each way is timed after a warm-up, the batched way and the
one-at-a-time way alternating, best of ``--repeat``, in wall time and in this process's CPU time; the
predictions of both ways must be identical. The load average is printed before and after (the machine may be
shared: the CPU-time ratio is the steadier figure then). Per shot count and protocol it also prints, in CPU time
against one-at-a-time, what batching cannot go beyond with this model's forward: each batch's questions cut or
cycled to their mean own length (no padding, no mask, no scoring), run after the text they share (its keys and
values made beforehand, not timed) — log-likelihood: a bare forward of the own tokens, and the same forward with
every layer's attention over the shared text too (work one-at-a-time does as well, so no batching removes it);
generation: that prefill and its decoding steps through the cache.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.model.catalogue import get_model
from tunebridge.evaluation.tokens import load_eval_tokenizer
from tunebridge.evaluation import multiple_choice as mc
from tunebridge.evaluation import shared_prefix as shared_prefix_attention
from tunebridge.evaluation.greedy import shared_prefix
from tunebridge.evaluation.hf_scorer import HFScorer

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ceval"
NEW_TOKENS = 4


def questions(n: int, shots: int) -> list[mc.Item]:
    bench = mc.benchmark("ceval")
    base = mc.load_items("ceval", FIXTURES, shots=shots)
    items = []
    for k, item in enumerate((base * (n // len(base) + 1))[:n]):
        q = item.question
        head = item.prompt[:-len(bench.tail(q))]
        numbered = dataclasses.replace(q, question=f"{k}. {q.question}")
        items.append(mc.Item(numbered, head + bench.tail(numbered), item.letter_prefix))
    return sorted(items, key=lambda i: (i.question.subject, len(i.prompt)))


def batches(items: list[mc.Item], batch_size: int) -> list[list[mc.Item]]:
    """As ``eval run`` batches: at most ``batch_size`` questions, one subject per batch."""
    out: list[list[mc.Item]] = []
    for item in items:
        if not out or len(out[-1]) == batch_size or out[-1][0].question.subject != item.question.subject:
            out.append([])
        out[-1].append(item)
    return out


def predict(scorer: HFScorer, items: list[mc.Item], protocol: str, batch_size: int) -> list[str | None]:
    out: list[str | None] = []
    for chunk in batches(items, batch_size):
        if protocol == "generate":
            out += [mc.letter_of(t) for t in scorer.generate([i.prompt for i in chunk], NEW_TOKENS)]
        else:
            pairs = [p for i in chunk for p in mc.option_pairs(i)]
            flat = scorer.loglikelihood([c for c, _ in pairs], [x for _, x in pairs])
            out += [mc.best_letter(flat[k:k + 4]) for k in range(0, len(flat), 4)]
    return out


def floors(scorer: HFScorer, items: list[mc.Item], batch_size: int, repeat: int) -> dict[str, float]:
    """Questions per CPU second of the least each protocol's batches must compute (see the module's docstring)."""
    runs = []
    for chunk in batches(items, batch_size):
        rows = [scorer.tokenizer.encode(i.prompt) for i in chunk]
        shared = shared_prefix(rows)
        own = [r[shared:] for r in rows]
        mean = sum(map(len, own)) // len(own)
        ids = torch.tensor([(r * (mean // len(r) + 1))[:mean] for r in own])
        runs.append((ids, scorer._prefix(rows, shared), shared))

    def forward(ids, prefix, first: int, cache=None, use_cache: bool = False):
        positions = (first + torch.arange(ids.shape[1]))[None].expand(ids.shape[0], -1)
        extra = {shared_prefix_attention.KEYWORD: prefix} if prefix is not None else {}
        return scorer.model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=use_cache,
                            logits_to_keep=1, **extra)

    def bare():
        for ids, _, _ in runs:
            scorer.model(input_ids=ids, logits_to_keep=1)

    def with_shared_text():
        for ids, prefix, shared in runs:
            forward(ids, prefix, shared)

    def generation():
        for ids, prefix, shared in runs:
            out = forward(ids, prefix, shared, use_cache=True)
            for step in range(NEW_TOKENS - 1):
                out = forward(out.logits[:, -1].argmax(-1)[:, None], prefix, shared + ids.shape[1] + step,
                              out.past_key_values, use_cache=True)

    rates = {}
    with torch.no_grad():
        for name, work in (("log-likelihood, own tokens only", bare),
                           ("log-likelihood, own tokens + attention to the shared text", with_shared_text),
                           (f"generation, that prefill + {NEW_TOKENS - 1} decoding steps", generation)):
            work()  # warm-up
            best = float("inf")
            for _ in range(repeat):
                cpu = time.process_time()
                work()
                best = min(best, time.process_time() - cpu)
            rates[name] = len(items) / best
    return rates


def timed(scorer: HFScorer, items: list[mc.Item], protocol: str, batch_size: int) -> tuple[float, float, list]:
    """Questions per second of wall time and of this process's CPU time (steadier on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    predictions = predict(scorer, items, protocol, batch_size)
    return len(items) / (time.perf_counter() - wall), len(items) / (time.process_time() - cpu), predictions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--shots", default="0,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = get_model("tiny-llama")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config())).eval()
    scorer = HFScorer(model, load_eval_tokenizer(None), torch.device("cpu"))
    print(f"tiny-llama ({spec.total_params():,} parameters), {args.questions} C-Eval questions, CPU, "
          f"{args.threads} thread(s), batch {args.batch_size}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'shots':>5} {'protocol':<10} {'batched q/s':>12} {'one-at-a-time q/s':>18} {'ratio':>7} "
          f"{'ratio (CPU time)':>17}  predictions")
    failed = []
    for shots in (int(s) for s in args.shots.split(",")):
        items = questions(args.questions, shots)
        one_at_a_time = {}
        for protocol in ("generate", "loglik"):
            predict(scorer, items[:args.batch_size], protocol, args.batch_size)  # warm-up
            fast = slow = fast_cpu = slow_cpu = 0.0
            for _ in range(args.repeat):
                rate, cpu_rate, p_batched = timed(scorer, items, protocol, args.batch_size)
                fast, fast_cpu = max(fast, rate), max(fast_cpu, cpu_rate)
                rate, cpu_rate, p_single = timed(scorer, items, protocol, 1)
                slow, slow_cpu = max(slow, rate), max(slow_cpu, cpu_rate)
            one_at_a_time[protocol] = slow_cpu
            same = p_batched == p_single
            print(f"{shots:>5} {protocol:<10} {fast:>12.1f} {slow:>18.1f} {fast / slow:>6.2f}x "
                  f"{fast_cpu / slow_cpu:>16.2f}x  "
                  f"{'identical' if same else 'DIFFER'} ({sum(a == b for a, b in zip(p_batched, p_single))}"
                  f"/{len(items)})")
            if not same:
                failed.append(f"{shots}-shot {protocol}: batched and one-at-a-time predictions differ")
        for name, rate in floors(scorer, items, args.batch_size, args.repeat).items():
            base = one_at_a_time["generate" if name.startswith("generation") else "loglik"]
            print(f"{'':>5} floor of batching, {name}: {rate:.1f} q per CPU second = {rate / base:.2f}x one-at-a-time")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if failed:
        raise SystemExit("; ".join(failed))


if __name__ == "__main__":
    main()
