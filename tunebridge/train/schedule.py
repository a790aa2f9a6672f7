"""Learning-rate schedules, written once with each stack's conventions made explicit.

``lr_at(step)`` is the rate used by optimizer update ``step`` (0-based). Both Megatron's
``OptimizerParamScheduler`` and MindFormers' ``CosineWithWarmUpLR`` use the same curve shape
(linear warm-up from 0, then cosine to ``min_lr`` over the remaining steps), and both give update 0 a
rate of 0 when there is warm-up. They differ in the warm-up length:

* MindFormers: ``warmup_steps = int(total_steps * warmup_ratio)`` (floored to whole steps);
* Megatron / MindSpeed-LLM: ``lr_warmup_fraction * train_iters``, kept fractional.

With 20 steps and a ratio of 0.03, MindFormers has no warm-up at all, Megatron warms up over 0.6 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Rounding = Literal["megatron", "mindformers"]


@dataclass(frozen=True)
class Schedule:
    lr: float
    min_lr: float
    total_steps: int
    warmup_ratio: float
    style: str = "cosine"  # cosine | linear | constant
    rounding: Rounding = "megatron"

    @property
    def warmup_steps(self) -> float:
        exact = self.warmup_ratio * self.total_steps
        return float(int(exact)) if self.rounding == "mindformers" else exact

    def lr_at(self, step: int) -> float:
        w = self.warmup_steps
        if w > 0 and step < w:
            return self.lr * step / w
        if self.style == "constant":
            return self.lr
        if step >= self.total_steps:
            return self.min_lr
        ratio = (step - w) / max(self.total_steps - w, 1e-12)
        coeff = 0.5 * (math.cos(math.pi * ratio) + 1.0) if self.style == "cosine" else 1.0 - ratio
        return self.min_lr + coeff * (self.lr - self.min_lr)
