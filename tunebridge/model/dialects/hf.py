"""HF transformers (Llama, Qwen2, InternLM-as-Llama, Qwen3) and PEFT adapter naming."""

from .base import Dialect, LoraModule, TensorRule

_L = "model.layers.{i}."

HF = Dialect(
    name="hf",
    layer_rules=(
        TensorRule(_L + "input_layernorm.weight", ("attn_norm",)),
        TensorRule(_L + "self_attn.q_proj.weight", ("q",)),
        TensorRule(_L + "self_attn.q_proj.bias", ("q_bias",)),
        TensorRule(_L + "self_attn.k_proj.weight", ("k",)),
        TensorRule(_L + "self_attn.k_proj.bias", ("k_bias",)),
        TensorRule(_L + "self_attn.v_proj.weight", ("v",)),
        TensorRule(_L + "self_attn.v_proj.bias", ("v_bias",)),
        TensorRule(_L + "self_attn.q_norm.weight", ("q_norm",)),
        TensorRule(_L + "self_attn.k_norm.weight", ("k_norm",)),
        TensorRule(_L + "self_attn.o_proj.weight", ("o",)),
        TensorRule(_L + "self_attn.o_proj.bias", ("o_bias",)),
        TensorRule(_L + "post_attention_layernorm.weight", ("mlp_norm",)),
        TensorRule(_L + "mlp.gate_proj.weight", ("gate",)),
        TensorRule(_L + "mlp.up_proj.weight", ("up",)),
        TensorRule(_L + "mlp.down_proj.weight", ("down",)),
        # a mixture of experts as transformers 5 saves it (the hub's layout; it fuses them only in memory)
        TensorRule(_L + "mlp.gate.weight", ("router",)),
        TensorRule(_L + "mlp.experts.{e}.gate_proj.weight", ("expert_gate",)),
        TensorRule(_L + "mlp.experts.{e}.up_proj.weight", ("expert_up",)),
        TensorRule(_L + "mlp.experts.{e}.down_proj.weight", ("expert_down",)),
    ),
    global_rules=(
        TensorRule("model.embed_tokens.weight", ("embed",)),
        TensorRule("model.norm.weight", ("final_norm",)),
        TensorRule("lm_head.weight", ("lm_head",)),
    ),
    lora_modules=(
        LoraModule(_L + "self_attn.q_proj", ("q",)),
        LoraModule(_L + "self_attn.k_proj", ("k",)),
        LoraModule(_L + "self_attn.v_proj", ("v",)),
        LoraModule(_L + "self_attn.o_proj", ("o",)),
        LoraModule(_L + "mlp.gate_proj", ("gate",)),
        LoraModule(_L + "mlp.up_proj", ("up",)),
        LoraModule(_L + "mlp.down_proj", ("down",)),
    ),
    # As PEFT saves them in adapter_model.safetensors (adapter name stripped).
    lora_a="base_model.model.{module}.lora_A.weight",
    lora_b="base_model.model.{module}.lora_B.weight",
)

# PEFT's target_modules entry for each canonical projection.
PEFT_TARGET = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}
