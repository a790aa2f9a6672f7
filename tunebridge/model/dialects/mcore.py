"""Megatron-mcore (local transformer spec) naming, as MindSpeed-LLM writes and reads it."""

from .base import Dialect, LoraModule, Pack, Shard, TensorRule

_L = "decoder.layers.{i}."

MCORE = Dialect(
    name="mcore",
    layer_rules=(
        TensorRule(_L + "input_layernorm.weight", ("attn_norm",)),
        TensorRule(_L + "self_attention.linear_qkv.weight", ("q", "k", "v"), Pack.QKV_GROUPED, Shard.COLUMN),
        TensorRule(
            _L + "self_attention.linear_qkv.bias", ("q_bias", "k_bias", "v_bias"), Pack.QKV_GROUPED, Shard.COLUMN
        ),
        TensorRule(_L + "self_attention.q_layernorm.weight", ("q_norm",)),  # --qk-layernorm, replicated over TP
        TensorRule(_L + "self_attention.k_layernorm.weight", ("k_norm",)),
        TensorRule(_L + "self_attention.linear_proj.weight", ("o",), Pack.NONE, Shard.ROW),
        # MindSpeed-LLM's --add-dense-bias (InternLM); a row-parallel bias is added after the all-reduce.
        TensorRule(_L + "self_attention.linear_proj.bias", ("o_bias",)),
        TensorRule(_L + "pre_mlp_layernorm.weight", ("mlp_norm",)),
        TensorRule(_L + "mlp.linear_fc1.weight", ("gate", "up"), Pack.STACKED, Shard.COLUMN),
        TensorRule(_L + "mlp.linear_fc2.weight", ("down",), Pack.NONE, Shard.ROW),
        # a mixture of experts (local spec, no grouped GEMM): the router is replicated over TP; each expert is an
        # MLP sharded over TP like the dense one, and its ep rank holds it as local expert e % (experts / ep)
        TensorRule(_L + "mlp.router.weight", ("router",)),
        TensorRule(
            _L + "mlp.experts.local_experts.{e}.linear_fc1.weight",
            ("expert_gate", "expert_up"),
            Pack.STACKED,
            Shard.COLUMN,
        ),
        TensorRule(_L + "mlp.experts.local_experts.{e}.linear_fc2.weight", ("expert_down",), Pack.NONE, Shard.ROW),
    ),
    global_rules=(
        TensorRule("embedding.word_embeddings.weight", ("embed",), Pack.NONE, Shard.VOCAB),
        TensorRule("decoder.final_layernorm.weight", ("final_norm",)),
        TensorRule("output_layer.weight", ("lm_head",), Pack.NONE, Shard.VOCAB),
    ),
    lora_modules=(
        LoraModule(_L + "self_attention.linear_qkv", ("q", "k", "v"), Shard.COLUMN),
        LoraModule(_L + "self_attention.linear_proj", ("o",), Shard.ROW),
        LoraModule(_L + "mlp.linear_fc1", ("gate", "up"), Shard.COLUMN),
        LoraModule(_L + "mlp.linear_fc2", ("down",), Shard.ROW),
        # --lora-target-modules linear_fc1 / linear_fc2 wrap every local expert's too, each with its own pair
        LoraModule(_L + "mlp.experts.local_experts.{e}.linear_fc1", ("expert_gate", "expert_up"), Shard.COLUMN),
        LoraModule(_L + "mlp.experts.local_experts.{e}.linear_fc2", ("expert_down",), Shard.ROW),
    ),
    lora_a="{module}.lora_A.default.weight",
    lora_b="{module}.lora_B.default.weight",
    base_layer="{module}.base_layer.weight",
    sharded=True,
)

# MindSpeed-LLM's --lora-target-modules names.
MCORE_LORA_TARGET = {
    "linear_qkv": ("q", "k", "v"),
    "linear_proj": ("o",),
    "linear_fc1": ("gate", "up"),
    "linear_fc2": ("down",),
}
