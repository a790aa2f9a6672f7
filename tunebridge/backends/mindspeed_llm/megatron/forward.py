"""Logits of a megatron-core GPTModel spread over tp x pp (x ep) CPU processes: MindSpeed-LLM's reference forward.

:func:`mcore_logits` is the entry point from an ordinary process (it spawns the ranks);
:func:`stage_forward` is the per-rank step, for code already running inside a rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from megatron.core import parallel_state

from ....model.spec import ModelSpec
from . import launch
from .cpu import causal_mask
from .lora import apply_lora
from .model import build_gpt
from .weights import Shards

if TYPE_CHECKING:
    from megatron.core.models.gpt import GPTModel

_LORA_A = ".lora_A.default.weight"
# an expert-parallel checkpoint's rank files: {(pp_rank, tp_rank, ep_rank): mcore state dict}
ExpertShards = dict[tuple[int, int, int], dict[str, torch.Tensor]]


@torch.no_grad()
def stage_forward(model: GPTModel, input_ids: torch.Tensor, spec: ModelSpec) -> torch.Tensor | None:
    """Forward-only pipeline pass of this rank's stage: hidden states travel stage to stage by
    send/recv; returns [b, s, vocab] logits (gathered over TP, vocab padding cut) on the last stage,
    None elsewhere."""
    model.eval()
    b, s = input_ids.shape
    positions = torch.arange(s).expand(b, s)
    first = parallel_state.is_pipeline_first_stage()
    last = parallel_state.is_pipeline_last_stage()
    if not first:
        hidden = torch.empty(s, b, spec.hidden_size)
        torch.distributed.recv(hidden, src=parallel_state.get_pipeline_model_parallel_prev_rank())
        model.set_input_tensor(hidden)
    out = model(input_ids, positions, causal_mask(s), runtime_gather_output=True)
    if not last:
        torch.distributed.send(out.contiguous(), dst=parallel_state.get_pipeline_model_parallel_next_rank())
        return None
    return out[..., : spec.vocab_size]


def lora_in(state_dict: dict[str, torch.Tensor]) -> tuple[list[str], int] | None:
    """The fused LoRA a state dict carries: (native module names, rank), or None."""
    modules = sorted({k[: -len(_LORA_A)].rsplit(".", 1)[-1] for k in state_dict if k.endswith(_LORA_A)})
    if not modules:
        return None
    rank = next(v.shape[0] for k, v in state_dict.items() if k.endswith(_LORA_A))
    return modules, rank


def _logits_rank(
    spec: ModelSpec,
    shards: ExpertShards,
    input_ids: torch.Tensor,
    tp: int,
    pp: int,
    ep: int,
    num_layer_list: list[int] | None,
    make_vocab_size_divisible_by: int,
    lora_alpha: float | None,
) -> torch.Tensor | None:
    tp_rank, ep_rank = parallel_state.get_tensor_model_parallel_rank(), parallel_state.get_expert_model_parallel_rank()
    state = shards[(parallel_state.get_pipeline_model_parallel_rank(), tp_rank, ep_rank)]
    model = build_gpt(spec, tp, pp, num_layer_list, make_vocab_size_divisible_by, ep=ep)
    found = lora_in(state)
    if found:
        if lora_alpha is None:
            raise ValueError("the shards carry LoRA weights: pass lora_alpha")
        apply_lora(model, found[0], found[1], lora_alpha)
    model.load_state_dict(state, strict=True)
    logits = stage_forward(model, input_ids, spec)
    return logits if tp_rank == ep_rank == 0 else None


def mcore_logits(
    spec: ModelSpec,
    shards: Shards | ExpertShards,
    input_ids: torch.Tensor,
    num_layer_list: list[int] | None = None,
    make_vocab_size_divisible_by: int = 1,
    lora_alpha: float | None = None,
    timeout_s: float = 600.0,
) -> torch.Tensor:
    """fp32 logits [batch, seq, vocab] of megatron-core loaded with ``shards`` ({(pp_rank, tp_rank):
    mcore state dict}, as in ``mp_rank_*/model_optim_rng.pt['model']`` or from
    :func:`tunebridge.backends.mindspeed_llm.megatron.weights.mcore_shards`), run on tp*pp gloo processes;
    keyed (pp_rank, tp_rank, ep_rank), a mixture of experts' expert-parallel rank files, on tp*pp*ep.

    tp, pp and ep are read from the shard keys. Fused LoRA weights in the shards are applied with
    scale ``lora_alpha / r``. Loading is strict: a missing, unexpected or misshapen tensor fails.
    """
    by_rank: ExpertShards = {(k[0], k[1], k[2] if len(k) == 3 else 0): v for k, v in shards.items()}
    pp, tp, ep = (1 + max(k[i] for k in by_rank) for i in range(3))
    if sorted(by_rank) != [(s, t, e) for s in range(pp) for t in range(tp) for e in range(ep)]:
        raise ValueError(f"shards must cover every rank of a pp x tp x ep = {pp}x{tp}x{ep} grid, got {sorted(shards)}")
    results = launch.run(
        _logits_rank,
        tp,
        pp,
        timeout_s=timeout_s,
        ep=ep,
        args=(spec, by_rank, input_ids, tp, pp, ep, num_layer_list, make_vocab_size_divisible_by, lora_alpha),
    )
    return results[(pp - 1) * tp * ep]
