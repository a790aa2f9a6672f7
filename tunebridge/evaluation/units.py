"""One unit per metric, wherever it is stored or shown (metrics.json, report tables, sweep, ``params``).

Accuracies and ratios are fractions of 1 (as MindSpeed-LLM's score table and the contest formula use them);
SQuAD F1 and EM are percent (0-100, as the official script and MindFormers' EmF1Metric print them, and as the
seeds' retention baselines are written). A value is shown in the unit it is stored in, and a tolerance on a
metric is stated in that metric's unit.
"""

from __future__ import annotations

from ..errors import TunebridgeError

PERCENT = "percent"  # 0-100
FRACTION = "fraction"  # 0-1

UNITS = {
    "f1": PERCENT,
    "exact_match": PERCENT,
    "numeric_accuracy": FRACTION,
    "contains_accuracy": FRACTION,
    "micro_average": FRACTION,
    "macro_average": FRACTION,
    "accuracy": FRACTION,
    "accuracy_micro": FRACTION,
    "accuracy_macro": FRACTION,
    "low_param_ratio": FRACTION,
    "contest_score": FRACTION,
    "peft_trainable_percent": PERCENT,
}
LABELS = {
    "f1": "SQuAD F1",
    "exact_match": "SQuAD EM",
    "numeric_accuracy": "math numeric accuracy",
    "contains_accuracy": "math contains accuracy",
    "low_param_ratio": "low-param ratio",
    "contest_score": "contest score",
    "peft_trainable_percent": "PEFT trainable",
}
# How far apart two separately trained runs' metrics may be, in each unit (published scores of one model differ by
# about a point between evaluation tools).
TRAINED_APART = {PERCENT: 1.0, FRACTION: 0.01}


def unit(metric: str) -> str:
    if metric not in UNITS:
        raise TunebridgeError(f"metric {metric!r} has no unit (known: {', '.join(UNITS)})")
    return UNITS[metric]


def header(metric: str) -> str:
    """``SQuAD F1 (percent)``: the metric's name with its unit."""
    return f"{LABELS.get(metric, metric.replace('_', ' '))} ({unit(metric)})"


def fmt(metric: str, value: float | None) -> str:
    """The value in its stored unit: percent to 2 decimals, a fraction to 4 significant digits."""
    if value is None:
        return "-"
    return f"{value:.2f}" if unit(metric) == PERCENT else f"{value:.4g}"


def units_of(metrics: dict) -> dict[str, str]:
    """The unit of each metric named anywhere in ``metrics`` (nested tables too), for metrics.json."""
    found: dict[str, str] = {}

    def walk(value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k in UNITS:
                    found.setdefault(k, UNITS[k])
                walk(v)

    walk(metrics)
    return found
