"""Model families, one module each: what every stack calls a family and how its config is written, declared
once rather than guessed from a model's fields.

A family module (``llama.py``, ``qwen2.py``, ...) defines ``FAMILY = Family(...)``: its HF architecture and the
``config.json`` fields beyond the common ones, the optional tensors it has (biases, q/k norms), its Megatron
arguments beyond the common ones (spelt as MindSpeed-LLM flags in the rendered scripts), the MindSpeed-LLM
converter and ``--model-type-hf`` of each version, its MindFormers model (or why MindFormers cannot run it) and its
default prompt template. The package finds the modules itself: a new family is a new module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

from .keys import MEGATRON, Key


@dataclass(frozen=True)
class Converter:
    """A MindSpeed-LLM checkpoint converter: its entry point and the ``--model-type-hf`` it knows the family by."""

    entry: str  # convert_ckpt.py (through Megatron, 2.x releases) or convert_ckpt_v2.py (pure torch)
    model_type_hf: str


@dataclass(frozen=True)
class Conversion:
    """The converters MindSpeed-LLM's own scripts use for a family in one version, per direction."""

    hf2mcore: Converter
    mcore2hf: Converter


@dataclass(frozen=True)
class MindFormersModel:
    config: str  # model.model_config.type
    arch: str  # model.arch.type
    keys: tuple[Key, ...]  # ModelSpec <-> model_config


@dataclass(frozen=True)
class Family:
    name: str
    hf_architecture: str  # config.json "architectures"
    hf_model_type: str  # config.json "model_type" tunebridge writes
    hf_model_types_read: tuple[str, ...]  # config.json "model_type" values that mean this family
    template: str  # the prompt template its models train with by default
    vocabulary: str  # its tokenizer's special tokens (render.mindformers.VOCABULARIES)
    conversions: dict[str, Conversion | None]  # MindSpeed-LLM version -> converters (None: tunebridge converts)
    mindformers: MindFormersModel | None  # None: MindFormers cannot run it (``mindformers_missing`` says why)
    mindformers_missing: str = ""
    hf_keys: tuple[Key, ...] = ()  # config.json fields beyond keys.HF_HEAD / HF_TAIL
    megatron_keys: tuple[Key, ...] = ()  # Megatron arguments beyond keys.MEGATRON
    fixed: dict = field(default_factory=dict)  # ModelSpec fields every model of the family has (its tensors)
    msllm_spec: tuple[str, str] | None = None  # MindSpeed-LLM's --spec (module, function) for its layers
    check: Callable[[object], str | None] = lambda spec: None  # what else a ModelSpec of it must satisfy


def _discover() -> dict[str, Family]:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        fam = getattr(module, "FAMILY", None)
        if isinstance(fam, Family):
            found[fam.name] = fam
    return found


FAMILIES: dict[str, Family] = _discover()


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"model family {name!r} is not one of {tuple(FAMILIES)}") from None


def mindformers_problem(spec) -> str | None:
    """Why MindFormers cannot run ``spec``'s model (its family says), or None."""
    fam = FAMILIES[spec.family]
    return None if fam.mindformers else f"{spec.name}: {fam.mindformers_missing}"


def mindformers_model(spec) -> MindFormersModel:
    """The MindFormers model of ``spec``'s family; a family MindFormers cannot run is refused, saying why."""
    if problem := mindformers_problem(spec):
        from ...errors import TunebridgeError

        raise TunebridgeError(problem)
    model = FAMILIES[spec.family].mindformers
    assert model is not None, "mindformers_problem names every family without a MindFormers model"
    return model


def megatron_keys(fam: Family) -> tuple[Key, ...]:
    """The family's whole Megatron table: the common arguments, then its own."""
    return MEGATRON + fam.megatron_keys


def model_type_hf(fam: Family) -> str | None:
    """The ``model_type_hf`` a checkpoint of the family records: master's converter's, else 2.3.0's."""
    for version in ("master", "2.3.0"):
        if (conversion := fam.conversions.get(version)) is not None:
            return conversion.mcore2hf.model_type_hf
    return None


def family_of_hf_model_type(model_type: str) -> Family | None:
    """The family a config.json ``model_type`` names."""
    return next((f for f in FAMILIES.values() if model_type in f.hf_model_types_read), None)


def family_of_model_type_hf(model_type_hf: str, entry: str) -> Family | None:
    """The family a MindSpeed-LLM converter's ``--model-type-hf`` stands for, when it stands for one (2.3.0's
    convert_ckpt.py converts Llama, Qwen2 and InternLM all as llama2, the biases given as flags)."""
    found = {
        f.name: f
        for f in FAMILIES.values()
        for c in f.conversions.values()
        if c is not None
        for conv in (c.hf2mcore, c.mcore2hf)
        if (conv.entry, conv.model_type_hf) == (entry, model_type_hf)
    }
    return next(iter(found.values())) if len(found) == 1 else None
