"""MindFormers worker logs (``msrun_log/worker_N.log``): the ``MFLossMonitor`` lines.

MindFormers 1.x prints, per ``per_print_times`` steps::

    { Epoch:[  1/  2], step:[    3/  100], loss: 2.345678, per_step_time: 812ms, lr: 1e-05, overflow cond: False,
      loss_scale: 1.0, global_norm: [1.234], train_throughput_per_npu: 12.345T

(one line). Without dataset sink mode the loss is ``loss:[step loss/running mean]``; ``lr:`` is missing when
the schedule cannot be evaluated (CPU); ``lr``, ``loss_scale`` and ``global_norm`` may be printed as numpy
arrays (``[1.e-05]``); ``step`` counts within the epoch.
"""

from __future__ import annotations

import re

from ...backends.result import StepRecord

STEP_MARKER = re.compile(r"Epoch:\[\s*\d+/")
STEP = re.compile(r"Epoch:\[\s*(\d+)/\s*(\d+)\],\s*step:\[\s*(\d+)/\s*(\d+)\],\s*loss:\s*\[?\s*([-+\w.]+)")
_VALUE = r"(\[[^\]]*\]?|[^,\s]+)"
LR = re.compile(r"(?<![\w])lr:\s*" + _VALUE)
OVERFLOW = re.compile(r"overflow cond:\s*\[?\s*(\w+)")
LOSS_SCALE = re.compile(r"loss_scale:\s*" + _VALUE)
GLOBAL_NORM = re.compile(r"global_norm:\s*" + _VALUE)
STEP_TIME = re.compile(r"per_step_time:\s*(\d+)ms")
# base_trainer.py logs the trainable count: "Network Parameters: 5111808."
NETWORK_PARAMETERS = re.compile(r"Network Parameters:\s*(\d+)")


def _number(text: str | None) -> float | None:
    """A float from ``1e-05``, ``[1.e-05]``, ``[[0.5]]``; None for ``None``/``unavailable``/empty."""
    if text is None:
        return None
    text = text.strip("[] ")
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


def parse_line(text: str) -> tuple[StepRecord, float | None] | None:
    """The step record of one MFLossMonitor line and its step time in seconds, or None for other lines."""
    m = STEP.search(text)
    if not m:
        return None
    epoch, _, step_in_epoch, steps_per_epoch = (int(g) for g in m.groups()[:4])
    loss = _number(m.group(5))
    if loss is None:
        return None
    rest = text[m.end() :]
    overflow = OVERFLOW.search(rest)
    record = StepRecord(
        step=(epoch - 1) * steps_per_epoch + step_in_epoch,
        loss=loss,
        lr=_number(g.group(1)) if (g := LR.search(rest)) else None,
        grad_norm=_number(g.group(1)) if (g := GLOBAL_NORM.search(rest)) else None,
        loss_scale=_number(g.group(1)) if (g := LOSS_SCALE.search(rest)) else None,
        skipped=overflow.group(1) == "True" if overflow else None,
    )
    step_time = STEP_TIME.search(rest)
    return record, int(step_time.group(1)) / 1000 if step_time else None


def trainable_params(text: str) -> int | None:
    m = NETWORK_PARAMETERS.search(text)
    return int(m.group(1)) if m else None


# EmF1Metric (MindFormers' SQuAD metric) prints each example and, at the end, the totals:
#   pred is:\n ['first line of the generation']\n label is:\n ['gold answer']
#   F1 score: 63.88, Em score: 62.5, total_count: 16
EMF1_TOTAL = re.compile(r"^F1 score: ([\d.eE+-]+), Em score: ([\d.eE+-]+), total_count: (\d+)")


def emf1_results(text: str) -> tuple[list[tuple[str, str]], dict | None]:
    """(prediction, label) of every example EmF1Metric printed in an eval log, and its final totals
    ({"F1", "Em", "count"}, None if the evaluation did not finish)."""
    import ast

    lines = text.splitlines()
    pairs, total = [], None
    for i, line in enumerate(lines):
        if line == "pred is:" and i + 3 < len(lines) and lines[i + 2].strip() == "label is:":
            preds, labels = ast.literal_eval(lines[i + 1].strip()), ast.literal_eval(lines[i + 3].strip())
            pairs += list(zip(preds, labels))
        elif m := EMF1_TOTAL.match(line):
            total = {"F1": float(m.group(1)), "Em": float(m.group(2)), "count": int(m.group(3))}
    return pairs, total
