"""Render a recipe into the launch artifacts of a real stack (MindFormers or MindSpeed-LLM)."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..accounting import plan_lora
from ..atomic import atomic_dir
from ..errors import TunebridgeError
from . import mindformers as mf
from . import mindspeed_llm as msl

RENDER_BACKENDS = ("mindformers", "mindspeed-llm")


def default_prompt_type(recipe) -> str:
    """The prompt template a recipe trains with: data.template if set, else the model family's chat template."""
    if recipe.data is not None and recipe.data.template:
        return recipe.data.template
    spec = recipe.spec
    if spec.family == "qwen2":
        return "qwen"
    if spec.vocab_size == 128256:
        return "llama3"
    return "llama2" if spec.family == "llama" else "alpaca"


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
    return plan_lora(backend, list(lc.targets), native)


def render_files(recipe, backend: str, num_samples: int | None = None, version: str = msl.DEFAULT_VERSION,
                 device: str = "ascend") -> dict[str, str]:
    """File name -> text of every artifact for ``backend`` (``device``: MindFormers' ascend or cpu profile)."""
    spec = recipe.spec
    name = recipe.name
    if backend == "mindspeed-llm":
        if version not in msl.VERSIONS:
            raise TunebridgeError(f"unknown MindSpeed-LLM version {version!r} (known: {', '.join(msl.VERSIONS)})")
        ctx = msl.Context(recipe, spec, _lora_plan(recipe, backend), msl.prompt_type(default_prompt_type(recipe)))
        paths = {"HF_DIR": f"./model_from_hf/{name}", "TOKENIZER_PATH": f"./model_from_hf/{name}",
                 "HF_EXPORT_DIR": f"./model_from_hf/{name}-tuned",
                 "CKPT_LOAD_DIR": f"./model_weights/{name}-mcore", "CKPT_SAVE_DIR": f"./ckpt/{name}",
                 "RAW_DATA": f"./dataset/{name}.json", "DATA_PATH": f"./finetune_dataset/{name}"}
        method = recipe.finetune.method
        return {
            f"ckpt_convert_{name}_hf2mcore.sh": msl.convert_script(
                ctx, {k: paths[k] for k in ("HF_DIR", "TOKENIZER_PATH", "CKPT_LOAD_DIR")}, version),
            f"data_convert_{name}_instruction.sh": msl.preprocess_script(
                ctx, {k: paths[k] for k in ("RAW_DATA", "TOKENIZER_PATH", "DATA_PATH")}),
            f"tune_{name}_{method}_ptd.sh": msl.tune_script(
                ctx, {k: paths[k] for k in ("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "DATA_PATH", "TOKENIZER_PATH")},
                train_iters(recipe, num_samples), version),
            f"generate_{name}_ptd.sh": msl.inference_script(
                ctx, {k: paths[k] for k in ("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "TOKENIZER_PATH")}, "generate", version),
            f"evaluate_{name}_ptd.sh": msl.inference_script(
                ctx, {**{k: paths[k] for k in ("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "TOKENIZER_PATH")},
                      "EVAL_DATA": "./mmlu/data/test"}, "evaluate", version),
            f"ckpt_convert_{name}_mcore2hf.sh": msl.export_script(
                ctx, {k: paths[k] for k in ("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "HF_DIR", "HF_EXPORT_DIR")}, version),
        }
    if backend == "mindformers":
        return mf.render_files(recipe, spec, _lora_plan(recipe, backend), device, num_samples)
    raise TunebridgeError(f"cannot render for backend {backend!r} (renderable: {', '.join(RENDER_BACKENDS)})")


def render(recipe, backend: str, out: str | Path, force: bool = False, num_samples: int | None = None,
           version: str = msl.DEFAULT_VERSION, device: str = "ascend") -> list[Path]:
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
