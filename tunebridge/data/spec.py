"""The recipe's ``data:`` section."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .readers import MapKey
from .templates import Preprocess
from .tokenizer import TokenizerRules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DataSource(_Strict):
    path: str  # relative to the recipe file
    format: Literal["alpaca", "math", "sharegpt", "mc"] = "alpaca"
    # MindSpeed-LLM's --map-keys: these fields -> record keys (system and history are read only when named)
    map_keys: dict[MapKey, str] | None = None


class DataSpec(_Strict):
    train: DataSource | None = None
    template: str | None = None  # default: the model family's chat template
    tokenizer: str | None = None  # an HF tokenizer directory; default: the embedded one
    system: str | None = None  # overrides the template's default system prompt
    transforms: list[dict[str, dict[str, Any] | None]] = Field(default_factory=list)
    validation_split: float = 0.0
    # whose preprocessing makes the samples (tunebridge.data.prepare): the template's stack, or the one named
    preprocess: Preprocess = "per-stack"
    # MindSpeed-LLM's tokenizer (tunebridge.data.tokenizer): each version's in render.mindspeed_llm.VERSIONS
    tokenizer_rules: TokenizerRules = "transformers-4"
