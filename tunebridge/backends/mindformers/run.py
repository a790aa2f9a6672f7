"""The MindFormers backend: MindFormers' own Trainer on the YAML ``tunebridge render`` writes.

A run renders the recipe (as this run sees it, ``--max-steps`` applied) into ``out/config`` -- the CPU profile
here, byte for byte what ``tunebridge render RECIPE --backend mindformers --device cpu --num-samples N`` writes --
and runs the rendered ``run_<name>_finetune.sh`` in ``out`` with ``.venv-mindspore``'s interpreter. The entry point
is a checkout's ``run_mindformer.py`` (``--mindformers-home``) or tunebridge's launcher, which does what it does:
``MindFormerConfig`` -> ``build_context`` -> ``Trainer(config).train()``. With an Ascend NPU and a checkout, the
Ascend profile's script is launched in the checkout instead.

The other backends' inputs reach MindFormers only through what it reads:

- the MindRecord it trains on holds the run's global batches in step order, which it reads in file order
  (``shuffle: False``) in one pass;
- the checkpoint it loads holds the base weights and the run's initial LoRA (one PEFT adapter, converted).

The result is built from MindFormers' own output: the ``MFLossMonitor`` lines (loss, learning rate, global norm
before clipping, per-step time) in ``worker_0.log``, and the checkpoint its ``CheckpointMonitor`` saved (the
trainable parameters are those with optimizer state).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ...converters.formats import msckpt
from ...errors import TunebridgeError
from ..result import RunResult
from .bridge import call_mindspore, mindspore_python

LOG_NAME = "worker_0.log"
OPTIMIZER_STATE = ("adam_m.", "adam_v.")


def recipe_as_run(recipe, max_steps: int | None):
    """The recipe with the run's step limit (``--max-steps``), so the rendered YAML says what runs."""
    if not max_steps or max_steps == recipe.train.max_steps:
        return recipe
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"max_steps": max_steps})})


def start_checkpoint(base: Path, adapter: Path | None, out: Path) -> Path:
    """``base`` (a MindFormers .ckpt) with the LoRA tensors of ``adapter`` (a MindFormers adapter directory) added,
    so MindFormers loads the initial adapter with the weights; ``base`` itself without an adapter."""
    if adapter is None:
        return base
    from ...converters.formats import MF_ADAPTER

    weights, lora = msckpt.CkptReader(base), msckpt.CkptReader(Path(adapter) / MF_ADAPTER)
    clash = sorted(set(weights.entries) & set(lora.entries))
    if clash:
        raise TunebridgeError(f"{base}: already holds LoRA tensors ({clash[0]})")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        writer = msckpt.CkptWriter(f)
        for reader in (weights, lora):
            for name, entry in reader.entries.items():
                writer.write(name, list(entry.dims), entry.dtype, reader.locate(name)[2])
    msckpt.finish_readonly(out)
    return out


def _run_script(script: Path, cwd: Path, env: dict[str, str], log: Path, progress: bool, timeout: float | None) -> None:
    """Run a rendered script; its output (MindFormers' stdout logger and stderr) goes to ``log``."""
    from ...parity.logs.mindformers import STEP_MARKER

    with open(log, "w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None, "stdout is a pipe"
        deadline = time.monotonic() + timeout if timeout else None
        for line in proc.stdout:
            sink.write(line)
            if progress and STEP_MARKER.search(line):
                print(f"mindformers: {line.split(' - INFO - ', 1)[-1].rstrip()}", file=sys.stderr, flush=True)
            if deadline and time.monotonic() > deadline:
                proc.kill()
                raise TunebridgeError(f"{script.name} took longer than {timeout:.0f} s; its log: {log}")
        if proc.wait():
            tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-30:])
            raise RuntimeError(f"{script.name} exited {proc.returncode} (log: {log}):\n{tail}")


def _parameters(checkpoint: Path) -> tuple[int, int]:
    """(trainable, total) parameters in a checkpoint MindFormers saved: trainable are those with Adam moments;
    the model's are every tensor under ``model.`` and ``lm_head.`` (LlamaForCausalLM's cells)."""
    entries = msckpt.index(checkpoint)

    def numel(name: str) -> int:
        n = 1
        for d in entries[name].dims:
            n *= d
        return n

    trainable = sum(numel(n) for n in entries if f"adam_m.{n}" in entries)
    total = sum(numel(n) for n in entries if n.startswith(("model.", "lm_head.")))
    return trainable, total


