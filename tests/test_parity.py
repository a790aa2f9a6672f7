"""Parity verdicts: pass on equal curves and counts, fail on perturbed ones, with exact figures."""
from __future__ import annotations

import math

import pytest
import torch

from tunebridge.parity import verdicts as parity
from tunebridge.model.accounting import count
from tunebridge.backends.result import RunResult, StepRecord
from tunebridge.errors import TunebridgeError
from tunebridge.parity.logits import compare
from tunebridge.recipe.schema import ParityTolerances, load_recipe

from .snapshot import assert_snapshot


def run(losses, start=1, norms=None, backend="torch") -> RunResult:
    norms = norms or [None] * len(losses)
    return RunResult(backend, [StepRecord(start + i, x, 1e-4, g) for i, (x, g) in enumerate(zip(losses, norms))])


LOSSES = [2.0, 1.8, 1.6, 1.5]
NORMS = [4.0, 3.0, 2.0, 1.0]


def by_name(verdicts):
    return {v.name.split(":")[0]: v for v in verdicts}


def test_equal_curves_pass_with_zero_error():
    v = by_name(parity.loss_checks(run(LOSSES, norms=NORMS), run(LOSSES, norms=NORMS), "mf", "ms"))
    assert set(v) == {"loss, first step", "loss, mean over steps", "global norm, mean over steps"}
    assert all(x.passed for x in v.values())
    assert v["loss, mean over steps"].measured["mean rel error"] == 0.0
    assert v["loss, mean over steps"].series["rel_error"] == [0.0] * 4
    assert v["loss, first step"].tolerance == "rel < 0.5 % or abs < 0.005"


def test_perturbed_curve_fails_with_exact_figures():
    # +2 % on every step: first step rel 0.02 > 0.5 % and abs 0.04 > 0.005
    b = run([x * 1.02 for x in LOSSES], norms=[g * 1.2 for g in NORMS])
    v = by_name(parity.loss_checks(run(LOSSES, norms=NORMS), b, "mf", "ms"))
    first, mean, norm = v["loss, first step"], v["loss, mean over steps"], v["global norm, mean over steps"]
    assert not first.passed and first.measured["rel error"] == pytest.approx(0.02, abs=1e-12)
    assert first.measured["abs error"] == pytest.approx(0.04, abs=1e-12)
    assert not mean.passed and mean.measured["mean rel error"] == pytest.approx(0.02, abs=1e-12)
    assert mean.measured["mean abs error"] == pytest.approx(0.02 * sum(LOSSES) / 4, abs=1e-12)
    assert not norm.passed and norm.measured["mean rel error"] == pytest.approx(0.2, abs=1e-12)
    assert first.figure() == "step 1, mf loss 2, ms loss 2.04, rel error 2 %, abs error 0.04"


def test_small_errors_pass_by_relative_or_absolute_bar():
    # rel 0.2 %, 0.4 %, 0.4 %, 0.4 %: first step < 0.5 %, mean 0.35 % < 1 %
    a = run(LOSSES)
    b = run([2.004, 1.8072, 1.6064, 1.506])
    v = by_name(parity.loss_checks(a, b, "a", "b"))
    assert v["loss, first step"].passed and v["loss, mean over steps"].passed
    assert v["loss, mean over steps"].measured["mean rel error"] == pytest.approx(0.0035, abs=1e-12)
    # a low loss: rel 0.8 % fails the relative bar, abs 0.004 passes the absolute one
    low = by_name(parity.loss_checks(run([0.5]), run([0.504]), "a", "b"))["loss, first step"]
    assert low.passed and low.measured["rel error"] == pytest.approx(0.008, abs=1e-12)
    assert not by_name(parity.loss_checks(run([0.5]), run([0.506]), "a", "b"))["loss, first step"].passed
    # a single bad step among many: the mean bar still fails above 1 %
    c = run([2.0, 1.8, 1.6, 1.5 * 1.05])
    mean = by_name(parity.loss_checks(a, c, "a", "c"))["loss, mean over steps"]
    assert not mean.passed and mean.measured["max rel error"] == pytest.approx(0.05) and mean.measured["at step"] == 4


def test_mismatched_steps_compare_the_common_ones_or_refuse():
    v = parity.loss_checks(run(LOSSES), run(LOSSES[:2]), "long", "short")
    assert v[1].measured["steps"] == 2
    assert "compared the 2 common steps only" in v[1].explanation
    assert "long: 4 steps (1-4), short: 2 steps (1-2)" in v[1].explanation
    with pytest.raises(TunebridgeError, match=r"cannot compare loss curves: a logged 4 steps \(1-4\) and b logged "
                                              r"2 steps \(11-12\); no step is in both"):
        parity.loss_checks(run(LOSSES), run(LOSSES[:2], start=11), "a", "b")


