"""Build megatron-core's GPTModel the way MindSpeed-LLM builds it, for one pipeline stage of a ModelSpec.

MindSpeed-LLM runs mcore models with the local transformer spec (``transformer_impl=local``),
RMSNorm, SwiGLU, RoPE, ``--disable-bias-linear`` (+ ``--add-qkv-bias``, ``--add-dense-bias``, ``--qk-layernorm``),
fp32 here: the model is the family's Megatron arguments (:func:`tunebridge.model.families.megatron_keys`) turned into
megatron-core's TransformerConfig as Megatron's ``core_transformer_config_from_args`` does. Call inside a process
set up by :func:`tunebridge.backends.mindspeed_llm.megatron.cpu.init_parallel`.
"""

from __future__ import annotations

import dataclasses

import torch
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.tensor_parallel import RowParallelLinear
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_config import TransformerConfig

from ....errors import TunebridgeError
from ....model.dialects import MCORE
from ....model.families import keys as config_keys, megatron_keys
from ....model.layout import padded_vocab_size, stage_layers
from ....model.spec import ModelSpec

# megatron-core's RotaryEmbedding applies llama3 scaling with these three values fixed.
_MCORE_LLAMA3_FIXED = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def rope_scaling_factor(spec: ModelSpec) -> float | None:
    """The llama3 rope scaling factor megatron-core should apply, or None; raises if it can't express it."""
    rs = spec.rope_scaling
    if not rs:
        return None
    kind = rs.get("rope_type", rs.get("type"))
    fixed = {k: float(rs.get(k, v)) for k, v in _MCORE_LLAMA3_FIXED.items()}
    if kind != "llama3" or fixed != _MCORE_LLAMA3_FIXED:
        raise TunebridgeError(
            f"{spec.name}: rope_scaling {rs} is not expressible in megatron-core "
            f"{'(only llama3 scaling)' if kind != 'llama3' else f'(it fixes {_MCORE_LLAMA3_FIXED})'}"
        )
    return float(rs["factor"])


# Megatron's argument -> megatron-core's TransformerConfig field, for the model's arguments.
_CONFIG_OF_ARG = {
    "num_layers": "num_layers",
    "hidden_size": "hidden_size",
    "ffn_hidden_size": "ffn_hidden_size",
    "num_attention_heads": "num_attention_heads",
    "num_query_groups": "num_query_groups",
    "kv_channels": "kv_channels",
    "normalization": "normalization",
    "norm_epsilon": "layernorm_epsilon",
    "swiglu": "gated_linear_unit",
    "add_bias_linear": "add_bias_linear",
    "add_qkv_bias": "add_qkv_bias",
    "qk_layernorm": "qk_layernorm",
    "num_experts": "num_moe_experts",
    "moe_router_topk": "moe_router_topk",
    "moe_ffn_hidden_size": "moe_ffn_hidden_size",
    "moe_router_pre_softmax": "moe_router_pre_softmax",
    "moe_router_score_function": "moe_router_score_function",
    "moe_grouped_gemm": "moe_grouped_gemm",
}


def megatron_args(spec: ModelSpec) -> dict:
    """The model as Megatron's arguments (the family's Megatron table)."""
    return config_keys.write(megatron_keys(spec.family_record), spec)


def transformer_config(
    spec: ModelSpec,
    tp: int = 1,
    pp: int = 1,
    num_layer_list: list[int] | None = None,
    ep: int = 1,
    moe_aux_loss_coeff: float = 0.0,
) -> TransformerConfig:
    """The TransformerConfig MindSpeed-LLM's GPT_ARGS give for ``spec`` (fp32, no dropout, no fusions)."""
    layout = None
    if pp > 1:
        # megatron-core 0.16.1 takes any per-stage split as an explicit layer layout; stage_layers validates it.
        counts = [len(r) for r in stage_layers(spec.num_layers, pp, num_layer_list)]
        layout = [["decoder"] * n for n in counts]
        layout[0].insert(0, "embedding")
        layout[-1].append("loss")
    elif num_layer_list and list(num_layer_list) != [spec.num_layers]:
        raise ValueError(f"num_layer_list {num_layer_list} needs pp = {len(num_layer_list)}, got pp = 1")
    args = megatron_args(spec)
    return TransformerConfig(
        **{field: args[arg] for arg, field in _CONFIG_OF_ARG.items() if arg in args},
        activation_func=torch.nn.functional.silu if args["swiglu"] else torch.nn.functional.gelu,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        expert_model_parallel_size=ep,
        pipeline_model_parallel_layout=layout,
        params_dtype=torch.float32,
        pipeline_dtype=torch.float32,
        use_cpu_initialization=True,
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        # a mixture of experts: the recipe's load-balancing loss (train.moe_aux_loss_coeff), none at 0
        moe_router_load_balancing_type="aux_loss" if moe_aux_loss_coeff > 0 else "none",
        moe_aux_loss_coeff=moe_aux_loss_coeff,
    )


