"""Qwen3 (dense): Llama-shaped with an RMSNorm over each head's queries and keys (q_norm, k_norm), a head size of its
own (128, whatever the hidden size), and ``attention_bias`` on q, k, v and o together (off in every release)."""

from . import Conversion, Converter, Family
from .keys import ATTENTION_BIAS, attention_bias_check

FAMILY = Family(
    name="qwen3",
    hf_architecture="Qwen3ForCausalLM",
    hf_model_type="qwen3",
    hf_model_types_read=("qwen3",),
    hf_keys=ATTENTION_BIAS,
    fixed={"qk_norm": True},
    # ChatML, as MindSpeed-LLM's qwen template writes it (its own qwen3 ReasoningTemplate, answers ending
    # '<|im_end|>\n', is not one of tunebridge's templates)
    template="qwen",
    vocabulary="qwen2",  # the same special tokens and ids as Qwen2's tokenizer
    # MindSpeed-LLM's own Qwen3 scripts: 2.3.0 converts hf->mg with convert_ckpt_v2.py and mg->hf (LoRA merged)
    # with convert_ckpt.py and the qwen3 spec; master has convert_ckpt_v2.py only
    conversions={
        "2.3.0": Conversion(Converter("convert_ckpt_v2.py", "qwen3"), Converter("convert_ckpt.py", "qwen3")),
        "master": Conversion(Converter("convert_ckpt_v2.py", "qwen3"), Converter("convert_ckpt_v2.py", "qwen3")),
    },
    msllm_spec=("mindspeed_llm.tasks.models.spec.qwen3_spec", "layer_spec"),
    mindformers=None,
    mindformers_missing=(
        "MindFormers 1.9.0 runs Qwen3 only as its parallel_core Qwen3ForCausalLM (use_legacy: False; tensors named "
        "decoder.layers.N.self_attention.linear_qkv..., HF safetensors loaded by itself), not as the LlamaForCausalLM "
        "(.ckpt, pet_config) tunebridge renders and runs, which has no q/k norm; and that model does not run on "
        "MindSpore CPU (its training graph always builds FusedRMSNorm, whose RmsNorm op has no CPU kernel)"
    ),
    check=attention_bias_check("Qwen3"),
)
