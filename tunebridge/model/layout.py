"""Packing canonical tensors into fused framework tensors, and splitting them over TP ranks.

Pure tensor arithmetic driven by the dialect's :class:`Pack` and :class:`Shard` values; converters
call these one tensor (or one layer) at a time.
"""

from __future__ import annotations

import torch

from .dialects import Pack, Shard, TensorRule
from .partition import padded_vocab_size, stage_layers  # noqa: F401 - re-exported: their home is partition
from .spec import ModelSpec


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


def unpack_shards(rule: TensorRule, shards: list[torch.Tensor], spec: ModelSpec) -> list[torch.Tensor]:
    """``unpack(rule, merge(shards, rule.shard), spec, len(shards))`` with one copy per part: each rank's
    shard is unpacked in place (views) and the parts are joined over the ranks."""
    if rule.pack is Pack.NONE:
        return [merge(shards, rule.shard)]
    if rule.pack is Pack.QKV_GROUPED:
        rows = [_qkv_rows(spec, name) for name in rule.parts]
        tail = shards[0].shape[1:]
        local = [s.reshape(-1, sum(rows), *tail).split(rows, dim=1) for s in shards]
        return [torch.cat([views[j] for views in local]).reshape(-1, *tail) for j in range(len(rows))]
    if rule.pack is Pack.STACKED:
        local = [s.chunk(len(rule.parts), dim=0) for s in shards]
        return [torch.cat([views[j] for views in local]) for j in range(len(rule.parts))]
    raise ValueError(rule.pack)


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


def row_plan(
    rule: TensorRule, spec: ModelSpec, tp: int, rows: list[int], shard_rows: list[int] | None = None
) -> list[list[tuple[int, int, int]]] | None:
    """Where each TP rank's shard comes from when it is a run of whole rows of the canonical parts: per
    rank, the (part index, first row, row count) blocks of its shard in order. ``rows`` are the parts'
    row counts (padded, for a vocabulary). None for a row-parallel (dim 1) split, which is not such a run.
    ``shard_rows``: the row counts a checkpoint's shards of an unfused tensor have, when they may be uneven
    (MindSpeed-LLM's converter chunks an unpadded vocabulary: 511 rows over tp 2 as 256 + 255)."""
    if rule.pack is Pack.QKV_GROUPED:
        groups = spec.num_kv_heads // tp
        per_group = [_qkv_rows(spec, name) for name in rule.parts]
        return [
            [(j, g * n, n) for g in range(r * groups, (r + 1) * groups) for j, n in enumerate(per_group)]
            for r in range(tp)
        ]
    if rule.shard is Shard.REPLICATED or tp == 1:
        return [[(j, 0, n) for j, n in enumerate(rows)] for _ in range(tp)]
    if rule.shard is Shard.ROW:
        return None
    if shard_rows is not None and rule.pack is Pack.NONE:
        return [[(0, sum(shard_rows[:r]), n)] for r, n in enumerate(shard_rows)]
    for n in rows:
        if n % tp:
            raise ValueError(f"dimension 0 of size {n} does not split over tp={tp}")
    return [[(j, r * (n // tp), n // tp) for j, n in enumerate(rows)] for r in range(tp)]


def pack_shards(
    rule: TensorRule, parts: list[torch.Tensor], spec: ModelSpec, tp: int, rows: int | None = None
) -> list[tuple[tuple[int, ...], list[torch.Tensor]]]:
    """Each TP rank's shard of ``split(pack(rule, parts), rule.shard, tp)`` (vocab padded to ``rows``) as its
    shape and the contiguous tensors whose bytes, in order, are the shard's: views of ``parts`` wherever
    the shard's rows are contiguous in them, so the caller can write them without packing or copying."""
    parts = [p.contiguous() for p in parts]
    t = parts[0]
    tail = tuple(t.shape[1:])
    if rule.shard is Shard.ROW and tp > 1:
        if t.shape[1] % tp:
            raise ValueError(f"dimension 1 of size {t.shape[1]} does not split over tp={tp}")
        return [((t.shape[0], t.shape[1] // tp) + tail[1:], [c.contiguous()]) for c in t.chunk(tp, dim=1)]
    padded = rows if rule.shard is Shard.VOCAB and rows else t.shape[0]
    plan = row_plan(rule, spec, tp, [padded] if rule.pack is Pack.NONE else [p.shape[0] for p in parts])
    assert plan is not None  # only a row-parallel split over tp > 1 has no plan, and it returned above
    out = []
    for blocks in plan:
        pieces = []
        for j, first, n in blocks:
            real = min(first + n, parts[j].shape[0]) - first  # rows past the end are vocab padding
            if real > 0:
                pieces.append(parts[j][first : first + real])
            if real < n:
                pieces.append(t[-1:].expand(n - max(real, 0), *tail).contiguous())
        out.append(((sum(n for _, _, n in blocks),) + tail, pieces))
    return out


def merge(shards: list[torch.Tensor], shard: Shard) -> torch.Tensor:
    """Inverse of :func:`split`."""
    if shard is Shard.REPLICATED or len(shards) == 1:
        return shards[0]
    return torch.cat(shards, dim=1 if shard is Shard.ROW else 0)
