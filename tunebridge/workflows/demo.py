"""The end-to-end demo on embedded data and the embedded tiny base model (the README's first command).

One recipe (recipes/tiny-demo-lora.yaml), three stacks, every parity check:

1. parameters accounted on each backend, then instantiated by each framework;
2. the base weights converted to MindFormers' .ckpt and mcore shards, proven by logits through
   transformers, MindFormers and megatron-core;
3. the same tokens and initial LoRA trained on torch, MindFormers' own Trainer (on the YAML `tunebridge render
   --device cpu` writes, MindSpore CPU) and megatron-core;
4. each trained adapter exported to PEFT and evaluated (math accuracy, SQuAD F1/EM and the 90 % retention
   gate) against the base model;
5. the torch-trained adapter merged into the base and scored through all three frameworks' scorers;
6. a report (Markdown + self-contained HTML with plots) with every verdict.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends import get_backend
from ..backends.inputs import RunInputs
from ..backends.stacks import STACK_NAMES
from ..errors import TunebridgeError
from ..evaluation.units import fmt as metric_text, header
from ..recipe.schema import load_recipe

if TYPE_CHECKING:
    from ..evaluation.scorer import Scorer

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "tiny-demo-lora.yaml"
MATH_TEST = REPO / "data" / "samples" / "demo_math_test.jsonl"
SQUAD = REPO / "data" / "samples" / "demo_squad.json"
SCORER_CHECK_QUESTIONS = 16  # math questions sent through all three frameworks' scorers


def _say(text: str) -> None:
    print(f"== {text}", flush=True)


def _export_adapters(recipe, results: dict, out: Path) -> dict[str, Path]:
    """Each backend's trained LoRA as a PEFT adapter directory."""
    from ..converters.adapters import convert_adapter

    spec = recipe.spec
    adapters = {"torch": Path(results["torch"].checkpoints[-1])}
    for name, fmt in (("mindformers", "mindformers"), ("mindspeed-llm", "mcore")):
        adapters[name] = convert_adapter(
            results[name].checkpoints[-1], out / f"{name}-peft", fmt, "peft", spec, force=True
        )
    return adapters


def _evaluate(
    weights: Path, adapters: dict[str, Path | None], math: Path, squad: Path, out: Path, template: str
) -> dict:
    from ..evaluation.hf_scorer import HFScorer
    from ..evaluation.runner import run_eval

    metrics = {}
    for name, adapter in adapters.items():
        scorer = HFScorer.from_dir(weights, adapter)
        m = run_eval(
            scorer,
            "math",
            math,
            out / name / "math",
            batch_size=16,
            max_new_tokens=8,
            force=True,
            progress=False,
            template=template,
        )
        s = run_eval(
            scorer,
            "squad",
            squad,
            out / name / "squad",
            protocol="generate",
            batch_size=8,
            max_new_tokens=8,
            force=True,
            progress=False,
        )
        metrics[name] = {
            "numeric_accuracy": m["numeric_accuracy"],
            "contains_accuracy": m["contains_accuracy"],
            "f1": s["f1"],
            "exact_match": s["exact_match"],
        }
        print(
            f"   {name:24s} " + "   ".join(f"{header(k)} {metric_text(k, v)}" for k, v in metrics[name].items()),
            flush=True,
        )
    return metrics


