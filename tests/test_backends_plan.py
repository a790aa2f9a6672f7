"""Backends refuse what they cannot run before any work starts."""
from __future__ import annotations

from pathlib import Path

import pytest

from tunebridge.backends import get_backend
from tunebridge.cli import main
from tunebridge.errors import TunebridgeError
from tunebridge.recipe.schema import parse_recipe

SAMPLES = Path("data/samples").resolve()
RECIPE = f"""
name: t
model: {{arch: tiny-llama}}
finetune: {{method: lora, lora: {{rank: 4, targets: [o, down]}}}}
train: {{seq_length: 128, global_batch_size: 4, micro_batch_size: 2, dtype: fp32, max_steps: 2}}
data: {{train: {{path: {SAMPLES}/seed004_math.jsonl, format: math}}}}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan") / "base"
    assert main(["init-model", "tiny-llama", str(d)]) == 0
    return d


def test_missing_checkout_is_refused(base, tmp_path):
    recipe = parse_recipe(RECIPE)
    with pytest.raises(TunebridgeError, match="not a mindformers checkout .no run_mindformer.py."):
        get_backend("mindformers").plan(recipe, base, tmp_path / "o", home=tmp_path / "nowhere")


def test_checkout_without_npu_says_what_runs_instead(base, tmp_path):
    (tmp_path / "msl").mkdir()
    (tmp_path / "msl" / "posttrain_gpt.py").write_text("")
    plan = get_backend("mindspeed-llm").plan(parse_recipe(RECIPE), base, tmp_path / "o", home=tmp_path / "msl")
    assert not plan.launch
    assert "no Ascend NPU here: running the CPU reference executor" in plan.describe()


def test_impossible_layouts_and_missing_inputs(base, tmp_path):
    with pytest.raises(TunebridgeError, match="tp 4 does not divide tiny-llama's 2 KV groups"):
        # validation catches it in a file; a recipe built in code reaches the backend's own check
        recipe = parse_recipe(RECIPE)
        recipe.parallel.tp = 4
        get_backend("mindspeed-llm").plan(recipe, base, tmp_path / "o")
    recipe = parse_recipe(RECIPE + "parallel: {tp: 2}\n")
    with pytest.raises(TunebridgeError, match="runs one card"):
        get_backend("mindformers").plan(recipe, base, tmp_path / "o")
    with pytest.raises(TunebridgeError, match="not an HF model directory"):
        get_backend("torch").plan(parse_recipe(RECIPE), tmp_path / "nothing", tmp_path / "o")
    no_data = parse_recipe(RECIPE.split("data:")[0])
    with pytest.raises(TunebridgeError, match="no data.train section"):
        get_backend("torch").plan(no_data, base, tmp_path / "o")


def test_run_checks_every_backend_before_working(base, tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE + "parallel: {tp: 2}\n")
    assert main(["run", str(path), "--backend", "all", "--weights", str(base), "--out", str(tmp_path / "o")]) == 2
    assert "runs one card" in capsys.readouterr().err
    assert not (tmp_path / "o" / "inputs").exists()
