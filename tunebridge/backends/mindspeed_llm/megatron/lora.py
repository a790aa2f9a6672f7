"""MindSpeed-LLM-style fused LoRA on megatron-core's parallel linears (what PEFT's Megatron path does
when it works; PEFT 0.21.2's `LoraConfig(megatron_config=...)` fails with KeyError 'fan_in_fan_out').

One (A, B) pair per fused module, so q, k and v share A in ``linear_qkv`` and gate/up share A in
``linear_fc1``. Tensor parallelism, for a module with base output ``y = W x``:

- column-parallel (linear_qkv, linear_fc1): A [r, in] replicated, B [out/tp, r] split like W's rows;
  A's output enters the TP region by an identity whose backward all-reduces, so A's gradient is whole.
- row-parallel (linear_proj, linear_fc2): A [r, in/tp] split like W's columns; the partial products
  ``A_i x_i`` are all-reduced, then B [out, r] (replicated) applies.

The update is ``y += (alpha / r) * B A dropout(x)``. Dropout draws from the default generator, which
Megatron seeds alike on every TP rank, so replicated inputs get one mask.
"""

from __future__ import annotations

import math

import torch
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear, set_tensor_model_parallel_attributes
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
)
from torch import nn
from torch.nn.utils import skip_init

from ....model.accounting import native_name
from ....model.dialects import MCORE, Shard

# MindSpeed-LLM's --lora-target-modules name -> Megatron parallel kind.
LORA_PARALLEL = {native_name(m): m.parallel for m in MCORE.lora_modules}


class FusedLoraLinear(nn.Module):
    """A Column/RowParallelLinear (``base_layer``) plus ``lora_A.default`` / ``lora_B.default``."""

    def __init__(
        self,
        base: ColumnParallelLinear | RowParallelLinear,
        parallel: Shard,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
    ):
        super().__init__()
        if base.config.sequence_parallel:
            raise NotImplementedError("fused LoRA here does not support sequence parallelism")
        if parallel is Shard.COLUMN and base.gather_output:
            raise NotImplementedError("fused LoRA on a column-parallel linear that gathers its output")
        self.base_layer = base
        self.parallel = parallel
        self.scaling = alpha / rank
        tp = base.tp_group.size()
        tp_rank = base.tp_group.rank()
        full_a = torch.empty(rank, base.input_size, dtype=base.weight.dtype)
        nn.init.kaiming_uniform_(full_a, a=math.sqrt(5))  # PEFT's A init, on the full A (TP-invariant)
        if parallel is Shard.COLUMN:
            a, b_shape = full_a, (base.output_size_per_partition, rank)
        else:
            a, b_shape = full_a.chunk(tp, dim=1)[tp_rank], (base.output_size, rank)
        lora_a = skip_init(nn.Linear, a.shape[1], rank, bias=False)
        lora_b = skip_init(nn.Linear, rank, b_shape[0], bias=False)
        self.lora_A = nn.ModuleDict({"default": lora_a})
        self.lora_B = nn.ModuleDict({"default": lora_b})
        with torch.no_grad():
            lora_a.weight.copy_(a)
            lora_b.weight.zero_()
        # Mark the TP-split matrix as Megatron marks its parallel linears' weights, so grad-norm code
        # (param_is_not_tensor_parallel_duplicate) counts it on every rank and the replicated one once.
        if parallel is Shard.COLUMN:
            set_tensor_model_parallel_attributes(self.lora_B["default"].weight, True, 0, 1)
        else:
            set_tensor_model_parallel_attributes(self.lora_A["default"].weight, True, 1, 1)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *args, **kwargs):
        out, bias = self.base_layer(x, *args, **kwargs)
        u = self.lora_A["default"](self.lora_dropout(x))
        group = self.base_layer.tp_group
        if self.parallel is Shard.COLUMN:
            u = copy_to_tensor_model_parallel_region(u, group=group)
        else:
            u = reduce_from_tensor_model_parallel_region(u, group=group)
        return out + self.scaling * self.lora_B["default"](u), bias

    def merged_weight(self) -> torch.Tensor:
        """This rank's shard of W + (alpha/r) B A (row-parallel needs no communication: B is whole)."""
        a, b = self.lora_A["default"], self.lora_B["default"]
        assert isinstance(a, nn.Linear) and isinstance(b, nn.Linear)
        return self.base_layer.weight + self.scaling * (b.weight @ a.weight)


def apply_lora(model: nn.Module, modules: list[str], rank: int, alpha: float, dropout: float = 0.0) -> nn.Module:
    """Wrap every ``modules`` linear (native names: linear_qkv, linear_proj, linear_fc1, linear_fc2) of
    ``model`` in place and freeze everything but the LoRA matrices; returns ``model``."""
    unknown = sorted(set(modules) - set(LORA_PARALLEL))
    if unknown:
        raise ValueError(f"unknown LoRA target modules {unknown} (MindSpeed-LLM knows {list(LORA_PARALLEL)})")
    targets = [
        (name, mod)
        for name, mod in model.named_modules()
        if name.rsplit(".", 1)[-1] in modules and isinstance(mod, (ColumnParallelLinear, RowParallelLinear))
    ]
    if not targets:
        raise ValueError(f"no module named {modules} in the model")
    for p in model.parameters():
        p.requires_grad_(False)
    for name, base in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, FusedLoraLinear(base, LORA_PARALLEL[child], rank, alpha, dropout))
    return model
