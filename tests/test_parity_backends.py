"""One recipe on torch, MindFormers' own Trainer (MindSpore CPU) and megatron-core: the same curve, for the right
reasons.

``tunebridge run recipes/tiny-parity-lora.yaml --backend all`` (once per session, ``parity_run``): the three runs
start from the same converted weights, the same initial LoRA (one PEFT adapter converted to each stack's layout;
MindFormers loads it inside its checkpoint) and the same tokens in the same order (MindFormers reads them in file
order from a MindRecord written in step order). The field's tolerances are the MindFormers migration standard
(FACTS §6); MindFormers' Trainer is held to 1e-5 on the loss and 1e-4 on the global norm. Where the stacks' math
differs (Adam's bias correction, see `tunebridge explain`), the recipe fixes it; left in, the curves part.
"""
from __future__ import annotations

import dataclasses

from tunebridge.backends.mindformers.run import train_mindformers
from tunebridge.parity.verdicts import loss_checks

STEPS = 20


def _report(capsys, title: str, verdicts) -> None:
    with capsys.disabled():
        print(f"\n{title}")
        for v in verdicts:
            print(f"  {'PASS' if v.passed else 'FAIL'} {v.name}: {v.figure()} (tolerance {v.tolerance})")


def _rel(a: float, b: float) -> float:
    return abs(b - a) / abs(a)


def test_trainable_counts_equal_the_accounting(parity_run):
    recipe, _, results, _, _ = parity_run
    for name, result in results.items():
        assert result.trainable_params == recipe.param_report(name).trainable_params == 11_264, name
        assert len(result.steps) == STEPS


def test_three_backends_agree_on_the_loss_curve(parity_run, capsys):
    _, _, results, _, _ = parity_run
    verdicts = [v for other in ("mindformers", "mindspeed-llm")
                for v in loss_checks(results["torch"], results[other], "torch", other)]
    _report(capsys, "loss parity, 20 steps, fp32, bias correction and token-mean loss on every stack", verdicts)
    assert all(v.passed for v in verdicts), [v.name for v in verdicts if not v.passed]
    assert results["torch"].steps[-1].loss < results["torch"].steps[0].loss  # it trains


def test_mindformers_trainer_matches_torch_to_1e5(parity_run):
    _, _, results, _, _ = parity_run
    torch_steps, mf_steps = results["torch"].steps, results["mindformers"].steps
    loss_rel = [_rel(a.loss, b.loss) for a, b in zip(torch_steps, mf_steps)]
    norm_rel = [_rel(a.grad_norm, b.grad_norm) for a, b in zip(torch_steps, mf_steps)]
    assert loss_rel[0] <= 1e-5 and sum(loss_rel) / STEPS <= 1e-5
    assert sum(norm_rel) / STEPS <= 1e-4 and max(norm_rel) <= 1e-4
    # the same schedule: MindFormers' CosineWithWarmUpLR printed in float32
    assert max(abs(a.lr - b.lr) for a, b in zip(torch_steps, mf_steps)) <= 1e-6 * max(a.lr for a in torch_steps)


def test_curves_part_when_mindformers_keeps_its_uncorrected_adam(parity_run, tmp_path, capsys):
    """The seeds' MindFormers optimizer (AdamWeightDecay: no bias correction), rendered and run by the Trainer,
    against bias-corrected torch: same start, different updates from step 1 on."""
    recipe, inputs, results, _, _ = parity_run
    optimizer = recipe.train.optimizer.model_copy(update={"bias_correction": False})
    uncorrected = recipe.model_copy(update={"train": recipe.train.model_copy(update={"optimizer": optimizer})})
    run = train_mindformers(uncorrected, inputs, tmp_path / "mf", progress=False)
    assert "type: AdamWeightDecay" in (tmp_path / "mf" / "config" / "finetune_tiny-parity-lora.yaml").read_text()
    first, mean, *_ = loss_checks(results["torch"], run, "torch", "mindformers (no bias correction)")
    _report(capsys, "left in: MindFormers without Adam bias correction", [first, mean])
    assert first.passed  # step 1 sees the same weights: only the updates differ
    assert not mean.passed


def test_a_shuffled_data_order_turns_the_verdict_to_fail(parity_run, tmp_path):
    recipe, inputs, results, _, _ = parity_run
    from tunebridge.backends.pytorch import train
    cfg = dataclasses.replace(inputs.config(recipe, "torch"), seed=1)  # seed only moves the order here
    shuffled = train(inputs.hf_weights, inputs.data("jsonl"), tmp_path / "t", cfg,
                     init_adapter=str(inputs.adapter("peft")), progress=False)
    first, mean, *_ = loss_checks(results["torch"], shuffled, "torch", "torch, other order")
    assert not (first.passed and mean.passed)


def test_run_all_from_the_cli_prints_the_three_curves(parity_run):
    recipe, _, _, root, out = parity_run
    for name in ("torch", "mindformers", "mindspeed-llm"):
        assert f"{name}: trainable parameters 11,264 (tunebridge params: 11,264)" in out
    assert (root / "mindspeed-llm" / "logs" / "train.log").exists()
    assert (root / "mindformers" / "worker_0.log").exists()
    assert recipe.name in out
