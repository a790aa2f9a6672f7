"""One recipe on torch, MindFormers (MindSpore CPU) and megatron-core: the same curve, for the right reasons.

The three runs start from the same converted weights, the same initial LoRA (one PEFT adapter converted to
each stack's layout) and the same tokens in the same order. Tolerances are the MindFormers migration standard
(FACTS §6): first-step loss rel < 0.5 %, mean loss rel < 1 %. Where the stacks' math differs (Adam's bias
correction, see `tunebridge explain`), the recipe fixes it; left in, the curves part.
"""
from __future__ import annotations

import dataclasses

import pytest

from tunebridge.backends import get_backend
from tunebridge.backends.inputs import RunInputs
from tunebridge.cli import main
from tunebridge.parity import loss_checks
from tunebridge.recipe import load_recipe

RECIPE = "recipes/tiny-parity-lora.yaml"
STEPS = 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ms_python):
    root = tmp_path_factory.mktemp("parity")
    recipe = load_recipe(RECIPE)
    weights = recipe.path(recipe.model.weights)
    names = ["torch", "mindformers", "mindspeed-llm"]
    inputs = RunInputs.make(recipe, names, weights, root / "inputs", {"max_steps": STEPS}, progress=False)
    results = {}
    for name in names:
        plan = get_backend(name).plan(recipe, weights, root / name)
        results[name] = get_backend(name).run(plan, inputs, progress=False)
    return recipe, inputs, results, root


def _report(capsys, title: str, verdicts) -> None:
    with capsys.disabled():
        print(f"\n{title}")
        for v in verdicts:
            print(f"  {'PASS' if v.passed else 'FAIL'} {v.name}: {v.figure()} (tolerance {v.tolerance})")


def test_trainable_counts_equal_the_accounting(runs):
    recipe, _, results, _ = runs
    for name, result in results.items():
        assert result.trainable_params == recipe.param_report(name).trainable_params == 11_264, name
        assert len(result.steps) == STEPS


def test_three_backends_agree_on_the_loss_curve(runs, capsys):
    _, _, results, _ = runs
    verdicts = [v for other in ("mindformers", "mindspeed-llm")
                for v in loss_checks(results["torch"], results[other], "torch", other)]
    _report(capsys, "loss parity, 20 steps, fp32, bias correction on every stack", verdicts)
    assert all(v.passed for v in verdicts), [v.name for v in verdicts if not v.passed]
    for other in ("mindformers", "mindspeed-llm"):
        first = abs(results[other].steps[0].loss - results["torch"].steps[0].loss) / results["torch"].steps[0].loss
        assert first < 0.005
    assert results["torch"].steps[-1].loss < results["torch"].steps[0].loss  # it trains


def test_curves_part_when_mindformers_keeps_its_uncorrected_adam(runs, tmp_path, capsys):
    """The seeds' MindFormers optimizer (AdamWeightDecay family: no bias correction) against bias-corrected
    torch: same start, different updates from step 1 on."""
    recipe, inputs, results, _ = runs
    plan = get_backend("mindformers").plan(recipe, inputs.hf_weights, tmp_path / "mf")
    uncorrected = dataclasses.replace(inputs, overrides={**inputs.overrides})
    cfg = dataclasses.replace(inputs.config(recipe, "mindformers"), adam_bias_correction=False)
    from tunebridge.backends.mindformers import train_mindformers
    run = train_mindformers(recipe.spec, inputs.weights("mindformers") / "model.ckpt",
                            uncorrected.data("mindrecord"), inputs.batches, cfg, plan.out,
                            init_adapter_ckpt=inputs.adapter("mindformers"), progress=False)
    first, mean, *_ = loss_checks(results["torch"], run, "torch", "mindformers (no bias correction)")
    _report(capsys, "left in: MindFormers without Adam bias correction", [first, mean])
    assert first.passed  # step 1 sees the same weights: only the updates differ
    assert not mean.passed


def test_a_shuffled_data_order_turns_the_verdict_to_fail(runs, tmp_path):
    recipe, inputs, results, _ = runs
    from tunebridge.backends.pytorch import train
    cfg = dataclasses.replace(inputs.config(recipe, "torch"), seed=1)  # seed only moves the order here
    shuffled = train(inputs.hf_weights, inputs.data("jsonl"), tmp_path / "t", cfg,
                     init_adapter=str(inputs.adapter("peft")), progress=False)
    first, mean, *_ = loss_checks(results["torch"], shuffled, "torch", "torch, other order")
    assert not (first.passed and mean.passed)


def test_run_all_from_the_cli_prints_the_three_curves(tmp_path, capsys, ms_python):
    recipe = load_recipe(RECIPE)
    assert main(["run", RECIPE, "--backend", "all", "--out", str(tmp_path / "o"), "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "mindformers", "mindspeed-llm"):
        assert f"{name}: trainable parameters 11,264 (tunebridge params: 11,264)" in out
    assert (tmp_path / "o" / "mindspeed-llm" / "logs" / "train.log").exists()
    assert (tmp_path / "o" / "mindformers" / "worker_0.log").exists()
    assert recipe.name in out
