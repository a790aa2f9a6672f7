"""Fine-tuning with MindFormers' own LlamaForCausalLM (+ pet_config LoRA) on MindSpore CPU (runs in .venv-mindspore).

The step follows MindFormers' ``MFTrainOneStepCell`` (scale_sense 1, ``use_clip_grad``): the loss of a micro-batch
is the model's own (token mean over supervised positions); gradients of the micro-batches of a global batch are
accumulated as the sum of grad(loss_i) / n_micro; MindFormers' ``ClipGradNorm`` clips them by global norm and
returns the pre-clip norm; then the optimizer steps. Sample order comes from the caller (``batches``).

Semantics chosen, with the sources they come from (mindformers 1.9.0, mindspore 2.9.0):

* ``LlamaForCausalLM`` drops every position whose *input* token equals ``pad_token_id`` from the loss and from
  the attention keys (``LowerTriangularMaskWithDynamic``). The model is built with ``pad_token_id=-1``, an id that
  cannot occur, so exactly the positions whose shifted label is not -100 are supervised, and attention is plainly
  causal (rows are right-padded, so real positions never see padding).
* ``adam_bias_correction=True`` uses MindFormers' ``AdamW``: ``p(1 - lr*wd) - lr/(1-b1^t) * m / (sqrt(v/(1-b2^t))
  + eps)``, torch's AdamW. ``False`` uses ``mindspore.nn.AdamWeightDecay`` (its fused CPU kernel):
  ``p - lr*(m / (sqrt(v) + eps) + wd*p)``, no bias correction -- the update of the seeds'
  ``FP32StateAdamWeightDecay``, a subclass with float32 moments that MindFormers 1.9.0 no longer registers.
  Both decay decoupled from the gradient, with eps outside the square root. Weight-decay groups are MindFormers'
  own (``get_optimizer_grouped_parameters``: no decay on 1-D or bias tensors).
* Cosine schedules with MindFormers' warm-up rounding run on MindFormers' ``CosineWithWarmUpLR``; every other
  schedule is handed to the optimizer as the per-step list of ``Schedule.lr_at``.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..dialects.hf import PEFT_TARGET
from ..dialects.mindformers import pet_target_regex
from ..errors import TunebridgeError
from ..models import ModelSpec
from ..train.config import TrainConfig
from ..train.schedule import Schedule
from . import model as ms_model

IGNORE = -100
NO_PAD = -1  # pad_token_id that no input id equals: see the module docstring
LOG_NAME = "worker_0.log"
_PEFT_TO_PROJECTION = {v: k for k, v in PEFT_TARGET.items()}


def read_rows(path: str) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and labels of every row, in file order, as MindFormers' loader (MindDataset) yields them."""
    import mindspore.dataset as ds
    if not Path(path).exists():
        raise TunebridgeError(f"{path}: no such MindRecord file")
    data = ds.MindDataset(path, columns_list=["input_ids", "labels"], shuffle=False)
    ids, labels = [], []
    for row in data.create_dict_iterator(output_numpy=True):
        ids.append(row["input_ids"])
        labels.append(row["labels"])
    if not ids:
        raise TunebridgeError(f"{path}: no rows")
    if len({len(r) for r in ids}) != 1:
        raise TunebridgeError(f"{path}: rows of different lengths; MindFormers needs seq_length + 1 ids per row")
    return np.stack(ids).astype(np.int32), np.stack(labels).astype(np.int32)


def pet_config(lora: dict) -> dict:
    """MindFormers' pet_config for TrainConfig.lora (PEFT module names such as o_proj, down_proj)."""
    unknown = [t for t in lora["target_modules"] if t not in _PEFT_TO_PROJECTION]
    if unknown:
        raise TunebridgeError(f"lora.target_modules: {unknown} are not Llama projections "
                              f"(known: {', '.join(_PEFT_TO_PROJECTION)})")
    return {"pet_type": "lora", "lora_rank": int(lora["rank"]), "lora_alpha": float(lora["alpha"]),
            "lora_dropout": float(lora["dropout"]),
            "target_modules": pet_target_regex([_PEFT_TO_PROJECTION[t] for t in lora["target_modules"]])}


