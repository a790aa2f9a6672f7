"""``tunebridge eval score``: score prediction files made by any stack, labelling the protocol of each figure."""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_file
from ..errors import TunebridgeError
from ..evaluation import mindformers_emf1, squad
from ..evaluation.math import accuracy
from ..evaluation.predictions import read_predictions, read_references
from ..evaluation.scores import contest, retention_gate


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate predictions (SQuAD F1/EM, math accuracy, gate and contest score)")
    esub = p.add_subparsers(dest="eval_command", required=True, metavar="ACTION")
    s = esub.add_parser("score", help="score a predictions file (.jsonl, or the seeds' .npy of strings)")
    s.add_argument("--task", choices=("squad", "math"), required=True)
    s.add_argument("--predictions", required=True)
    s.add_argument("--references", required=True, help="JSONL: squad_eval.jsonl (answers) or math (solution)")
    s.add_argument("--empty-match", action="store_true", help="SQuAD: the v2.0 / torchmetrics empty-answer rule")
    s.add_argument("--mindformers", action="store_true",
                   help="SQuAD: score as MindFormers' EmF1Metric (the contests' figures; first gold answer)")
    s.add_argument("--rel-tol", type=float, default=0.0, help="math: also accept within this relative tolerance")
    s.add_argument("--baseline-f1", type=float, help="SQuAD: the base model's F1, for the 90 %% retention gate")
    s.add_argument("--baseline-em", type=float)
    s.add_argument("--low-param-ratio", type=float, help="math: trainable / base total, for the contest score")
    s.add_argument("--out", help="write metrics.json here")
    s.set_defaults(func=run_score)


def run_score(args) -> int:
    preds = read_predictions(args.predictions)
    refs = read_references(args.references, args.task)
    if len(preds) != len(refs):
        raise TunebridgeError(f"{args.predictions} has {len(preds)} predictions, {args.references} has "
                              f"{len(refs)} references")
    metrics: dict = {"task": args.task, "empty_predictions": sum(not p.strip() for p in preds)}
    if args.task == "squad":
        if args.mindformers:
            r = mindformers_emf1.score(preds, [golds[0] for golds in refs])
            metrics.update({"f1": r["F1"], "exact_match": r["Em"], "count": r["count"], "protocol": r["protocol"]})
        else:
            metrics.update(squad.score(preds, refs, empty_match=args.empty_match))
        if args.baseline_f1 is not None and args.baseline_em is not None:
            metrics["retention_gate"] = retention_gate(metrics["f1"], metrics["exact_match"], args.baseline_f1,
                                                       args.baseline_em)
    else:
        metrics.update(accuracy(preds, refs, args.rel_tol))
        if args.low_param_ratio is not None:
            metrics["contest"] = contest(args.low_param_ratio, metrics["numeric_accuracy"])
    text = json.dumps(metrics, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        with atomic_file(Path(args.out) / "metrics.json", encoding="utf-8") as f:
            f.write(text + "\n")
    gate = metrics.get("retention_gate")
    return 1 if gate is not None and not gate["passed"] else 0
