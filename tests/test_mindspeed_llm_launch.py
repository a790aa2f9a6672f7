"""``run --backend mindspeed-llm --mindspeed-llm-home`` on an Ascend host: the rendered stages, in order.

An Ascend host is one where the driver's ``npu-smi info`` answers; here a stand-in ``npu-smi`` on PATH makes
one, and stand-ins for ``python`` / ``torchrun`` play MindSpeed-LLM's programs: they print lines in its log
formats (Megatron's ``training_log``, PEFT's parameter count, its evaluators' result lines, all copied from
its code) and fail when ``FAIL_AT`` names their entry point.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tunebridge.cli import main

SAMPLES = Path("data/samples").resolve()
RECIPE = f"""
name: tiny-launch
model: {{arch: tiny-llama}}
finetune: {{method: lora, lora: {{rank: 4, alpha: 8, targets: [all-linear]}}}}
train: {{seq_length: 128, global_batch_size: 4, micro_batch_size: 2, dtype: bf16, max_steps: 3}}
parallel: {{tp: 2, dp: 2}}
data: {{train: {{path: {SAMPLES}/seed004_math.jsonl, format: math}}, template: qwen}}
"""
# What each stand-in prints, by entry point: lines in MindSpeed-LLM's own formats.
STAND_IN = r'''#!/usr/bin/env python3
import os, sys
argv = sys.argv[1:]
entry = next((a for a in argv if a.endswith(".py")), "")
with open(os.environ["CALLS"], "a") as f:
    f.write(os.path.basename(entry) + "\n")
name = os.path.basename(entry)
if name == "posttrain_gpt.py":
    print("[default0]:trainable params: 2,304 || all params: 240,064 || trainable%: 0.9598")
    for i, (loss, lr) in enumerate([(6.25, 0.0), (6.125, 5e-4), (6.0625, 1e-3)], 1):
        print(f"[default3]: [2025-03-04 08:0{i}:00] iteration        {i}/       3 | consumed samples:"
              f"            {4 * i} | elapsed time per iteration (ms): 812.3 | learning rate: {lr:E} | global "
              f"batch size:     4 | lm loss: {loss:E} | loss scale: 1.0 | grad norm: 1.500 | number of skipped "
              f"iterations:   0 | number of nan iterations:   0 |")
elif name == "evaluation.py":
    print("[default0]:INFO:mindspeed_llm:high_school_physics has 3 corrects in 4 questions, with accuracy 0.75")
    print("[default0]:INFO:mindspeed_llm:astronomy has 1 corrects in 4 questions, with accuracy 0.25")
    print("[default0]:INFO:mindspeed_llm:mmlu acc = 4/8=0.5")
else:
    print(f"{name}: done")
if os.environ.get("FAIL_AT") == name:
    print(f"Traceback (most recent call last):\n  File \"{name}\", line 1\nRuntimeError: stand-in failure in {name}")
    sys.exit(3)
'''


@pytest.fixture()
def host(tmp_path, monkeypatch):
    """An Ascend host (stand-in npu-smi), a MindSpeed-LLM checkout, a base model."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "torchrun"):
        (bin_dir / name).write_text(STAND_IN)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "npu-smi").write_text("#!/bin/sh\necho '+ npu-smi 24.1.0 Version: 24.1.0 +'\n")
    (bin_dir / "npu-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.txt"))
    home = tmp_path / "MindSpeed-LLM"
    home.mkdir()
    for entry in ("posttrain_gpt.py", "convert_ckpt.py", "preprocess_data.py", "evaluation.py"):
        (home / entry).write_text("")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    assert main(["init-model", "tiny-llama", str(tmp_path / "base")]) == 0
    return tmp_path


def launch(host: Path, *extra: str) -> int:
    return main(["run", str(host / "recipe.yaml"), "--backend", "mindspeed-llm", "--out", str(host / "run"),
                 "--weights", str(host / "base"), "--mindspeed-llm-home", str(host / "MindSpeed-LLM"), *extra])


