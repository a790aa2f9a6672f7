"""Qwen3-MoE: Qwen3's attention (q/k RMSNorm, a head size of its own) with every layer's MLP a mixture of routed
experts (SwiGLU each, no shared expert), a softmax top-k router whose chosen probabilities are renormalised
(``norm_topk_prob``)."""

from . import Conversion, Converter, Family
from .keys import Key, const
from .qwen3 import FAMILY as QWEN3


def _check(spec) -> str | None:
    if not spec.num_experts:
        return "a Qwen3-MoE has experts: num_experts must be set"
    return QWEN3.check(spec)


FAMILY = Family(
    name="qwen3_moe",
    hf_architecture="Qwen3MoeForCausalLM",
    hf_model_type="qwen3_moe",
    hf_model_types_read=("qwen3_moe",),
    hf_keys=(
        *QWEN3.hf_keys,
        # the hub's configs say num_experts; transformers 5 writes it as num_local_experts
        Key("num_experts", "num_experts", also=("num_local_experts",)),
        Key("experts_per_token", "num_experts_per_tok"),
        Key("moe_ffn_hidden_size", "moe_intermediate_size"),
        Key("norm_topk_prob", "norm_topk_prob", default=False, into=bool),
        const("decoder_sparse_step", 1),  # every layer sparse
        const("mlp_only_layers", []),
    ),
    # megatron-core's MoE arguments (TransformerConfig: num_moe_experts, moe_router_topk, ...): a softmax router;
    # top-k of the logits then softmax over them (moe_router_pre_softmax off) is HF's top-k of the softmax
    # renormalised (norm_topk_prob), softmax then top-k (on) leaves the chosen probabilities as they are.
    # Rendered as MindSpeed-LLM's flags (its examples/mcore/qwen3_moe scripts): --num-experts, --moe-router-topk,
    # --moe-ffn-hidden-size and its own --norm-topk-prob, which renormalises the chosen probabilities after either
    # routing its scripts use (mindspeed_llm/core/transformer/moe/router.py, topk_router_routing); every layer is
    # sparse, Megatron's default (--moe-layer-freq 1).
    megatron_keys=(
        Key("num_experts", "num_experts", flag=""),
        Key("experts_per_token", "moe_router_topk", flag=""),
        Key("moe_ffn_hidden_size", "moe_ffn_hidden_size", flag=""),
        Key(
            "norm_topk_prob",
            "moe_router_pre_softmax",
            default=True,
            out=lambda n: not n,
            into=lambda pre: not pre,
            flag="",
        ),
        Key("norm_topk_prob", "norm_topk_prob", reads=False, flag="", args=False),
        const("moe_router_score_function", "softmax"),  # Megatron's default: not rendered
        # each expert its own linear_fc1 / linear_fc2 (local_experts.{e}, SequentialMLP), the layout tunebridge and
        # MindSpeed-LLM's convert_ckpt_v2.py without --moe-grouped-gemm both write: not rendered (Megatron's default)
        const("moe_grouped_gemm", False),
    ),
    fixed=QWEN3.fixed,
    template=QWEN3.template,
    vocabulary=QWEN3.vocabulary,
    # MindSpeed-LLM's examples/mcore/qwen3_moe scripts convert with convert_ckpt_v2.py as qwen3-moe (both versions);
    # 2.3.0's convert_ckpt_v2.py has no --lora-load, so mg->hf (the LoRA merged) is its convert_ckpt.py, whose
    # --model-type-hf takes qwen3-moe (configs/checkpoint/model_cfg.json), with the qwen3 spec as for Qwen3
    conversions={
        "2.3.0": Conversion(Converter("convert_ckpt_v2.py", "qwen3-moe"), Converter("convert_ckpt.py", "qwen3-moe")),
        "master": Conversion(
            Converter("convert_ckpt_v2.py", "qwen3-moe"), Converter("convert_ckpt_v2.py", "qwen3-moe")
        ),
    },
    msllm_spec=QWEN3.msllm_spec,
    mindformers=None,
    # Evidence (mindformers 1.9.0 wheel; the same in branch r1.8.0): models/qwen3_moe/modeling_qwen3_moe.py:52-54,
    # Qwen3MoeForCausalLM.__new__ returns TrainingQwen3MoeForCausalLM unless RUN_MODE=predict, a parallel_core
    # GPTModel (modeling_qwen3_moe_train.py:50-65) whose layer spec keeps fused_norm=True
    # (parallel_core/training_graph/base_models/gpt/gpt_layer_specs.py:92) and whose final norm is FusedNorm
    # (transformer/transformer_block.py:75): FusedRMSNorm, i.e. P.RmsNorm (transformer/norm.py:338), which MindSpore
    # 2.9.0 on CPU refuses ("The kernel RmsNorm unregistered."). configs/qwen3_moe holds pretrain and predict YAMLs
    # (use_legacy: False), no finetune or LoRA one (r1.8.0 and dev).
    mindformers_missing=(
        "MindFormers 1.9.0 runs Qwen3-MoE only as its parallel_core Qwen3MoeForCausalLM (use_legacy: False), not "
        "as the LlamaForCausalLM (.ckpt, pet_config) tunebridge renders and runs, which has neither q/k norm nor "
        "experts; and that model does not run on MindSpore CPU (its training graph always builds FusedRMSNorm, "
        "whose RmsNorm op has no CPU kernel: 'The kernel RmsNorm unregistered')"
    ),
    check=_check,
)