class _DenseBiasRowParallelLinear(RowParallelLinear):
    """linear_proj with a bias whatever ``add_bias_linear`` says: MindSpeed-LLM's ``--add-dense-bias``."""

    def __init__(self, *args, bias: bool, **kwargs):
        super().__init__(*args, bias=True, **kwargs)


def layer_spec(spec: ModelSpec) -> ModuleSpec:
    """The local transformer-layer spec (q/k RMSNorm when the model has them, a mixture of experts when it has
    experts); InternLM's o bias replaces linear_proj's class (q/k/v bias is config)."""
    args = megatron_args(spec)
    local = get_gpt_layer_local_spec(
        num_experts=args.get("num_experts"),
        moe_grouped_gemm=args.get("moe_grouped_gemm", False),
        normalization=args["normalization"],
        qk_layernorm=args.get("qk_layernorm", False),
    )
    if not spec.o_bias:
        return local
    attention = local.submodules.self_attention
    attn_sub = dataclasses.replace(attention.submodules, linear_proj=_DenseBiasRowParallelLinear)
    layer_sub = dataclasses.replace(
        local.submodules, self_attention=dataclasses.replace(attention, submodules=attn_sub)
    )
    return dataclasses.replace(local, submodules=layer_sub)


def build_gpt(
    spec: ModelSpec,
    tp: int = 1,
    pp: int = 1,
    num_layer_list: list[int] | None = None,
    make_vocab_size_divisible_by: int = 1,
    max_sequence_length: int | None = None,
    ep: int = 1,
    moe_aux_loss_coeff: float = 0.0,
) -> GPTModel:
    """This process's stage of ``spec`` as a megatron-core GPTModel (stage, TP and EP rank from parallel_state;
    over ``ep`` > 1 its MoE layers build only this EP rank's experts / ep local experts).

    ``tp``/``pp``/``ep`` must be the sizes parallel_state was initialised with; they are stated, not read, so a
    mismatch with the caller's checkpoint layout fails here rather than as a shape error later.
    """
    actual = (
        parallel_state.get_tensor_model_parallel_world_size(),
        parallel_state.get_pipeline_model_parallel_world_size(),
        parallel_state.get_expert_model_parallel_world_size(),
    )
    if actual != (tp, pp, ep):
        raise ValueError(f"build_gpt(tp={tp}, pp={pp}, ep={ep}) but parallel_state has tp, pp, ep = {actual}")
    if spec.num_kv_heads % tp:
        raise ValueError(f"{spec.name}: tp={tp} must divide the {spec.num_kv_heads} KV groups")
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    scaling = rope_scaling_factor(spec)
    args = megatron_args(spec)
    return GPTModel(
        config=transformer_config(spec, tp, pp, num_layer_list, ep, moe_aux_loss_coeff),
        transformer_layer_spec=layer_spec(spec),
        vocab_size=padded_vocab_size(spec.vocab_size, tp, make_vocab_size_divisible_by),
        max_sequence_length=max_sequence_length or spec.max_position_embeddings,
        pre_process=pp_rank == 0,
        post_process=pp_rank == pp - 1,
        share_embeddings_and_output_weights=not args["untie_embeddings_and_output_weights"],
        position_embedding_type=args["position_embedding_type"],
        rotary_base=args["rotary_base"],
        rope_scaling=scaling is not None,
        rope_scaling_factor=scaling or 8.0,
    )


def stage_tensor_names(
    spec: ModelSpec, pp_rank: int = 0, pp: int = 1, num_layer_list: list[int] | None = None, ep: int = 1
) -> list[str]:
    """MCORE tensor names one pipeline stage holds, with stage-local layer indices (and, over ``ep``
    expert-parallel ranks, each rank's local expert indices: every ep rank holds as many experts).

    With tied embeddings and pp > 1 the last stage also holds ``output_layer.weight``: megatron-core
    keeps a copy of the word embeddings there, and MindSpeed-LLM's converter saves it.
    """
    local = range(len(stage_layers(spec.num_layers, pp, num_layer_list)[pp_rank]))
    names = MCORE.tensor_names(spec, layers=local, experts=range(spec.num_experts // ep))
    if pp_rank != 0:
        names = [n for n in names if not n.startswith("embedding.")]
    if pp_rank != pp - 1:
        names = [n for n in names if not n.startswith(("decoder.final_layernorm.", "output_layer."))]
    elif spec.tied_embeddings and pp > 1:
        names.append("output_layer.weight")
    return names


def model_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's state dict without the ``_extra_state`` entries (always None for local TP layers)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("._extra_state")}
