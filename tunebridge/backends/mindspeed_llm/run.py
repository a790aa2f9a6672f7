"""The MindSpeed-LLM backend: its LoRA fine-tuning replayed on megatron-core (CPU, gloo processes).

A reference executor, not MindSpeed-LLM itself (which needs torch_npu): megatron-core's ``GPTModel``
with the local spec, MindSpeed-LLM's fused LoRA (:mod:`tunebridge.backends.mindspeed_llm.megatron.lora`), its data files
and loss, Megatron's gradient norm, clipping, log format and checkpoint layout. Per-rank code is in
:mod:`tunebridge.backends.mindspeed_llm.megatron.train`; this module validates the inputs, spawns the ranks and collects.

Every step goes through megatron-core's own ``get_forward_backward_func()`` (no pipelining at pp = 1,
1F1B across gloo send/recv at pp > 1), run on CPU by :func:`tunebridge.backends.mindspeed_llm.megatron.cpu.pipeline_schedule_on_cpu`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ...converters.adapters import fuse, read_adapter, write_mcore
from ...converters.formats import detect_adapter_format
from ...converters.formats.mcore import McoreLayout, saved_layer_list
from ...converters.formats.torchzip import lazy_load
from ...data.writers import megatron_files
from ...errors import TunebridgeError
from ...io.atomic import atomic_dir
from ...model.accounting import plan_lora
from ...model.dialects.hf import PEFT_PARAMETER, PEFT_TARGET
from ...model.partition import Layout
from ...model.spec import EXPERT_OF, ModelSpec
from ...train.config import TrainConfig
from ..result import RunResult, StepRecord

BACKEND = "mindspeed-llm"
_CANONICAL = {v: k for k, v in PEFT_TARGET.items()}


def lora_plan(cfg: TrainConfig, spec: ModelSpec) -> tuple[list[str], list[str]]:
    """MindSpeed-LLM's ``--lora-target-modules`` for ``cfg.lora`` (PEFT names like o_proj or the target_parameters
    of fused expert tensors, canonical names like o, or native names like linear_proj), and notes on what that
    changes."""
    assert cfg.lora is not None, "a LoRA plan is made for a LoRA run"
    names = list(cfg.lora["target_modules"])
    native = {"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"}
    if names and set(names) <= native:
        return [n for n in ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2") if n in names], []
    canonical = [_CANONICAL.get(n, n) for n in names]
    unknown = [n for n, c in zip(names, canonical) if c not in PEFT_TARGET]
    if unknown:
        raise TunebridgeError(
            f"lora.target_modules: unknown {unknown} (PEFT names {sorted(_CANONICAL)}, "
            f"or MindSpeed-LLM's {sorted(native)})"
        )
    # a mixture of experts' expert tensors, back to the projections they are the experts' of
    canonical += [p for p, t in EXPERT_OF.items() if PEFT_PARAMETER[t] in cfg.lora.get("target_parameters", ())]
    plan = plan_lora(BACKEND, canonical, spec=spec)
    return list(plan.native_targets), ([plan.note] if not plan.exact else [])


def _check_inputs(
    spec: ModelSpec,
    mcore_dir: Path,
    data_prefix: Path,
    batches: list[list[int]],
    cfg: TrainConfig,
    tp: int,
    pp: int,
    num_layer_list: list[int] | None,
) -> None:
    if cfg.dtype != "fp32":
        raise TunebridgeError(f"dtype {cfg.dtype!r}: the CPU reference of MindSpeed-LLM trains in fp32 only")
    layout = McoreLayout(mcore_dir)
    if (layout.tp, layout.pp) != (tp, pp):
        raise TunebridgeError(
            f"{mcore_dir}: converted for tp={layout.tp}, pp={layout.pp}, the run asks "
            f"tp={tp}, pp={pp} (convert again with --tp {tp} --pp {pp})"
        )
    saved = saved_layer_list(lazy_load(layout.file(0, 0)).get("args"))
    if pp > 1 and saved != (list(num_layer_list) if num_layer_list else None):
        raise TunebridgeError(f"{mcore_dir}: converted with num_layer_list {saved}, the run asks {num_layer_list}")
    if pp > 1 and spec.tied_embeddings and not cfg.lora:
        raise TunebridgeError(
            f"{spec.name}: full fine-tuning of tied embeddings with pp > 1 needs the embedding "
            f"gradient all-reduce between first and last stage, which this backend does not do"
        )
    if spec.num_kv_heads % tp:
        raise TunebridgeError(f"tp={tp} does not divide {spec.name}'s {spec.num_kv_heads} KV groups")
    missing = [str(p) for p in megatron_files(data_prefix) if "attention_mask" not in p.name and not p.exists()]
    if missing:
        raise TunebridgeError(f"data prefix {data_prefix}: missing {', '.join(missing)}")
    if not batches:
        raise TunebridgeError("batches: no steps to run")
    if cfg.global_batch_size % cfg.micro_batch_size:
        raise TunebridgeError(
            f"global_batch_size {cfg.global_batch_size} is not a multiple of micro_batch_size "
            f"{cfg.micro_batch_size} (data parallel 1)"
        )
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    n = len(IndexedDataset(f"{data_prefix}_packed_input_ids_document"))
    for k, batch in enumerate(batches):
        if len(batch) != cfg.global_batch_size:
            raise TunebridgeError(f"batches[{k}]: {len(batch)} samples, global_batch_size is {cfg.global_batch_size}")
        bad = [i for i in batch if not 0 <= i < n]
        if bad:
            raise TunebridgeError(f"batches[{k}]: sample indices {bad[:5]} outside the {n} samples of {data_prefix}")


def _init_lora(
    path: Path,
    spec: ModelSpec,
    cfg: TrainConfig,
    modules: list[str],
    tp: int,
    pp: int,
    num_layer_list: list[int] | None,
    scratch: Path,
) -> Path:
    """Any adapter (PEFT, MindFormers, mcore at any tp) as LoRA-only mcore rank files for this run's tp/pp."""
    assert cfg.lora is not None, "an initial adapter is refused for full fine-tuning"
    adapter = read_adapter(path, detect_adapter_format(path), spec)
    if (adapter.rank, adapter.alpha) != (cfg.lora["rank"], float(cfg.lora["alpha"])):
        raise TunebridgeError(
            f"{path}: adapter has rank {adapter.rank}, alpha {adapter.alpha}; the run asks rank "
            f"{cfg.lora['rank']}, alpha {cfg.lora['alpha']}"
        )
    fused = sorted({name for name, _ in fuse(adapter, spec)})
    if fused != sorted(modules):
        raise TunebridgeError(f"{path}: adapter covers MindSpeed-LLM modules {fused}, the run targets {modules}")
    out = scratch / "init_lora"
    out.mkdir()
    write_mcore(out, adapter, spec, Layout(tp, pp, num_layer_list))
    return out


