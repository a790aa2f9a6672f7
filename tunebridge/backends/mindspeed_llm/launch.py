"""``run --backend mindspeed-llm --mindspeed-llm-home DIR`` on an Ascend host: MindSpeed-LLM's own programs.

The recipe is rendered for the chosen MindSpeed-LLM version into ``out/scripts`` and its stages run in the
checkout (:mod:`tunebridge.backends.stages`): convert (HF -> mcore) -> preprocess (data -> indexed dataset) -> tune -> export
(mcore -> HF, LoRA merged) -> evaluate. Their paths point into ``out``. Then the training log's Megatron
lines and the evaluation's result lines become ``out/result.json``, which ``compare`` and ``report`` read.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ...errors import TunebridgeError
from ...parity.logs import parse_log
from ..result import RunResult
from ..stages import Stage, load_states, run_stages

BACKEND = "mindspeed-llm"
# MindSpeed-LLM's evaluators (mindspeed_llm/tasks/evaluation/eval_impl/*.py) log, per subject and in total:
#   f'{subject_name} has {acc_n} corrects in {total_questions} questions, with accuracy {acc_n / total_questions}'
#   f"mmlu acc = {total_acc_n}/{total_n}={check_divisible_by_zero(total_acc_n, total_n)}"
SUBJECT_LINE = re.compile(r"([^\s:\]]+) has (\d+) corrects in (\d+) questions, with accuracy ([\d.eE+-]+)")
TOTAL_LINE = re.compile(r"(\w+) acc = (\d+)/(\d+)=([\d.eE+-]+)")


def stages_for(recipe) -> list[Stage]:
    name, method = recipe.name, recipe.finetune.method
    return [
        Stage("convert", f"ckpt_convert_{name}_hf2mcore.sh"),
        Stage("preprocess", f"data_convert_{name}_instruction.sh"),
        Stage("tune", f"tune_{name}_{method}_ptd.sh"),
        Stage("export", f"ckpt_convert_{name}_mcore2hf.sh"),
        Stage("evaluate", f"evaluate_{name}_ptd.sh"),
    ]


def run_paths(recipe, weights: Path, out: Path) -> dict[str, str]:
    """The rendered scripts' path variables, pointed into the run directory."""
    data = recipe.path(recipe.data.train.path)
    tokenizer = recipe.path(recipe.data.tokenizer) if recipe.data.tokenizer else weights
    return {
        "HF_DIR": weights,
        "TOKENIZER_PATH": tokenizer,
        "CKPT_LOAD_DIR": out / "weights-mcore",
        "CKPT_SAVE_DIR": out / "checkpoint",
        "RAW_DATA": data,
        "DATA_PATH": out / "data" / "train",
        "HF_EXPORT_DIR": out / "hf",
    }


def evaluation_results(log: Path) -> dict:
    """MindSpeed-LLM's evaluation lines: per task, the subjects' and the total's correct / questions / accuracy
    (a fraction)."""
    results: dict = {}
    subjects: dict = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if m := SUBJECT_LINE.search(line):
            subjects[m.group(1)] = {
                "correct": int(m.group(2)),
                "questions": int(m.group(3)),
                "accuracy": float(m.group(4)),
            }
        elif m := TOTAL_LINE.search(line):
            results[m.group(1)] = {
                "correct": int(m.group(2)),
                "questions": int(m.group(3)),
                "accuracy": float(m.group(4)),
                "subjects": subjects,
            }
            subjects = {}
    return results


def launch(plan, version: str, train_iters: int, resume: bool = False, echo=print) -> RunResult:
    """Render ``plan.recipe`` for MindSpeed-LLM ``version`` and run its stages in ``plan.home``."""
    from ..render import render

    started = time.perf_counter()
    recipe, out = plan.recipe, Path(plan.out).resolve()
    stages = stages_for(recipe)
    scripts = out / "scripts"
    if resume:
        load_states(out)  # refuses a run that never started
        missing = [s.script for s in stages if not (scripts / s.script).is_file()]
        if missing:
            raise TunebridgeError(f"{scripts}: {', '.join(missing)} missing: cannot resume")
    else:
        if (out / "stages.json").exists():
            raise TunebridgeError(f"{out}: an earlier launch is there (pass --resume to continue it)")
        render(recipe, BACKEND, scripts, num_samples=None, version=version)
    env = {k: str(Path(v).resolve()) for k, v in run_paths(recipe, plan.weights, out).items()}
    env["TRAIN_ITERS"] = str(train_iters)
    run_stages(stages, out, plan.home, env, resume=resume, echo=echo)
    tune_log, eval_log = out / "logs" / "tune.log", out / "logs" / "evaluate.log"
    result = parse_log(tune_log, fmt="megatron")
    result.backend = BACKEND
    result.evaluation = evaluation_results(eval_log)
    result.checkpoints = [env["CKPT_SAVE_DIR"], env["HF_EXPORT_DIR"]]
    result.wall_time_s = time.perf_counter() - started
    result.environment = {
        "mindspeed-llm home": str(plan.home),
        "mindspeed-llm version": version,
        "device": "Ascend NPU (npu-smi)",
    }
    result.notes.append(f"MindSpeed-LLM {version}'s own programs, launched in {plan.home}; logs in {out / 'logs'}")
    result.save(out / "result.json")
    return result
