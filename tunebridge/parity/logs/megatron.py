"""Megatron-LM / MindSpeed-LLM training logs: ``training_log`` lines (MindSpeed-LLM reuses Megatron's).

    [2025-03-01 10:00:00] iteration        3/      20 | consumed samples:           24 | elapsed time per
    iteration (ms): 812.3 | learning rate: 1.000000E-05 | global batch size:     8 | lm loss: 2.345678E+00 |
    loss scale: 1.0 | grad norm: 1.234 | number of skipped iterations:   0 | number of nan iterations:   0 |

(one line, printed by the last rank every ``--log-interval`` iterations; losses are averages over the interval).
Newer Megatron prints ``elapsed ... (ms): now/mean``; older ones print ``learning rate`` with 3 decimals.
"""

from __future__ import annotations

import re

from ...backends.result import StepRecord

ITERATION = re.compile(r"\biteration\s+(\d+)/\s*(\d+|infinity)\s*\|")
FIELD = re.compile(
    r"^\s*([A-Za-z][A-Za-z ()/_-]*?)\s*:?\s+([-+]?(?:\d[\d.]*(?:[eE][-+]?\d+)?|nan|inf)(?:/[-+\d.eE]+)?)\s*$"
)
# PEFT's print_trainable_parameters (MindSpeed-LLM calls it for LoRA).
PEFT_PARAMS = re.compile(r"trainable params:\s*([\d,]+)\s*\|\|\s*all params:\s*([\d,]+)")
LOSS_KEYS = ("lm loss", "loss")


def fields(text: str) -> dict[str, str]:
    """``key: value`` pairs of the ``|``-separated fields after ``iteration N/M``."""
    out = {}
    for part in text.split("|"):
        m = FIELD.match(part)
        if m:
            out[m.group(1).strip().lower()] = m.group(2)
    return out


def _float(value: str | None) -> float | None:
    return None if value is None else float(value.split("/")[0])


def parse_line(text: str) -> tuple[StepRecord, float | None] | None:
    """The step record of one training_log line and its step time in seconds, or None for other lines."""
    m = ITERATION.search(text)
    if not m:
        return None
    f = fields(text[m.end() :])
    loss_key = next((k for k in LOSS_KEYS if k in f), None)
    if loss_key is None:
        return None
    skipped = f.get("number of skipped iterations")
    record = StepRecord(
        step=int(m.group(1)),
        loss=float(f[loss_key]),
        lr=_float(f.get("learning rate")),
        grad_norm=_float(f.get("grad norm")),
        loss_scale=_float(f.get("loss scale")),
        skipped=int(skipped) > 0 if skipped is not None else None,
        load_balancing_loss=_float(f.get("load_balancing_loss")),
    )
    ms = _float(f.get("elapsed time per iteration (ms)"))
    return record, ms / 1000 if ms is not None else None


def peft_params(text: str) -> tuple[int, int] | None:
    """(trainable, base + adapter) from PEFT's ``trainable params: ... || all params: ...``."""
    m = PEFT_PARAMS.search(text)
    return (int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))) if m else None
