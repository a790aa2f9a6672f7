"""Merge a LoRA adapter into base weights: W' = W + (alpha / r) B A, in fp32, cast back to W's dtype."""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.spec import ModelSpec
from .adapters import Adapter, read_adapter
from .checkpoint import Source, open_source, write_source
from .formats import checkpoint_format, detect_adapter_format, detect_format


class MergedSource(Source):
    """Canonical tensors of ``base`` with the adapter's updates applied as they stream past."""

    def __init__(self, base: Source, adapter: Adapter):
        self.base, self.adapter, self.spec = base, adapter, base.spec
        self.generation_config = base.generation_config

    def get(self, part: str, layer: int | None) -> torch.Tensor:
        w = self.base.get(part, layer)
        pair = self.adapter.pairs.get((part, layer)) if layer is not None else None
        if pair is None:
            return w
        a, b = pair
        return (w.float() + self.adapter.scale * (b.float() @ a.float())).to(w.dtype)


def merge_lora(
    base: str | Path,
    adapter: str | Path,
    dst: str | Path,
    *,
    base_format: str | None = None,
    adapter_format: str | None = None,
    spec: ModelSpec | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Write base + adapter merged, in the base's format (and, for mcore, its TP/PP layout)."""
    base_format = base_format or detect_format(base)
    source = open_source(base, base_format, spec)
    merged = MergedSource(source, read_adapter(adapter, adapter_format or detect_adapter_format(adapter), source.spec))
    keep = checkpoint_format(base_format).layout
    options = checkpoint_format(base_format).load("layout")(Path(base), source) if keep else {}
    return write_source(merged, dst, base_format, force=force, progress=progress, label="merge-lora", **options)
