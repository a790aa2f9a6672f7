"""AdamW with and without Adam's bias correction: the one optimizer difference between the stacks."""
from __future__ import annotations

import math

import torch

from tunebridge.train.config import TrainConfig
from tunebridge.train.optim import AdamWNoBiasCorrection, make_adamw


def _cfg(bias: bool, wd: float = 0.1) -> TrainConfig:
    return TrainConfig(global_batch_size=1, micro_batch_size=1, lr=0.01, beta1=0.9, beta2=0.95, eps=1e-8,
                       weight_decay=wd, adam_bias_correction=bias)


def _steps(opt_cfg: TrainConfig, grads: list[float], p0: float = 1.0) -> list[float]:
    p = torch.nn.Parameter(torch.tensor([p0], dtype=torch.float64))
    opt = make_adamw([p], opt_cfg)
    values = []
    for g in grads:
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        values.append(p.detach().item())
    return values


def test_bias_corrected_is_torch_adamw():
    cfg = _cfg(True)
    assert isinstance(make_adamw([torch.nn.Parameter(torch.zeros(1))], cfg), torch.optim.AdamW)


def test_no_bias_correction_follows_mindspore_update_rule():
    grads = [0.5, -0.25, 1.0]
    got = _steps(_cfg(False), grads)
    p, m, v, want = 1.0, 0.0, 0.0, []
    for g in grads:
        m = 0.9 * m + 0.1 * g
        v = 0.95 * v + 0.05 * g * g
        p = p - 0.01 * (m / (math.sqrt(v) + 1e-8) + 0.1 * p)
        want.append(p)
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-15


def test_the_two_rules_take_different_first_steps():
    corrected = 1.0 - _steps(_cfg(True, 0.0), [0.5])[0]
    uncorrected = 1.0 - _steps(_cfg(False, 0.0), [0.5])[0]
    # at step 1 the uncorrected update is (1 - b1) / sqrt(1 - b2) of the corrected one
    assert abs(uncorrected / corrected - 0.1 / math.sqrt(0.05)) < 1e-6
    assert isinstance(make_adamw([torch.nn.Parameter(torch.zeros(1))], _cfg(False)), AdamWNoBiasCorrection)
