"""The torch backend: a recipe trained with transformers + PEFT on NPU, CUDA or CPU.

Semantics are chosen to match MindSpeed-LLM's by default so loss curves compare directly:
loss is the token mean of each micro-batch, averaged over the micro-batches of a global batch
(``loss_average="micro-batch"``; ``"token"`` averages over all supervised tokens of the global batch
instead); labels are unshifted token ids with -100 on unsupervised positions; the learning rate of
update ``k`` is ``Schedule.lr_at(k)``. Multi-device runs go through ``torchrun`` (DDP), not a launcher of ours.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.encode import IGNORE
from ..errors import TunebridgeError
from ..train import moe_aux
from ..train.config import TrainConfig
from ..train.optim import decay_groups, make_adamw
from ..train.order import global_batches, micro_batches, total_steps
from ..train.schedule import Schedule
from .result import RunResult, StepRecord

# PEFT 0.21.2 reads transformers 5's deprecated `is_gradient_checkpointing` when wrapping a model: expected, not ours.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def detect_device() -> torch.device:
    """torch_npu if it imports (Ascend), else CUDA, else CPU."""
    try:
        import torch_npu  # noqa: F401  (registers the "npu" device)

        if torch.npu.is_available():  # type: ignore[attr-defined]
            return torch.device("npu", int(os.environ.get("LOCAL_RANK", 0)))
    except Exception:  # noqa: BLE001 - any failure means "no usable NPU"
        pass
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def read_tokenized(path: str | Path) -> list[dict]:
    """Tokenized JSONL: one {"input_ids": [...], "labels": [...]} per line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                ids, labels = rec["input_ids"], rec["labels"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise TunebridgeError(f"{path}:{n}: not a tokenized record with input_ids and labels ({e})") from None
            if len(ids) != len(labels):
                raise TunebridgeError(f"{path}:{n}: input_ids has {len(ids)} ids but labels has {len(labels)}")
            records.append({"input_ids": ids, "labels": labels})
    if not records:
        raise TunebridgeError(f"{path}: no records")
    return records


def collate(records: list[dict], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in records)
    ids = torch.full((len(records), width), pad_id, dtype=torch.long)
    labels = torch.full((len(records), width), IGNORE, dtype=torch.long)
    for i, r in enumerate(records):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
    return ids.to(device), labels.to(device)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross entropy over supervised positions, and their count."""
    return next_token_losses(logits[:, :-1], labels[:, 1:])


def next_token_losses(shift_logits: torch.Tensor, shift_labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross entropy of logits against the labels of the next positions, and their count."""
    shift_logits = shift_logits.float()
    loss_sum = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss_sum, int((shift_labels != IGNORE).sum())


def megatron_tokens(ids: torch.Tensor, lengths: list[int], pad_id: int) -> torch.Tensor:
    """MindSpeed-LLM's input of a micro-batch (``tokens = ids[:-1]`` per row, padded to the longest) from the
    collated ``ids`` (rows of ``lengths``): the logits at supervised positions are the same, the routed ones too."""
    tokens = ids.clone()
    for r, n in enumerate(lengths):
        tokens[r, n - 1 :] = pad_id
    return tokens[:, :-1]


def build_model(model_dir: str | Path, cfg: TrainConfig, device: torch.device, init_adapter: str | None = None):
    """The HF model from ``model_dir`` (+ a fresh or given LoRA adapter)."""
    from transformers import AutoModelForCausalLM

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.dtype]
    model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, local_files_only=True)
    if hasattr(model.config, "output_router_logits"):
        # a mixture of experts: never transformers' own load-balancing loss (added into its loss with
        # output_router_logits); the train step asks for the router logits and adds Megatron's (train/moe_aux.py)
        model.config.output_router_logits = False
    if cfg.lora:
        from peft import LoraConfig, PeftModel, get_peft_model

        if cfg.lora.get("target_parameters") and cfg.lora["dropout"]:
            raise TunebridgeError(
                f"lora.dropout {cfg.lora['dropout']}: PEFT adapts a mixture of experts' fused expert tensors "
                f"(target_parameters {cfg.lora['target_parameters']}) without dropout only"
            )
        if init_adapter:
            model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
        else:
            torch.manual_seed(cfg.seed)
            model = get_peft_model(
                model,
                LoraConfig(
                    r=cfg.lora["rank"],
                    lora_alpha=cfg.lora["alpha"],
                    lora_dropout=cfg.lora["dropout"],
                    target_modules=cfg.lora["target_modules"] or None,
                    target_parameters=cfg.lora.get("target_parameters") or None,
                    bias="none",
                    task_type="CAUSAL_LM",
                ),
            )
    return model.to(device)


