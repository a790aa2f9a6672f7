"""MindFormers' own EmF1Metric on given cases (runs in .venv-mindspore): the reference for tests."""

from __future__ import annotations

import contextlib
import io


def per_case(predictions: list[str], golds: list[str]) -> list[dict]:
    from mindformers.core.metric.metric import EmF1Metric

    metric = EmF1Metric()
    out = []
    with contextlib.redirect_stdout(io.StringIO()):  # the metric prints every update
        for p, g in zip(predictions, golds):
            metric.clear()
            metric.update([p], [g])
            out.append(metric.eval())
    return out


def overall(predictions: list[str], golds: list[str]) -> dict:
    from mindformers.core.metric.metric import EmF1Metric

    metric = EmF1Metric()
    metric.clear()
    with contextlib.redirect_stdout(io.StringIO()):
        for p, g in zip(predictions, golds):
            metric.update([p], [g])
        return metric.eval()
