"""InternLM (1): Llama with biases on q, k, v and o. transformers has no class for it: tunebridge writes it as
Llama with ``attention_bias`` (which reads back as the llama family with biases, the same tensors)."""

from . import Conversion, Converter, Family, MindFormersModel
from .keys import MINDFORMERS_LLAMA, Key, const

FAMILY = Family(
    name="internlm",
    hf_architecture="LlamaForCausalLM",
    hf_model_type="llama",
    hf_model_types_read=("internlm", "internlm2"),
    hf_keys=(
        # InternLM's own config names the biases "bias"; as Llama they are attention_bias
        Key("qkv_bias", "attention_bias", default=True, into=bool, also=("bias",)),
        Key("o_bias", "attention_bias", default=True, into=bool, also=("bias",), writes=False),
        const("mlp_bias", False),
    ),
    template="alpaca",
    vocabulary="sentencepiece",
    # master's convert_ckpt_v2.py has no model type for InternLM: tunebridge converts
    conversions={
        "2.3.0": Conversion(Converter("convert_ckpt.py", "llama2"), Converter("convert_ckpt.py", "llama2")),
        "master": None,
    },
    mindformers=MindFormersModel("LlamaConfig", "LlamaForCausalLM", MINDFORMERS_LLAMA),
)
