"""Packing canonical tensors into fused framework tensors, and splitting them over TP ranks.

Pure tensor arithmetic driven by the dialect's :class:`Pack` and :class:`Shard` values; converters
call these one tensor (or one layer) at a time.
"""
from __future__ import annotations

import torch

from .dialects import Pack, Shard, TensorRule
from .models import ModelSpec


def _qkv_rows(spec: ModelSpec, part: str) -> int:
    """Rows per KV group that a q/k/v part contributes (head_dim times heads per group)."""
    per_group_heads = spec.num_heads // spec.num_kv_heads if part.startswith("q") else 1
    return per_group_heads * spec.head_dim


def pack(rule: TensorRule, parts: list[torch.Tensor], spec: ModelSpec, tp: int = 1) -> torch.Tensor:
    """Fuse canonical ``parts`` (in ``rule.parts`` order) into the full, unsharded framework tensor.

    For STACKED the layout depends on ``tp``: Megatron stacks [gate_i; up_i] per rank i.
    """
    if rule.pack is Pack.NONE:
        return parts[0]
    if rule.pack is Pack.QKV_GROUPED:
        ng = spec.num_kv_heads
        grouped = [p.reshape(ng, _qkv_rows(spec, name), *p.shape[1:]) for p, name in zip(parts, rule.parts)]
        return torch.cat(grouped, dim=1).reshape(-1, *parts[0].shape[1:])
    if rule.pack is Pack.STACKED:
        chunks = [p.chunk(tp, dim=0) for p in parts]
        return torch.cat([c[r] for r in range(tp) for c in chunks], dim=0)
    raise ValueError(rule.pack)


def unpack(rule: TensorRule, fused: torch.Tensor, spec: ModelSpec, tp: int = 1) -> list[torch.Tensor]:
    """Inverse of :func:`pack`: the canonical parts of a full framework tensor."""
    if rule.pack is Pack.NONE:
        return [fused]
    if rule.pack is Pack.QKV_GROUPED:
        ng = spec.num_kv_heads
        rows = [_qkv_rows(spec, name) for name in rule.parts]
        grouped = fused.reshape(ng, sum(rows), *fused.shape[1:])
        return [g.reshape(-1, *fused.shape[1:]).contiguous() for g in grouped.split(rows, dim=1)]
    if rule.pack is Pack.STACKED:
        per_rank = fused.chunk(tp, dim=0)
        n = len(rule.parts)
        pieces = [r.chunk(n, dim=0) for r in per_rank]
        return [torch.cat([p[j] for p in pieces], dim=0).contiguous() for j in range(n)]
    raise ValueError(rule.pack)


def padded_vocab_size(vocab: int, tp: int, divisible_by: int = 1) -> int:
    """Megatron's vocabulary padding: up to a multiple of ``divisible_by * tp``."""
    multiple = divisible_by * tp
    return -(-vocab // multiple) * multiple


def pad_vocab(t: torch.Tensor, rows: int) -> torch.Tensor:
    """Pad a [vocab, H] tensor to ``rows`` by repeating its last row, as MindSpeed-LLM's converter does."""
    extra = rows - t.shape[0]
    return torch.cat([t, t[-1:].expand(extra, -1)]) if extra > 0 else t


def split(t: torch.Tensor, shard: Shard, tp: int) -> list[torch.Tensor]:
    """Split a full tensor over ``tp`` ranks (vocab tensors must already be padded)."""
    if shard is Shard.REPLICATED or tp == 1:
        return [t] * tp
    dim = 1 if shard is Shard.ROW else 0
    if t.shape[dim] % tp:
        raise ValueError(f"dimension {dim} of size {t.shape[dim]} does not split over tp={tp}")
    return [c.contiguous() for c in t.chunk(tp, dim=dim)]


def merge(shards: list[torch.Tensor], shard: Shard) -> torch.Tensor:
    """Inverse of :func:`split`."""
    if shard is Shard.REPLICATED or len(shards) == 1:
        return shards[0]
    return torch.cat(shards, dim=1 if shard is Shard.ROW else 0)


def stage_layers(num_layers: int, pp: int, num_layer_list: list[int] | None = None) -> list[range]:
    """Global layer indices held by each pipeline stage."""
    counts = list(num_layer_list) if num_layer_list else [num_layers // pp] * pp
    if len(counts) != pp or sum(counts) != num_layers or (not num_layer_list and num_layers % pp):
        raise ValueError(f"{num_layers} layers cannot be split over pp={pp} as {counts}")
    starts = [sum(counts[:s]) for s in range(pp)]
    return [range(a, a + n) for a, n in zip(starts, counts)]