def test_overflow_steps_are_left_out_of_the_norm_check():
    v = parity.loss_checks(run(LOSSES, norms=[math.inf, 3.0, 2.0, 1.0]), run(LOSSES, norms=NORMS), "a", "b")
    norm = by_name(v)["global norm, mean over steps"]
    assert norm.passed and norm.measured["steps"] == 3 and "1 step(s) without a finite norm" in norm.explanation


def test_nan_loss_fails():
    v = by_name(parity.loss_checks(run(LOSSES), run([2.0, math.nan, 1.6, 1.5]), "a", "b"))
    assert not v["loss, mean over steps"].passed
    assert v["loss, mean over steps"].measured["at step"] == 2  # the worst step is the nan one


def test_figures_of_every_kind():
    v = parity.Verdict("x", True, {"ok": True, "count": 1234567, "rel error": math.inf, "abs error": math.nan,
                                   "mean": 0.000123456}, "exact", "")
    assert v.figure() == "ok True, count 1,234,567, rel error inf, abs error nan, mean 0.0001235"


def test_a_run_without_steps_is_named():
    with pytest.raises(TunebridgeError, match=r"a logged none and b logged 4 steps \(1-4\); no step is in both"):
        parity.loss_checks(run([]), run(LOSSES), "a", "b")


def test_small_norm_errors_pass_on_their_mean():
    v = by_name(parity.loss_checks(run(LOSSES, norms=NORMS), run(LOSSES, norms=[g * 1.05 for g in NORMS]), "a", "b"))
    norm = v["global norm, mean over steps"]
    assert norm.passed and norm.measured["mean rel error"] == pytest.approx(0.05)


def test_parameters_accounted_vs_instantiated():
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    report = recipe.param_report("torch")
    good = parity.params_instantiated(report, 3_407_872, report.total_params + 3_407_872)
    assert good.passed and good.measured["instantiated trainable"] == 3_407_872
    assert not parity.params_instantiated(report, 3_407_872 + 1).passed
    assert not parity.params_instantiated(report, 3_407_872, report.total_params).passed  # adapter not in total


def test_parameters_across_backends_explain_the_fused_lora():
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    reports = [recipe.param_report(b) for b in ("torch", "mindformers", "mindspeed-llm")]
    v = parity.params_across(reports, recipe.spec)
    assert v.passed
    assert v.measured == {"torch trainable": 3_407_872, "mindformers trainable": 3_407_872,
                          "mindspeed-llm trainable": 2_621_440}
    # q, k, v per projection at rank 8 over 32 layers minus the two A matrices linear_qkv does not need
    assert "2,621,440 = 4,718,592 (per-projection LoRA on q+k+v) - 2,097,152 (linear_qkv = q+k+v share one LoRA A)" \
        in v.explanation
    assert count(recipe.spec, "torch", rank=8, targets=["q", "k", "v"]).trainable_params == 4_718_592
    wrong = reports[2].__class__(**{**reports[2].to_dict(), "trainable_params": 3_407_872})
    bad = parity.params_across([reports[0], wrong], recipe.spec)
    assert not bad.passed and "DOES NOT HOLD" in bad.explanation


def test_logits_verdicts_reuse_the_agreement():
    torch.manual_seed(0)
    a = torch.randn(2, 8, 32)
    same = parity.logits(compare(a, a.clone(), "hf", "mcore"))
    assert same.passed and same.measured["max |Δ|"] == 0.0 and same.measured["cosine"] == pytest.approx(1.0)
    off = parity.logits_tensors(a, a + 1e-3, "hf", "mindformers")
    assert not off.passed and off.measured["max |Δ|"] == pytest.approx(1e-3, rel=1e-4)
    assert parity.logits_tensors(a, a + 1e-3, "hf", "mindformers", max_abs=1e-2).passed


