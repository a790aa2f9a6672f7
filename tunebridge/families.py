"""Per-family facts the frameworks name differently, declared in one place.

A family is a Llama-shaped architecture; what differs is declared here rather than guessed from bias
flags: the HF ``model_type`` / architecture class written to ``config.json``, the biases it has, and the
``--model-type-hf`` each MindSpeed-LLM converter entry point knows it by (None: that converter has no
model type for it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# MindSpeed-LLM's checkpoint converters: convert_ckpt.py (v1, through Megatron; 2.x releases, deleted on
# master) and convert_ckpt_v2.py (pure torch; llama2 and qwen25 model types on master, not in 2.3.0).
CONVERTERS = ("convert_ckpt.py", "convert_ckpt_v2.py")


@dataclass(frozen=True)
class Family:
    name: str
    hf_model_type: str
    hf_architecture: str
    qkv_bias: bool
    o_bias: bool
    hf_model_types_read: tuple[str, ...]  # config.json model_type values that mean this family
    msllm_model_type_hf: dict[str, str | None] = field(default_factory=dict)  # converter -> --model-type-hf


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "llama", "LlamaForCausalLM", qkv_bias=False, o_bias=False,
           hf_model_types_read=("llama", "mistral"),
           msllm_model_type_hf={"convert_ckpt.py": "llama2", "convert_ckpt_v2.py": "llama2"}),
    Family("qwen2", "qwen2", "Qwen2ForCausalLM", qkv_bias=True, o_bias=False, hf_model_types_read=("qwen2",),
           msllm_model_type_hf={"convert_ckpt.py": "llama2", "convert_ckpt_v2.py": "qwen25"}),
    # InternLM(1) is Llama with biases on q, k, v and o; HF writes it as llama with attention_bias
    Family("internlm", "llama", "LlamaForCausalLM", qkv_bias=True, o_bias=True,
           hf_model_types_read=("internlm", "internlm2"),
           msllm_model_type_hf={"convert_ckpt.py": "llama2", "convert_ckpt_v2.py": None}),
)}


def family(name: str) -> Family:
    return FAMILIES[name]


def family_of_hf_model_type(model_type: str, attention_bias: bool = False) -> Family | None:
    """The family a config.json ``model_type`` names (a llama config with ``attention_bias`` is InternLM's)."""
    if model_type in ("llama", "mistral") and attention_bias:
        return FAMILIES["internlm"]
    return next((f for f in FAMILIES.values() if model_type in f.hf_model_types_read), None)


def family_of_msllm_model_type(model_type_hf: str, converter: str = "convert_ckpt_v2.py") -> Family | None:
    """The family a MindSpeed-LLM ``--model-type-hf`` value stands for (unambiguous for convert_ckpt_v2.py only:
    convert_ckpt.py converts all three as llama2)."""
    found = [f for f in FAMILIES.values() if f.msllm_model_type_hf.get(converter) == model_type_hf]
    return found[0] if len(found) == 1 else None
