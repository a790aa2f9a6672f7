"""The canonical model: an architecture as numbers, and the tensors it is made of.

Every framework dialect names and packs these canonical tensors differently; conversion,
parameter accounting and rendering all start from here.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

from .families import FAMILIES, family_of_hf_model_type

# Canonical tensor names. Per layer (projections stored [out, in], like torch.nn.Linear):
LAYER_TENSORS = ("attn_norm", "q", "k", "v", "q_bias", "k_bias", "v_bias", "o", "o_bias",
                 "mlp_norm", "gate", "up", "down")
GLOBAL_TENSORS = ("embed", "final_norm", "lm_head")
# Canonical LoRA targets: the seven projections.
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")

@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only Llama-style transformer (RMSNorm, SwiGLU, RoPE, optional GQA and biases)."""

    name: str
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    ffn_hidden_size: int
    head_dim: int = 0  # 0: hidden_size // num_heads
    qkv_bias: bool = False
    o_bias: bool = False
    tied_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # HF rope_scaling dict (llama3 style) or None
    norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    hf_model_type: str = "llama"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.family not in FAMILIES:
            raise ValueError(f"model family {self.family!r} is not one of {tuple(FAMILIES)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.name}: num_heads {self.num_heads} is not a multiple of "
                             f"num_kv_heads {self.num_kv_heads}")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def has(self, tensor: str) -> bool:
        """Whether this architecture has the canonical tensor ``tensor``."""
        if tensor in ("q_bias", "k_bias", "v_bias"):
            return self.qkv_bias
        if tensor == "o_bias":
            return self.o_bias
        if tensor == "lm_head":
            return not self.tied_embeddings
        return tensor in LAYER_TENSORS or tensor in GLOBAL_TENSORS

    def shape(self, tensor: str) -> tuple[int, ...]:
        """Shape of a canonical tensor ([out, in] for projections)."""
        H, F, V = self.hidden_size, self.ffn_hidden_size, self.vocab_size
        shapes = {
            "attn_norm": (H,), "mlp_norm": (H,), "final_norm": (H,),
            "q": (self.q_size, H), "k": (self.kv_size, H), "v": (self.kv_size, H), "o": (H, self.q_size),
            "q_bias": (self.q_size,), "k_bias": (self.kv_size,), "v_bias": (self.kv_size,), "o_bias": (H,),
            "gate": (F, H), "up": (F, H), "down": (H, F),
            "embed": (V, H), "lm_head": (V, H),
        }
        return shapes[tensor]

    def layer_tensors(self) -> tuple[str, ...]:
        return tuple(t for t in LAYER_TENSORS if self.has(t))

    def global_tensors(self) -> tuple[str, ...]:
        return tuple(t for t in GLOBAL_TENSORS if self.has(t))

    def tensors(self) -> Iterator[tuple[str, int | None]]:
        """Every canonical tensor as (name, layer); layer is None for globals. In checkpoint order."""
        yield "embed", None
        for i in range(self.num_layers):
            for t in self.layer_tensors():
                yield t, i
        yield "final_norm", None
        if self.has("lm_head"):
            yield "lm_head", None

    def numel(self, tensor: str) -> int:
        n = 1
        for d in self.shape(tensor):
            n *= d
        return n

    def layer_params(self) -> int:
        return sum(self.numel(t) for t in self.layer_tensors())

    def total_params(self) -> int:
        """Exact parameter count of the base model (as HF transformers instantiates it)."""
        return self.num_layers * self.layer_params() + sum(self.numel(t) for t in self.global_tensors())

    def with_(self, **changes) -> "ModelSpec":
        return replace(self, **changes)

    # --- HF config.json ------------------------------------------------------------------

    def to_hf_config(self) -> dict:
        """A transformers config dict that instantiates exactly this architecture."""
        cfg = {
            "architectures": [FAMILIES[self.family].hf_architecture],
            "model_type": self.hf_model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.ffn_hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.norm_eps,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tied_embeddings,
            "torch_dtype": "float32",
        }
        if self.rope_scaling:
            cfg["rope_scaling"] = dict(self.rope_scaling)
        if self.hf_model_type == "llama":
            cfg["attention_bias"] = self.o_bias  # llama's attention_bias covers q, k, v and o
            cfg["mlp_bias"] = False
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(self, key) is not None:
                cfg[key] = getattr(self, key)
        return cfg

    def to_generation_config(self) -> dict:
        """The token ids a ``generation_config.json`` carries (empty when none are known)."""
        return {k: getattr(self, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                if getattr(self, k) is not None}

    @classmethod
    def from_hf_config(cls, path: str | Path, name: str | None = None) -> "ModelSpec":
        """Read a HF ``config.json`` (or a model directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / "config.json"
        try:
            cfg = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{p}: no such HF config file") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
        return cls.from_hf_dict(cfg, name=name or p.parent.name, source=str(p))

    @classmethod
    def from_hf_dict(cls, cfg: dict, name: str = "hf-model", source: str = "config") -> "ModelSpec":
        model_type = cfg.get("model_type", "llama")
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size") if k not in cfg]
        if missing:
            raise ValueError(f"{source}: HF config lacks {', '.join(missing)}")
        fam = family_of_hf_model_type(model_type, bool(cfg.get("attention_bias", False)))
        if fam is None:
            raise ValueError(f"{source}: model_type {model_type!r} is not supported "
                             f"(supported: {', '.join(t for f in FAMILIES.values() for t in f.hf_model_types_read)})")
        qkv_bias, o_bias = fam.qkv_bias, fam.o_bias
        if model_type in ("internlm", "internlm2"):  # their configs name the biases' presence
            qkv_bias = o_bias = bool(cfg.get("bias", True))
        heads = cfg["num_attention_heads"]
        return cls(
            name=name, family=fam.name, hf_model_type=fam.hf_model_type,
            vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], num_layers=cfg["num_hidden_layers"],
            num_heads=heads, num_kv_heads=cfg.get("num_key_value_heads") or heads,
            ffn_hidden_size=cfg["intermediate_size"], head_dim=cfg.get("head_dim") or 0,
            qkv_bias=qkv_bias, o_bias=o_bias, tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            rope_theta=float(cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
            rope_scaling=cfg.get("rope_scaling"), norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=cfg.get("max_position_embeddings", 4096),
            bos_token_id=_first(cfg.get("bos_token_id")), eos_token_id=_first(cfg.get("eos_token_id")),
            pad_token_id=_first(cfg.get("pad_token_id")),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


def _first(v):
    return v[0] if isinstance(v, list) and v else v


_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}

CATALOGUE: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("llama3-8b", "llama", vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, ffn_hidden_size=14336, rope_theta=500000.0, norm_eps=1e-5,
              max_position_embeddings=8192, bos_token_id=128000, eos_token_id=128001),
    ModelSpec("llama3.1-8b", "llama", vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=8, ffn_hidden_size=14336, rope_theta=500000.0, rope_scaling=_LLAMA3_ROPE,
              norm_eps=1e-5, max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128009),
    ModelSpec("llama2-7b", "llama", vocab_size=32000, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=32, ffn_hidden_size=11008, norm_eps=1e-5, bos_token_id=1, eos_token_id=2),
    ModelSpec("qwen2.5-7b", "qwen2", vocab_size=152064, hidden_size=3584, num_layers=28, num_heads=28,
              num_kv_heads=4, ffn_hidden_size=18944, qkv_bias=True, rope_theta=1000000.0, norm_eps=1e-6,
              max_position_embeddings=131072, hf_model_type="qwen2", bos_token_id=151643, eos_token_id=151643),
    ModelSpec("qwen2.5-0.5b", "qwen2", vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14,
              num_kv_heads=2, ffn_hidden_size=4864, qkv_bias=True, tied_embeddings=True, rope_theta=1000000.0,
              norm_eps=1e-6, max_position_embeddings=32768, hf_model_type="qwen2", bos_token_id=151643,
              eos_token_id=151643),
    ModelSpec("internlm-7b", "internlm", vocab_size=103168, hidden_size=4096, num_layers=32, num_heads=32,
              num_kv_heads=32, ffn_hidden_size=11008, qkv_bias=True, o_bias=True, norm_eps=1e-6,
              max_position_embeddings=2048, bos_token_id=1, eos_token_id=2),
    # Tiny models for tests and the demo: same shapes of problem (GQA, biases, tied embeddings), tiny sizes.
    ModelSpec("tiny-llama", "llama", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
              ffn_hidden_size=160, rope_theta=10000.0, norm_eps=1e-5, max_position_embeddings=512),
    ModelSpec("tiny-qwen2", "qwen2", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4, num_kv_heads=2,
              ffn_hidden_size=160, qkv_bias=True, rope_theta=1000000.0, norm_eps=1e-6,
              max_position_embeddings=512, hf_model_type="qwen2"),
    ModelSpec("tiny-qwen2-tied", "qwen2", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4,
              num_kv_heads=1, ffn_hidden_size=160, qkv_bias=True, tied_embeddings=True, rope_theta=1000000.0,
              norm_eps=1e-6, max_position_embeddings=512, hf_model_type="qwen2"),
    ModelSpec("tiny-internlm", "internlm", vocab_size=512, hidden_size=64, num_layers=4, num_heads=4,
              num_kv_heads=4, ffn_hidden_size=160, qkv_bias=True, o_bias=True, norm_eps=1e-6,
              max_position_embeddings=512),
)}


def get_model(name: str) -> ModelSpec:
    try:
        return CATALOGUE[name]
    except KeyError:
        from .errors import unknown
        raise KeyError(unknown("model", name, CATALOGUE)) from None
