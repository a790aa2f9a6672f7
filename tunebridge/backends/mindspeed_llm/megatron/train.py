"""One rank of a MindSpeed-LLM fine-tuning run on megatron-core (CPU, gloo): load, train, save.

What each step does, as MindSpeed-LLM's ``posttrain_gpt.py`` (SFT, ``--no-pad-to-seq-lengths``) does it:

- a sample is ``tokens = ids[:-1]``, ``labels = labels[1:]`` (unshifted ids, -100 on the prompt); a
  micro-batch is padded to its longest sample (pad id, labels -100), with a causal mask;
- the micro-batches go through megatron-core's ``get_forward_backward_func()`` (1F1B over gloo send/recv
  when pp > 1, variable sequence lengths); loss per micro-batch = ``sum(losses * loss_mask) /
  loss_mask.sum()`` over megatron-core's vocab-parallel cross entropy (padded vocabulary rows included, as
  on the cluster), which the schedule divides by the number of micro-batches before backward;
  ``loss_average="token"`` instead divides by the supervised tokens of the whole global batch
  (``--calculate-per-token-loss``);
- a mixture of experts with ``moe_aux_loss_coeff`` > 0: megatron-core's routers add the auxiliary load-balancing
  loss to the gradient (not to ``lm loss``), and the line shows ``load_balancing_loss`` as Megatron's
  ``track_moe_metrics`` does (see :mod:`tunebridge.train.moe_aux`);
- the gradient norm is Megatron's: squares summed over every rank, a TP-replicated parameter counted on
  TP rank 0 only; clipping by ``clip_grad / (norm + 1e-6)`` when below 1; then AdamW at ``lr_at(k)``.

The last rank writes Megatron's ``training_log`` line per iteration. Megatron reads the learning rate for
that line *after* the scheduler has stepped, so line ``i`` shows the rate of update ``i + 1``; the step
records keep the rate each update used.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import torch
from megatron.core import parallel_state
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.models.gpt import GPTModel
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate
from megatron.core.transformer.module import param_is_not_shared
from megatron.core.transformer.moe.moe_utils import clear_aux_losses_tracker, get_moe_layer_wise_logging_tracker
from megatron.core.transformer.moe.router import TopKRouter

from ....converters.formats import mcore as mcore_fmt
from ....data.encode import IGNORE
from ....errors import TunebridgeError
from ....model.spec import ModelSpec
from ....train.config import TrainConfig
from ....train.optim import make_adamw
from ....train.order import micro_batches
from ....train.schedule import Schedule
from .cpu import causal_mask, pipeline_schedule_on_cpu
from .forward import lora_in
from .lora import apply_lora
from .model import build_gpt, model_state_dict


@dataclass
class RankJob:
    """Everything a rank needs (pickled to every rank)."""

    spec: ModelSpec
    mcore_dir: str
    data_prefix: str
    batches: list[list[int]]
    cfg: TrainConfig
    log_path: str
    checkpoint_dir: str  # where the rank files of the trained model go
    tp: int = 1
    pp: int = 1
    num_layer_list: list[int] | None = None
    lora_modules: list[str] | None = None  # native names; None = full fine-tuning
    lora_rank: int = 8
    lora_alpha: float = 16.0
    init_lora_dir: str | None = None  # a LoRA-only mcore checkpoint with this run's tp/pp
    echo: bool = False  # also print the log lines (the last rank's stdout)


class InstructionData:
    """MindSpeed-LLM's packed instruction files, read with megatron-core's IndexedDataset."""

    def __init__(self, prefix: str):
        self.ids = IndexedDataset(f"{prefix}_packed_input_ids_document")
        self.labels = IndexedDataset(f"{prefix}_packed_labels_document")

    def __len__(self) -> int:
        return len(self.ids)

    def micro_batch(self, indices: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens [b, s], labels [b, s] (ignored positions hold 0) and the float loss mask [b, s]."""
        rows = [(self.ids[i].astype("int64")[:-1], self.labels[i].astype("int64")[1:]) for i in indices]
        width = max(len(t) for t, _ in rows)
        tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for r, (t, lab) in enumerate(rows):
            tokens[r, : len(t)] = torch.from_numpy(t)
            labels[r, : len(lab)] = torch.from_numpy(lab)
        mask = labels != IGNORE
        return tokens, labels.masked_fill(~mask, 0), mask.float()


