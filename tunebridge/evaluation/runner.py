"""Evaluate a model through any :class:`~tunebridge.evaluation.scorer.Scorer` on one task, under a named protocol.

Tasks: ``squad`` (the JSONL that ``tunebridge data squad`` writes: id, prompt, answers), ``math`` (JSONL of
problem/solution; the problem is the prompt, as is), ``ceval``, ``mmlu``, ``cmmlu`` (see
:mod:`tunebridge.evaluation.multiple_choice`).

Protocols (``PROTOCOLS``; the first of each task is its default, the protocol the rendered scripts run):

- ``mindspeed-llm`` (ceval, mmlu, cmmlu): MindSpeed-LLM's evaluation.py (:mod:`.protocol_mindspeed_llm`);
- ``generate`` / ``loglik`` (ceval, mmlu, cmmlu): tunebridge's: first generated letter / the letters'
  log-likelihood, over the strict CSV reader's prompts;
- ``mindformers`` (squad): MindFormers' eval with EmF1Metric (:mod:`.protocol_mindformers_squad`);
- ``generate`` (squad, math): the prompt as text, the official SQuAD v1.1 metric / the numeric math rule.

Writes ``predictions.jsonl`` (one line per question, in input order) into ``out`` first, then
``metrics.json`` (naming the scorer and the protocol): a failure while scoring keeps the predictions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..data.readers import jsonl_objects
from ..errors import TunebridgeError
from ..io.atomic import atomic_dir, atomic_file
from . import (
    mindformers_emf1,
    multiple_choice,
    protocol_mindformers_squad as mf_squad,
    protocol_mindspeed_llm as msllm,
    squad,
)
from .math import accuracy
from .predictions import gold_answers, math_gold
from .scorer import Scorer
from .tokens import Prompt
from .units import units_of

CHOICE_TASKS = ("ceval", "mmlu", "cmmlu")
TASKS = ("squad", "math", *CHOICE_TASKS)
PROTOCOLS = {
    "squad": ("mindformers", "generate"),
    "math": ("generate",),
    **{task: (msllm.PROTOCOL, "generate", "loglik") for task in CHOICE_TASKS},
}
MAX_NEW_TOKENS = {
    ("squad", "mindformers"): mf_squad.MAX_NEW_TOKENS,
    ("squad", "generate"): 64,
    ("math", "generate"): 64,
    **{(t, msllm.PROTOCOL): msllm.MAX_NEW_TOKENS for t in CHOICE_TASKS},
    **{(t, "generate"): 4 for t in CHOICE_TASKS},
}
PROTOCOL_RULES = {
    msllm.PROTOCOL: "MindSpeed-LLM's evaluation.py: its prompts, pandas-read cells, its chat-template rule and "
    "its answer extraction per task (C-Eval: whole stripped output; MMLU: last 'X.' on the first "
    "line; CMMLU: its answer patterns)",
    "mindformers": "MindFormers' eval: bos + prompt ids, greedy to eos or max_new_tokens, gold = the first answer's "
    "ids decoded, EmF1Metric",
    **multiple_choice.PROTOCOLS,
}


def default_protocol(task: str) -> str:
    return PROTOCOLS[task][0]


def read_jsonl(path: str | Path, fields: Sequence[str]) -> list[tuple[str, dict]]:
    """(``file:line``, object) of a JSONL file, each object required to hold ``fields``."""
    path = Path(path)
    if not path.is_file():
        raise TunebridgeError(f"{path}: no such file")
    rows = []
    for where, row in jsonl_objects(path):
        missing = [k for k in fields if k not in row]
        if missing:
            raise TunebridgeError(f"{where}: missing field {missing[0]!r} (it has: {', '.join(row)})")
        rows.append((where, row))
    if not rows:
        raise TunebridgeError(f"{path}: no records")
    return rows


def _in_batches(
    fn: Callable[[list], list],
    items: Sequence,
    batch_size: int,
    bar: tqdm,
    weight: int = 1,
    groups: Sequence | None = None,
) -> list:
    """fn over ``items`` in batches of at most ``batch_size``, in order, a batch never spanning two ``groups``;
    the bar advances by questions."""
    out: list = []
    start = 0
    while start < len(items):
        end = min(start + batch_size, len(items))
        if groups is not None:
            end = next((i for i in range(start + 1, end) if groups[i] != groups[start]), end)
        chunk = list(items[start:end])
        out.extend(fn(chunk))
        bar.update(len(chunk) // weight)
        start = end
    return out


def _ordered(
    fn: Callable[[list], list], items: Sequence, keys: Sequence[tuple], batch_size: int, bar: tqdm, weight: int = 1
) -> list:
    """``_in_batches`` over items sorted by ``keys`` (group, length, ...), results in input order. A batch holds
    one group (a subject: its questions share their shot text, which the scorer then runs once) of similar
    lengths (less padding)."""
    order = sorted(range(len(items)), key=lambda i: keys[i])
    outputs = _in_batches(
        lambda chunk: fn([items[i] for i in chunk]), order, batch_size, bar, weight, groups=[keys[i][0] for i in order]
    )
    result: list = [None] * len(items)
    for i, value in zip(order, outputs):
        result[i] = value
    return result


def _call_size(scorer: Scorer, batch_size: int) -> int:
    """Items per scorer call: ``batch_size``, or all of them for a scorer that starts processes per call
    (megatron-core ranks, MindSpore) and batches by itself."""
    return 1 << 62 if getattr(scorer, "whole_task_per_call", False) else batch_size


def _generate(
    scorer: Scorer,
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    batch_size: int,
    bar: tqdm,
    stop: Sequence[str] = (),
    groups: Sequence[str] | None = None,
) -> list[str]:
    keys = [(groups[i] if groups else "", len(p)) for i, p in enumerate(prompts)]
    return _ordered(lambda chunk: scorer.generate(chunk, max_new_tokens, stop), prompts, keys, batch_size, bar)


@dataclass
class Predicted:
    """What a task predicted: the records to keep, and how to score them (run after they are written)."""

    records: list[dict]
    score: Callable[[], dict]
    about: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    protocol: str
    batch_size: int
    max_new_tokens: int
    limit: int | None
    shots: int
    progress: bool
    template: object | None = None  # squad/math (generate): a data.templates template
    chat_template: bool = msllm.CHAT_TEMPLATE
    fewshot_dir: str | Path | None = None


def _multiple_choice(scorer: Scorer, task: str, data: str | Path, s: Settings) -> Predicted:
    if s.protocol == msllm.PROTOCOL:
        items = msllm.load_items(task, data, shots=s.shots, limit=s.limit, fewshot_dir=s.fewshot_dir)
    else:
        items = multiple_choice.load_items(task, data, shots=s.shots, limit=s.limit)
    questions = [item.question for item in items]
    subjects = [q.subject for q in questions]
    about: dict = {"shots": s.shots if s.fewshot_dir is None else "shipped"}
    details: list[dict[str, Any]]
    with tqdm(total=len(items), desc=f"{task} ({s.protocol})", unit="q", disable=not s.progress) as bar:
        if s.protocol == msllm.PROTOCOL:
            inputs = msllm.inputs_for(items, scorer.tokenizer, s.chat_template)
            outputs = _generate(scorer, inputs, s.max_new_tokens, s.batch_size, bar, groups=subjects)
            extracted = [msllm.extract(task, o) for o in outputs]
            letters = [msllm.letter(e) for e in extracted]
            details = [{"output": o, "extracted": e} for o, e in zip(outputs, extracted)]
            about.update(
                chat_template=msllm.chat_template_used(scorer.tokenizer, s.chat_template),
                fewshot=msllm.describe(s.fewshot_dir, s.shots),
            )
            if msllm.batch_note(task):
                about["note"] = msllm.batch_note(task)
        elif s.protocol == "generate":
            outputs = _generate(
                scorer, [item.prompt for item in items], s.max_new_tokens, s.batch_size, bar, groups=subjects
            )
            letters = [multiple_choice.letter_of(o) for o in outputs]
            details = [{"output": o} for o in outputs]
        else:
            pairs = [pair for item in items for pair in multiple_choice.option_pairs(item)]
            n = len(multiple_choice.LETTERS)
            keys = [(q.subject, len(item.prompt), item.prompt) for item, q in zip(items, questions) for _ in range(n)]
            flat = _ordered(
                lambda chunk: scorer.loglikelihood([c for c, _ in chunk], [x for _, x in chunk]),
                pairs,
                keys,
                s.batch_size * n,
                bar,
                weight=n,
            )
            per_question = [flat[i : i + n] for i in range(0, len(flat), n)]
            letters = [multiple_choice.best_letter(lp) for lp in per_question]
            details = [{"logprobs": dict(zip(multiple_choice.LETTERS, lp))} for lp in per_question]
    records = [
        {
            "subject": q.subject,
            "id": q.id,
            "source": q.source,
            "answer": q.answer,
            **d,
            "prediction": p,
            "correct": p == q.answer,
        }
        for q, p, d in zip(questions, letters, details)
    ]
    return Predicted(records, lambda: multiple_choice.averages(task, questions, letters), about)


def _squad(scorer: Scorer, data: str | Path, s: Settings) -> Predicted:
    rows = read_jsonl(data, ("prompt", "answers"))[: s.limit]
    golds = [gold_answers(row["answers"], where) for where, row in rows]
    ids = [str(row.get("id", i)) for i, (_, row) in enumerate(rows)]
    if s.protocol == "mindformers":
        prompts: list[Prompt] = [mf_squad.prompt_ids(scorer.tokenizer, row["prompt"]) for _, row in rows]
        stop: tuple[str, ...] = ()
    else:
        prompts, stop = _templated([row["prompt"] for _, row in rows], s.template)
    with tqdm(total=len(rows), desc="squad", unit="q", disable=not s.progress) as bar:
        outputs = _generate(scorer, prompts, s.max_new_tokens, s.batch_size, bar, stop)
    records = [{"id": i, "prediction": o, "answers": g} for i, o, g in zip(ids, outputs, golds)]

    def score() -> dict:
        official = squad.score(outputs, golds)
        stored = [mf_squad.gold_as_stored(scorer.tokenizer, g[0]) for g in golds]
        emf1 = mindformers_emf1.score(outputs, stored if s.protocol == "mindformers" else [g[0] for g in golds])
        metrics: dict = {"empty_predictions": sum(not o.strip() for o in outputs)}
        if s.protocol == "mindformers":
            metrics.update(
                f1=emf1["F1"],
                exact_match=emf1["Em"],
                count=emf1["count"],
                metric_protocol=emf1["protocol"],
                squad_v11_official={"f1": official["f1"], "exact_match": official["exact_match"]},
            )
        else:
            metrics.update(
                official,
                metric_protocol=official.pop("protocol"),
                mindformers_emf1={"f1": emf1["F1"], "exact_match": emf1["Em"]},
            )
        return metrics

    return Predicted(records, score)


def _templated(prompts: list[str], template) -> tuple[list[Prompt], tuple[str, ...]]:
    """Questions asked the way the model was tuned: in its prompt template, stopping at its end token."""
    if template is None:
        return list(prompts), ()
    return [template.prompt(p) for p in prompts], ((template.end,) if template.end else ())


def _math(scorer: Scorer, data: str | Path, s: Settings) -> Predicted:
    rows = read_jsonl(data, ("problem", "solution"))[: s.limit]
    golds = [math_gold(row["solution"], where) for where, row in rows]
    prompts, stop = _templated([row["problem"] for _, row in rows], s.template)
    with tqdm(total=len(rows), desc="math", unit="q", disable=not s.progress) as bar:
        outputs = _generate(scorer, prompts, s.max_new_tokens, s.batch_size, bar, stop)
    records = [
        {"index": i, "problem": row["problem"], "prediction": o, "solution": row["solution"]}
        for i, ((_, row), o) in enumerate(zip(rows, outputs))
    ]
    return Predicted(
        records, lambda: {"empty_predictions": sum(not o.strip() for o in outputs), **accuracy(outputs, golds)}
    )


def run_eval(
    scorer: Scorer,
    task: str,
    data: str | Path,
    out: str | Path,
    protocol: str | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    limit: int | None = None,
    shots: int = 5,
    force: bool = False,
    progress: bool = True,
    about: dict | None = None,
    template: str | None = None,
    chat_template: bool = msllm.CHAT_TEMPLATE,
    fewshot_dir: str | Path | None = None,
) -> dict:
    """Predict, write ``predictions.jsonl``, score, write ``metrics.json``; returns the metrics.

    ``protocol`` defaults to the task's first (the rendered scripts' protocol). ``template`` (squad, math with
    ``generate``): wrap each question in that prompt template and stop at its end token. ``chat_template`` and
    ``fewshot_dir``: the ``mindspeed-llm`` protocol's ``--no-chat-template`` (off) and shipped shot texts."""
    if task not in TASKS:
        raise TunebridgeError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    protocol = protocol or default_protocol(task)
    if protocol not in PROTOCOLS[task]:
        raise TunebridgeError(
            f"--protocol {protocol} is not a protocol of {task} (its protocols: {', '.join(PROTOCOLS[task])})"
        )
    if batch_size < 1 or (limit is not None and limit < 1) or shots < 0:
        raise TunebridgeError("--batch-size and --limit must be >= 1, --shots >= 0")
    if template is not None and (task not in ("squad", "math") or protocol != "generate"):
        raise TunebridgeError(
            f"--template applies to squad and math under --protocol generate, not {task} under {protocol}"
        )
    if (fewshot_dir is not None or chat_template != msllm.CHAT_TEMPLATE) and protocol != msllm.PROTOCOL:
        raise TunebridgeError(
            f"--fewshot-dir and --chat-template are MindSpeed-LLM's: they need --protocol {msllm.PROTOCOL}"
        )
    if Path(out).exists() and not force:
        raise TunebridgeError(f"{out}: already exists (pass --force to overwrite)")
    from ..data.templates import get_template

    settings = Settings(
        protocol,
        _call_size(scorer, batch_size),
        max_new_tokens or MAX_NEW_TOKENS.get((task, protocol), 0),
        limit,
        shots,
        progress,
        get_template(template) if template else None,
        chat_template,
        fewshot_dir,
    )
    if task == "squad":
        predicted = _squad(scorer, data, settings)
    elif task == "math":
        predicted = _math(scorer, data, settings)
    else:
        predicted = _multiple_choice(scorer, task, data, settings)
    with atomic_dir(out, force=force) as tmp:
        with open(tmp / "predictions.jsonl", "w", encoding="utf-8") as f:
            for record in predicted.records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    try:
        scored = predicted.score()
    except TunebridgeError as e:
        raise TunebridgeError(
            f"{e} (the predictions are kept in {Path(out) / 'predictions.jsonl'}; score them "
            f"with tunebridge eval score once fixed)"
        ) from None
    metrics = {
        "task": task,
        "protocol": protocol,
        "protocol_rule": PROTOCOL_RULES.get(protocol),
        **scored,
        **predicted.about,
        "scorer": scorer.name,
        "data": str(data),
        "limit": limit,
        "template": template,
        "max_new_tokens": settings.max_new_tokens if protocol != "loglik" else None,
        **(about or {}),
    }
    metrics["units"] = units_of(metrics)
    with atomic_file(Path(out) / "metrics.json", encoding="utf-8") as f:
        f.write(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics
