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
        # transformers 5 holds a layer's experts as two fused parameters, gate_up_proj [E, 2 moe_ffn, H] ([gate; up]
        # per expert) and down_proj [E, H, moe_ffn]; PEFT adapts each by target_parameters, one pair per expert
        LoraModule(_L + "mlp.experts.gate_up_proj", ("expert_gate", "expert_up")),
        LoraModule(_L + "mlp.experts.down_proj", ("expert_down",)),
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

# PEFT's target_parameters entry for each expert tensor (a parameter of the layer's experts module, in its order).
PEFT_PARAMETER = {
    "expert_gate": "mlp.experts.gate_up_proj",
    "expert_up": "mlp.experts.gate_up_proj",
    "expert_down": "mlp.experts.down_proj",
}


def peft_parameter_lora_names(module: LoraModule, layer: int, wrapped: list[LoraModule]) -> tuple[str, str]:
    """Where PEFT saves the LoRA pair on a targeted parameter: its ParamWrappers nest on the parameters' module in the
    module's parameter order (``wrapped``), the first innermost, so the pair on the k-th of n sits under n - 1 - k
    ``base_layer`` s of the module (``...mlp.experts.base_layer.lora_A.weight``)."""
    parent = module.format(layer).rpartition(".")[0] + ".base_layer" * (len(wrapped) - 1 - wrapped.index(module))
    return f"base_model.model.{parent}.lora_A.weight", f"base_model.model.{parent}.lora_B.weight"
