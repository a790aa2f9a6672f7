"""Render a recipe into the launch artifacts of a real stack (MindFormers or MindSpeed-LLM)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import TunebridgeError
from ..io.atomic import atomic_dir
from ..model.accounting import plan_lora
from .mindspeed_llm import render as msl
from .stacks import RENDERABLE, get_stack


def default_prompt_type(recipe) -> str:
    """The prompt template a recipe trains with: data.template if set, else the model's (its catalogue entry's,
    else its family's)."""
    if recipe.data is not None and recipe.data.template:
        return recipe.data.template
    return recipe.spec.template


def train_iters(recipe, num_samples: int | None) -> int | None:
    """Optimizer steps: train.max_steps, else ceil(epochs x samples / global_batch_size) when samples are known."""
    t = recipe.train
    if getattr(t, "max_steps", None):
        return t.max_steps
    if num_samples is None:
        return None
    return math.ceil(t.epochs * num_samples / t.global_batch_size)


def _lora_plan(recipe, backend: str):
    if recipe.finetune.method != "lora":
        return None
    lc = recipe.finetune.lora
    native = (lc.native_targets or {}).get(backend)
    return plan_lora(backend, list(lc.targets), native, recipe.spec)


def render_files(
    recipe, backend: str, num_samples: int | None = None, version: str = msl.DEFAULT_VERSION, device: str = "ascend"
) -> dict[str, str]:
    """File name -> text of every artifact for ``backend`` (``version``: MindSpeed-LLM's; ``device``: MindFormers'
    ascend or cpu profile)."""
    stack = get_stack(backend)
    if stack.render is None:
        raise TunebridgeError(f"cannot render for backend {backend!r} (renderable: {', '.join(RENDERABLE)})")
    if problem := stack.problem(recipe.spec):
        raise TunebridgeError(problem)
    return stack.load(stack.render)(recipe, _lora_plan(recipe, backend), num_samples, version=version, device=device)


def render(
    recipe,
    backend: str,
    out: str | Path,
    force: bool = False,
    num_samples: int | None = None,
    version: str = msl.DEFAULT_VERSION,
    device: str = "ascend",
) -> list[Path]:
    """Write the artifacts for ``backend`` into ``out`` (atomically); return the written paths."""
    files = render_files(recipe, backend, num_samples, version, device)
    out = Path(out)
    with atomic_dir(out, force=force) as tmp:
        for fname, text in files.items():
            path = tmp / fname
            path.write_text(text, encoding="utf-8")
            if fname.endswith(".sh"):
                os.chmod(path, 0o755)
    return [out / f for f in files]