def test_metrics_same_predictions_and_trained_apart():
    preds = {"torch": ["12", "7", "x"], "mindformers": ["12", "7", "x"], "mindspeed-llm": ["12", "8", "x"]}
    v = parity.same_predictions(preds)
    assert not v.passed and v.measured == {"mindformers differing": 0, "mindspeed-llm differing": 1, "predictions": 3}
    assert parity.same_predictions({k: preds["torch"] for k in preds}).passed
    same = parity.same_metrics({"official": {"f1": 65.42, "em": 49.69}, "torchmetrics": {"f1": 65.4200001, "em": 49.69}})
    assert same.passed and same.measured["f1 max |Δ|"] == pytest.approx(1e-7, rel=1e-3)
    assert not parity.same_metrics({"a": {"f1": 65.0}, "b": {"f1": 65.1}}).passed
    # each metric's tolerance in its own unit: accuracy is a fraction (0.01), F1 percent (1 point)
    apart = parity.metric_difference({"accuracy": 0.40, "f1": 60.0}, {"accuracy": 0.4075, "f1": 60.9}, "torch",
                                     "mindformers")
    assert apart.passed and apart.measured == pytest.approx({"accuracy Δ": 0.0075, "f1 Δ": 0.9})
    assert apart.tolerance == "|Δ accuracy| ≤ 0.01 (fraction), |Δ f1| ≤ 1 (percent)"
    assert not parity.metric_difference({"accuracy": 0.40}, {"accuracy": 0.42}, "a", "b").passed
    # the demo's old defect: a fraction checked against a tolerance in points let 0.0 vs 0.95 pass
    assert not parity.metric_difference({"numeric_accuracy": 0.0}, {"numeric_accuracy": 0.95}, "a", "b").passed
    with pytest.raises(TunebridgeError, match="metric 'accuracy %' has no unit"):
        parity.metric_difference({"accuracy %": 1.0}, {"accuracy %": 1.0}, "a", "b")
    with pytest.raises(TunebridgeError, match="no metric in common"):
        parity.metric_difference({"f1": 1.0}, {"accuracy": 1.0}, "a", "b")


def test_each_bar_is_rel_or_abs_in_both_directions():
    """First step and mean: a verdict passes when EITHER bar holds, fails when neither does."""
    tol = ParityTolerances()
    cases = {  # (a, b): (rel bar holds, abs bar holds)
        (0.5, 0.504): (False, True),      # low loss: rel 0.8 %, abs 0.004
        (10.0, 10.04): (True, False),     # high loss: rel 0.4 %, abs 0.04
        (2.0, 2.004): (True, True),
        (2.0, 2.02): (False, False),
    }
    for (a, b), (rel_holds, abs_holds) in cases.items():
        v = by_name(parity.loss_checks(run([a]), run([b]), "a", "b"))
        first, mean = v["loss, first step"], v["loss, mean over steps"]
        assert (first.measured["rel error"] < tol.first_rel, first.measured["abs error"] < tol.first_abs) == (
            rel_holds, abs_holds)
        assert first.passed == (rel_holds or abs_holds), (a, b)
    # the mean bars are wider (1 %, 0.01): rel fails and abs holds, and the other way round
    low = by_name(parity.loss_checks(run([0.5, 0.5]), run([0.508, 0.508]), "a", "b"))["loss, mean over steps"]
    assert low.passed and low.measured["mean rel error"] == pytest.approx(0.016)
    high = by_name(parity.loss_checks(run([10.0, 10.0]), run([10.05, 10.05]), "a", "b"))["loss, mean over steps"]
    assert high.passed and high.measured["mean abs error"] == pytest.approx(0.05)
    both = by_name(parity.loss_checks(run([0.5, 0.5]), run([0.52, 0.52]), "a", "b"))["loss, mean over steps"]
    assert not both.passed


def test_bars_are_strict_or_inclusive_as_stated():
    """At exactly the tolerance: the loss bars ("<") fail, the norm and metric bars ("≤") pass."""
    at_rel = ParityTolerances(first_rel=0.25, first_abs=0.0, mean_rel=0.25, mean_abs=0.0, grad_norm_mean_rel=0.25)
    v = by_name(parity.loss_checks(run([4.0], norms=[4.0]), run([5.0], norms=[5.0]), "a", "b", at_rel))
    assert v["loss, first step"].measured["rel error"] == 0.25 and not v["loss, first step"].passed
    assert not v["loss, mean over steps"].passed
    assert v["global norm, mean over steps"].passed  # mean rel 0.25 ≤ 25 %
    at_abs = ParityTolerances(first_rel=0.0, first_abs=1.0, mean_rel=0.0, mean_abs=1.0)
    v = by_name(parity.loss_checks(run([4.0]), run([5.0]), "a", "b", at_abs))
    assert not v["loss, first step"].passed and not v["loss, mean over steps"].passed
    assert parity.same_metrics({"a": {"f1": 1.0}, "b": {"f1": 1.5}}, abs_tol=0.5).passed
    assert parity.metric_difference({"f1": 1.0}, {"f1": 1.5}, "a", "b", {"f1": 0.5}).passed
    assert not parity.metric_difference({"f1": 1.0}, {"f1": 1.5}, "a", "b", {"f1": 0.25}).passed


def test_relative_error_against_a_zero_reference():
    v = by_name(parity.loss_checks(run([0.0, 1.0]), run([0.0, 1.0]), "a", "b"))["loss, mean over steps"]
    assert v.series["rel_error"] == [0.0, 0.0] and v.passed
    v = by_name(parity.loss_checks(run([0.0, 1.0]), run([0.001, 1.0]), "a", "b"))
    assert v["loss, first step"].measured["rel error"] == math.inf
    assert v["loss, first step"].passed  # abs 0.001 < 0.005
    assert v["loss, mean over steps"].measured["at step"] == 1


