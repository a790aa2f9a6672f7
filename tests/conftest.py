"""Shared test fixtures. Tests run in .venv; MindSpore work goes through tunebridge.backends.mindformers.bridge."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def ms_python() -> Path:
    """The MindSpore environment's interpreter. CI must have it; locally its absence skips."""
    from tunebridge.backends.mindformers.bridge import mindspore_python
    from tunebridge.errors import TunebridgeError
    try:
        return mindspore_python()
    except TunebridgeError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


def run_rendered(script: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """A rendered script, unchanged, with the path variables it reads from the environment."""
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update(TUNEBRIDGE=str(REPO / ".venv" / "bin" / "tunebridge"), **env)
    proc = subprocess.run(["bash", str(script)], cwd=cwd, env=full, capture_output=True, text=True, timeout=1200)
    (cwd / f"{script.stem}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    assert proc.returncode == 0, f"{script.name} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc


@pytest.fixture(scope="session")
def rendered_demo(tmp_path_factory, ms_python):
    """recipes/tiny-demo-lora.yaml rendered with --device cpu, its prepare and run scripts run as rendered, with
    tunebridge's launcher as the entry point (RUN_MINDFORMER): (working directory, rendered files, run output)."""
    from tunebridge.recipe.schema import load_recipe
    from tunebridge.backends.render import render
    from tunebridge.backends.mindformers.render import launcher
    root = tmp_path_factory.mktemp("mindformers-cpu")
    recipe = load_recipe(REPO / "recipes" / "tiny-demo-lora.yaml")
    files = {f.name: f for f in render(recipe, "mindformers", root / "mf", device="cpu")}
    (root / "checkpoint_download").mkdir()
    run_rendered(files["prepare_tiny-demo-lora.sh"], root, HF_DIR=str(REPO / "tunebridge" / "assets" / "tiny-base"),
                 RECIPE=str(REPO / "recipes" / "tiny-demo-lora.yaml"))
    run = run_rendered(files["run_tiny-demo-lora_finetune.sh"], root, PYTHON=str(ms_python),
                       RUN_MINDFORMER=str(launcher()))
    return root, files, run.stdout + run.stderr


@pytest.fixture(scope="session")
def parity_run(tmp_path_factory, ms_python):
    """``tunebridge run recipes/tiny-parity-lora.yaml --backend all``, once for the session: (recipe, the shared
    inputs, {backend: RunResult}, run directory, what the command printed)."""
    import contextlib
    import io

    from tunebridge.backends.inputs import RunInputs
    from tunebridge.backends.result import RunResult
    from tunebridge.cli import main
    from tunebridge.recipe.schema import load_recipe
    root = tmp_path_factory.mktemp("parity") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["run", str(REPO / "recipes" / "tiny-parity-lora.yaml"), "--backend", "all",
                     "--out", str(root)]) == 0
    recipe = load_recipe(REPO / "recipes" / "tiny-parity-lora.yaml")
    inputs = RunInputs.load(root / "inputs", recipe.path(recipe.model.weights))
    results = {n: RunResult.load(root / n / "result.json") for n in ("torch", "mindformers", "mindspeed-llm")}
    return recipe, inputs, results, root, printed.getvalue()
