"""Checkpoint and LoRA adapter formats as records: how each is recognised on disk and which code reads, writes and
runs it. ``convert``, ``verify``, ``merge-lora`` and ``convert-adapter`` dispatch on these records.

Entry points are ``"module:attribute"`` strings, imported when used: this module imports no framework (the
command line builds its choices from it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DTYPE_NAMES = ("fp32", "bf16", "fp16")  # output dtypes, as torch.float32, torch.bfloat16, torch.float16

# File names that identify a format on disk (each format's code reads these from here).
MCORE_TRACKER = "latest_checkpointed_iteration.txt"  # Megatron's newest-iteration file
HF_CONFIG = "config.json"
MF_CKPT = "model.ckpt"  # tunebridge's MindFormers base checkpoint
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_BIN = "adapter_model.bin"  # PEFT's save_pretrained(safe_serialization=False)
MF_ADAPTER = "lora.ckpt"


def _load(entry: str):
    module, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class CheckpointFormat:
    name: str
    dialect: str  # tunebridge.model.dialects name of its tensors
    framework: str  # the framework whose forward pass `verify` runs on it
    looks_like: Callable[[Path], bool]
    reader: str  # "module:function" (path, spec, num_layer_list) -> tunebridge.converters.checkpoint.Source
    writer: str  # "module:class" of a tunebridge.converters.checkpoint.Writer
    logits: str  # "module:function" (path, spec, input_ids) -> logits through `framework`
    layout: str | None = None  # "module:function" (path, source) -> writer options that keep its layout

    def load(self, role: str):
        """The object an entry point names (role: reader, writer, logits, layout)."""
        return _load(getattr(self, role))


@dataclass(frozen=True)
class AdapterFormat:
    name: str
    dialect: str
    looks_like: Callable[[Path], bool]
    reader: str  # "module:function" (path, spec) -> tunebridge.converters.adapters.Adapter
    writer: str  # "module:function" (out_dir, adapter, spec, layout) -> None

    def load(self, role: str):
        return _load(getattr(self, role))


def _is_mcore(p: Path) -> bool:
    return (p / MCORE_TRACKER).exists()


def _is_ckpt(p: Path) -> bool:
    return p.suffix == ".ckpt" or (p.is_dir() and any(p.glob("*.ckpt")))


CHECKPOINTS: dict[str, CheckpointFormat] = {
    f.name: f
    for f in (
        CheckpointFormat(
            "hf",
            "hf",
            "transformers",
            lambda p: (p / HF_CONFIG).exists(),
            "tunebridge.converters.checkpoint:open_hf",
            "tunebridge.converters.checkpoint:HFWriter",
            "tunebridge.parity.logits:hf_logits",
        ),
        CheckpointFormat(
            "mcore",
            "mcore",
            "megatron-core GPTModel",
            _is_mcore,
            "tunebridge.converters.checkpoint:McoreSource",
            "tunebridge.converters.checkpoint:McoreWriter",
            "tunebridge.parity.logits:mcore_logits_from_dir",
            "tunebridge.converters.checkpoint:mcore_layout",
        ),
        CheckpointFormat(
            "mindformers",
            "mindformers",
            "MindFormers LlamaForCausalLM",
            _is_ckpt,
            "tunebridge.converters.checkpoint:open_mindformers",
            "tunebridge.converters.checkpoint:MindFormersWriter",
            "tunebridge.parity.logits:mindformers_logits",
        ),
    )
}
ADAPTERS: dict[str, AdapterFormat] = {
    f.name: f
    for f in (
        AdapterFormat(
            "peft",
            "hf",
            lambda p: (p / PEFT_WEIGHTS).exists() or (p / PEFT_BIN).exists(),
            "tunebridge.converters.adapters:read_peft",
            "tunebridge.converters.adapters:write_peft",
        ),
        AdapterFormat(
            "mindformers",
            "mindformers",
            lambda p: (p / MF_ADAPTER).exists() or p.suffix == ".ckpt",
            "tunebridge.converters.adapters:read_mindformers",
            "tunebridge.converters.adapters:write_mindformers",
        ),
        AdapterFormat(
            "mcore",
            "mcore",
            _is_mcore,
            "tunebridge.converters.adapters:read_mcore",
            "tunebridge.converters.adapters:write_mcore",
        ),
    )
}
FORMATS = tuple(CHECKPOINTS)  # the command line's choices
ADAPTER_FORMATS = tuple(ADAPTERS)
# Recognition order: an mcore directory may hold a config.json, a MindFormers one too.
_CHECKPOINT_ORDER = ("mcore", "mindformers", "hf")
_ADAPTER_ORDER = ("mcore", "peft", "mindformers")


def checkpoint_format(name: str) -> CheckpointFormat:
    return _get(CHECKPOINTS, name, "format")


def adapter_format(name: str) -> AdapterFormat:
    return _get(ADAPTERS, name, "adapter format")


def _get(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        from ...errors import TunebridgeError, unknown

        raise TunebridgeError(unknown(what, name, table)) from None


def detect_format(path: str | Path) -> str:
    """The checkpoint format of ``path``, from the files it holds."""
    return _detect(Path(path), CHECKPOINTS, _CHECKPOINT_ORDER, "checkpoint format (pass --from/--to)")


def detect_adapter_format(path: str | Path) -> str:
    return _detect(Path(path), ADAPTERS, _ADAPTER_ORDER, "adapter format (pass --from)")


def _detect(p: Path, table: dict, order: tuple[str, ...], what: str) -> str:
    found = next((name for name in order if table[name].looks_like(p)), None)
    if found is None:
        from ...errors import TunebridgeError

        raise TunebridgeError(f"{p}: cannot tell the {what}")
    return found
