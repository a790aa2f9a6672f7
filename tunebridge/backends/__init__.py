"""Backends: each renders a recipe for its stack and/or runs it here (torch, MindFormers, megatron-core).

Every backend answers three calls on a recipe:

- ``plan``: what ``run`` would execute here, checked before any work starts (weights, data section, parallel
  layout, a given checkout): a :class:`Plan` that says it in words;
- ``render``: the launch artifacts for the real stack (MindFormers, MindSpeed-LLM; torch runs directly);
- ``run``: execute the plan on this machine with the real framework, returning a :class:`RunResult`.

The inputs every backend trains from (tokens, initial LoRA adapter, converted weights) are made once by
:mod:`.inputs`, so runs on different backends start from the same numbers.
"""

from __future__ import annotations

from .base import Backend, Plan, get_backend  # noqa: F401
from .result import RunResult, StepRecord  # noqa: F401