def train_mindspeed_llm(
    spec: ModelSpec,
    mcore_dir: Path,
    data_prefix: Path,
    batches: list[list[int]],
    cfg: TrainConfig,
    out: Path,
    tp: int = 1,
    pp: int = 1,
    num_layer_list: list[int] | None = None,
    init_adapter: Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune the converted checkpoint ``mcore_dir`` on MindSpeed-LLM data ``data_prefix`` with
    ``batches[k]`` = sample indices of step k. Writes ``out/logs/train.log`` (Megatron's lines),
    ``out/checkpoint/`` (mcore, iteration = steps, LoRA fused) and ``out/result.json``."""
    from megatron.core.package_info import __version__ as mcore_version

    from .megatron import launch
    from .megatron.train import RankJob, train_rank

    started = time.perf_counter()
    mcore_dir, data_prefix, out = Path(mcore_dir), Path(data_prefix), Path(out)
    _check_inputs(spec, mcore_dir, data_prefix, batches, cfg, tp, pp, num_layer_list)
    notes: list[str] = []
    modules = None
    if cfg.lora:
        modules, notes = lora_plan(cfg, spec)
        if cfg.lora.get("dropout"):
            notes.append(
                f"LoRA dropout {cfg.lora['dropout']} not applied: MindSpeed-LLM builds its LoraConfig "
                f"with lora_dropout=0.0"
            )
    elif init_adapter:
        raise TunebridgeError("init_adapter given but the run is full fine-tuning (cfg.lora is None)")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    log_path = out / "logs" / "train.log"
    log_path.write_text("")
    with (
        tempfile.TemporaryDirectory(prefix="mindspeed-llm-") as scratch,
        atomic_dir(out / "checkpoint", force=True) as ckpt,
    ):
        init_dir = None
        if init_adapter:
            assert modules is not None, "an initial adapter is refused for full fine-tuning"
            init_dir = _init_lora(Path(init_adapter), spec, cfg, modules, tp, pp, num_layer_list, Path(scratch))
        job = RankJob(
            spec=spec,
            mcore_dir=str(mcore_dir),
            data_prefix=str(data_prefix),
            batches=batches,
            cfg=cfg,
            log_path=str(log_path),
            checkpoint_dir=str(ckpt),
            tp=tp,
            pp=pp,
            num_layer_list=num_layer_list,
            lora_modules=modules,
            lora_rank=cfg.lora["rank"] if cfg.lora else 8,
            lora_alpha=float(cfg.lora["alpha"]) if cfg.lora else 16.0,
            init_lora_dir=str(init_dir) if init_dir else None,
            echo=progress,
        )
        ranks = launch.run(train_rank, tp, pp, args=(job,))
    last = ranks[-1]
    per_rank = sorted((r["pp_rank"], r["tp_rank"], r["trainable_rank"]) for r in ranks)
    if tp > 1:
        notes.append("per-rank trainable (pp_rank, tp_rank, count): " + ", ".join(map(str, per_rank)))
    result = RunResult(
        BACKEND,
        steps=[StepRecord(**s) for s in last["steps"]],
        trainable_params=sum(r["trainable_once"] for r in ranks),
        total_params=sum(r["total_once"] for r in ranks),
        checkpoints=[str(out / "checkpoint")],
        wall_time_s=time.perf_counter() - started,
        step_time_s=sum(last["step_times"]) / len(last["step_times"]),
        environment={
            "torch": torch.__version__,
            "megatron-core": mcore_version,
            "device": "cpu (gloo)",
            "tp": tp,
            "pp": pp,
        },
        notes=notes,
    )
    result.save(out / "result.json")
    return result
