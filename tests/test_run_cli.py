"""`tunebridge run --backend torch`: recipe -> data -> transformers + PEFT, counts checked, resumable."""
from __future__ import annotations

import json
from pathlib import Path

from tunebridge.cli import main

from .held import held

SAMPLES = Path("data/samples").resolve()


def _recipe(tmp_path: Path, weights: str | None) -> Path:
    text = Path("recipes/data/seed004-math.yaml").read_text().replace("../../data/samples", str(SAMPLES))
    if weights:
        text = text.replace("model: {arch: tiny-llama}", f"model: {{arch: tiny-llama, weights: {weights}}}")
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def _record(run: Path) -> dict:
    """result.json without what differs between any two runs (times, the run directory in paths)."""
    record = json.loads((run / "torch" / "result.json").read_text())
    for key in ("wall_time_s", "step_time_s"):
        record.pop(key)
    record["checkpoints"] = [str(Path(c).relative_to(run)) for c in record["checkpoints"]]
    return record


def test_run_trains_the_recipe_and_resumes_after_kill_9(tmp_path, capsys):
    """Killed (SIGKILL) after step 4, before its checkpoint: --resume continues from step 2's checkpoint and the
    run's record equals an uninterrupted run's, every step numbered as it was run."""
    assert main(["init-model", "tiny-llama", str(tmp_path / "base")]) == 0
    recipe = _recipe(tmp_path, "base")
    argv = ["run", str(recipe), "--max-steps", "6", "--save-every", "2"]
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    full = _record(tmp_path / "full")
    assert full["trainable_params"] == 10_752 and [s["step"] for s in full["steps"]] == [1, 2, 3, 4, 5, 6]
    assert full["checkpoints"] == ["torch/checkpoints/step_000002", "torch/checkpoints/step_000004",
                                   "torch/checkpoints/step_000006", "torch/final"]
    assert "torch: trainable parameters 10,752 (tunebridge params: 10,752)" in capsys.readouterr().out

    part = tmp_path / "part"
    proc, _ = held(tmp_path, "tunebridge.backends.pytorch._save_checkpoint", [*argv, "--out", part], call=2)
    proc.kill()
    proc.wait(timeout=60)
    logged = [json.loads(line)["step"] for line in (part / "torch" / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4] and [p.name for p in (part / "torch" / "checkpoints").iterdir()] == ["step_000002"]

    assert main([*argv, "--out", str(part), "--resume"]) == 0
    table = capsys.readouterr().out
    assert _record(part) == full  # losses bit-exact, all six steps, the same checkpoints
    assert [line.split()[1] for line in table.splitlines() if line.startswith("│")][:6] == \
        ["1", "2", "3", "4", "5", "6"]
    finished = (part / "torch" / "result.json").read_bytes()
    assert main([*argv, "--out", str(part), "--resume"]) == 0  # a finished run: nothing to do, nothing rewritten
    assert "the run finished (6 steps in result.json): nothing to resume" in capsys.readouterr().out
    assert (part / "torch" / "result.json").read_bytes() == finished


def test_resume_refuses_another_schedule(tmp_path, capsys):
    """A checkpoint of a 6-step run resumed with --max-steps 8 would restart the cosine schedule mid-run."""
    assert main(["init-model", "tiny-llama", str(tmp_path / "base")]) == 0
    recipe = _recipe(tmp_path, "base")
    out = tmp_path / "run"
    proc, _ = held(tmp_path, "tunebridge.backends.pytorch._save_checkpoint",
                   ["run", recipe, "--max-steps", "6", "--save-every", "2", "--out", out], call=2)
    proc.kill()
    proc.wait(timeout=60)
    before = (out / "torch" / "metrics.jsonl").read_bytes()
    assert main(["run", str(recipe), "--max-steps", "8", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "step_000002: the run was planned for 6 steps, now 8" in err and "Traceback" not in err
    assert f"{out} is kept" in err  # its checkpoint can still be resumed with the right --max-steps
    assert (out / "torch" / "metrics.jsonl").read_bytes() == before


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
