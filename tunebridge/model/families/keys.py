"""Two-way tables between a ModelSpec and each stack's configuration.

A :class:`Key` ties one ModelSpec field to one key of a stack's config: the HF ``config.json``, Megatron's
arguments (what a checkpoint's ``args`` hold, and, spelt as flags, what MindSpeed-LLM's scripts pass), and
MindFormers' model config. :func:`write` makes the stack's config from a spec, :func:`read` the spec's fields
from a config. The tables here hold what every family shares; each family module adds its own keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # a key the config must have when it is read


def _same(value):
    return value


@dataclass(frozen=True)
class Key:
    field: str  # the ModelSpec field ("": ``out`` is given the whole spec)
    key: str  # the key in the stack's config (a dotted path reads nested mappings)
    default: Any = REQUIRED  # the spec's value when the config lacks the key (REQUIRED: refuse it)
    out: Callable = _same  # spec value (the spec, when no field) -> config value
    into: Callable = _same  # config value -> spec value
    when: Callable | None = None  # (spec) -> whether the key is written; None: always
    writes: bool = True  # False: read only (another key of the table writes the same config key)
    reads: bool = True  # False: written only
    also: tuple[str, ...] = ()  # other config keys that hold the same value (read when ``key`` is absent)
    # Megatron arguments only: the MindSpeed-LLM flag that sets it in rendered scripts ("": --key-with-dashes;
    # None: not rendered), when it is rendered (None: always), and its rendered value (None: the written value).
    # A True value renders as the bare flag, False or None leaves it out.
    flag: str | None = None
    flag_when: Callable | None = None
    flag_out: Callable | None = None
    args: bool = True  # Megatron arguments only: False: a flag the checkpoint's args do not hold


def const(
    key: str, value: Any, when: Callable | None = None, flag: str | None = None, flag_out: Callable | None = None
) -> Key:
    """A key every config of the stack carries with one value."""
    return Key("", key, out=lambda _: value, when=when, reads=False, flag=flag, flag_out=flag_out)


def write(keys: tuple[Key, ...], spec) -> dict:
    """The stack's config for ``spec``, in table order."""
    config: dict = {}
    for k in keys:
        if not k.writes or not k.args or (k.when is not None and not k.when(spec)):
            continue
        config[k.key] = k.out(getattr(spec, k.field) if k.field else spec)
    return config


def flags(keys: tuple[Key, ...], spec) -> list[tuple[str, Any]]:
    """(flag, value) of each rendered Megatron argument, in table order; True: a bare flag."""
    out = []
    for k in keys:
        if k.flag is None or (k.when is not None and not k.when(spec)) or (k.flag_when and not k.flag_when(spec)):
            continue
        value = k.out(getattr(spec, k.field) if k.field else spec)
        value = k.flag_out(value) if k.flag_out else value
        if value is not None and value is not False:
            out.append((k.flag or "--" + k.key.replace("_", "-"), value))
    return out


def _lookup(config: dict, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return REQUIRED
        value = value[part]
    return value


def read(keys: tuple[Key, ...], config: dict, source: str) -> dict:
    """ModelSpec fields from a stack's config; a missing required key is one ValueError naming them all."""
    fields: dict = {}
    missing = []
    for k in keys:
        if not k.reads or not k.field or k.field in fields:
            continue
        value = next((v for v in (_lookup(config, name) for name in (k.key, *k.also)) if v is not REQUIRED), REQUIRED)
        if value is REQUIRED or value is None:
            if k.default is REQUIRED:
                missing.append(k.key)
                continue
            fields[k.field] = k.default
        else:
            fields[k.field] = k.into(value)
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}")
    return fields


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def _llama3(spec) -> bool:
    rs = spec.rope_scaling or {}
    return rs.get("rope_type", rs.get("type")) == "llama3"


def _llama3_rope(key: str, flag: str) -> Key:
    """A field of Llama-3.1's rope scaling, a MindSpeed-LLM flag (Megatron's args do not hold it)."""
    return Key("rope_scaling", key, out=lambda rs: rs[key], reads=False, when=_llama3, flag=flag, args=False)


# HF's ``attention_bias`` (Llama, Qwen3): one switch for the biases of q, k, v and o together.
ATTENTION_BIAS = (
    Key("qkv_bias", "attention_bias", default=False, into=bool),
    Key("o_bias", "attention_bias", default=False, into=bool, writes=False),
)


def attention_bias_check(family: str) -> Callable:
    """A family check: ``attention_bias`` cannot hold q/k/v biases without an o bias, or the reverse."""

    def check(spec) -> str | None:
        if spec.qkv_bias != spec.o_bias:
            return f"{family}'s attention_bias puts a bias on q, k, v and o together: qkv_bias and o_bias must be equal"
        return None

    return check


