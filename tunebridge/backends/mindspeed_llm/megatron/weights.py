"""Canonical full weights -> the per-(pp_rank, tp_rank) mcore state dicts a MindSpeed-LLM checkpoint holds.

Canonical weights are keyed like :meth:`ModelSpec.tensors` yields them: ``(tensor, layer)``, layer None
for globals. Fused LoRA is keyed ``(native module, layer)`` -> ``(A [r, in], B [out, r])`` with B's rows
in canonical order of the projections the module covers (``[q; k; v]``, ``[gate; up]``), so that
``W + (alpha/r) B A`` is the update of the canonical stacked weight.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ....model.accounting import native_name
from ....model.dialects import MCORE, Shard
from ....model.layout import pack, pad_vocab, padded_vocab_size, split, stage_layers
from ....model.spec import ModelSpec

Canonical = Mapping[tuple[str, int | None], torch.Tensor]
FusedLora = Mapping[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]
Shards = dict[tuple[int, int], dict[str, torch.Tensor]]


def _stage_full_tensors(
    spec: ModelSpec, canonical: Canonical, layers: range, first: bool, last: bool, pp: int, tp: int, vocab: int
) -> dict[str, tuple[torch.Tensor, Shard]]:
    out: dict[str, tuple[torch.Tensor, Shard]] = {}
    for rule in MCORE.rules(spec):
        if rule.per_layer:
            for j, g in enumerate(layers):
                out[rule.format(j)] = pack(rule, [canonical[(p, g)] for p in rule.parts], spec, tp), rule.shard
            continue
        part = rule.parts[0]
        if (part == "embed" and first) or (part != "embed" and last):
            t = canonical[(part, None)]
            out[rule.name] = (pad_vocab(t, vocab) if rule.shard is Shard.VOCAB else t), rule.shard
    if spec.tied_embeddings and last and pp > 1:
        out["output_layer.weight"] = pad_vocab(canonical[("embed", None)], vocab), Shard.VOCAB
    return out


def _stage_lora(
    spec: ModelSpec, lora: FusedLora, layers: range, tp: int, full: dict[str, tuple[torch.Tensor, Shard]]
) -> dict[str, tuple[torch.Tensor, Shard]]:
    """Rename wrapped base tensors to ``base_layer`` and add the LoRA pairs of one stage."""
    modules = {native_name(m): m for m in MCORE.lora_modules_of(spec)}
    for (name, g), (a, b) in lora.items():
        if g not in layers:
            continue
        module = modules[name]
        j = layers.index(g)
        path = module.format(j)
        weight, shard = full.pop(path + ".weight")
        full[MCORE.base_layer.format(module=path)] = weight, shard
        if path + ".bias" in full:
            full[path + ".base_layer.bias"] = full.pop(path + ".bias")
        rule = MCORE.rule_for_part(module.covers[0], spec)
        b_parts = list(b.split([spec.shape(p)[0] for p in module.covers]))
        a_name, b_name = MCORE.lora_names(module, j)
        column = module.parallel is Shard.COLUMN
        full[a_name] = a, (Shard.REPLICATED if column else Shard.ROW)
        full[b_name] = pack(rule, b_parts, spec, tp), (Shard.COLUMN if column else Shard.REPLICATED)
    return full


def mcore_shards(
    spec: ModelSpec,
    canonical: Canonical,
    tp: int = 1,
    pp: int = 1,
    num_layer_list: list[int] | None = None,
    make_vocab_size_divisible_by: int = 1,
    lora: FusedLora | None = None,
) -> Shards:
    """Every rank's mcore state dict, keyed ``(pp_rank, tp_rank)`` (stage-local layer indices)."""
    vocab = padded_vocab_size(spec.vocab_size, tp, make_vocab_size_divisible_by)
    stages = stage_layers(spec.num_layers, pp, num_layer_list)
    shards: Shards = {}
    for s, layers in enumerate(stages):
        full = _stage_full_tensors(spec, canonical, layers, s == 0, s == pp - 1, pp, tp, vocab)
        if lora:
            full = _stage_lora(spec, lora, layers, tp, full)
        for t in range(tp):
            shards[(s, t)] = {name: split(tensor, shard, tp)[t] for name, (tensor, shard) in full.items()}
    return shards


def merge_lora(spec: ModelSpec, canonical: Canonical, lora: FusedLora, alpha: float) -> dict:
    """Canonical weights with each fused LoRA pair merged in: W_p += (alpha/r) B_p A."""
    merged = dict(canonical)
    covers = {native_name(m): m.covers for m in MCORE.lora_modules_of(spec)}
    for (name, g), (a, b) in lora.items():
        scale = alpha / a.shape[0]
        parts = covers[name]
        for p, b_p in zip(parts, b.split([spec.shape(p)[0] for p in parts])):
            merged[(p, g)] = canonical[(p, g)] + scale * (b_p @ a)
    return merged
