"""Qwen2 / Qwen2.5: Llama-shaped with a bias on q, k and v (none on o)."""

from . import Conversion, Converter, Family, MindFormersModel
from .keys import MINDFORMERS_LLAMA

FAMILY = Family(
    name="qwen2",
    hf_architecture="Qwen2ForCausalLM",
    hf_model_type="qwen2",
    hf_model_types_read=("qwen2",),
    fixed={"qkv_bias": True, "o_bias": False},
    template="qwen",
    vocabulary="qwen2",
    # 2.3.0's convert_ckpt.py converts Qwen2 as llama2 with --add-qkv-bias; master's convert_ckpt_v2.py as qwen25
    conversions={
        "2.3.0": Conversion(Converter("convert_ckpt.py", "llama2"), Converter("convert_ckpt.py", "llama2")),
        "master": Conversion(Converter("convert_ckpt_v2.py", "qwen25"), Converter("convert_ckpt_v2.py", "qwen25")),
    },
    # MindFormers runs Qwen2/2.5 as LlamaForCausalLM with qkv_has_bias (its research/qwen2_5 configs)
    mindformers=MindFormersModel("LlamaConfig", "LlamaForCausalLM", MINDFORMERS_LLAMA),
)