def _trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(model, optimizer, step: int, total_steps: int, out: Path) -> Path:
    path = out / "checkpoints" / f"step_{step:06d}"
    tmp = path.with_name(path.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "step": step,
            "total_steps": total_steps,
            "trainable": {n: p.detach().cpu() for n, p in _trainable(model).items()},
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
        },
        tmp / "state.pt",
    )
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def checkpoints(out: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (``step_N.partial`` ones were cut short)."""
    return sorted((Path(out) / "checkpoints").glob("step_[0-9]*[0-9]"))


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoints(out)
    return found[-1] if found else None


def _resume(out: Path, steps: int, params: dict, optimizer, result: RunResult) -> int:
    """Load the newest checkpoint into ``params`` and ``optimizer``; put the steps and checkpoints before it into
    ``result`` (so the record is the whole run's) and cut the log after it. Returns the step to continue after."""
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise TunebridgeError(f"{out}: no checkpoint to resume from (checkpoints are written with --save-every N)")
    state = torch.load(ckpt / "state.pt", weights_only=True)
    start = state["step"]
    planned = state.get("total_steps", steps)
    if planned != steps:
        raise TunebridgeError(
            f"{ckpt}: the run was planned for {planned} steps, now {steps}: resuming would "
            f"change its learning-rate schedule mid-run; resume with the same --max-steps, or "
            f"start a new run"
        )
    with torch.no_grad():
        for n, t in state["trainable"].items():
            params[n].copy_(t)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    log_path = out / "metrics.jsonl"
    lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.exists() else []
    kept = [StepRecord(**json.loads(line)) for line in lines if line.strip() and json.loads(line)["step"] <= start]
    if [s.step for s in kept] != list(range(1, start + 1)):
        raise TunebridgeError(
            f"{log_path}: holds steps {[s.step for s in kept]} up to the checkpoint, not 1..{start}:"
            f" the run's record cannot be rebuilt"
        )
    log_path.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in kept), encoding="utf-8")
    result.steps = kept
    result.checkpoints = [str(c) for c in checkpoints(out) if int(c.name.removeprefix("step_")) <= start]
    return start