def learning_rate(cfg: TrainConfig, steps: int):
    """(what the optimizer is given, the rate of each update, which source it is)."""
    import mindspore as ms
    if cfg.lr_schedule == "cosine" and cfg.warmup_rounding == "mindformers":
        from mindformers.core.lr import CosineWithWarmUpLR
        cell = CosineWithWarmUpLR(learning_rate=float(cfg.lr), warmup_ratio=float(cfg.warmup_ratio),
                                  total_steps=steps, lr_end=float(cfg.min_lr))
        rates = [float(cell(ms.Tensor(k, ms.int32)).asnumpy()) for k in range(steps)]
        return cell, rates, "mindformers.core.lr.CosineWithWarmUpLR"
    schedule = Schedule(cfg.lr, cfg.min_lr, steps, cfg.warmup_ratio, cfg.lr_schedule, cfg.warmup_rounding)
    rates = [float(np.float32(schedule.lr_at(k))) for k in range(steps)]
    return rates, rates, f"Schedule({cfg.lr_schedule}, warmup rounding {cfg.warmup_rounding}) as a per-step list"


def optimizer(model, cfg: TrainConfig, lr):
    """(optimizer, its name) over MindFormers' weight-decay groups of the trainable parameters."""
    from mindformers.trainer.optimizer_grouped_parameters import get_optimizer_grouped_parameters
    groups = get_optimizer_grouped_parameters(model=model, weight_decay=float(cfg.weight_decay))
    if cfg.adam_bias_correction:
        from mindformers.core.optim import AdamW
        return (AdamW(groups, learning_rate=lr, betas=(float(cfg.beta1), float(cfg.beta2)), eps=float(cfg.eps),
                      weight_decay=float(cfg.weight_decay)), "mindformers.core.optim.AdamW")
    from mindspore import nn
    return (nn.AdamWeightDecay(groups, learning_rate=lr, beta1=float(cfg.beta1), beta2=float(cfg.beta2),
                               eps=float(cfg.eps), weight_decay=float(cfg.weight_decay)),
            "mindspore.nn.AdamWeightDecay")


def _check_adapter_config(path: Path, pet: dict | None) -> None:
    """The start adapter's rank and alpha (tunebridge's pet_config or MindFormers' PEFT-style file) equal the run's."""
    if pet is None:
        raise TunebridgeError(f"{path.parent}: a LoRA start adapter was given, but the run has no lora config")
    if not path.exists():
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    rank, alpha = saved.get("lora_rank", saved.get("r")), saved.get("lora_alpha")
    if (rank is not None and int(rank) != pet["lora_rank"]) or (alpha is not None and float(alpha) != pet["lora_alpha"]):
        raise TunebridgeError(f"{path}: adapter has rank {rank}, alpha {alpha}; the run has lora rank "
                              f"{pet['lora_rank']}, alpha {pet['lora_alpha']}")