def calls(host: Path) -> list[str]:
    return (host / "calls.txt").read_text().split() if (host / "calls.txt").exists() else []


def states(host: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((host / "run" / "mindspeed-llm" / "stages.json").read_text())}


def test_stages_run_in_order_into_a_result_compare_reads(host, capsys):
    assert launch(host) == 0
    assert calls(host) == ["convert_ckpt.py", "preprocess_data.py", "posttrain_gpt.py", "convert_ckpt.py",
                           "evaluation.py"]
    assert set(states(host).values()) == {"done"}
    run = host / "run" / "mindspeed-llm"
    assert "iteration        2/       3" in (run / "logs" / "tune.log").read_text()
    result = json.loads((run / "result.json").read_text())
    assert [s["loss"] for s in result["steps"]] == [6.25, 6.125, 6.0625]
    assert result["trainable_params"] == 2304
    assert result["evaluation"]["mmlu"]["accuracy"] == 0.5 and result["evaluation"]["mmlu"]["questions"] == 8
    assert result["evaluation"]["mmlu"]["subjects"]["astronomy"] == {"correct": 1, "questions": 4, "accuracy": 0.25}
    out = capsys.readouterr().out
    assert "mmlu accuracy 0.5000 (4/8" in out
    # the scripts ran with the run's paths
    scripts = run / "scripts"
    assert (scripts / "tune_tiny-launch_lora_ptd.sh").is_file()
    assert main(["compare", str(run), str(run / "logs" / "tune.log")]) == 0
    assert "6.0625" in capsys.readouterr().out
    assert main(["report", str(run), str(run / "logs" / "tune.log"), "--out", str(host / "report")]) == 0
    report = (host / "report" / "report.md").read_text()
    assert "Evaluation (as each stack reported it)" in report and "| mindspeed-llm | mmlu | 4/8 | 50.00 % | 2 |" in report


def test_a_failing_stage_stops_the_run_and_shows_its_log(host, capsys, monkeypatch):
    monkeypatch.setenv("FAIL_AT", "posttrain_gpt.py")
    assert launch(host) == 2
    err = capsys.readouterr().err
    assert "stage tune failed (exit 3)" in err and "RuntimeError: stand-in failure in posttrain_gpt.py" in err
    assert "--resume" in err
    assert calls(host) == ["convert_ckpt.py", "preprocess_data.py", "posttrain_gpt.py"]
    assert states(host) == {"convert": "done", "preprocess": "done", "tune": "failed", "export": "pending",
                            "evaluate": "pending"}
    assert not (host / "run" / "mindspeed-llm" / "result.json").exists()
    assert launch(host) == 2  # a second launch without --resume is refused: the stages are there
    assert "pass --resume" in capsys.readouterr().err


def test_resume_starts_at_the_first_unfinished_stage(host, monkeypatch):
    monkeypatch.setenv("FAIL_AT", "evaluation.py")
    assert launch(host) == 2
    assert states(host)["evaluate"] == "failed"
    (host / "calls.txt").unlink()
    monkeypatch.delenv("FAIL_AT")
    assert launch(host, "--resume") == 0
    assert calls(host) == ["evaluation.py"]
    assert set(states(host).values()) == {"done"}
    assert json.loads((host / "run" / "mindspeed-llm" / "result.json").read_text())["evaluation"]["mmlu"]


def test_without_an_ascend_host_the_cpu_reference_is_planned(host, monkeypatch):
    """No npu-smi: the CPU reference executor would run, and it refuses what only the cluster can do."""
    monkeypatch.setenv("PATH", os.environ["PATH"].split(":", 1)[1])
    assert shutil.which("npu-smi") is None
    assert launch(host) == 2
    assert calls(host) == []
    from tunebridge.backends import get_backend
    from tunebridge.recipe.schema import parse_recipe
    plan = get_backend("mindspeed-llm").plan(parse_recipe(RECIPE.replace("dp: 2", "dp: 1")), host / "base",
                                             host / "o", host / "MindSpeed-LLM")
    assert not plan.launch and "no Ascend NPU here" in plan.describe()
