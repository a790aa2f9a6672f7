"""``tunebridge eval score`` scores prediction files made by any stack; ``tunebridge eval run`` makes them with a
model and scores them. Every figure names its protocol."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.templates import TEMPLATES
from ..errors import TunebridgeError
from ..evaluation import mindformers_emf1, squad
from ..evaluation.math import accuracy
from ..evaluation.runner import MAX_NEW_TOKENS, PROTOCOLS, TASKS
from ..evaluation.scores import contest, retention_gate
from ..evaluation.units import units_of
from ..io.atomic import atomic_file, check_output
from .args import nonnegative_float, nonnegative_int, percent, positive_int, unit_fraction

SCORERS = ("hf", "mcore", "mindformers")


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate predictions (SQuAD F1/EM, math accuracy, gate and contest score)")
    esub = p.add_subparsers(dest="eval_command", required=True, metavar="ACTION")
    s = esub.add_parser("score", help="score a predictions file (.jsonl, or the seeds' .npy of strings)")
    s.add_argument("--task", choices=("squad", "math"), required=True, help="what the predictions answer")
    s.add_argument(
        "--predictions",
        required=True,
        help="JSONL (strings, or objects with prediction and optional id), the official SQuAD "
        "predictions JSON {id: text}, or the seeds' .npy of strings",
    )
    s.add_argument(
        "--references",
        required=True,
        help="JSONL: squad_eval.jsonl (answers) or math (solution); paired by id when both files "
        "carry ids, else by position",
    )
    s.add_argument("--empty-match", action="store_true", help="SQuAD: the v2.0 / torchmetrics empty-answer rule")
    s.add_argument(
        "--mindformers",
        action="store_true",
        help="SQuAD: score as MindFormers' EmF1Metric (the contests' figures; first gold answer)",
    )
    s.add_argument(
        "--rel-tol", type=nonnegative_float, default=0.0, help="math: also accept within this relative tolerance"
    )
    s.add_argument(
        "--baseline-f1",
        type=percent,
        help="SQuAD: the base model's F1 in percent, for the 90 %% retention gate (with --baseline-em)",
    )
    s.add_argument(
        "--baseline-em",
        type=percent,
        help="SQuAD: the base model's exact match in percent, for the gate (with --baseline-f1)",
    )
    s.add_argument(
        "--low-param-ratio",
        type=unit_fraction,
        help="math: trainable / base total parameters as a fraction (not a percentage), for the contest score",
    )
    s.add_argument(
        "--out", help="write metrics.json into this directory (an existing metrics.json is refused, unless --force)"
    )
    s.add_argument("--force", action="store_true", help="replace an existing metrics.json in --out")
    s.set_defaults(func=run_score)

    r = esub.add_parser("run", help="evaluate a model: predictions.jsonl + metrics.json")
    r.add_argument(
        "model",
        metavar="RECIPE|MODEL",
        help="a recipe (its model.weights, tokenizer and prompt template), or the checkpoint in the "
        "scorer's format: an HF model directory (hf), a converted mcore directory (mcore), a "
        "MindFormers .ckpt or the directory holding it (mindformers)",
    )
    r.add_argument(
        "--scorer",
        choices=SCORERS,
        default="hf",
        help="the framework that runs MODEL: transformers (+ PEFT), megatron-core GPTModel on tp x pp "
        "CPU processes, MindFormers LlamaForCausalLM in .venv-mindspore (default: hf)",
    )
    r.add_argument("--task", choices=TASKS, required=True, help="the benchmark --data holds")
    r.add_argument(
        "--data",
        required=True,
        help="squad: squad_eval.jsonl; math: problem/solution JSONL; ceval/mmlu/cmmlu: the benchmark "
        "directory or its val/test directory (next to dev/)",
    )
    r.add_argument(
        "--adapter",
        help="a LoRA adapter on top of MODEL: a PEFT directory (hf) or a LoRA-only mcore "
        "checkpoint (mcore); a MindFormers model takes merged weights",
    )
    r.add_argument("--tokenizer", help="tokenizer directory (default: MODEL's if it has one, else the embedded one)")
    r.add_argument(
        "--protocol",
        choices=tuple(dict.fromkeys(p for ps in PROTOCOLS.values() for p in ps)),
        help="default: the protocol the rendered scripts run — ceval/mmlu/cmmlu: mindspeed-llm "
        "(MindSpeed-LLM's evaluation.py), or tunebridge's generate (first letter) / loglik; squad: "
        "mindformers (its eval + EmF1Metric), or generate (official SQuAD v1.1); math: generate",
    )
    r.add_argument(
        "--chat-template",
        action="store_true",
        help="mindspeed-llm: wrap prompts in the tokenizer's chat template, as MindSpeed-LLM does without "
        "--no-chat-template (default: off, as the rendered evaluate script runs it)",
    )
    r.add_argument(
        "--fewshot-dir",
        help="mindspeed-llm: MindSpeed-LLM's shipped shot texts (its "
        "mindspeed_llm/tasks/evaluation/eval_impl/fewshot_template) instead of the dev rows",
    )
    r.add_argument("--batch-size", type=positive_int, default=8, help="questions per forward pass (default 8)")
    r.add_argument(
        "--max-new-tokens",
        type=positive_int,
        help="default per task and protocol: " + ", ".join(f"{t} {p} {n}" for (t, p), n in MAX_NEW_TOKENS.items()),
    )
    r.add_argument("--limit", type=positive_int, help="first N questions (multiple choice: per subject)")
    r.add_argument(
        "--template",
        choices=tuple(TEMPLATES),
        help="squad, math: ask each question in this prompt template (as the model was tuned) and stop "
        "at its end token",
    )
    r.add_argument("--shots", type=nonnegative_int, default=5, help="multiple choice: shots from dev/ (default 5)")
    r.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="hf only: megatron-core and MindFormers compute in fp32",
    )
    r.add_argument(
        "--out",
        required=True,
        help="output directory: predictions.jsonl, metrics.json (refused if it exists, unless --force)",
    )
    r.add_argument("--force", action="store_true", help="replace an existing output directory")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run_model)


def run_score(args) -> int:
    from ..evaluation.predictions import paired, read_predictions, read_references

    if (args.baseline_f1 is None) != (args.baseline_em is None):
        raise TunebridgeError("the retention gate needs both --baseline-f1 and --baseline-em")
    if args.task != "squad" and args.baseline_f1 is not None:
        raise TunebridgeError("--baseline-f1/--baseline-em: the retention gate is for --task squad")
    if args.task != "math" and args.low_param_ratio is not None:
        raise TunebridgeError("--low-param-ratio: the contest score is for --task math")
    metrics_path = Path(args.out) / "metrics.json" if args.out else None
    if metrics_path is not None:
        check_output(metrics_path, args.force)
    references = read_references(args.references, args.task)
    predictions = read_predictions(args.predictions)
    preds = paired(predictions, references, args.predictions, args.references)
    refs = references.values
    metrics: dict = {
        "task": args.task,
        "paired_by": "position" if predictions.ids is None else "id",
        "empty_predictions": sum(not p.strip() for p in preds),
    }
    if args.task == "squad":
        if args.mindformers:
            r = mindformers_emf1.score(preds, [golds[0] for golds in refs])
            metrics.update({"f1": r["F1"], "exact_match": r["Em"], "count": r["count"], "protocol": r["protocol"]})
        else:
            metrics.update(squad.score(preds, refs, empty_match=args.empty_match))
        if args.baseline_f1 is not None:
            metrics["retention_gate"] = retention_gate(
                metrics["f1"], metrics["exact_match"], args.baseline_f1, args.baseline_em
            )
    else:
        metrics.update(accuracy(preds, refs, args.rel_tol))
        if args.low_param_ratio is not None:
            metrics["contest"] = contest(args.low_param_ratio, metrics["numeric_accuracy"])
    metrics["units"] = units_of(metrics)
    text = json.dumps(metrics, indent=2, ensure_ascii=False)
    print(text)
    if metrics_path is not None:
        with atomic_file(metrics_path, force=args.force, encoding="utf-8") as f:
            f.write(text + "\n")
    gate = metrics.get("retention_gate")
    return 1 if gate is not None and not gate["passed"] else 0


def _tokenizer_dir(args) -> str | None:
    if args.tokenizer:
        return args.tokenizer
    model = Path(args.model)
    return str(model) if (model / "tokenizer.json").exists() or (model / "tokenizer.model").exists() else None


def _scorer(args, tokenizer):
    """The scorer ``--scorer`` names over MODEL, and what the report says about where it ran."""
    if args.scorer == "hf":
        from ..evaluation.hf_scorer import HFScorer

        hf = HFScorer.from_dir(args.model, args.adapter, tokenizer, args.dtype)
        return hf, {"device": str(hf.device), "dtype": args.dtype}
    if args.dtype != "fp32":
        raise TunebridgeError(f"--dtype {args.dtype}: the {args.scorer} scorer computes in fp32")
    if args.scorer == "mcore":
        from ..evaluation.mcore_scorer import McoreScorer

        scorer = McoreScorer(args.model, tokenizer, adapter=args.adapter, batch_size=args.batch_size)
        ckpt = scorer.checkpoint
        return scorer, {"device": f"cpu (gloo, tp {ckpt.tp} x pp {ckpt.pp})", "dtype": "fp32"}
    if args.adapter:
        raise TunebridgeError("--adapter: the mindformers scorer takes merged weights (tunebridge merge-lora)")
    from ..evaluation.mindformers_scorer import MindFormersScorer

    return MindFormersScorer(args.model, tokenizer, batch_size=args.batch_size), {"device": "cpu", "dtype": "fp32"}


def _from_recipe(args) -> None:
    """RECIPE instead of MODEL: the recipe's weights (hf scorer), tokenizer and prompt template."""
    from ..backends.render import default_prompt_type
    from ..recipe.schema import load_recipe

    recipe = load_recipe(args.model)
    if not recipe.model.weights:
        raise TunebridgeError(f"{args.model}: the recipe has no model.weights to evaluate")
    if args.scorer != "hf":
        raise TunebridgeError(
            f"{args.model}: a recipe names HF weights; convert them for --scorer {args.scorer} "
            f"(tunebridge convert) and pass the converted checkpoint"
        )
    args.model = str(recipe.path(recipe.model.weights))
    tokenizer = recipe.tokenizer(args.tokenizer)
    args.tokenizer = str(tokenizer) if tokenizer else None
    if args.template is None and args.task in ("squad", "math") and recipe.data is not None:
        args.template = default_prompt_type(recipe) if args.task == "math" else None


def run_model(args) -> int:
    check_output(args.out, args.force)
    import torch

    if str(args.model).endswith((".yaml", ".yml")):
        _from_recipe(args)
    from ..evaluation.runner import run_eval
    from ..evaluation.tokens import load_eval_tokenizer

    torch.manual_seed(0)
    tokenizer_dir = _tokenizer_dir(args)
    scorer, where = _scorer(args, load_eval_tokenizer(tokenizer_dir))
    metrics = run_eval(
        scorer,
        args.task,
        args.data,
        args.out,
        protocol=args.protocol,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        shots=args.shots,
        force=args.force,
        progress=not args.no_progress,
        template=args.template,
        chat_template=args.chat_template,
        fewshot_dir=args.fewshot_dir,
        about={"model": args.model, "adapter": args.adapter, "tokenizer": tokenizer_dir or "embedded", **where},
    )
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0
