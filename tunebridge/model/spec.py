"""The canonical model: an architecture as numbers, and the tensors it is made of.

Every framework dialect names and packs these canonical tensors differently; conversion,
parameter accounting and rendering all start from here. What differs between model families is
declared by the family (:mod:`tunebridge.model.families`), never guessed from a model's fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .families import FAMILIES, Family, family, family_of_hf_model_type, keys as config_keys

# Canonical tensor names. Per layer (projections stored [out, in], like torch.nn.Linear); the optional ones are
# there when the architecture has them (ModelSpec.has):
LAYER_TENSORS = (
    "attn_norm",
    "q",
    "k",
    "v",
    "q_bias",
    "k_bias",
    "v_bias",
    "q_norm",
    "k_norm",
    "o",
    "o_bias",
    "mlp_norm",
    "gate",
    "up",
    "down",
    "router",
    "expert_gate",
    "expert_up",
    "expert_down",
)
# A mixture-of-experts layer has a router and, instead of gate/up/down, these: each one canonical tensor per layer
# holding every expert's projection stacked, [num_experts, out, in] (expert e is its row e).
EXPERT_TENSORS = ("expert_gate", "expert_up", "expert_down")
GLOBAL_TENSORS = ("embed", "final_norm", "lm_head")
# Canonical LoRA targets: the projections.
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")
# In a mixture of experts the targets gate, up and down adapt every expert's (MindSpeed-LLM's linear_fc1 / linear_fc2
# name both; PEFT reaches transformers' fused expert tensors by target_parameters): one (A, B) pair per expert, stacked
# like the expert tensors, A [E, r, in], B [E, out, r].
EXPERT_OF = dict(zip(("gate", "up", "down"), EXPERT_TENSORS))
# Every canonical tensor LoRA can adapt, in order.
ADAPTABLE = (*PROJECTIONS, *EXPERT_TENSORS)
# Which spec field switches an optional tensor on.
_OPTIONAL = {
    "q_bias": "qkv_bias",
    "k_bias": "qkv_bias",
    "v_bias": "qkv_bias",
    "o_bias": "o_bias",
    "q_norm": "qk_norm",
    "k_norm": "qk_norm",
}


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only Llama-style transformer (RMSNorm, SwiGLU, RoPE, optional GQA, biases and q/k norms)."""

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
    qk_norm: bool = False  # RMSNorm over each head's queries and keys (Qwen3)
    num_experts: int = 0  # 0: dense; else every layer's MLP is this many routed experts
    experts_per_token: int = 0
    moe_ffn_hidden_size: int = 0  # each expert's intermediate size
    norm_topk_prob: bool = False  # the chosen experts' router probabilities renormalised to sum to 1
    tied_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # HF rope_scaling dict (llama3 style) or None
    norm_eps: float = 1e-6
    max_position_embeddings: int = 4096
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    template: str = ""  # default prompt template ("": the family's)
    vocabulary: str = ""  # the tokenizer's special tokens ("": the family's)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        fam = family(self.family)
        for name, value in fam.fixed.items():
            object.__setattr__(self, name, value)
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        object.__setattr__(self, "template", self.template or fam.template)
        object.__setattr__(self, "vocabulary", self.vocabulary or fam.vocabulary)
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"{self.name}: num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}"
            )
        if self.num_experts and not 0 < self.experts_per_token <= self.num_experts:
            raise ValueError(
                f"{self.name}: experts_per_token {self.experts_per_token} is not in 1..{self.num_experts} (num_experts)"
            )
        if problem := fam.check(self):
            raise ValueError(f"{self.name}: {problem}")

    @property
    def family_record(self) -> Family:
        return FAMILIES[self.family]

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def has(self, tensor: str) -> bool:
        """Whether this architecture has the canonical tensor ``tensor``."""
        if tensor in _OPTIONAL:
            return bool(getattr(self, _OPTIONAL[tensor]))
        if tensor in ("gate", "up", "down"):
            return not self.num_experts
        if tensor == "router" or tensor in EXPERT_TENSORS:
            return bool(self.num_experts)
        if tensor == "lm_head":
            return not self.tied_embeddings
        return tensor in LAYER_TENSORS or tensor in GLOBAL_TENSORS

    def shape(self, tensor: str) -> tuple[int, ...]:
        """Shape of a canonical tensor ([out, in] for projections; experts stacked in front: [E, out, in])."""
        H, F, V = self.hidden_size, self.ffn_hidden_size, self.vocab_size
        shapes = {
            "attn_norm": (H,),
            "mlp_norm": (H,),
            "final_norm": (H,),
            "q": (self.q_size, H),
            "k": (self.kv_size, H),
            "v": (self.kv_size, H),
            "o": (H, self.q_size),
            "q_bias": (self.q_size,),
            "k_bias": (self.kv_size,),
            "v_bias": (self.kv_size,),
            "o_bias": (H,),
            "q_norm": (self.head_dim,),
            "k_norm": (self.head_dim,),
            "gate": (F, H),
            "up": (F, H),
            "down": (H, F),
            "router": (self.num_experts, H),
            "expert_gate": (self.num_experts, self.moe_ffn_hidden_size, H),
            "expert_up": (self.num_experts, self.moe_ffn_hidden_size, H),
            "expert_down": (self.num_experts, H, self.moe_ffn_hidden_size),
            "embed": (V, H),
            "lm_head": (V, H),
        }
        return shapes[tensor]

    def layer_tensors(self) -> tuple[str, ...]:
        return tuple(t for t in LAYER_TENSORS if self.has(t))

    def global_tensors(self) -> tuple[str, ...]:
        return tuple(t for t in GLOBAL_TENSORS if self.has(t))

    def projections(self) -> tuple[str, ...]:
        """The canonical LoRA targets this architecture has."""
        return tuple(p for p in PROJECTIONS if self.has(p))

    def adapted(self, targets: list[str]) -> list[str]:
        """The canonical tensors LoRA on projection ``targets`` adapts here (a mixture of experts' gate, up, down:
        its experts'), in canonical order."""
        tensors = {EXPERT_OF[p] if p in EXPERT_OF and self.num_experts else p for p in targets}
        return [t for t in ADAPTABLE if t in tensors]

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

    def expert_tensors(self) -> tuple[str, ...]:
        return tuple(t for t in EXPERT_TENSORS if self.has(t))

    def expert_params(self) -> int:
        """Parameters of one expert."""
        return sum(self.numel(t) for t in self.expert_tensors()) // max(self.num_experts, 1)

    def layer_params(self) -> int:
        return sum(self.numel(t) for t in self.layer_tensors())

    def total_params(self) -> int:
        """Exact parameter count of the base model (as HF transformers instantiates it)."""
        return self.num_layers * self.layer_params() + sum(self.numel(t) for t in self.global_tensors())

    def with_(self, **changes) -> ModelSpec:
        return replace(self, **changes)

    # --- HF config.json ------------------------------------------------------------------

    def to_hf_config(self) -> dict:
        """A transformers config dict that instantiates exactly this architecture."""
        fam = self.family_record
        return {
            "architectures": [fam.hf_architecture],
            "model_type": fam.hf_model_type,
            **config_keys.write(config_keys.HF_HEAD + fam.hf_keys + config_keys.HF_TAIL, self),
        }

    def to_generation_config(self) -> dict:
        """The token ids a ``generation_config.json`` carries (empty when none are known)."""
        return {
            k: getattr(self, k)
            for k in ("bos_token_id", "eos_token_id", "pad_token_id")
            if getattr(self, k) is not None
        }

    @classmethod
    def from_hf_config(cls, path: str | Path, name: str | None = None) -> ModelSpec:
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
    def from_hf_dict(cls, cfg: dict, name: str = "hf-model", source: str = "config") -> ModelSpec:
        """The ModelSpec of a config.json, whose ``model_type`` names the family."""
        model_type = cfg.get("model_type", "llama")
        fam = family_of_hf_model_type(model_type)
        if fam is None:
            raise ValueError(
                f"{source}: model_type {model_type!r} is not supported "
                f"(supported: {', '.join(t for f in FAMILIES.values() for t in f.hf_model_types_read)})"
            )
        fields = config_keys.read(config_keys.HF_HEAD + fam.hf_keys + config_keys.HF_TAIL, cfg, f"{source}: HF config")
        fields["num_kv_heads"] = fields["num_kv_heads"] or fields["num_heads"]
        return cls(name=name, family=fam.name, **fields)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d
