"""Every bundled recipe rendered for both stacks, held as snapshots (reviewed against the seeds' configs).

Regenerate after an intended change: TUNEBRIDGE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_render_snapshots.py
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.render import render, render_files

from .families import RECIPES, renderable

SNAPSHOTS = Path(__file__).parent / "snapshots" / "render"
CASES = [(p, b, d) for p in RECIPES for b, d in (("mindformers", "ascend"), ("mindformers", "cpu"),
                                                  ("mindspeed-llm", "ascend"))
         if b in renderable(p) and (d == "ascend" or load_recipe(p).train.dtype == "fp32")]  # MindSpore CPU: fp32


@pytest.mark.parametrize("path,backend,device", CASES, ids=lambda x: getattr(x, "stem", x))
def test_rendered_artifacts_match_snapshots(path, backend, device):
    files = render_files(load_recipe(path), backend, num_samples=1000, device=device)
    where = SNAPSHOTS / path.stem / (backend if device == "ascend" else f"{backend}-{device}")
    if os.environ.get("TUNEBRIDGE_UPDATE_SNAPSHOTS"):
        where.mkdir(parents=True, exist_ok=True)
        for old in where.iterdir():
            old.unlink()
        for name, text in files.items():
            (where / name).write_text(text, encoding="utf-8")
    assert sorted(files) == sorted(p.name for p in where.iterdir())
    for name, text in files.items():
        assert text == (where / name).read_text(encoding="utf-8"), f"{where / name} differs from the rendering"


def test_mindformers_yaml_parses_back_in_mindformers(ms_python, tmp_path):
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    files = render(recipe, "mindformers", tmp_path / "mf")
    by_name = {f.name: f for f in files}
    names = ("finetune_llama3-8b-math-lora-r8.yaml", "eval_llama3-8b-math-lora-r8_squad.yaml",
             "predict_llama3-8b-math-lora-r8.yaml")
    cfg, ev, pr = call_mindspore("backends.mindformers.ms.config", "read_configs", paths=[str(by_name[n]) for n in names])
    t, lora = recipe.train, recipe.finetune.lora
    mc = cfg["model"]["model_config"]
    assert cfg["run_mode"] == "finetune" and cfg["seed"] == t.seed
    assert (cfg["optimizer"]["betas"], cfg["optimizer"]["eps"]) == ([t.optimizer.beta1, t.optimizer.beta2],
                                                                   t.optimizer.eps)
    assert cfg["lr_schedule"]["learning_rate"] == t.lr and cfg["lr_schedule"]["warmup_ratio"] == t.warmup_ratio
    assert mc["pet_config"]["lora_rank"] == lora.rank and mc["pet_config"]["lora_alpha"] == lora.alpha
    assert mc["pet_config"]["target_modules"] == ".*wq|.*wv"
    assert mc["seq_length"] == t.seq_length and cfg["runner_config"]["batch_size"] == t.micro_batch_size
    assert cfg["parallel_config"]["model_parallel"] == recipe.parallel.tp
    assert ev["run_mode"] == "eval" and ev["metric"]["type"] == "EmF1Metric"
    assert ev["model"]["model_config"]["seq_length"] == 8192
    assert pr["run_mode"] == "predict" and pr["model"]["model_config"]["use_past"] is True
