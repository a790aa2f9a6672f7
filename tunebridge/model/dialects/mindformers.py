"""MindFormers (MindSpore) LlamaForCausalLM naming; Qwen2/2.5 and InternLM use it with biases."""

from .base import Dialect, LoraModule, TensorRule

_L = "model.layers.{i}."

MINDFORMERS = Dialect(
    name="mindformers",
    layer_rules=(
        TensorRule(_L + "attention_norm.weight", ("attn_norm",)),
        TensorRule(_L + "attention.wq.weight", ("q",)),
        TensorRule(_L + "attention.wq.bias", ("q_bias",)),
        TensorRule(_L + "attention.wk.weight", ("k",)),
        TensorRule(_L + "attention.wk.bias", ("k_bias",)),
        TensorRule(_L + "attention.wv.weight", ("v",)),
        TensorRule(_L + "attention.wv.bias", ("v_bias",)),
        TensorRule(_L + "attention.wo.weight", ("o",)),
        TensorRule(_L + "attention.wo.bias", ("o_bias",)),
        TensorRule(_L + "ffn_norm.weight", ("mlp_norm",)),
        TensorRule(_L + "feed_forward.w1.weight", ("gate",)),
        TensorRule(_L + "feed_forward.w3.weight", ("up",)),
        TensorRule(_L + "feed_forward.w2.weight", ("down",)),
    ),
    global_rules=(
        TensorRule("model.tok_embeddings.embedding_weight", ("embed",)),
        TensorRule("model.norm_out.weight", ("final_norm",)),
        TensorRule("lm_head.weight", ("lm_head",)),
    ),
    lora_modules=(
        LoraModule(_L + "attention.wq", ("q",)),
        LoraModule(_L + "attention.wk", ("k",)),
        LoraModule(_L + "attention.wv", ("v",)),
        LoraModule(_L + "attention.wo", ("o",)),
        LoraModule(_L + "feed_forward.w1", ("gate",)),
        LoraModule(_L + "feed_forward.w3", ("up",)),
        LoraModule(_L + "feed_forward.w2", ("down",)),
    ),
    lora_a="{module}.mindpet_delta_lora_a",
    lora_b="{module}.mindpet_delta_lora_b",
)

# The cell-name suffix each canonical projection has in pet_config.target_modules ('.*wq|.*wv').
PET_TARGET = {"q": "wq", "k": "wk", "v": "wv", "o": "wo", "gate": "w1", "up": "w3", "down": "w2"}


def pet_target_regex(projections: list[str]) -> str:
    """pet_config.target_modules for canonical projections: ['q', 'v'] -> '.*wq|.*wv' (matched with re.match)."""
    return "|".join(f".*{PET_TARGET[p]}" for p in projections)
