"""Llama (2, 3, 3.1) and Mistral-style configs: RMSNorm, SwiGLU, RoPE, optional GQA; HF's ``attention_bias``
puts a bias on q, k, v and o together."""

from . import Conversion, Converter, Family, MindFormersModel
from .keys import ATTENTION_BIAS, MINDFORMERS_LLAMA, attention_bias_check, const

FAMILY = Family(
    name="llama",
    hf_architecture="LlamaForCausalLM",
    hf_model_type="llama",
    hf_model_types_read=("llama", "mistral"),
    hf_keys=(
        *ATTENTION_BIAS,
        const("mlp_bias", False),
    ),
    template="llama2",  # the Llama-3 catalogue entries say llama3
    vocabulary="sentencepiece",
    conversions={
        "2.3.0": Conversion(Converter("convert_ckpt.py", "llama2"), Converter("convert_ckpt.py", "llama2")),
        "master": Conversion(Converter("convert_ckpt_v2.py", "llama2"), Converter("convert_ckpt_v2.py", "llama2")),
    },
    mindformers=MindFormersModel("LlamaConfig", "LlamaForCausalLM", MINDFORMERS_LLAMA),
    check=attention_bias_check("Llama"),
)