def load_weights(model, weights_ckpt: str, init_adapter_ckpt: str | None, pet: dict | None = None) -> None:
    """Base weights (every base parameter must load) and, if given, a LoRA start (every LoRA parameter)."""
    import mindspore as ms
    if not Path(weights_ckpt).is_file():
        raise TunebridgeError(f"{weights_ckpt}: no such MindFormers checkpoint")
    trainable = {p.name for p in model.trainable_params()}
    lora = {n for n in trainable if ".mindpet_delta_lora_" in n}
    not_loaded, unused = ms.load_param_into_net(model, ms.load_checkpoint(weights_ckpt))
    missing = sorted(set(not_loaded) - lora)
    if missing or unused:
        raise TunebridgeError(f"{weights_ckpt}: parameters not loaded {missing[:5]}, unused tensors {sorted(unused)[:5]}")
    if init_adapter_ckpt:
        path = Path(init_adapter_ckpt)
        path = path / "lora.ckpt" if path.is_dir() else path
        if not path.is_file():
            raise TunebridgeError(f"{init_adapter_ckpt}: no LoRA checkpoint")
        _check_adapter_config(path.parent / "adapter_config.json", pet)
        adapter = ms.load_checkpoint(str(path))
        shapes = {p.name: tuple(p.shape) for p in model.trainable_params()}
        if set(adapter) != lora:
            raise TunebridgeError(f"{path}: LoRA tensors {sorted(set(adapter) ^ lora)[:4]} do not match the model's "
                                  f"pet_config (missing or extra)")
        bad = [n for n, t in adapter.items() if tuple(t.shape) != shapes[n]]
        if bad:
            raise TunebridgeError(f"{path}: {bad[0]} has shape {list(adapter[bad[0]].shape)}, the model needs "
                                  f"{list(shapes[bad[0]])} (LoRA rank differs?)")
        ms.load_param_into_net(model, adapter, strict_load=True)


class LossLog:
    """MindFormers' own MFLossMonitor, fed what MFTrainOneStepCell returns, writing to the worker log.

    The lines go through MindFormers' logger with its stdout format (what msrun captures into worker_*.log),
    as with ``runner_config.sink_mode: True, sink_size: 1`` (one line per step).
    """

    def __init__(self, path: Path, total_steps: int, steps_per_epoch: int, global_batch_size: int, network):
        import logging
        from mindformers.core.callback import MFLossMonitor
        from mindformers.tools.logger import DEFAULT_STDOUT_FORMAT, _DataFormatter, get_logger
        from mindspore.train.callback import RunContext, _InternalCallbackParam
        self._logger = get_logger()
        self._handler = logging.FileHandler(path, encoding="utf-8")
        self._handler.setFormatter(_DataFormatter(DEFAULT_STDOUT_FORMAT))
        self._logger.addHandler(self._handler)
        epochs = math.ceil(total_steps / steps_per_epoch)
        self._monitor = MFLossMonitor(origin_epochs=epochs, dataset_size=steps_per_epoch,
                                      global_batch_size=global_batch_size)
        self._params = _InternalCallbackParam()
        self._params.update(mode="train", train_network=network, network=network, optimizer=None,
                            dataset_sink_mode=True, batch_num=1, cur_step_num=0, cur_epoch_num=1, epoch_num=epochs)
        self._context = RunContext(self._params)
        self._monitor.on_train_epoch_begin(self._context)
        self._steps_per_epoch = steps_per_epoch

    def begin(self, step: int) -> None:
        self._params.cur_step_num = step
        self._params.cur_epoch_num = (step - 1) // self._steps_per_epoch + 1
        self._monitor.on_train_step_begin(self._context)

    def end(self, loss: float, lr: float, global_norm) -> None:
        import mindspore as ms
        self._params.net_outputs = (ms.Tensor(np.float32(loss)), ms.Tensor(False), ms.Tensor(np.float32(1.0)),
                                    ms.Tensor(np.float32(lr)), global_norm)
        self._monitor.on_train_step_end(self._context)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()


