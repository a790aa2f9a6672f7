"""What every backend of one run trains from, made once: tokens, step order, initial LoRA, converted weights.

    inputs = RunInputs.make(recipe, ["torch", "mindformers"], weights, out / "inputs")

- the recipe's data, prepared for each backend's format from the same samples (aligned; counts checked equal);
- the global batch of every step (:func:`tunebridge.train.order.step_batches`), handed to each executor;
- for LoRA, one PEFT adapter initialised from the recipe seed, converted to MindFormers' and mcore's layout,
  so that every backend starts from the same A (B is zero);
- the HF base weights converted to MindFormers' .ckpt and to mcore shards with the recipe's tp / pp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TunebridgeError
from ..train.config import TrainConfig
from .stacks import get_stack, stack_of


@dataclass
class RunInputs:
    root: Path
    hf_weights: Path
    batches: list[list[int]]
    samples: int
    pad_id: int
    overrides: dict = field(default_factory=dict)
    has_adapter: bool = False

    def data(self, kind: str) -> Path:
        stack = stack_of(data=kind)
        assert stack is not None, f"no stack's data format is {kind!r}"
        return self.root / "data" / stack.name / stack.data_file

    def adapter(self, fmt: str) -> Path:
        return self.root / f"adapter-{fmt}"

    def weights(self, fmt: str) -> Path:
        return self.hf_weights if fmt == "hf" else self.root / f"weights-{fmt}"

    def config(self, recipe, backend: str) -> TrainConfig:
        return TrainConfig.from_recipe(recipe, backend, pad_id=self.pad_id, **self.overrides)

    @classmethod
    def load(cls, root: Path, weights: Path, overrides: dict | None = None) -> RunInputs:
        """The inputs an earlier :meth:`make` wrote to ``root`` (for --resume)."""
        saved = json.loads((Path(root) / "inputs.json").read_text())
        return cls(
            Path(root),
            Path(weights),
            saved["batches"],
            saved["samples"],
            saved["pad_id"],
            dict(overrides or {}),
            saved["has_adapter"],
        )

    @classmethod
    def make(
        cls,
        recipe,
        backends: list[str],
        weights: Path,
        root: Path,
        overrides: dict | None = None,
        progress: bool = True,
    ) -> RunInputs:
        from ..converters.checkpoint import convert
        from ..data.prepare import prepare
        from ..train.order import step_batches

        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        report = prepare(recipe, backends, root / "data", force=True, progress=progress, aligned=True)
        written = {b: report.written[f"{b}/train"] for b in backends}
        if len(set(written.values())) != 1:
            raise TunebridgeError(f"the backends' training files hold different sample counts {written}")
        samples = next(iter(written.values()))
        pad_id = _pad_id(recipe)
        inputs = cls(root, Path(weights), [], samples, pad_id, dict(overrides or {}))
        cfg = inputs.config(recipe, backends[0])
        inputs.batches = step_batches(samples, cfg)
        spec = recipe.spec
        p = recipe.parallel
        for backend in backends:
            fmt = get_stack(backend).weights
            if fmt != "hf":
                convert(
                    weights,
                    inputs.weights(fmt),
                    "hf",
                    fmt,
                    spec=spec,
                    tp=p.tp if fmt == "mcore" else 1,
                    pp=p.pp if fmt == "mcore" else 1,
                    num_layer_list=p.num_layer_list if fmt == "mcore" else None,
                    force=True,
                    progress=progress,
                )
        if cfg.lora:
            inputs.has_adapter = True
            _initial_adapter(weights, cfg, inputs.adapter("peft"))
            from ..converters.adapters import convert_adapter

            for backend in backends:
                fmt = get_stack(backend).adapter
                if fmt != "peft":
                    convert_adapter(
                        inputs.adapter("peft"),
                        inputs.adapter(fmt),
                        "peft",
                        fmt,
                        spec,
                        tp=p.tp if fmt == "mcore" else 1,
                        pp=p.pp if fmt == "mcore" else 1,
                        num_layer_list=p.num_layer_list if fmt == "mcore" else None,
                        force=True,
                    )
        (root / "inputs.json").write_text(
            json.dumps(
                {"samples": samples, "pad_id": pad_id, "has_adapter": inputs.has_adapter, "batches": inputs.batches}
            )
            + "\n"
        )
        return inputs


def _pad_id(recipe) -> int:
    from ..data.tokenizer import pad_id

    return pad_id(recipe.load_tokenizer()[1])


def _initial_adapter(weights: Path, cfg: TrainConfig, out: Path) -> None:
    """A fresh PEFT adapter (PEFT's init: A kaiming-uniform from the recipe seed, B zero) saved to ``out``."""
    import shutil

    import torch

    from .pytorch import build_model

    model = build_model(weights, cfg, torch.device("cpu"))
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(str(out))
