"""The three stacks as records: what each one speaks and reads, what it does by default, and where its code is.

One :class:`Stack` per stack replaces the per-stack dicts the rest of the package used to keep (dialect,
checkpoint and adapter format, data format and file name, log format, defaults, render and run entry
points). Entry points are ``"module:attribute"`` strings, imported when used: this module imports no framework.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Defaults:
    """What a stack does where the recipe leaves a setting open (see :data:`tunebridge.recipe.mapping.NON_EQUIVALENCES`)."""

    adam_bias_correction: bool
    warmup_rounding: str  # "megatron" (fractional warm-up) or "mindformers" (whole steps)
    loss_average: str  # "micro-batch" or "token"


@dataclass(frozen=True)
class Stack:
    name: str  # the backend's name on the command line
    dialect: str  # how it names, packs and shards tensors (tunebridge.model.dialects)
    weights: str  # the checkpoint format it trains from (tunebridge.converters.formats.CHECKPOINTS)
    adapter: str  # its LoRA adapter format (tunebridge.converters.formats.ADAPTERS)
    data: str  # the data format it trains from (tunebridge.data.writers)
    data_file: str  # the name of the prepared training file (a prefix for Megatron's indexed files)
    log: str  # the log format its runs write (tunebridge.parity.logs.FORMATS)
    defaults: Defaults
    backend: str  # "module:class" of its tunebridge.backends.base.Backend
    render: str | None = None  # "module:function" writing its launch artifacts; None: it runs directly
    # "module:function" (spec) -> why the stack cannot take a model (render, count, run), or None
    takes: str | None = None

    def load(self, entry: str):
        """The object an entry point (``self.backend``, ``self.render``) names."""
        module, _, attr = entry.partition(":")
        return getattr(importlib.import_module(module), attr)

    def problem(self, spec) -> str | None:
        """Why this stack cannot take ``spec``'s model (its family says), or None."""
        return self.load(self.takes)(spec) if self.takes else None


STACKS: dict[str, Stack] = {
    s.name: s
    for s in (
        Stack(
            "torch",
            dialect="hf",
            weights="hf",
            adapter="peft",
            data="jsonl",
            data_file="train.jsonl",
            log="jsonl",
            defaults=Defaults(True, "megatron", "micro-batch"),
            backend="tunebridge.backends.base:TorchBackend",
        ),
        Stack(
            "mindformers",
            dialect="mindformers",
            weights="mindformers",
            adapter="mindformers",
            data="mindrecord",
            data_file="train.mindrecord",
            log="mindformers",
            defaults=Defaults(True, "mindformers", "token"),
            backend="tunebridge.backends.base:MindFormersBackend",
            render="tunebridge.backends.mindformers.render:render_recipe",
            takes="tunebridge.model.families:mindformers_problem",
        ),
        Stack(
            "mindspeed-llm",
            dialect="mcore",
            weights="mcore",
            adapter="mcore",
            data="megatron",
            data_file="train",
            log="megatron",
            defaults=Defaults(True, "megatron", "micro-batch"),
            backend="tunebridge.backends.base:MindSpeedLLMBackend",
            render="tunebridge.backends.mindspeed_llm.render:render_recipe",
        ),
    )
}
STACK_NAMES = tuple(STACKS)
RENDERABLE = tuple(name for name, s in STACKS.items() if s.render)


def get_stack(name: str) -> Stack:
    try:
        return STACKS[name]
    except KeyError:
        from ..errors import TunebridgeError, unknown

        raise TunebridgeError(unknown("backend", name, STACKS)) from None


def stacks_for(spec, names: tuple[str, ...] = STACK_NAMES) -> tuple[list[str], list[str]]:
    """Of ``names``, the stacks that can take ``spec``'s model, and a note for each one that cannot."""
    taken, notes = [], []
    for name in names:
        if problem := STACKS[name].problem(spec):
            notes.append(f"{name}: {problem}")
        else:
            taken.append(name)
    return taken, notes


def stack_of(**field: str) -> Stack | None:
    """The stack whose ``field`` (one keyword: dialect=, data=, log=, ...) has the given value, or None."""
    ((key, value),) = field.items()
    return next((s for s in STACKS.values() if getattr(s, key) == value), None)
