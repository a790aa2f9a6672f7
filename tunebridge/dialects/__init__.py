"""Framework dialects: hf (transformers/PEFT), mindformers (MindSpore), mcore (MindSpeed-LLM)."""
from .base import Dialect, LoraModule, Pack, Shard, TensorRule
from .hf import HF
from .mcore import MCORE
from .mindformers import MINDFORMERS

DIALECTS: dict[str, Dialect] = {d.name: d for d in (HF, MINDFORMERS, MCORE)}

# Which dialect each backend speaks.
BACKEND_DIALECT = {"torch": "hf", "mindformers": "mindformers", "mindspeed-llm": "mcore"}


def get_dialect(name: str) -> Dialect:
    try:
        return DIALECTS[BACKEND_DIALECT.get(name, name)]
    except KeyError:
        raise KeyError(f"unknown dialect {name!r} (known: {', '.join(DIALECTS)})") from None


__all__ = ["Dialect", "LoraModule", "Pack", "Shard", "TensorRule", "HF", "MCORE", "MINDFORMERS",
           "DIALECTS", "BACKEND_DIALECT", "get_dialect"]