def _cross_scorer(recipe, weights: Path, adapter: Path, math: Path, out: Path, template: str) -> tuple[list, dict]:
    """The tuned adapter merged into the base, converted to each stack, scored through each framework."""
    from ..converters.checkpoint import convert
    from ..converters.merge import merge_lora
    from ..evaluation.hf_scorer import HFScorer
    from ..evaluation.mcore_scorer import McoreScorer
    from ..evaluation.mindformers_scorer import MindFormersScorer
    from ..evaluation.runner import run_eval
    from ..parity.verdicts import same_metrics, same_predictions

    spec = recipe.spec
    merged = merge_lora(weights, adapter, out / "merged-hf", force=True, progress=False)
    convert(merged, out / "merged-mcore", "hf", "mcore", spec=spec, tp=2, force=True, progress=False)
    convert(merged, out / "merged-mindformers", "hf", "mindformers", spec=spec, force=True, progress=False)
    scorers: dict[str, Scorer] = {
        "hf (transformers)": HFScorer.from_dir(merged),
        "mcore (megatron-core, tp 2)": McoreScorer(out / "merged-mcore"),
        "mindformers (MindSpore)": MindFormersScorer(out / "merged-mindformers"),
    }
    predictions, scores = {}, {}
    for name, scorer in scorers.items():
        m = run_eval(
            scorer,
            "math",
            math,
            out / name.split()[0],
            batch_size=16,
            max_new_tokens=8,
            limit=SCORER_CHECK_QUESTIONS,
            force=True,
            progress=False,
            template=template,
        )
        rows = (out / name.split()[0] / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        predictions[name] = [json.loads(r)["prediction"] for r in rows]
        scores[name] = {"numeric_accuracy": m["numeric_accuracy"], "contains_accuracy": m["contains_accuracy"]}
    return [same_predictions(predictions), same_metrics(scores)], scores


def run_demo(out: str | Path, force: bool = False, progress: bool = True) -> tuple[Path, bool]:
    """Run everything; returns the report directory and whether every parity check passed."""
    from transformers.utils import logging as hf_logging

    from ..backends.render import default_prompt_type
    from ..data.squad import write_squad_eval
    from ..data.tokenizer import load_tokenizer
    from ..evaluation.scores import retention_gate
    from ..parity.logits import verify
    from ..parity.report import write_report
    from ..parity.verdicts import Verdict, logits, loss_checks, metric_difference, params_across, params_instantiated

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per model load would drown the demo's lines
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise TunebridgeError(f"{out} already exists: pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(RECIPE)
    spec = recipe.spec
    assert recipe.model.weights is not None, f"{RECIPE} names its weights"
    weights = recipe.path(recipe.model.weights)
    names = list(STACK_NAMES)
    verdicts: list[Verdict] = []

    _say(f"1. parameters of {recipe.name} on each backend")
    reports = [recipe.param_report(n) for n in names]
    for r in reports:
        print(
            f"   {r.backend:14s} trainable {r.trainable_params:,} of {r.total_params:,} "
            f"({header('low_param_ratio')} {r.low_param_ratio:.6g})"
        )

    _say("2. one tokenization, one step order, one initial LoRA; weights converted to .ckpt and mcore")
    inputs = RunInputs.make(recipe, names, weights, out / "inputs", progress=progress)
    agreements = verify(
        [(weights, "hf"), (inputs.weights("mindformers"), "mindformers"), (inputs.weights("mcore"), "mcore")], spec
    )
    verdicts += [logits(a) for a in agreements]
    for a in agreements:
        print(f"   logits {a.b} vs {a.a}: max |d| {a.max_abs:.2e}, cosine {a.cosine:.7f}")

    _say(f"3. LoRA fine-tuning on the three stacks ({len(inputs.batches)} steps each)")
    results = {}
    for name in names:
        plan = get_backend(name).plan(recipe, weights, out / "runs" / name)
        print(f"   {plan.describe()}", flush=True)
        results[name] = get_backend(name).run(plan, inputs, progress=False)
        print(f"   {name}: loss {results[name].steps[0].loss:.4f} -> {results[name].steps[-1].loss:.4f}", flush=True)
    for r in reports:
        trainable = results[r.backend].trainable_params
        assert trainable is not None, f"{r.backend}'s run counts the parameters it trained"
        verdicts.append(params_instantiated(r, trainable))
    verdicts.append(params_across(reports, spec))
    for other in names[1:]:
        verdicts += loss_checks(results["torch"], results[other], "torch", other, recipe.parity)

    _say("4. evaluation: math accuracy and SQuAD (retention) of the base and of each tuned adapter")
    eval_dir = out / "eval"
    eval_dir.mkdir(exist_ok=True)
    math = MATH_TEST
    template = default_prompt_type(recipe)
    write_squad_eval(SQUAD, eval_dir / "squad", load_tokenizer(None), 512, force=True, mindrecord=False)
    adapters = _export_adapters(recipe, results, out / "adapters")
    metrics = _evaluate(
        weights,
        {"base": None, **{f"tuned on {n}": a for n, a in adapters.items()}},
        math,
        eval_dir / "squad" / "squad_eval.jsonl",
        eval_dir,
        template,
    )
    tuned = metrics["tuned on torch"]
    for other in names[1:]:
        verdicts.append(metric_difference(tuned, metrics[f"tuned on {other}"], "tuned on torch", f"tuned on {other}"))
    base = metrics["base"]
    gate = retention_gate(tuned["f1"], tuned["exact_match"], base["f1"], base["exact_match"])
    verdicts.append(
        Verdict(
            "SQuAD retention: tuned on torch vs base",
            gate["passed"],
            {
                "F1": tuned["f1"],
                "F1 needed": gate["f1"]["needs"],
                "EM": tuned["exact_match"],
                "EM needed": gate["exact_match"]["needs"],
            },
            "F1 and EM >= 90 % of the base model's",
            "the seeds' 'original ability' check on the embedded SQuAD-style set (demo_squad.json)",
        )
    )

    _say("5. the tuned model merged and scored through transformers, megatron-core and MindFormers")
    scorer_verdicts, scorer_scores = _cross_scorer(recipe, weights, adapters["torch"], math, out / "scorers", template)
    verdicts += scorer_verdicts

    _say("6. report")
    params_table = [
        {
            **r.to_dict(),
            "instantiated": results[r.backend].trainable_params,
            "accuracy": metrics[f"tuned on {r.backend}"]["numeric_accuracy"],
        }
        for r in reports
    ]
    metrics_table = {**metrics, **{f"merged, scorer {k}": v for k, v in scorer_scores.items()}}
    report = write_report(out / "report", results, verdicts, params_table, metrics_table, RECIPE, force=True)
    passed = sum(v.passed for v in verdicts)
    for v in verdicts:
        print(f"   {'PASS' if v.passed else 'FAIL'}  {v.name}")
    print(f"{passed}/{len(verdicts)} parity checks passed in {time.perf_counter() - started:.0f} s")
    print(f"report: {report / 'report.html'}")
    return report, passed == len(verdicts)
