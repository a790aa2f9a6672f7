"""``tunebridge run --backend mindformers``: MindFormers' own Trainer on the rendered CPU YAML, fed through what it
reads (a MindRecord in step order, a checkpoint holding the initial LoRA), its result read from its own output.

The session's parity run (``parity_run``: recipes/tiny-parity-lora.yaml, 20 steps) is checked here for what the
MindFormers side did; its curve against torch is in test_parity_backends.py.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from tunebridge.converters.adapters import read_mindformers
from tunebridge.backends import get_backend
from tunebridge.backends.mindformers.run import recipe_as_run, start_checkpoint
from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.errors import TunebridgeError
from tunebridge.converters.formats import msckpt
from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.render import render_files
from tunebridge.train.schedule import Schedule


def test_result_names_the_trainer_and_counts_equal_the_accounting(parity_run):
    recipe, _, results, _, _ = parity_run
    result = results["mindformers"]
    assert result.executor.startswith("mindformers.Trainer.train, run_mode finetune (mindformers 1.9.0, "
                                      "mindspore 2.9.0; entry tunebridge's launch_mindformers.py)")
    assert result.environment == {"mindspore": "2.9.0", "mindformers": "1.9.0", "device": "cpu"}
    assert result.trainable_params == recipe.param_report("mindformers").trainable_params == 11_264
    assert result.total_params == recipe.spec.total_params() + 11_264
    assert 0 < result.step_time_s < 2.0 < result.wall_time_s


def test_the_run_yaml_is_what_render_writes_for_cpu(parity_run):
    recipe, inputs, _, root, _ = parity_run
    rendered = render_files(recipe, "mindformers", num_samples=inputs.samples, device="cpu")
    assert sorted(p.name for p in (root / "mindformers" / "config").iterdir()) == sorted(rendered)
    for name, text in rendered.items():
        assert (root / "mindformers" / "config" / name).read_text(encoding="utf-8") == text, name


def test_mindformers_reads_the_runs_batches_in_step_order(parity_run, tmp_path):
    _, inputs, _, root, _ = parity_run
    call_mindspore("backends.mindformers.ms.mindrecord", "read", path=str(root / "mindformers" / "data" / "train.mindrecord"),
                   npz_path=str(tmp_path / "run.npz"))
    call_mindspore("backends.mindformers.ms.mindrecord", "read", path=str(inputs.data("mindrecord")), npz_path=str(tmp_path / "all.npz"))
    run, every = np.load(tmp_path / "run.npz"), np.load(tmp_path / "all.npz")
    order = [i for batch in inputs.batches for i in batch]
    assert len(order) == 20 * 8
    assert np.array_equal(run["input_ids"], every["input_ids"][order])
    assert np.array_equal(run["labels"], every["labels"][order])


def test_the_loaded_checkpoint_holds_the_initial_lora(parity_run):
    _, inputs, results, root, _ = parity_run
    start = msckpt.CkptReader(root / "mindformers" / "start.ckpt")
    base = msckpt.CkptReader(inputs.weights("mindformers") / "model.ckpt")
    lora = msckpt.CkptReader(inputs.adapter("mindformers") / "lora.ckpt")
    assert set(start.entries) == set(base.entries) | set(lora.entries)
    assert all(torch.equal(start.get(n), r.get(n)) for r in (base, lora) for n in r.entries)
    # MindFormers loaded it: step 1's loss is the torch backend's, which starts from the same PEFT adapter
    assert results["mindformers"].steps[0].loss == pytest.approx(results["torch"].steps[0].loss, rel=1e-6)


def test_start_checkpoint_refuses_a_base_that_already_has_lora(parity_run, tmp_path):
    _, inputs, _, root, _ = parity_run
    with pytest.raises(TunebridgeError, match="already holds LoRA tensors"):
        start_checkpoint(root / "mindformers" / "start.ckpt", inputs.adapter("mindformers"), tmp_path / "x.ckpt")


def test_rates_are_mindformers_own_schedule(parity_run):
    recipe, _, results, _, _ = parity_run
    t = recipe.train
    schedule = Schedule(t.lr, t.min_lr, 20, t.warmup_ratio, "cosine", "mindformers")
    assert schedule.warmup_steps == 2
    assert [s.lr for s in results["mindformers"].steps] == pytest.approx(
        [schedule.lr_at(k) for k in range(20)], rel=1e-6, abs=1e-10)  # float32


def test_worker_log_is_mindformers_own(parity_run):
    _, _, results, root, _ = parity_run
    text = (root / "mindformers" / "worker_0.log").read_text()
    line = re.compile(r"\{ Epoch:\[  1/  1\], step:\[\s+(\d+)/   20\], loss:\[(\d+\.\d{6})/\d+\.\d{6}\], "
                      r"per_step_time: \d+ms, lr: \S+, overflow cond: False, loss_scale: 1\.0, "
                      r"global_norm: \[([\d.e+-]+)\]")
    found = line.findall(text)
    assert [int(g[0]) for g in found] == list(range(1, 21))
    assert [float(g[1]) for g in found] == [s.loss for s in results["mindformers"].steps]
    assert "global_batch_size = batch_size_per_card * device_num * gradient_accumulation_steps = 8 = 8 * 1 * 1" in text


def test_trained_adapter_reads_back(parity_run):
    recipe, inputs, results, _, _ = parity_run
    (ckpt,) = results["mindformers"].checkpoints
    assert ckpt.endswith("output/checkpoint/rank_0/tiny-parity-lora_rank_0-1_20.ckpt")
    trained = read_mindformers(ckpt, recipe.spec)  # adapter_config.json: MindFormers' own, in output/
    start = read_mindformers(inputs.adapter("mindformers"), recipe.spec)
    assert (trained.rank, trained.alpha) == (8, 16.0)
    assert sorted(trained.pairs) == sorted(start.pairs)
    assert all(not torch.equal(trained.pairs[k][1], start.pairs[k][1]) for k in trained.pairs)


def test_recipe_as_run_applies_max_steps():
    recipe = load_recipe("recipes/tiny-demo-lora.yaml")
    assert recipe_as_run(recipe, None) is recipe
    assert recipe_as_run(recipe, 3).train.max_steps == 3 and recipe.train.max_steps == 40


def test_plan_refuses_several_cards_without_an_npu(tmp_path):
    recipe = load_recipe("recipes/tiny-demo-lora.yaml")
    wide = recipe.model_copy(update={"parallel": recipe.parallel.model_copy(update={"dp": 2})})
    with pytest.raises(TunebridgeError, match="MindFormers on MindSpore CPU runs one card"):
        get_backend("mindformers").plan(wide, recipe.path(recipe.model.weights), tmp_path / "o")


def test_a_checkout_without_an_npu_runs_its_run_mindformer_on_cpu(tmp_path):
    recipe = load_recipe("recipes/tiny-demo-lora.yaml")
    (tmp_path / "mf").mkdir()
    (tmp_path / "mf" / "run_mindformer.py").write_text("")
    plan = get_backend("mindformers").plan(recipe, recipe.path(recipe.model.weights), tmp_path / "o", tmp_path / "mf")
    assert not plan.launch and plan.home == tmp_path / "mf"
    assert "its run_mindformer.py runs the CPU profile" in plan.describe()


def test_with_an_npu_and_a_checkout_the_run_launches_there(tmp_path, monkeypatch):
    """npu-smi answers: a several-card recipe is accepted, to be launched with the Ascend profile in the checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npu-smi").write_text("#!/bin/sh\n")
    (bin_dir / "npu-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    (tmp_path / "mf").mkdir()
    (tmp_path / "mf" / "run_mindformer.py").write_text("")
    recipe = load_recipe("recipes/tiny-demo-lora.yaml")
    wide = recipe.model_copy(update={"parallel": recipe.parallel.model_copy(update={"dp": 2})})
    plan = get_backend("mindformers").plan(wide, recipe.path(recipe.model.weights), tmp_path / "o", tmp_path / "mf")
    assert plan.launch and plan.executor == f"the rendered artifacts, launched in {tmp_path / 'mf'}"