def test_norms_logged_by_one_side_only_are_left_out():
    v = by_name(parity.loss_checks(run(LOSSES, norms=[4.0, None, 2.0, 1.0]), run(LOSSES, norms=[4.0, 3.0, None, 2.0]),
                                   "a", "b"))["global norm, mean over steps"]
    assert v.measured == {"steps": 2, "mean rel error": 0.5, "max rel error": 1.0}
    assert "2 step(s) without a finite norm on both sides left out" in v.explanation


def test_verdict_texts(tmp_path):
    """Every verdict's name, figures, tolerance and explanation as a report shows them."""
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    reports = [recipe.param_report(b) for b in ("torch", "mindformers", "mindspeed-llm")]
    full = load_recipe("recipes/qwen2.5-7b-alpaca-zh-full.yaml")
    full_report = full.param_report("mindspeed-llm")
    wrong = reports[2].__class__(**{**reports[2].to_dict(), "trainable_params": 3_407_872})
    other_base = reports[0].__class__(**{**reports[0].to_dict(), "total_params": 1})
    unfused = reports[0].__class__(**{**reports[0].to_dict(), "trainable_params": 5})
    r12_recipe = load_recipe("recipes/llama3-8b-math-lora-r12.yaml")  # rank 12: counts at the recipe's rank
    r12, r12_spec = [r12_recipe.param_report(b) for b in ("torch", "mindspeed-llm")], r12_recipe.spec
    all_recipe = load_recipe("recipes/qwen2.5-7b-alpaca-zh-lora.yaml")  # linear_qkv and linear_fc1 both fused
    all_linear, all_linear_spec = [all_recipe.param_report(b) for b in ("torch", "mindspeed-llm")], all_recipe.spec
    a = torch.zeros(1, 2, 2)
    verdicts = [
        *parity.loss_checks(run(LOSSES, norms=[math.inf, 3.0, 2.0, 1.0]), run(LOSSES[:3], norms=NORMS[:3]), "a", "b"),
        *parity.loss_checks(run(LOSSES, norms=NORMS), run(LOSSES, norms=NORMS), "a", "b"),
        parity.params_instantiated(reports[0], 3_407_872, reports[0].total_params + 3_407_872),
        parity.params_instantiated(full_report, full_report.trainable_params, full_report.total_params),
        parity.params_instantiated(reports[0], 1),
        parity.params_across(reports, recipe.spec),
        parity.params_across(reports[:2], recipe.spec),
        parity.params_across([reports[0], wrong], recipe.spec),
        parity.params_across([reports[0], other_base], recipe.spec),
        parity.params_across([reports[0], unfused], recipe.spec),
        parity.params_across([full_report, full_report], full.spec),
        parity.params_across(r12 + [r12[0].__class__(**{**r12[0].to_dict(), "trainable_params": 1})], r12_spec),
        parity.params_across(all_linear, all_linear_spec),
        parity.params_across([full_report, full_report.__class__(**{**full_report.to_dict(), "trainable_params": 5})],
                             full.spec),
        parity.params_across([full_report, wrong], full.spec),
        parity.logits_tensors(a, a + 0.5, "hf", "mcore"),
        parity.same_predictions({"torch": ["1", "2"], "mindformers": ["1", "3"]}),
        parity.same_metrics({"official": {"f1": 1.0, "em": 2.0}, "torchmetrics": {"em": 2.5, "f1": 1.0, "x": 1}}),
        parity.same_metrics({"a": {"f1": 1.0}, "b": {"f1": 1.5}, "c": {"f1": 2.0}}),  # against the first: 1.0
        parity.metric_difference({"accuracy": 0.5, "f1": 50.0}, {"accuracy": 0.52, "f1": 50.5}, "torch", "mf"),
        parity.metric_difference({"f1": 50.0}, {"f1": 52.0}, "torch", "mf", {"f1": 3.0}),
    ]
    assert_snapshot("parity_verdicts", [{**v.to_dict(), "figure": v.figure()} for v in verdicts])
    with pytest.raises(TunebridgeError, match=r"predictions of mindformers \(1\) and torch \(2\) differ in number"):
        parity.same_predictions({"torch": ["1", "2"], "mindformers": ["1"]})
    with pytest.raises(TunebridgeError, match="no metric is reported by all of official, torchmetrics"):
        parity.same_metrics({"official": {"f1": 1.0}, "torchmetrics": {"em": 1.0}})
    with pytest.raises(TunebridgeError, match=r"a and b report no metric in common \(\['f1'\] vs \['em'\]\)"):
        parity.metric_difference({"f1": 1.0}, {"em": 1.0}, "a", "b")