def train(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    resume: bool = False,
    init_adapter: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Fine-tune the HF model in ``model_dir`` on tokenized ``data``; logs and checkpoints go to ``out``."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = detect_device()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            "hccl" if device.type == "npu" else "nccl" if device.type == "cuda" else "gloo"
        )
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    if cfg.global_batch_size % (cfg.micro_batch_size * world):
        raise TunebridgeError(
            f"global_batch_size {cfg.global_batch_size} is not a multiple of "
            f"micro_batch_size {cfg.micro_batch_size} x data-parallel {world}"
        )

    records = read_tokenized(data)
    steps = total_steps(len(records), cfg)
    schedule = Schedule(cfg.lr, cfg.min_lr, steps, cfg.warmup_ratio, cfg.lr_schedule, cfg.warmup_rounding)
    model = build_model(model_dir, cfg, device, init_adapter)
    # a mixture of experts trained with Megatron's load-balancing loss: its routing's k
    topk = getattr(model.config, "num_experts_per_tok", None) if cfg.moe_aux_loss_coeff > 0 else None
    params = _trainable(model)
    trainable = sum(p.numel() for p in params.values())
    total = sum(p.numel() for p in model.parameters())
    optimizer = make_adamw(decay_groups(params.items(), cfg.weight_decay), cfg)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    result = RunResult("torch", trainable_params=trainable, total_params=total, environment=environment(device))
    start = 0
    log_path = out / "metrics.jsonl"
    if resume:
        start = _resume(out, steps, params, optimizer, result)
    elif log_path.exists():
        log_path.unlink()

    batches = global_batches(len(records), cfg)
    for _ in range(start):
        next(batches)
    bar = _progress(steps, start, enabled=progress and rank == 0)
    model.train()
    step_times = []
    with open(log_path, "a", encoding="utf-8") as log:
        for step in range(start, steps):
            t0 = time.perf_counter()
            batch = next(batches)
            micro = micro_batches(batch, cfg.micro_batch_size, rank, world)
            n_tokens = sum(sum(1 for x in records[i]["labels"][1:] if x != IGNORE) for mb in micro for i in mb)
            lr = schedule.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            reported = 0.0
            aux_logged: list[list[float]] = []
            for mb in micro:
                rows = [records[i] for i in mb]
                ids, labels = collate(rows, cfg.pad_id, device)
                if not topk:
                    logits = ddp_model(input_ids=ids).logits
                    loss_sum, count = token_losses(logits, labels)
                    aux = None
                else:
                    # a mixture of experts: the router sees what megatron-core's sees (every row's ids[:-1],
                    # padded), as Megatron's load-balancing loss counts every routed position
                    tokens = megatron_tokens(ids, [len(r["input_ids"]) for r in rows], cfg.pad_id)
                    routed = ddp_model(input_ids=tokens, output_router_logits=True)
                    loss_sum, count = next_token_losses(routed.logits, labels[:, 1:])
                    layers = moe_aux.layer_losses(routed.router_logits, topk, cfg.moe_aux_loss_coeff)
                    aux_logged.append([float(a.detach()) for a in layers])
                    aux = torch.stack(layers).sum()
                if cfg.loss_average == "token":
                    loss = loss_sum / max(n_tokens, 1)
                    objective = loss if aux is None else loss + aux * tokens.numel() / max(n_tokens, 1)
                else:
                    loss = loss_sum / max(count, 1) / len(micro)
                    objective = loss if aux is None else loss + aux / len(micro)
                objective.backward()
                reported += loss.item()  # the language-model loss, as Megatron reports it
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.clip_grad if cfg.clip_grad > 0 else math.inf)
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if distributed:
                t = torch.tensor([reported], device=device)
                torch.distributed.all_reduce(t)
                reported = float(t) / world
            record = StepRecord(step + 1, reported, lr, grad_norm, n_tokens)
            if aux_logged:
                record.load_balancing_loss = moe_aux.logged(aux_logged, cfg.moe_aux_loss_coeff)
            result.steps.append(record)
            step_times.append(time.perf_counter() - t0)
            if rank == 0:
                log.write(json.dumps(record.to_dict()) + "\n")
                log.flush()
                if cfg.save_every and (step + 1) % cfg.save_every == 0:
                    result.checkpoints.append(str(_save_checkpoint(model, optimizer, step + 1, steps, out)))
            bar(step + 1, reported)
    if rank == 0:
        final = out / "final"
        if cfg.lora:
            model.save_pretrained(str(final))
        else:
            model.save_pretrained(str(final), safe_serialization=True)
        result.checkpoints.append(str(final))
    result.wall_time_s = time.perf_counter() - started
    result.step_time_s = sum(step_times) / len(step_times) if step_times else None
    if rank == 0:
        result.save(out / "result.json")
    return result


def environment(device: torch.device) -> dict:
    import peft
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": str(device),
    }


def _progress(total: int, start: int, enabled: bool):
    if not enabled:
        return lambda step, loss: None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, desc="torch train", unit="step", leave=False)

    def update(step: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if step == total:
            bar.close()

    return update
