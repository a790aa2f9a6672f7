"""AdamW as each stack runs it.

torch's ``AdamW`` (and Megatron's fallback on it) divides the moments by Adam's bias corrections
``1 - beta^t``; MindSpore's ``AdamWeightDecay`` family, which MindFormers fine-tunes with, does not.
Early in a run the two take very different steps (at step 1 the uncorrected update is
``(1-b1)/sqrt(1-b2)`` times the corrected one), so a parity run must pick one rule for every backend:
``TrainConfig.adam_bias_correction``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .config import TrainConfig


class AdamWNoBiasCorrection(torch.optim.Optimizer):
    """Decoupled-weight-decay Adam without bias correction (MindSpore ``AdamWeightDecay``'s update):
    ``m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m / (sqrt(v) + eps) + wd p)``."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return None


def decay_groups(named: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """Megatron's and MindFormers' grouping: no weight decay on biases and 1-D tensors (norms)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in named:
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return [
        g
        for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
        if g["params"]
    ]


def make_adamw(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's AdamW, with or without Adam's bias correction as ``cfg`` says.

    ``params``: parameters, or param groups (e.g. from :func:`decay_groups`)."""
    kind = torch.optim.AdamW if cfg.adam_bias_correction else AdamWNoBiasCorrection
    return kind(list(params), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
