"""AdamW with and without Adam's bias correction: the one optimizer difference between the stacks."""
from __future__ import annotations

import math

from dataclasses import replace

import pytest
import torch

from tunebridge.errors import TunebridgeError
from tunebridge.train.config import TrainConfig
from tunebridge.train.optim import AdamWNoBiasCorrection, decay_groups, make_adamw
from tunebridge.train.order import epoch_order, micro_batches, step_batches, total_steps
from tunebridge.train.schedule import Schedule


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


def test_make_adamw_passes_every_hyper_parameter():
    cfg = TrainConfig(global_batch_size=1, micro_batch_size=1, lr=0.01, beta1=0.8, beta2=0.9, eps=0.5,
                      weight_decay=0.25)
    for bias in (True, False):
        opt = make_adamw([torch.nn.Parameter(torch.zeros(1))], replace(cfg, adam_bias_correction=bias))
        assert {k: opt.defaults[k] for k in ("lr", "betas", "eps", "weight_decay")} == {
            "lr": 0.01, "betas": (0.8, 0.9), "eps": 0.5, "weight_decay": 0.25}


def test_decay_groups_leave_biases_and_1d_tensors_undecayed():
    w, b2, norm = (torch.nn.Parameter(torch.zeros(s)) for s in ((2, 2), (2, 2), (2,)))
    decay, no_decay = decay_groups([("layer.weight", w), ("odd.bias", b2), ("norm.weight", norm)], 0.1)
    assert [id(p) for p in decay["params"]] == [id(w)] and decay["weight_decay"] == 0.1
    assert [id(p) for p in no_decay["params"]] == [id(b2), id(norm)] and no_decay["weight_decay"] == 0.0
    assert decay_groups([("norm.weight", norm)], 0.1) == [{"params": [norm], "weight_decay": 0.0}]


# --- schedule --------------------------------------------------------------------------------------------


def test_cosine_and_linear_differ_between_their_ends():
    cos, lin = (Schedule(1.0, 0.0, 10, 0.2, style) for style in ("cosine", "linear"))
    # warm-up over 2 steps, then 8 steps down: a quarter of the way (step 4) cosine is at (cos(pi/4) + 1) / 2
    assert [cos.lr_at(s) for s in (0, 1)] == [lin.lr_at(s) for s in (0, 1)] == [0.0, 0.5]
    assert cos.lr_at(4) == pytest.approx((math.cos(math.pi / 4) + 1) / 2) and lin.lr_at(4) == pytest.approx(0.75)
    assert cos.lr_at(10) == lin.lr_at(10) == 0.0


def test_warm_up_reaches_the_peak_exactly_and_constant_stays():
    s = Schedule(0.1, 0.01, 12, 0.25)  # warm-up over 3 steps
    assert s.warmup_steps == 3.0 and s.lr_at(3) == 0.1  # the first step after warm-up uses exactly lr
    assert s.lr_at(2) == pytest.approx(0.1 * 2 / 3) and s.lr_at(12) == 0.01 and s.lr_at(20) == 0.01
    c = Schedule(0.1, 0.01, 12, 0.25, "constant")
    assert [c.lr_at(i) for i in (0, 3, 11, 12, 20)] == [0.0, 0.1, 0.1, 0.1, 0.1]


# --- step order ------------------------------------------------------------------------------------------


def test_epoch_orders_are_fixed():
    """The order is a fixed function of (seed, epoch): a run resumed by a later version sees the same batches."""
    assert epoch_order(10, 0, 0) == [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]
    assert epoch_order(10, 0, 1) == [5, 6, 1, 2, 0, 8, 9, 3, 7, 4]
    assert epoch_order(10, 1, 0) == [4, 1, 8, 6, 3, 9, 5, 7, 2, 0]
    assert epoch_order(10, 3, 2) == [4, 6, 9, 0, 8, 5, 1, 2, 3, 7]


def test_step_batches_walk_the_epochs_in_order():
    cfg = TrainConfig(global_batch_size=4, micro_batch_size=2, lr=0.1, epochs=3, seed=3)
    batches = step_batches(10, cfg)  # 2 full batches per epoch (the last 2 samples of each epoch are dropped)
    assert total_steps(10, cfg) == 6 and isinstance(total_steps(10, cfg), int) and len(batches) == 6
    want = [epoch_order(10, 3, e)[b * 4:(b + 1) * 4] for e in range(3) for b in range(2)]
    assert batches == want and all(len(b) == 4 for b in batches)
    assert total_steps(10, replace(cfg, max_steps=5)) == 5 and len(step_batches(10, replace(cfg, max_steps=7))) == 7
    assert micro_batches([5, 6, 7, 8, 9], 2) == [[5, 6], [7, 8], [9]]
    assert micro_batches([5, 6, 7, 8, 9, 10], 2, rank=1, world=2) == [[6, 8], [10]]
    with pytest.raises(TunebridgeError, match="^3 samples do not fill one global batch of 4$"):
        step_batches(3, cfg)