def _step_cells(model, opt, clip_grad: float, n_micro: int):
    """(micro-batch cell, update cell), each compiled once: the first runs forward and backward of a micro-batch
    and adds grad / n_micro into accumulation buffers, the second clips the sum by global norm, steps the
    optimizer, clears the buffers and returns the pre-clip global norm."""
    import mindspore as ms
    from mindspore import nn, ops
    from mindformers.core.clip_grad import ClipGradNorm

    class MicroStep(nn.Cell):
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.grad_fn = ms.value_and_grad(model, None, opt.parameters)
            self.accumulated = opt.parameters.clone(prefix="accu_grads", init="zeros")
            self.inv = ms.Tensor(1.0 / n_micro, ms.float32)

        @ms.jit
        def construct(self, ids, labels):
            loss, grads = self.grad_fn(ids, labels)
            for acc, g in zip(self.accumulated, grads):
                ops.assign_add(acc, g * self.inv)
            return loss

    class Update(nn.Cell):
        def __init__(self, accumulated):
            super().__init__(auto_prefix=False)
            self.accumulated = accumulated
            self.clip = ClipGradNorm(max_norm=clip_grad) if clip_grad > 0 else None
            self.opt = opt

        @ms.jit
        def construct(self):
            grads = tuple(ops.depend(a.value(), a) for a in self.accumulated)
            if self.clip is not None:
                grads, norm = self.clip(grads)
            else:
                norm = ops.sqrt(ops.addn([ops.sum(ops.square(g)).reshape((1,)) for g in grads]))
            done = self.opt(grads)
            for a in self.accumulated:
                ops.assign(a, ops.depend(ops.zeros_like(a), done))
            return norm

    micro = MicroStep()
    return micro, Update(micro.accumulated)


def _save_trainable(model, out: Path, pet: dict | None, prefix: str, epoch: int, step_in_epoch: int) -> Path:
    """Trainable parameters as CheckpointMonitor(save_trainable_params=True) names them; with LoRA, tunebridge's
    pet_config beside them (tunebridge.adapters.read_mindformers reads lora_rank / lora_alpha from it)."""
    import mindspore as ms
    directory = out / "checkpoint_trainable" / "rank_0"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{prefix}_rank_0-trainable_params-{epoch}_{step_in_epoch}.ckpt"
    ms.save_checkpoint([{"name": p.name, "data": ms.Tensor(p.asnumpy())} for p in model.trainable_params()],
                       str(path))
    if pet:
        (directory / "adapter_config.json").write_text(json.dumps(pet, indent=2) + "\n", encoding="utf-8")
    return path


def _scalar(t) -> float:
    return float(t.asnumpy().reshape(-1)[0])


def _progress(step: int, total: int, loss: float, seconds: float, enabled: bool) -> None:
    if enabled:
        print(f"mindformers train step {step}/{total} loss {loss:.6f} ({seconds:.3f} s)", file=sys.stderr, flush=True)


