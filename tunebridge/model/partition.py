"""How a model is divided over pipeline stages and TP ranks, in integers only (no torch: accounting and
rendering use it, and they run in commands that must start at once)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """How a written checkpoint (or adapter) is laid out; each format reads the fields that apply to it."""

    tp: int = 1
    pp: int = 1
    num_layer_list: list[int] | None = None
    make_vocab_size_divisible_by: int = 1
    max_shard_bytes: int = 2 << 30  # HF safetensors shards
    ep: int = 1  # expert-parallel ranks (Megatron's --expert-model-parallel-size)


def padded_vocab_size(vocab: int, tp: int, divisible_by: int = 1) -> int:
    """Megatron's vocabulary padding: up to a multiple of ``divisible_by * tp``."""
    multiple = divisible_by * tp
    return -(-vocab // multiple) * multiple


def parse_layer_list(text: str | None) -> list[int] | None:
    """Megatron's ``--num-layer-list`` / ``args.num_layer_list`` text ("4,4,3,3"), or None when empty; raises
    ValueError on anything but comma-separated positive integers."""
    if not text:
        return None
    counts = [int(x) for x in str(text).split(",")]
    if min(counts) <= 0:
        raise ValueError(f"layer counts must be positive: {text!r}")
    return counts


def stage_layers(num_layers: int, pp: int, num_layer_list: list[int] | None = None) -> list[range]:
    """Global layer indices held by each pipeline stage."""
    counts = list(num_layer_list) if num_layer_list else [num_layers // pp] * pp
    if len(counts) != pp or sum(counts) != num_layers or (not num_layer_list and num_layers % pp):
        raise ValueError(f"{num_layers} layers cannot be split over pp={pp} as {counts}")
    starts = [sum(counts[:s]) for s in range(pp)]
    return [range(a, a + n) for a, n in zip(starts, counts)]


def tp_problem(spec, tp: int) -> str | None:
    """Why ``spec`` cannot be split over ``tp`` tensor-parallel ranks as Megatron shards it (whole KV groups,
    heads, FFN and hidden columns per rank), or None."""
    sizes = {
        "KV groups": spec.num_kv_heads,
        "attention heads": spec.num_heads,
        "FFN size": spec.ffn_hidden_size,
        "hidden size": spec.hidden_size,
    }
    if spec.num_experts:  # each expert is split over TP too (megatron-core's expert TP is the TP size)
        sizes["expert FFN size"] = spec.moe_ffn_hidden_size
    for what, n in sizes.items():
        if n % tp:
            divisors = [
                d
                for d in range(1, spec.num_kv_heads + 1)
                if spec.num_kv_heads % d == 0 and all(m % d == 0 for m in sizes.values())
            ]
            return f"tp {tp} does not divide {spec.name}'s {n} {what} (tp can be {', '.join(map(str, divisors))})"
    return None


def local_expert(spec, expert: int, ep: int) -> tuple[int, int]:
    """(ep rank, local index) of a global expert: each ep rank holds a contiguous run of experts / ep of them."""
    per_rank = spec.num_experts // ep
    return expert // per_rank, expert % per_rank


def ep_problem(spec, ep: int) -> str | None:
    """Why ``spec`` cannot be split over ``ep`` expert-parallel ranks, or None."""
    if ep == 1:
        return None
    if not spec.num_experts:
        return f"ep {ep} needs a mixture of experts; {spec.name} is dense"
    if spec.num_experts % ep:
        return f"ep {ep} does not divide {spec.name}'s {spec.num_experts} experts"
    return None
