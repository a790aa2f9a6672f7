"""Parity checks between backends, each a verdict: passed or not, the measured figures, the tolerance held to.

Default tolerances are the field's: the MindFormers migration standard for loss curves (first step:
rel < 0.5 % or abs < 0.005; mean: rel < 1 % or abs < 0.01; global norm mean rel ≤ 10 %), tunebridge's own fp32
conversion bar for logits (``verify.MAX_ABS``, ``verify.MIN_COSINE``), exact equality for parameter counts.
Relative errors are taken against the first (reference) run: |b - a| / |a|.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from ..backends.result import RunResult
from ..errors import TunebridgeError
from ..evaluation import units
from ..model.accounting import ParamReport, count, native_name, plan_lora
from ..model.spec import ModelSpec
from ..recipe.schema import ParityTolerances
from .logits import MAX_ABS, MIN_COSINE, Agreement, compare


@dataclass
class Verdict:
    name: str
    passed: bool
    measured: Mapping[str, float | int]
    tolerance: str
    explanation: str
    series: Mapping[str, list] = field(default_factory=dict)  # per-step figures behind the verdict, if any

    def figure(self) -> str:
        """The measured figures, as the report prints them."""
        return ", ".join(f"{k} {_fmt(v, percent='rel' in k)}" for k, v in self.measured.items())

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(v: float | int, percent: bool) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if not math.isfinite(v):
        return str(v)
    return f"{100 * v:.4g} %" if percent else f"{v:.4g}"


# --- loss curves -------------------------------------------------------------------------------


def _steps_text(steps: list[int]) -> str:
    return "none" if not steps else f"{len(steps)} steps ({steps[0]}-{steps[-1]})"


def common_steps(a: RunResult, b: RunResult, name_a: str, name_b: str) -> tuple[list[int], str]:
    """Steps both runs logged, and a sentence saying so when they logged different steps."""
    sa, sb = [s.step for s in a.steps], [s.step for s in b.steps]
    common = sorted(set(sa) & set(sb))
    if not common:
        raise TunebridgeError(
            f"cannot compare loss curves: {name_a} logged {_steps_text(sorted(sa))} and "
            f"{name_b} logged {_steps_text(sorted(sb))}; no step is in both"
        )
    if len(common) == len(sa) == len(sb):
        return common, ""
    return common, (
        f"the runs logged different steps ({name_a}: {_steps_text(sorted(sa))}, {name_b}: "
        f"{_steps_text(sorted(sb))}): compared the {len(common)} common steps only"
    )


def _rel(a: float, b: float) -> float:
    return abs(b - a) / abs(a) if a != 0 else (0.0 if b == a else math.inf)


def loss_checks(
    a: RunResult, b: RunResult, name_a: str, name_b: str, tol: ParityTolerances | None = None
) -> list[Verdict]:
    """First-step and mean loss error of ``b`` against ``a``, and the mean global-norm error when both log it."""
    tol = tol or ParityTolerances()
    steps, note = common_steps(a, b, name_a, name_b)
    la = {s.step: s for s in a.steps}
    lb = {s.step: s for s in b.steps}
    rel = [_rel(la[s].loss, lb[s].loss) for s in steps]
    abs_err = [abs(lb[s].loss - la[s].loss) for s in steps]
    series: dict[str, list] = {"step": steps, "rel_error": rel, "abs_error": abs_err}
    pair = f"{name_b} vs {name_a}"
    suffix = f"; {note}" if note else ""
    first = Verdict(
        f"loss, first step: {pair}",
        rel[0] < tol.first_rel or abs_err[0] < tol.first_abs,
        {
            "step": steps[0],
            f"{name_a} loss": la[steps[0]].loss,
            f"{name_b} loss": lb[steps[0]].loss,
            "rel error": rel[0],
            "abs error": abs_err[0],
        },
        f"rel < {100 * tol.first_rel:g} % or abs < {tol.first_abs:g}",
        "the first step sees the same weights and batch on both stacks: only the forward pass and the loss "
        f"reduction can differ{suffix}",
    )
    mean_rel, mean_abs = sum(rel) / len(rel), sum(abs_err) / len(abs_err)
    worst = max(range(len(steps)), key=lambda i: rel[i] if math.isfinite(rel[i]) else math.inf)
    mean = Verdict(
        f"loss, mean over steps: {pair}",
        mean_rel < tol.mean_rel or mean_abs < tol.mean_abs,
        {
            "steps": len(steps),
            "mean rel error": mean_rel,
            "mean abs error": mean_abs,
            "max rel error": rel[worst],
            "at step": steps[worst],
        },
        f"mean rel < {100 * tol.mean_rel:g} % or mean abs < {tol.mean_abs:g}",
        f"per-step relative error |{name_b} - {name_a}| / |{name_a}|, averaged over the compared steps{suffix}",
        series,
    )
    verdicts = [first, mean]
    norms = [(x, y) for x, y in ((la[s].grad_norm, lb[s].grad_norm) for s in steps) if x is not None and y is not None]
    finite = [(x, y) for x, y in norms if math.isfinite(x) and math.isfinite(y)]
    if finite:
        gn_rel = [_rel(x, y) for x, y in finite]
        left_out = len(steps) - len(finite)
        verdicts.append(
            Verdict(
                f"global norm, mean over steps: {pair}",
                sum(gn_rel) / len(gn_rel) <= tol.grad_norm_mean_rel,
                {"steps": len(finite), "mean rel error": sum(gn_rel) / len(gn_rel), "max rel error": max(gn_rel)},
                f"mean rel ≤ {100 * tol.grad_norm_mean_rel:g} %",
                "gradient global norm before clipping"
                + (
                    f"; {left_out} step(s) without a finite norm on both sides left out (overflow or not logged)"
                    if left_out
                    else ""
                )
                + suffix,
            )
        )
    return verdicts


# --- parameters --------------------------------------------------------------------------------


def params_instantiated(report: ParamReport, trainable: int, total: int | None = None) -> Verdict:
    """The accounting's counts against a model the backend built. ``total`` is what the framework counts:
    for LoRA, base + adapter (PEFT's and MindSpore's parameter lists include the adapter)."""
    measured = {"accounted trainable": report.trainable_params, "instantiated trainable": trainable}
    passed = trainable == report.trainable_params
    explanation = "trainable parameters of the instantiated model against tunebridge's accounting"
    if total is not None:
        expected_total = report.total_params + (report.trainable_params if report.method == "lora" else 0)
        measured |= {"accounted total": expected_total, "instantiated total": total}
        passed = passed and total == expected_total
        explanation += "; total = base + adapter" if report.method == "lora" else "; total = base"
    return Verdict(f"parameters: {report.backend} accounted vs instantiated", passed, measured, "exact", explanation)


def params_across(reports: list[ParamReport], spec: ModelSpec) -> Verdict:
    """Counts across backends: the same base model, and every trainable difference explained by fusion.

    A backend whose LoRA module fuses projections (MindSpeed-LLM's ``linear_qkv`` = q+k+v, ``linear_fc1`` =
    gate+up) shares one A matrix across them, saving (n - 1) * rank * in_features per module and layer, and
    may adapt projections the recipe did not name. The check holds each backend's trainable count to
    per-projection LoRA on the projections it really covers minus that saving.
    """
    measured: dict[str, float | int] = {}
    lines, passed = [], True
    bases = {r.total_params for r in reports}
    if len(bases) > 1:
        passed = False
        lines.append("base model totals differ: " + ", ".join(f"{r.backend} {r.total_params:,}" for r in reports))
    for r in reports:
        measured[f"{r.backend} trainable"] = r.trainable_params
        if r.method == "full":
            passed = passed and r.trainable_params == r.total_params
            continue
        assert r.lora_rank is not None, "a LoRA report carries its rank"
        plan = plan_lora(r.backend, [], native_targets=r.native_targets)
        per_projection = count(spec, "torch", rank=r.lora_rank, targets=plan.covered).trainable_params
        fused = [m for m in plan.modules if len(m.covers) > 1]
        saving = spec.num_layers * sum((len(m.covers) - 1) * r.lora_rank * m.in_features(spec) for m in fused)
        holds = r.trainable_params == per_projection - saving
        passed = passed and holds
        if fused:
            shared = ", ".join(f"{native_name(m)} = {'+'.join(m.covers)}" for m in fused)
            lines.append(
                f"{r.backend}: {r.trainable_params:,} = {per_projection:,} (per-projection LoRA on "
                f"{'+'.join(plan.covered)}) - {saving:,} ({shared} share one LoRA A)"
                + ("" if holds else ": DOES NOT HOLD")
            )
        elif not holds:
            lines.append(
                f"{r.backend}: {r.trainable_params:,} != per-projection LoRA on "
                f"{'+'.join(plan.covered)} ({per_projection:,})"
            )
        if r.note:
            lines.append(f"{r.backend}: {r.note}")
    values = {r.trainable_params for r in reports}
    head = "trainable counts agree" if len(values) == 1 else "trainable counts differ, each as its LoRA layout predicts"
    return Verdict(
        "parameters: across backends",
        passed,
        measured,
        "exact (base totals equal; trainable = per-projection LoRA on the covered projections - fused-A saving)",
        "; ".join([head, *lines]) if passed else "; ".join(["counts not explained", *lines]),
    )


# --- logits ------------------------------------------------------------------------------------


def logits(agreement: Agreement) -> Verdict:
    return Verdict(
        f"logits: {agreement.b} vs {agreement.a}",
        agreement.passed,
        {"max |Δ|": agreement.max_abs, "mean |Δ|": agreement.mean_abs, "cosine": agreement.cosine},
        f"max |Δ| ≤ {agreement.max_abs_limit:g} and cosine ≥ {agreement.cosine_limit:g}",
        "same weights and token ids through each framework's own forward pass (fp32); the field's "
        "looser bar is cosine ≥ 0.98",
    )


def logits_tensors(a, b, name_a: str, name_b: str, max_abs: float = MAX_ABS, min_cosine: float = MIN_COSINE) -> Verdict:
    agreement = compare(a, b, name_a, name_b)
    agreement.max_abs_limit, agreement.cosine_limit = max_abs, min_cosine
    return logits(agreement)


# --- metrics -----------------------------------------------------------------------------------


def same_predictions(predictions: dict[str, list[str]]) -> Verdict:
    """The same merged weights decoded greedily on every backend: the predictions must be identical."""
    names = list(predictions)
    ref = predictions[names[0]]
    measured, passed = {}, True
    for name in names[1:]:
        other = predictions[name]
        if len(other) != len(ref):
            raise TunebridgeError(f"predictions of {name} ({len(other)}) and {names[0]} ({len(ref)}) differ in number")
        differ = sum(x != y for x, y in zip(ref, other))
        measured[f"{name} differing"] = differ
        passed = passed and differ == 0
    measured["predictions"] = len(ref)
    return Verdict(
        "predictions: " + " = ".join(names),
        passed,
        measured,
        "identical",
        "greedy decoding of the same weights on each backend",
    )


def same_metrics(scores: dict[str, dict[str, float]], abs_tol: float = 1e-6) -> Verdict:
    """The same predictions scored by several scorers (or backends): every metric equal within ``abs_tol``."""
    names = list(scores)
    keys = [k for k in scores[names[0]] if all(k in s for s in scores.values())]
    if not keys:
        raise TunebridgeError(f"no metric is reported by all of {', '.join(names)}")
    measured = {f"{k} max |Δ|": max(abs(s[k] - scores[names[0]][k]) for s in scores.values()) for k in keys}
    return Verdict(
        "metrics, same predictions: " + ", ".join(names),
        all(v <= abs_tol for v in measured.values()),
        measured,
        f"|Δ| ≤ {abs_tol:g}",
        "one set of predictions, scored by each scorer",
    )


def metric_difference(
    a: dict[str, float], b: dict[str, float], name_a: str, name_b: str, tolerances: dict[str, float] | None = None
) -> Verdict:
    """Metrics of separately trained runs: each difference within its tolerance, in the metric's own unit
    (default: ``units.TRAINED_APART`` for the unit, 1 point for percent metrics, 0.01 for fractions)."""
    keys = [k for k in a if k in b]
    if not keys:
        raise TunebridgeError(f"{name_a} and {name_b} report no metric in common ({list(a)} vs {list(b)})")
    limits = {k: (tolerances or {}).get(k, units.TRAINED_APART[units.unit(k)]) for k in keys}
    measured = {f"{k} Δ": b[k] - a[k] for k in keys}
    return Verdict(
        f"metrics, trained separately: {name_b} vs {name_a}",
        all(abs(b[k] - a[k]) <= limits[k] for k in keys),
        measured,
        ", ".join(f"|Δ {k}| ≤ {limits[k]:g} ({units.unit(k)})" for k in keys),
        "runs trained apart differ by data order and numerics; published scores differ by about a "
        "point between tools for protocol reasons alone",
    )
