"""The recipe's ``data:`` section."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DataSource(_Strict):
    path: str                                   # relative to the recipe file
    format: Literal["alpaca", "math", "sharegpt", "mc"] = "alpaca"
    map_keys: dict[str, str] | None = None      # MindSpeed-LLM's --map-keys: prompt/query/response/system -> keys


class DataSpec(_Strict):
    train: DataSource | None = None
    template: str | None = None                 # default: the model family's chat template
    tokenizer: str | None = None                # an HF tokenizer directory; default: the embedded one
    system: str | None = None                   # overrides the template's default system prompt
    transforms: list[dict[str, dict[str, Any] | None]] = Field(default_factory=list)
    validation_split: float = 0.0
    mask: Literal["tunebridge", "mindformers"] = "tunebridge"  # label mask; mindformers: llama_preprocess.py's (vicuna_v1.1)