# transformers' config.json: the fields every family writes, in the order config.json lists them.
HF_HEAD = (
    Key("vocab_size", "vocab_size"),
    Key("hidden_size", "hidden_size"),
    Key("ffn_hidden_size", "intermediate_size"),
    Key("num_layers", "num_hidden_layers"),
    Key("num_heads", "num_attention_heads"),
    Key("num_kv_heads", "num_key_value_heads", default=None),  # None: as many as heads (ModelSpec fills it)
    Key("head_dim", "head_dim", default=0),
    const("hidden_act", "silu"),
    Key("max_position_embeddings", "max_position_embeddings", default=4096),
    Key("norm_eps", "rms_norm_eps", default=1e-6, into=float),
    # transformers 5 writes rope_parameters.rope_theta; earlier versions (and the hub) rope_theta
    Key("rope_theta", "rope_theta", default=10000.0, into=float, also=("rope_parameters.rope_theta",)),
    Key("tied_embeddings", "tie_word_embeddings", default=False, into=bool),
    const("torch_dtype", "float32"),
    Key("rope_scaling", "rope_scaling", default=None, out=dict, when=lambda s: bool(s.rope_scaling)),
)
HF_TAIL = tuple(
    Key(name, name, default=None, into=_first, when=lambda s, n=name: getattr(s, n) is not None)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id")
)


def _gqa(spec) -> bool:
    return spec.num_kv_heads < spec.num_heads


# Megatron's arguments, as a checkpoint's ``args`` hold them: the fields Megatron's load_args_from_checkpoint
# (and MindSpeed-LLM's wrapper of it) copies into a run's arguments. Spelt as flags (``flag``) they are the model
# rows of MindSpeed-LLM's scripts, in this order.
MEGATRON = (
    const("use_mcore_models", True, flag=""),
    Key("num_layers", "num_layers", flag=""),
    Key("hidden_size", "hidden_size", flag=""),
    Key("ffn_hidden_size", "ffn_hidden_size", flag=""),
    Key("num_heads", "num_attention_heads", flag=""),
    Key("head_dim", "kv_channels", default=0, flag="", flag_when=lambda s: s.head_dim * s.num_heads != s.hidden_size),
    Key("", "group_query_attention", out=_gqa, reads=False, flag=""),
    Key("num_kv_heads", "num_query_groups", flag="", flag_when=_gqa),  # read only where group_query_attention
    # the HF field MindSpeed-LLM's convert_ckpt_v2.py mg->hf reads for GQA
    Key("num_kv_heads", "num_key_value_heads", reads=False),
    Key("vocab_size", "vocab_size"),
    const("position_embedding_type", "rope", flag=""),
    const("use_rotary_position_embeddings", True, flag=""),
    Key("rope_theta", "rotary_base", default=10000.0, into=float, flag=""),
    _llama3_rope("rope_type", "--rope-scaling-type"),
    _llama3_rope("factor", "--rope-scaling-factor"),
    _llama3_rope("low_freq_factor", "--low-freq-factor"),
    _llama3_rope("high_freq_factor", "--high-freq-factor"),
    _llama3_rope("original_max_position_embeddings", "--original-max-position-embeddings"),
    const("rotary_percent", 1.0),
    const("rotary_interleaved", False),
    const("normalization", "RMSNorm", flag=""),
    Key("norm_eps", "norm_epsilon", default=1e-6, into=float, flag=""),
    const("swiglu", True, flag=""),
    const("add_bias_linear", False, flag="--disable-bias-linear", flag_out=lambda add: not add),
    Key("qkv_bias", "add_qkv_bias", default=False, into=bool, flag=""),
    Key("o_bias", "add_dense_bias", default=False, into=bool, flag=""),
    Key("qk_norm", "qk_layernorm", default=False, into=bool, when=lambda s: s.qk_norm, flag=""),
    Key(
        "tied_embeddings",
        "untie_embeddings_and_output_weights",
        default=False,
        out=lambda t: not t,
        into=lambda untie: not untie,
        flag="",
    ),
    Key("max_position_embeddings", "max_position_embeddings", default=4096),  # rendered with the sequence length
)

# MindFormers' LlamaConfig (the model_config of its YAML), for the families MindFormers runs as LlamaForCausalLM.
MINDFORMERS_LLAMA = (
    Key("hidden_size", "hidden_size"),
    Key("num_layers", "num_layers"),
    Key("num_heads", "num_heads"),
    Key("num_kv_heads", "n_kv_heads"),
    Key("vocab_size", "vocab_size"),
    Key("ffn_hidden_size", "intermediate_size"),
    Key("norm_eps", "rms_norm_eps", into=float),
    Key("qkv_bias", "qkv_has_bias", default=False),
    Key("o_bias", "attn_proj_has_bias", default=False),
    Key("tied_embeddings", "tie_word_embeddings", default=False),
    Key("rope_theta", "theta", default=10000.0, into=float),
)
