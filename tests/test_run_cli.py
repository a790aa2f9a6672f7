"""`tunebridge run --backend torch`: recipe -> data -> transformers + PEFT, counts checked, resumable."""
from __future__ import annotations

import json
from pathlib import Path

from tunebridge.cli import main

SAMPLES = Path("data/samples").resolve()


def _recipe(tmp_path: Path, weights: str | None) -> Path:
    text = Path("recipes/data/seed004-math.yaml").read_text().replace("../../data/samples", str(SAMPLES))
    if weights:
        text = text.replace("model: {arch: tiny-llama}", f"model: {{arch: tiny-llama, weights: {weights}}}")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_run_trains_the_recipe_and_resumes(tmp_path, capsys):
    assert main(["init-model", "tiny-llama", str(tmp_path / "base")]) == 0
    recipe = _recipe(tmp_path, "base")
    assert main(["run", str(recipe), "--out", str(tmp_path / "full"), "--max-steps", "4"]) == 0
    full = json.loads((tmp_path / "full" / "torch" / "result.json").read_text())
    assert full["trainable_params"] == 10_752 and [s["step"] for s in full["steps"]] == [1, 2, 3, 4]
    assert "torch: trainable parameters 10,752 (tunebridge params: 10,752)" in capsys.readouterr().out
    assert main(["run", str(recipe), "--out", str(tmp_path / "part"), "--max-steps", "4", "--save-every", "2"]) == 0
    import shutil
    shutil.rmtree(tmp_path / "part" / "torch" / "checkpoints" / "step_000004")
    assert main(["run", str(recipe), "--out", str(tmp_path / "part"), "--max-steps", "4", "--resume"]) == 0
    resumed = [json.loads(line) for line in (tmp_path / "part" / "torch" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in resumed] == [s["loss"] for s in full["steps"]]


def test_run_needs_weights(tmp_path, capsys):
    assert main(["run", str(_recipe(tmp_path, None)), "--out", str(tmp_path / "o")]) == 2
    assert "no model weights" in capsys.readouterr().err
    assert main(["validate", str(_recipe(tmp_path, "missing"))]) == 2
    assert "model.weights" in capsys.readouterr().err


def test_torchrun_two_cpu_processes_give_the_single_process_losses(tmp_path):
    """Several devices go through torchrun (DDP over gloo here): rank 0 makes the inputs, the global batch is
    split over the ranks, and the losses equal one process's."""
    import os
    import subprocess
    import sys
    recipe = Path("recipes/tiny-parity-lora.yaml")
    assert main(["run", str(recipe), "--out", str(tmp_path / "one"), "--max-steps", "3"]) == 0
    torchrun = Path(sys.executable).parent / "torchrun"
    tunebridge = Path(sys.executable).parent / "tunebridge"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(tunebridge), "run",
                           str(recipe), "--out", str(tmp_path / "two"), "--max-steps", "3"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "torch" / "result.json").read_text())["steps"]
    two = json.loads((tmp_path / "two" / "torch" / "result.json").read_text())["steps"]
    assert len(two) == 3
    for a, b in zip(one, two):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"])