def train(spec: dict, weights_ckpt: str, data_mindrecord: str, batches: list[list[int]], cfg: dict, out: str,
          init_adapter_ckpt: str | None = None, progress: bool = True) -> dict:
    """Train with MindFormers' LlamaForCausalLM; returns the fields of a RunResult (backend "mindformers")."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # MindFormers' output root (./output by default): its logs, adapter_config.json (get_pet_model) land in out.
    os.environ["LOCAL_DEFAULT_PATH"] = str(out.resolve())
    import mindformers
    import mindspore as ms
    cfg = TrainConfig(**cfg)
    if cfg.dtype != "fp32":
        raise TunebridgeError(f"dtype {cfg.dtype!r}: the MindFormers backend runs fp32 only (CPU)")
    if not batches:
        raise TunebridgeError("no steps to run (batches is empty)")
    ids, labels = read_rows(data_mindrecord)
    rows, width = ids.shape
    bad = sorted({i for b in batches for i in b if not 0 <= i < rows})
    if bad:
        raise TunebridgeError(f"{data_mindrecord}: has {rows} rows, batches name rows {bad[:5]}")
    mbs = cfg.micro_batch_size
    if any(len(b) % mbs for b in batches):
        raise TunebridgeError(f"a global batch is not a multiple of micro_batch_size {mbs}")

    ms.set_seed(cfg.seed)
    pet = pet_config(cfg.lora) if cfg.lora else None
    model = ms_model.build(ModelSpec(**spec).to_dict(), pet, seq_length=width - 1, batch_size=mbs,
                           pad_token_id=NO_PAD)
    load_weights(model, weights_ckpt, init_adapter_ckpt, pet)
    model.set_train(True)

    steps = len(batches)
    lr, rates, lr_source = learning_rate(cfg, steps)
    opt, opt_name = optimizer(model, cfg, lr)
    trainable = sum(int(np.prod(p.shape)) for p in opt.parameters)
    total = sum(int(np.prod(p.shape)) for p in model.get_parameters())
    n_micro = len(batches[0]) // mbs
    micro, update = _step_cells(model, opt, cfg.clip_grad, n_micro)
    steps_per_epoch = max(rows // cfg.global_batch_size, 1)
    log = LossLog(out / LOG_NAME, steps, steps_per_epoch, cfg.global_batch_size, model)

    records, step_times = [], []
    try:
        for k, batch in enumerate(batches):
            t0 = time.perf_counter()
            log.begin(k + 1)
            parts = [batch[i:i + mbs] for i in range(0, len(batch), mbs)]  # order.micro_batches, rank 0 of 1
            if len(parts) != n_micro:
                raise TunebridgeError(f"step {k + 1}: {len(parts)} micro-batches, step 1 had {n_micro}")
            losses = [_scalar(micro(ms.Tensor(ids[part]), ms.Tensor(labels[part]))) for part in parts]
            norm = update()
            step_loss = sum(losses) / n_micro
            tokens = int((labels[batch][:, 1:] != IGNORE).sum())
            grad_norm = _scalar(norm)
            log.end(step_loss, rates[k], norm if cfg.clip_grad > 0 else None)
            step_times.append(time.perf_counter() - t0)
            records.append({"step": k + 1, "loss": step_loss, "lr": rates[k], "grad_norm": grad_norm,
                            "tokens": tokens, "loss_scale": 1.0, "skipped": False})
            _progress(k + 1, steps, step_loss, step_times[-1], progress)
    finally:
        log.close()

    checkpoint = _save_trainable(model, out, pet, ModelSpec(**spec).name, (steps - 1) // steps_per_epoch + 1,
                                 (steps - 1) % steps_per_epoch + 1)
    pad_id_hits = int(sum(((ids[b][:, :-1] == cfg.pad_id) & (labels[b][:, 1:] != IGNORE)).sum() for b in batches))
    notes = [
        f"optimizer {opt_name} (adam_bias_correction={cfg.adam_bias_correction}); weight decay groups from "
        f"MindFormers' get_optimizer_grouped_parameters",
        f"learning rate from {lr_source}",
        f"LlamaConfig.pad_token_id={NO_PAD}: loss over exactly the positions whose shifted label != -100, plain "
        f"causal attention; pad_token_id={cfg.pad_id} (the data's pad id) would have dropped {pad_id_hits} "
        f"supervised positions (input token == pad id) from this run's loss and those tokens from attention",
        "global_norm is the pre-clip norm from MindFormers' ClipGradNorm, whose clip factor is "
        "clip / (max(norm, clip) + 1e-6) (scales by 1 - 1e-6 even when not clipping)",
        f"step 1 includes compiling the micro-batch and update cells (ms.jit): {step_times[0]:.2f} s; "
        f"step_time_s is the mean of steps 2..{steps}",
    ]
    if pet and pet["lora_dropout"] > 0:
        notes.append(f"lora_dropout {pet['lora_dropout']}: MindSpore's dropout masks differ from torch's, so curves "
                     f"agree only statistically")
    steady = step_times[1:] or step_times
    return {"backend": "mindformers", "steps": records, "trainable_params": trainable, "total_params": total,
            "checkpoints": [str(checkpoint)], "wall_time_s": time.perf_counter() - started,
            "step_time_s": sum(steady) / len(steady),
            "environment": {"mindspore": ms.__version__, "mindformers": mindformers.__version__, "device": "CPU",
                            "mode": "PYNATIVE + ms.jit"},
            "notes": notes}