def read_result(out: Path, output: Path, recipe_name: str, entry: str, device: str, notes: list[str]) -> RunResult:
    """The run's RunResult from MindFormers' log (``out/worker_0.log``, or msrun's worker logs in ``output``) and
    the newest checkpoint in ``output``."""
    from ...parity.logs import parse_log, parse_worker_logs
    from ...parity.logs.mindformers import parse_line

    msrun = output / "msrun_log"
    log = min(msrun.glob("worker_*.log")) if msrun.is_dir() and any(msrun.glob("worker_*.log")) else out / LOG_NAME
    run = parse_worker_logs(msrun, rank=0) if log.parent == msrun else parse_log(log, "mindformers")
    times = [
        t
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
        if (got := parse_line(line)) and (t := got[1]) is not None
    ]
    checkpoints = sorted(
        (output / "checkpoint" / "rank_0").glob(f"{recipe_name}_rank_0-*.ckpt"), key=lambda p: p.stat().st_mtime
    )
    if not checkpoints:
        raise TunebridgeError(f"{output}: MindFormers saved no checkpoint (log: {log})")
    trainable, total = _parameters(checkpoints[-1])
    versions = call_mindspore("backends.mindformers.ms.config", "versions", packages=["mindspore", "mindformers"])
    run.trainable_params, run.total_params = trainable, total
    run.checkpoints = [str(checkpoints[-1])]
    run.step_time_s = sum(times[1:]) / len(times[1:]) if len(times) > 1 else (times[0] if times else None)
    run.environment = {**versions, "device": device}
    package = (
        f"mindformers {versions['mindformers']}"
        if entry.startswith("tunebridge")
        else f"the mindformers package beside {entry}, which Python imports first"
    )
    run.executor = (
        f"mindformers.Trainer.train, run_mode finetune ({package}, mindspore {versions['mindspore']}; entry {entry})"
    )
    run.notes = [
        *notes,
        *run.notes,
        f"step 1 includes graph compilation ({times[0]:.1f} s); step_time_s is MindFormers' per_step_time "
        f"averaged over steps 2..{len(times)}"
        if len(times) > 1
        else "one step: no steady-state time",
    ]
    return run


def train_mindformers(
    recipe,
    inputs,
    out: Path,
    home: Path | None = None,
    launch: bool = False,
    progress: bool = True,
    timeout: float | None = None,
) -> RunResult:
    """Train ``recipe`` (as :func:`recipe_as_run` gives it) through MindFormers' Trainer from the shared
    ``inputs`` (:class:`tunebridge.backends.inputs.RunInputs`); ``out`` receives ``config/`` (the rendered
    files), ``data/`` and ``start.ckpt`` (what MindFormers reads), ``output/`` (what it writes), ``worker_0.log``
    and ``result.json``. ``launch``: an Ascend NPU is here; the Ascend profile's run script runs in the checkout
    ``home`` with its own entry point and the host's python (its ``output/`` is then in ``home``)."""
    from ..render import render
    from .render import launcher

    started = time.perf_counter()
    out = Path(out).resolve()  # the run script runs in another directory (out, or the checkout)
    out.mkdir(parents=True, exist_ok=True)
    device = "ascend" if launch else "cpu"
    config_dir = out / "config"
    render(recipe, "mindformers", config_dir, force=True, num_samples=inputs.samples, device=device)
    rows = [i for batch in inputs.batches for i in batch]
    data = out / "data" / "train.mindrecord"
    data.parent.mkdir(exist_ok=True)
    for stale in (data, Path(f"{data}.db")):
        stale.unlink(missing_ok=True)
    call_mindspore(
        "backends.mindformers.ms.mindrecord",
        "select",
        path=str(inputs.data("mindrecord").resolve()),
        out_path=str(data.resolve()),
        rows=rows,
    )
    adapter = inputs.adapter("mindformers") if inputs.has_adapter else None
    (out / "start.ckpt").unlink(missing_ok=True)
    checkpoint = start_checkpoint(inputs.weights("mindformers") / "model.ckpt", adapter, out / "start.ckpt")
    entry = Path(home).resolve() / "run_mindformer.py" if home else launcher()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        LOAD_CHECKPOINT=str(checkpoint.resolve()),
        TRAIN_DATA=str(data.resolve()),
        RUN_MINDFORMER=str(entry),
        GLOG_v="3",
        PYTHONUNBUFFERED="1",
    )
    if not launch:
        env["PYTHON"] = str(mindspore_python())
    workdir = out
    if launch:
        assert home is not None, "Backend.plan launches only in a checkout"
        workdir = Path(home)
    _run_script(config_dir / f"run_{recipe.name}_finetune.sh", workdir, env, out / LOG_NAME, progress, timeout)
    entry_name = f"{home}/run_mindformer.py" if home else "tunebridge's launch_mindformers.py"
    notes = [
        f"ran {config_dir / ('run_' + recipe.name + '_finetune.sh')} (tunebridge render --device {device}) "
        f"with RUN_MINDFORMER={entry}" + (f" in {home}" if launch else ""),
        f"data: the {len(inputs.batches)} global batches of the run in step order ({len(rows)} rows of "
        f"{inputs.data('mindrecord')}), read in file order",
        f"start: {'base weights + the initial LoRA' if adapter else 'base weights'} in {checkpoint}",
    ]
    result = read_result(out, workdir / "output", recipe.name, entry_name, device, notes)
    result.wall_time_s = time.perf_counter() - started
    if len(result.steps) != len(inputs.batches):
        raise TunebridgeError(
            f"MindFormers trained {len(result.steps)} steps, the run has {len(inputs.batches)} (log: {out / LOG_NAME})"
        )
    result.save(out / "result.json")
    return result
