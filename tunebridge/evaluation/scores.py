"""The seeds' figures: the retention gate on SQuAD and the contest score."""

from __future__ import annotations

from ..model.accounting import contest_score

RETENTION = 0.9  # fine-tuned F1 and EM must each stay at >= 90 % of the base model's


def retention_gate(f1: float, em: float, base_f1: float, base_em: float, share: float = RETENTION) -> dict:
    checks = {"f1": (f1, share * base_f1), "exact_match": (em, share * base_em)}
    return {
        "passed": all(v >= need for v, need in checks.values()),
        "share": share,
        **{k: {"value": v, "needs": need, "passed": v >= need} for k, (v, need) in checks.items()},
    }


def contest(low_param_ratio: float, accuracy: float) -> dict:
    """(100 % - low-param ratio) x 0.3 + accuracy x 0.7, with the inputs it used."""
    return {
        "score": contest_score(low_param_ratio, accuracy),
        "low_param_ratio": low_param_ratio,
        "accuracy": accuracy,
        "formula": "(1 - low_param_ratio) * 0.3 + accuracy * 0.7",
    }
