"""Known models by name: the public checkpoints the recipes name, and tiny models of the same shapes for tests."""
from __future__ import annotations

from .models import ModelSpec

_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}

CATALOGUE: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("llama3-8b", "llama", vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, ffn_hidden_size=14336, rope_theta=500000.0, norm_eps=1e-5,
              max_position_embeddings=8192, bos_token_id=128000, eos_token_id=128001, template="llama3",
              vocabulary="llama3"),
    ModelSpec("llama3.1-8b", "llama", vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, ffn_hidden_size=14336, rope_theta=500000.0, rope_scaling=_LLAMA3_ROPE,
              norm_eps=1e-5, max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128009,
              template="llama3", vocabulary="llama3"),
    ModelSpec("llama2-7b", "llama", vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=32, ffn_hidden_size=11008, norm_eps=1e-5, bos_token_id=1, eos_token_id=2),
    ModelSpec("qwen2.5-7b", "qwen2", vocab_size=152064, hidden_size=3584, num_layers=28, num_heads=28,
              num_kv_heads=4, ffn_hidden_size=18944, rope_theta=1000000.0, norm_eps=1e-6,
              max_position_embeddings=131072, bos_token_id=151643, eos_token_id=151643),
    ModelSpec("qwen2.5-0.5b", "qwen2", vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14,
              num_kv_heads=2, ffn_hidden_size=4864, tied_embeddings=True, rope_theta=1000000.0,
              norm_eps=1e-6, max_position_embeddings=32768, bos_token_id=151643, eos_token_id=151643),
    ModelSpec("internlm-7b", "internlm", vocab_size=103168, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=32, ffn_hidden_size=11008, qkv_bias=True, o_bias=True, norm_eps=1e-6,
              max_position_embeddings=2048, bos_token_id=1, eos_token_id=2),
    ModelSpec("qwen3-0.6b", "qwen3", vocab_size=151936, hidden_size=1024, num_layers=28, num_heads=16,
              num_kv_heads=8, head_dim=128, ffn_hidden_size=3072, tied_embeddings=True, rope_theta=1000000.0,
              norm_eps=1e-6, max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645),
    ModelSpec("qwen3-8b", "qwen3", vocab_size=151936, hidden_size=4096, num_layers=36, num_heads=32,
              num_kv_heads=8, head_dim=128, ffn_hidden_size=12288, rope_theta=1000000.0, norm_eps=1e-6,
              max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645),
    ModelSpec("qwen3-30b-a3b", "qwen3_moe", vocab_size=151936, hidden_size=2048, num_layers=48, num_heads=32,
              num_kv_heads=4, head_dim=128, ffn_hidden_size=6144, num_experts=128, experts_per_token=8,
              moe_ffn_hidden_size=768, norm_topk_prob=True, rope_theta=1000000.0, norm_eps=1e-6,
              max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645),
    # Tiny models for tests and the demo: same shapes of problem (GQA, biases, tied embeddings), tiny sizes.
    ModelSpec("tiny-llama", "llama", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
              ffn_hidden_size=160, rope_theta=10000.0, norm_eps=1e-5, max_position_embeddings=512),
    ModelSpec("tiny-qwen2", "qwen2", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
              ffn_hidden_size=160, rope_theta=1000000.0, norm_eps=1e-6, max_position_embeddings=512),
    ModelSpec("tiny-qwen2-tied", "qwen2", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4,
              num_kv_heads=1, ffn_hidden_size=160, tied_embeddings=True, rope_theta=1000000.0,
              norm_eps=1e-6, max_position_embeddings=512),
    ModelSpec("tiny-internlm", "internlm", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4,
              num_kv_heads=4, ffn_hidden_size=160, qkv_bias=True, o_bias=True, norm_eps=1e-6,
              max_position_embeddings=512),
    # q/k norms, a head size other than hidden / heads (as Qwen3-0.6B's 128 for 1024 / 16)
    ModelSpec("tiny-qwen3", "qwen3", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
              head_dim=32, ffn_hidden_size=160, rope_theta=1000000.0, norm_eps=1e-6, max_position_embeddings=512),
    # eight experts, two per token, and a tiny expert size of its own
    ModelSpec("tiny-qwen3-moe", "qwen3_moe", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4,
              num_kv_heads=2, head_dim=32, ffn_hidden_size=160, num_experts=8, experts_per_token=2,
              moe_ffn_hidden_size=48, norm_topk_prob=True, rope_theta=1000000.0, norm_eps=1e-6,
              max_position_embeddings=512),
)}


def get_model(name: str) -> ModelSpec:
    try:
        return CATALOGUE[name]
    except KeyError:
        from .errors import unknown
        raise KeyError(unknown("model", name, CATALOGUE)) from None