def _load_strict(module: torch.nn.Module, state: dict, where: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise TunebridgeError(
            f"{where}: does not fit the model: {str(e).splitlines()[0]} {' '.join(str(e).splitlines()[1:3])}"
        ) from None


def _load_lora(model: torch.nn.Module, path: Path) -> None:
    """Copy a LoRA-only rank file into the model's lora_A/lora_B; the tensor names must match exactly."""
    state = mcore_fmt.load_rank_file(path)["model"]
    params = {n: p for n, p in model.named_parameters() if ".lora_" in n}
    if set(state) != set(params):
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise TunebridgeError(
            f"{path}: LoRA tensors differ from the run's LoRA modules "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    with torch.no_grad():
        for name, p in params.items():
            if tuple(state[name].shape) != tuple(p.shape):
                raise TunebridgeError(
                    f"{path}: {name} has shape {list(state[name].shape)}, the model needs {list(p.shape)}"
                )
            p.copy_(state[name])


def _counted_once(p: torch.nn.Parameter) -> bool:
    return param_is_not_shared(p) and param_is_not_tensor_parallel_duplicate(p)


def _param_groups(model: torch.nn.Module) -> list[dict]:
    """Megatron's default groups: no weight decay on biases and 1-D parameters (norms)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    groups: list[dict] = [{"params": decay}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
    return [g for g in groups if g["params"]]


def grad_norm(params: list[torch.nn.Parameter]) -> float:
    """Megatron's global L2 norm of the gradients over the model-parallel group."""
    sq = torch.zeros((), dtype=torch.float32)
    for p in params:
        if p.grad is not None and _counted_once(p):
            sq += p.grad.float().pow(2).sum()
    torch.distributed.all_reduce(sq, group=parallel_state.get_model_parallel_group())
    return float(sq) ** 0.5


def log_line(
    iteration: int,
    total: int,
    consumed: int,
    elapsed_s: float,
    lr: float,
    global_batch: int,
    loss: float,
    norm: float,
    skipped: int = 0,
    nan: int = 0,
    load_balancing_loss: float | None = None,
) -> str:
    """Megatron's ``training_log`` line (core_r0.8+, as MindSpeed-LLM 2.x prints it; fp32: loss scale 1.0)."""
    s = f" [{datetime.now().strftime('%Y-%m-%d %H:%M:%S')}]"
    s += f" iteration {iteration:8d}/{total:8d} |"
    s += f" consumed samples: {consumed:12d} |"
    s += f" elapsed time per iteration (ms): {elapsed_s * 1000.0:.1f} |"
    s += f" learning rate: {lr:.6E} |"
    s += f" global batch size: {global_batch:5d} |"
    if loss > 0.0:  # Megatron prints a loss only when its average is positive
        s += f" lm loss: {loss:.6E} |"
    if load_balancing_loss is not None and load_balancing_loss > 0.0:  # track_moe_metrics' entry, after lm loss
        s += f" load_balancing_loss: {load_balancing_loss:.6E} |"
    s += f" loss scale: {1.0:.1f} |"
    s += f" grad norm: {norm:.3f} |"
    s += f" number of skipped iterations: {skipped:3d} |"
    s += f" number of nan iterations: {nan:3d} |"
    return s


def _build(job: RankJob) -> tuple[torch.nn.Module, object]:
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    # Megatron's _set_random_seed: seed + 100 * pp_rank, alike on every TP rank (replicated LoRA A agrees)
    torch.manual_seed(job.cfg.seed + 100 * pp_rank)
    path = mcore_fmt.McoreLayout(job.mcore_dir).file(tp_rank, pp_rank)
    ckpt = mcore_fmt.load_rank_file(path)
    args = ckpt.get("args")
    if lora_in(ckpt["model"]):
        raise TunebridgeError(
            f"{path}: the base checkpoint already carries LoRA tensors; pass the converted base "
            f"and the adapter as init_adapter"
        )
    model = build_gpt(
        job.spec,
        job.tp,
        job.pp,
        job.num_layer_list,
        getattr(args, "make_vocab_size_divisible_by", 1) or 1,
        moe_aux_loss_coeff=job.cfg.moe_aux_loss_coeff,
    )
    _load_strict(model, ckpt["model"], path)
    if job.lora_modules:
        apply_lora(model, job.lora_modules, job.lora_rank, job.lora_alpha)
        if job.init_lora_dir:
            _load_lora(model, mcore_fmt.McoreLayout(job.init_lora_dir).file(tp_rank, pp_rank))
    return model, args


def _save(job: RankJob, model: torch.nn.Module, base_args, steps: int) -> None:
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    cfg = job.cfg
    args = mcore_fmt.make_args(
        job.spec,
        job.tp,
        job.pp,
        job.num_layer_list,
        getattr(base_args, "make_vocab_size_divisible_by", 1) or 1,
        torch.float32,
    )
    args.iteration, args.train_iters = steps, steps
    args.global_batch_size, args.micro_batch_size = cfg.global_batch_size, cfg.micro_batch_size
    args.lr, args.min_lr, args.seed = cfg.lr, cfg.min_lr, cfg.seed
    if job.lora_modules:
        args.lora_r, args.lora_alpha, args.lora_target_modules = job.lora_rank, job.lora_alpha, job.lora_modules
        args.lora_fusion = True
    state = {k: v.detach().clone() for k, v in model_state_dict(model).items()}
    root = Path(job.checkpoint_dir)
    mcore_fmt.write_rank(root, tp_rank, pp_rank, job.pp, state, args, iteration=steps)
    torch.distributed.barrier()
    if torch.distributed.get_rank() == 0:
        mcore_fmt.write_latest(root, steps)


def _configure_schedule(model: GPTModel, cfg: TrainConfig) -> None:
    config = model.config
    config.batch_p2p_comm = False  # plain isend/irecv: what gloo surely supports
    config.variable_seq_lengths = True  # micro-batches are padded to their own longest sample
    config.calculate_per_token_loss = cfg.loss_average == "token"
    for module in model.modules():  # the routers read it when built, as Megatron builds them from its arguments
        if isinstance(module, TopKRouter):
            module.calculate_per_token_loss = config.calculate_per_token_loss
    config.finalize_model_grads_func = None  # dp = 1: nothing to reduce; per-token scaling is done below
    config.timers = None


def _loss(mask: torch.Tensor, per_token: bool, losses: torch.Tensor):
    """MindSpeed-LLM's loss_func: token mean of the micro-batch (or its sum and count, per-token loss).
    The reports are copies: the schedule divides the returned loss in place."""
    loss_sum = (losses.float() * mask).sum()
    n = mask.sum()
    if per_token:
        return loss_sum, n.int(), {"lm loss": torch.stack([loss_sum.detach(), n]).clone()}
    mean = loss_sum / n.clamp(min=1)
    return mean, {"lm loss": mean.detach().clone()}


def _forward_step(per_token: bool, data_iterator, model):
    tokens, labels, mask = next(data_iterator)
    b, s = tokens.shape
    out = model(tokens, torch.arange(s).expand(b, s), causal_mask(s), labels=labels)
    return out, partial(_loss, mask, per_token)


def _reported(store: list[dict], per_token: bool) -> float:
    """The step's ``lm loss`` from the last stage's per-micro-batch reports (0.0 on other stages)."""
    if not store:
        return 0.0
    if per_token:
        total = torch.stack([d["lm loss"] for d in store]).sum(0)
        return float(total[0] / total[1].clamp(min=1))
    return float(sum(d["lm loss"] for d in store)) / len(store)


def _load_balancing_loss(job: RankJob, num_microbatches: int) -> float | None:
    """Megatron's logged ``load_balancing_loss`` of the step (``track_moe_metrics``: the routers' aux / coeff,
    per layer summed over the micro-batches and the pipeline stages, over MoE layers and micro-batches), read
    from megatron-core's own tracker and cleared; None without the loss."""
    if not job.cfg.moe_aux_loss_coeff:
        return None
    entry = get_moe_layer_wise_logging_tracker().get("load_balancing_loss")
    values = entry["values"].clone() if entry else torch.zeros(job.spec.num_layers)
    torch.distributed.all_reduce(values, group=parallel_state.get_pipeline_model_parallel_group())
    clear_aux_losses_tracker()
    return float(values.sum()) / job.spec.num_layers / num_microbatches


def train_rank(job: RankJob) -> dict:
    """Train this rank's shard (inside :func:`tunebridge.backends.mindspeed_llm.megatron.launch.run`) with megatron-core's own
    forward-backward schedule (1F1B across pipeline stages when pp > 1); the last rank's answer carries
    the loss curve."""
    cfg = job.cfg
    per_token = cfg.loss_average == "token"
    model, base_args = _build(job)
    _configure_schedule(model, cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_adamw(_param_groups(model), cfg)
    schedule = Schedule(cfg.lr, cfg.min_lr, len(job.batches), cfg.warmup_ratio, cfg.lr_schedule, cfg.warmup_rounding)
    data = InstructionData(job.data_prefix)
    forward_backward = get_forward_backward_func()
    last_rank = torch.distributed.get_rank() == torch.distributed.get_world_size() - 1
    steps, times = [], []
    model.train()
    log = open(job.log_path, "a", encoding="utf-8") if last_rank else None
    try:
        for k, batch in enumerate(job.batches):
            t0 = time.perf_counter()
            micro = [data.micro_batch(mb, cfg.pad_id) for mb in micro_batches(batch, cfg.micro_batch_size)]
            n_tokens = int(sum(m.sum() for _, _, m in micro))
            lr = schedule.lr_at(k)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with pipeline_schedule_on_cpu():
                store = forward_backward(
                    forward_step_func=partial(_forward_step, per_token),
                    data_iterator=iter(micro),
                    model=[model],
                    num_microbatches=len(micro),
                    seq_length=max(t.shape[1] for t, _, _ in micro),
                    micro_batch_size=cfg.micro_batch_size,
                    forward_only=False,
                )
            if per_token:  # what finalize_model_grads does with the global token count
                for p in params:
                    if p.grad is not None:
                        p.grad.div_(max(n_tokens, 1))
            reported = _reported(store, per_token)
            balance = _load_balancing_loss(job, len(micro))
            norm = grad_norm(params)
            if cfg.clip_grad > 0 and (coeff := cfg.clip_grad / (norm + 1e-6)) < 1.0:
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(coeff)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0
            times.append(elapsed)
            step = dict(
                step=k + 1, loss=reported, lr=lr, grad_norm=norm, tokens=n_tokens, loss_scale=1.0, skipped=False
            )
            steps.append(step if balance is None else {**step, "load_balancing_loss": balance})
            if log:
                line = log_line(
                    k + 1,
                    len(job.batches),
                    (k + 1) * cfg.global_batch_size,
                    elapsed,
                    schedule.lr_at(k + 1),
                    cfg.global_batch_size,
                    reported,
                    norm,
                    nan=int(not math.isfinite(reported)),
                    load_balancing_loss=balance,
                )
                log.write(line + "\n")
                log.flush()
                if job.echo:
                    print(line, flush=True)
    finally:
        if log:
            log.close()
    _save(job, model, base_args, len(job.batches))
    instantiated = list(model.parameters())
    return {
        "steps": steps,
        "step_times": times,
        "trainable_once": sum(p.numel() for p in params if _counted_once(p)),
        "total_once": sum(p.numel() for p in instantiated if _counted_once(p)),
        "trainable_rank": sum(p.numel() for p in params),
        "tp_rank": parallel_state.get_tensor_model_parallel_rank(),
        "pp_rank": parallel_state.get_pipeline_model_parallel_rank(),
    }
