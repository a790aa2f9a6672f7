"""Evaluate a model through any :class:`~tunebridge.evaluation.scorer.Scorer` on one task.

Tasks: ``squad`` (the JSONL that ``tunebridge data squad`` writes: prompt + answers), ``math`` (JSONL of
problem/solution; the problem is the prompt, as is), ``ceval``, ``mmlu``, ``cmmlu`` (see
:mod:`tunebridge.evaluation.multiple_choice`). Writes ``predictions.jsonl`` (one line per question, in input
order) and ``metrics.json`` (naming the scorer and the protocol) into ``out``, atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from ..atomic import atomic_dir
from ..errors import TunebridgeError
from . import mindformers_emf1, multiple_choice, squad
from .math import accuracy
from ..data.readers import jsonl_objects
from .scorer import Scorer

TASKS = ("squad", "math", "ceval", "mmlu", "cmmlu")
MAX_NEW_TOKENS = {"squad": 64, "math": 64, "ceval": 4, "mmlu": 4, "cmmlu": 4}


def read_jsonl(path: str | Path, fields: Sequence[str]) -> list[dict]:
    """Objects of a JSONL file, each required to hold ``fields``; errors name file:line."""
    path = Path(path)
    if not path.is_file():
        raise TunebridgeError(f"{path}: no such file")
    rows = []
    for where, row in jsonl_objects(path):
        missing = [k for k in fields if k not in row]
        if missing:
            raise TunebridgeError(f"{where}: missing field {missing[0]!r} (it has: {', '.join(row)})")
        rows.append(row)
    if not rows:
        raise TunebridgeError(f"{path}: no records")
    return rows


def _in_batches(fn: Callable[[list], list], items: Sequence, batch_size: int, bar: tqdm, weight: int = 1) -> list:
    """fn over ``items`` in batches of ``batch_size``, in order; the bar advances by questions."""
    out: list = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start:start + batch_size])
        out.extend(fn(chunk))
        bar.update(len(chunk) // weight)
    return out


def _by_length(fn: Callable[[list], list], items: Sequence, length: Callable, batch_size: int, bar: tqdm,
               weight: int = 1) -> list:
    """``_in_batches`` over items sorted by length (batches of similar length pad less), in input order."""
    order = sorted(range(len(items)), key=lambda i: length(items[i]))
    outputs = _in_batches(lambda chunk: fn([items[i] for i in chunk]), order, batch_size, bar, weight)
    result: list = [None] * len(items)
    for i, value in zip(order, outputs):
        result[i] = value
    return result


def _call_size(scorer: Scorer, batch_size: int) -> int:
    """Items per scorer call: ``batch_size``, or all of them for a scorer that starts processes per call
    (megatron-core ranks, MindSpore) and batches by itself."""
    return 1 << 62 if getattr(scorer, "whole_task_per_call", False) else batch_size


def _generate(scorer: Scorer, prompts: Sequence[str], max_new_tokens: int, batch_size: int, bar: tqdm,
              stop: Sequence[str] = ()) -> list[str]:
    return _by_length(lambda chunk: scorer.generate(chunk, max_new_tokens, stop), prompts, len, batch_size, bar)


def _multiple_choice(scorer: Scorer, task: str, data: str | Path, protocol: str, batch_size: int,
                     max_new_tokens: int, limit: int | None, shots: int, progress: bool) -> tuple[list[dict], dict]:
    items = multiple_choice.load_items(task, data, shots=shots, limit=limit)
    questions = [item.question for item in items]
    with tqdm(total=len(items), desc=f"{task} ({protocol})", unit="q", disable=not progress) as bar:
        if protocol == "generate":
            outputs = _generate(scorer, [item.prompt for item in items], max_new_tokens, batch_size, bar)
            letters = [multiple_choice.letter_of(o) for o in outputs]
            details = [{"output": o} for o in outputs]
        else:
            pairs = [pair for item in items for pair in multiple_choice.option_pairs(item)]
            n = len(multiple_choice.LETTERS)
            flat = _by_length(lambda chunk: scorer.loglikelihood([c for c, _ in chunk], [x for _, x in chunk]),
                              pairs, lambda pair: (len(pair[0]), pair[0]), batch_size * n, bar, weight=n)
            per_question = [flat[i:i + n] for i in range(0, len(flat), n)]
            letters = [multiple_choice.best_letter(lp) for lp in per_question]
            details = [{"logprobs": dict(zip(multiple_choice.LETTERS, lp))} for lp in per_question]
    metrics = multiple_choice.averages(task, questions, letters, protocol)
    metrics["shots"] = shots
    records = [{"subject": q.subject, "id": q.id, "source": q.source, "answer": q.answer, **d, "prediction": p,
                "correct": p == q.answer} for q, p, d in zip(questions, letters, details)]
    return records, metrics


def _free_text(scorer: Scorer, task: str, data: str | Path, batch_size: int, max_new_tokens: int,
               limit: int | None, progress: bool, template=None) -> tuple[list[dict], dict]:
    fields = ("prompt", "answers") if task == "squad" else ("problem", "solution")
    rows = read_jsonl(data, fields)[:limit]
    if task == "squad":
        bad = next((i for i, r in enumerate(rows) if not isinstance(r["answers"], list) or not r["answers"]), None)
        if bad is not None:
            raise TunebridgeError(f"{data}: record {bad + 1} has no gold answers (a non-empty list)")
    prompts = [r[fields[0]] for r in rows]
    stop: tuple[str, ...] = ()
    if template is not None:  # questions asked the way the model was tuned: in its prompt template
        prompts = [template.prompt(p) for p in prompts]
        stop = (template.end,) if template.end else ()
    with tqdm(total=len(rows), desc=task, unit="q", disable=not progress) as bar:
        outputs = _generate(scorer, prompts, max_new_tokens, batch_size, bar, stop)
    metrics: dict = {"task": task, "protocol": "generate", "empty_predictions": sum(not o.strip() for o in outputs)}
    if task == "squad":
        official = squad.score(outputs, [r["answers"] for r in rows])
        metrics.update(official, metric_protocol=official.pop("protocol"))
        metrics["mindformers_emf1"] = mindformers_emf1.score(outputs, [r["answers"][0] for r in rows])
        records = [{"id": r.get("id", str(i)), "prediction": o, "answers": r["answers"]}
                   for i, (r, o) in enumerate(zip(rows, outputs))]
    else:
        metrics.update(accuracy(outputs, [str(r["solution"]) for r in rows]))
        records = [{"index": i, "problem": r["problem"], "prediction": o, "solution": r["solution"]}
                   for i, (r, o) in enumerate(zip(rows, outputs))]
    return records, metrics


def run_eval(scorer: Scorer, task: str, data: str | Path, out: str | Path, protocol: str = "generate",
             batch_size: int = 8, max_new_tokens: int | None = None, limit: int | None = None, shots: int = 5,
             force: bool = False, progress: bool = True, about: dict | None = None,
             template: str | None = None) -> dict:
    """Predict, score and write ``predictions.jsonl`` + ``metrics.json``; returns the metrics.

    ``template`` (squad, math): wrap each question in that prompt template and stop at its end token."""
    if task not in TASKS:
        raise TunebridgeError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if protocol not in multiple_choice.PROTOCOLS:
        raise TunebridgeError(f"unknown protocol {protocol!r} (known: {', '.join(multiple_choice.PROTOCOLS)})")
    if protocol == "loglik" and task in ("squad", "math"):
        raise TunebridgeError(f"{task} is scored on generated text: --protocol loglik is for ceval, mmlu, cmmlu")
    if batch_size < 1 or (limit is not None and limit < 1) or shots < 0:
        raise TunebridgeError("--batch-size and --limit must be >= 1, --shots >= 0")
    max_new_tokens = max_new_tokens or MAX_NEW_TOKENS[task]
    batch_size = _call_size(scorer, batch_size)
    if task in ("squad", "math"):
        from ..data.templates import get_template
        records, metrics = _free_text(scorer, task, data, batch_size, max_new_tokens, limit, progress,
                                      get_template(template) if template else None)
    else:
        records, metrics = _multiple_choice(scorer, task, data, protocol, batch_size, max_new_tokens, limit, shots,
                                            progress)
    metrics = {**metrics, "scorer": scorer.name, "data": str(data), "limit": limit, "template": template,
               "max_new_tokens": max_new_tokens if protocol == "generate" else None, **(about or {})}
    with atomic_dir(out, force=force) as tmp:
        with open(tmp / "predictions.jsonl", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return metrics
