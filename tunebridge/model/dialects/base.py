"""Declarative description of how a framework names, packs and shards the canonical tensors.

A dialect is data: a list of :class:`TensorRule` (framework tensor <- canonical parts) and a list
of :class:`LoraModule` (framework module that LoRA can wrap <- canonical projections it covers).
Converters, accounting, renderers and parity checks all read these tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ..spec import ModelSpec


class Pack(Enum):
    """How several canonical tensors are fused into one framework tensor (along dim 0)."""

    NONE = "none"
    QKV_GROUPED = "qkv_grouped"  # per KV group: its query heads, its k head, its v head (Megatron linear_qkv)
    STACKED = "stacked"  # plain concatenation of the parts, per TP rank (Megatron linear_fc1 = [gate; up])


class Shard(Enum):
    """How a tensor is split over tensor-parallel ranks."""

    REPLICATED = "replicated"
    COLUMN = "column"  # output features (dim 0) split
    ROW = "row"  # input features (dim 1) split
    VOCAB = "vocab"  # vocabulary rows (dim 0) split, after padding


@dataclass(frozen=True)
class TensorRule:
    """One framework tensor. ``name`` may hold ``{i}`` (layer index) and ``{e}`` (expert index: one framework
    tensor per expert, each row ``e`` of the canonical parts, which stack every expert's tensor in front);
    ``parts`` are canonical names."""

    name: str
    parts: tuple[str, ...]
    pack: Pack = Pack.NONE
    shard: Shard = Shard.REPLICATED

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.name

    @property
    def per_expert(self) -> bool:
        return "{e}" in self.name

    def applies_to(self, spec: ModelSpec) -> bool:
        return all(spec.has(p) for p in self.parts)

    def format(self, layer: int | None = None, expert: int | None = None) -> str:
        if self.per_expert:
            if expert is None:
                raise ValueError(f"{self.name}: which expert?")
            return self.name.format(i=layer, e=expert)
        return self.name.format(i=layer) if self.per_layer else self.name

    def names(self, layer: int | None, experts: range) -> list[str]:
        """The framework tensors of this rule in ``layer``: one per expert of ``experts`` for a per-expert rule."""
        return [self.format(layer, e) for e in experts] if self.per_expert else [self.format(layer)]


@dataclass(frozen=True)
class LoraModule:
    """A module LoRA can wrap: ``name`` (with ``{i}``) covers the canonical projections ``covers``. Over a mixture of
    experts' tensors it adapts each expert with a pair of its own: ``{e}`` in ``name`` when every expert is a module
    (megatron-core's local experts), else one module holding them all (transformers' fused expert tensors)."""

    name: str
    covers: tuple[str, ...]
    parallel: Shard = Shard.REPLICATED  # COLUMN or ROW in Megatron; REPLICATED where TP does not apply

    def in_features(self, spec: ModelSpec) -> int:
        return spec.shape(self.covers[0])[-1]

    def out_features(self, spec: ModelSpec) -> int:
        return sum(spec.shape(p)[-2] for p in self.covers)

    def experts(self, spec: ModelSpec) -> int:
        """How many (A, B) pairs it holds per layer: one per expert over expert tensors, else one."""
        return spec.num_experts if len(spec.shape(self.covers[0])) == 3 else 1

    @property
    def per_expert(self) -> bool:
        return "{e}" in self.name

    def applies_to(self, spec: ModelSpec) -> bool:
        return all(spec.has(p) for p in self.covers)

    def format(self, layer: int, expert: int | None = None) -> str:
        return self.name.format(i=layer, e=expert) if self.per_expert else self.name.format(i=layer)


@dataclass(frozen=True)
class Dialect:
    name: str
    layer_rules: tuple[TensorRule, ...]
    global_rules: tuple[TensorRule, ...]
    lora_modules: tuple[LoraModule, ...]
    lora_a: str  # LoRA tensor names from the module name, "{module}" placeholder
    lora_b: str
    base_layer: str = "{module}.weight"  # where a LoRA-wrapped module keeps its base weight
    sharded: bool = False  # a checkpoint holds one file per TP/PP rank, each with its shard (Megatron)

    def rules(self, spec: ModelSpec) -> list[TensorRule]:
        return [r for r in (*self.layer_rules, *self.global_rules) if r.applies_to(spec)]

    def rule_for_part(self, part: str, spec: ModelSpec) -> TensorRule:
        for r in self.rules(spec):
            if part in r.parts:
                return r
        raise KeyError(f"{self.name}: no tensor holds canonical {part!r}")

    def tensor_names(self, spec: ModelSpec, layers: range | None = None, experts: range | None = None) -> list[str]:
        """All tensor names of a model in this dialect (global names, and layers in ``layers``; per-expert
        tensors for the experts in ``experts``, by default all of them)."""
        layers = range(spec.num_layers) if layers is None else layers
        experts = range(spec.num_experts) if experts is None else experts
        firsts = [r.name for r in self.global_rules if r.applies_to(spec) and r.parts[0] == "embed"]
        lasts = [r.name for r in self.global_rules if r.applies_to(spec) and r.parts[0] != "embed"]
        per_layer = [n for i in layers for r in self.layer_rules if r.applies_to(spec) for n in r.names(i, experts)]
        return firsts + per_layer + lasts

    def lora_module_for(self, tensor: str) -> LoraModule:
        for m in self.lora_modules:
            if tensor in m.covers:
                return m
        raise KeyError(f"{self.name}: no LoRA module covers {tensor!r}")

    def lora_modules_of(self, spec: ModelSpec) -> tuple[LoraModule, ...]:
        """The LoRA modules ``spec``'s model has (a mixture of experts: its experts' instead of the dense MLP's)."""
        return tuple(m for m in self.lora_modules if m.applies_to(spec))

    def lora_names(self, module: LoraModule, layer: int, expert: int | None = None) -> tuple[str, str]:
        mod = module.format(layer, expert)
        return self.lora_a.format(module=mod), self.lora_b.format(module=mod)
