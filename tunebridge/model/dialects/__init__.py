"""Framework dialects: hf (transformers/PEFT), mindformers (MindSpore), mcore (MindSpeed-LLM)."""

from .base import Dialect, LoraModule, Pack, Shard, TensorRule
from .hf import HF
from .mcore import MCORE
from .mindformers import MINDFORMERS

DIALECTS: dict[str, Dialect] = {d.name: d for d in (HF, MINDFORMERS, MCORE)}


def get_dialect(name: str) -> Dialect:
    """A dialect by its name, or the dialect a stack (backend) speaks."""
    from ...backends.stacks import STACKS

    name = STACKS[name].dialect if name in STACKS else name
    try:
        return DIALECTS[name]
    except KeyError:
        raise KeyError(f"unknown dialect {name!r} (known: {', '.join(DIALECTS)})") from None


__all__ = [
    "Dialect",
    "LoraModule",
    "Pack",
    "Shard",
    "TensorRule",
    "HF",
    "MCORE",
    "MINDFORMERS",
    "DIALECTS",
    "get_dialect",
]
