"""The sample order every backend follows, computed once (in the torch environment) and handed to each.

A global batch is a list of sample indices; data-parallel rank r takes ``batch[r::world]`` and splits it
into consecutive micro-batches. Backends outside the torch environment receive the indices as a list.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import TunebridgeError
from .config import TrainConfig


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a permutation that depends only on (seed, epoch)."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def batches_per_epoch(n: int, cfg: TrainConfig) -> int:
    """Whole global batches in an epoch of ``n`` samples (an error when there is none)."""
    per_epoch = n // cfg.global_batch_size
    if per_epoch == 0:
        raise TunebridgeError(f"{n} samples do not fill one global batch of {cfg.global_batch_size}")
    return per_epoch


def global_batches(n: int, cfg: TrainConfig) -> Iterator[list[int]]:
    """Sample indices of each global batch, epoch after epoch; incomplete last batches are dropped."""
    per_epoch = batches_per_epoch(n, cfg)
    epoch = 0
    while True:
        order = epoch_order(n, cfg.seed, epoch)
        for b in range(per_epoch):
            yield order[b * cfg.global_batch_size : (b + 1) * cfg.global_batch_size]
        epoch += 1


def total_steps(n: int, cfg: TrainConfig) -> int:
    return cfg.max_steps or cfg.epochs * batches_per_epoch(n, cfg)


def step_batches(n: int, cfg: TrainConfig) -> list[list[int]]:
    """The global batch of every step of a run over ``n`` samples."""
    batches = global_batches(n, cfg)
    return [next(batches) for _ in range(total_steps(n, cfg))]


def micro_batches(batch: list[int], micro_batch_size: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    mine = batch[rank::world]
    return [mine[i : i + micro_batch_size] for i in range(0, len(mine), micro_batch_size)]
