"""What every backend's trainer is told: one framework-neutral training configuration.

No framework is imported here, so the MindSpore environment can rebuild it from JSON
(:meth:`TrainConfig.to_dict` / ``TrainConfig(**d)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from ..backends.stacks import get_stack


@dataclass(frozen=True)
class TrainConfig:
    global_batch_size: int
    micro_batch_size: int
    lr: float
    min_lr: float = 0.0
    lr_schedule: str = "cosine"
    warmup_ratio: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    seed: int = 0
    dtype: str = "fp32"
    epochs: int = 1
    max_steps: int | None = None
    save_every: int = 0  # checkpoint every N steps (0: only at the end)
    pad_id: int = 0
    loss_average: Literal["micro-batch", "token"] = "micro-batch"
    warmup_rounding: Literal["megatron", "mindformers"] = "megatron"
    adam_bias_correction: bool = True  # MindSpore's AdamWeightDecay family has none
    lora: dict | None = None  # {"rank", "alpha", "dropout", "target_modules"} or None for full tuning
    moe_aux_loss_coeff: float = 0.0  # a mixture of experts: Megatron's load-balancing loss weight (train.moe_aux)

    @classmethod
    def from_recipe(cls, recipe, backend: str = "torch", **overrides) -> TrainConfig:
        """The recipe as ``backend`` runs it: settings the recipe leaves open take that stack's own convention."""
        from ..recipe.schema import moe_aux_loss_coeff

        t = recipe.train
        native = get_stack(backend).defaults
        lora = None
        if recipe.finetune.method == "lora":
            from ..model.accounting import expand_targets
            from ..model.dialects.hf import PEFT_PARAMETER, PEFT_TARGET

            lc = recipe.finetune.lora
            adapted = recipe.spec.adapted(expand_targets(list(lc.targets)))
            lora = {
                "rank": lc.rank,
                "alpha": lc.alpha,
                "dropout": lc.dropout,
                "target_modules": [PEFT_TARGET[t] for t in adapted if t in PEFT_TARGET],
                # a mixture of experts' fused expert tensors (gate and up share one: LoRA on either adapts both)
                "target_parameters": list(dict.fromkeys(PEFT_PARAMETER[t] for t in adapted if t in PEFT_PARAMETER)),
            }
        values = dict(
            global_batch_size=t.global_batch_size,
            micro_batch_size=t.micro_batch_size,
            lr=t.lr,
            min_lr=t.min_lr,
            lr_schedule=t.lr_schedule,
            warmup_ratio=t.warmup_ratio,
            beta1=t.optimizer.beta1,
            beta2=t.optimizer.beta2,
            eps=t.optimizer.eps,
            weight_decay=t.optimizer.weight_decay,
            clip_grad=t.clip_grad,
            seed=t.seed,
            dtype=t.dtype,
            epochs=t.epochs,
            max_steps=t.max_steps,
            lora=lora,
            adam_bias_correction=(
                native.adam_bias_correction if t.optimizer.bias_correction is None else t.optimizer.bias_correction
            ),
            warmup_rounding=t.warmup_rounding or native.warmup_rounding,
            loss_average=t.loss_average or native.loss_average,
            moe_aux_loss_coeff=moe_aux_loss_coeff(recipe),
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)
