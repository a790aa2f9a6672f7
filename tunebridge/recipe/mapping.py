"""One recipe field -> each stack's setting: the table ``tunebridge explain`` prints and the renderers read.

``FIELDS`` lists, per recipe field, the MindFormers YAML key (a dotted path in the finetune config), the
torch backend's ``TrainConfig`` field; the MindSpeed-LLM flags are taken from the renderer's versioned flag
table (``render.mindspeed_llm.FLAGS``, which names the recipe field of each flag), so a flag cannot be
rendered without appearing here. ``NON_EQUIVALENCES`` are the places where the stacks' math differs
for the same setting, with the way a parity run aligns them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldMap:
    recipe: str  # dotted recipe field
    mindformers: str | None  # dotted key in the MindFormers finetune YAML
    torch: str | None  # TrainConfig field (or what the torch backend does)


FIELDS: tuple[FieldMap, ...] = (
    FieldMap("train.seed", "seed", "seed"),
    FieldMap("train.epochs", "runner_config.epochs", "epochs"),
    FieldMap("train.micro_batch_size", "runner_config.batch_size", "micro_batch_size"),
    FieldMap("train.global_batch_size", "runner_config.gradient_accumulation_steps", "global_batch_size"),
    FieldMap("train.loss_average", None, "loss_average"),
    FieldMap("train.seq_length", "model.model_config.seq_length", None),
    FieldMap("train.lr", "lr_schedule.learning_rate", "lr"),
    FieldMap("train.min_lr", "lr_schedule.lr_end", "min_lr"),
    FieldMap("train.lr_schedule", "lr_schedule.type", "lr_schedule"),
    FieldMap("train.warmup_ratio", "lr_schedule.warmup_ratio", "warmup_ratio"),
    FieldMap("train.optimizer.beta1", "optimizer.betas.0", "beta1"),  # AdamW's betas (AdamWeightDecay: beta1)
    FieldMap("train.optimizer.beta2", "optimizer.betas.1", "beta2"),
    FieldMap("train.optimizer.eps", "optimizer.eps", "eps"),
    FieldMap("train.optimizer.weight_decay", "optimizer.weight_decay", "weight_decay"),
    FieldMap("train.clip_grad", "runner_wrapper.max_grad_norm", "clip_grad"),
    FieldMap("train.dtype", "model.model_config.compute_dtype", "dtype"),
    # a mixture of experts only (None: 0.001 there); MindFormers runs no mixture of experts tunebridge renders
    FieldMap("train.moe_aux_loss_coeff", None, "moe_aux_loss_coeff"),
    FieldMap("finetune.lora.rank", "model.model_config.pet_config.lora_rank", "lora.rank"),
    FieldMap("finetune.lora.alpha", "model.model_config.pet_config.lora_alpha", "lora.alpha"),
    FieldMap("finetune.lora.dropout", "model.model_config.pet_config.lora_dropout", "lora.dropout"),
    FieldMap("finetune.lora.targets", "model.model_config.pet_config.target_modules", "lora.target_modules"),
    FieldMap("parallel.tp", "parallel_config.model_parallel", None),
    FieldMap("parallel.pp", "parallel_config.pipeline_stage", None),
    FieldMap("parallel.dp", "parallel_config.data_parallel", None),
    FieldMap("parallel.ep", None, None),  # MindFormers runs no mixture of experts tunebridge renders
    FieldMap("parallel.sequence_parallel", "parallel_config.use_seq_parallel", None),
)


@dataclass(frozen=True)
class NonEquivalence:
    topic: str
    mindformers: str
    mindspeed_llm: str
    torch: str
    alignment: str  # how a parity run makes the stacks agree


NON_EQUIVALENCES: tuple[NonEquivalence, ...] = (
    NonEquivalence(
        "LoRA targets",
        "one (A, B) per projection matched by the pet_config regex (.*wq, .*wk, ...)",
        "one A per fused module: linear_qkv (q, k, v share A), linear_fc1 (gate, up share A); q or v alone "
        "is impossible, and the count is lower at the same rank",
        "PEFT: one (A, B) per projection, like MindFormers",
        "parity runs target o and down (linear_proj, linear_fc2), which every stack expresses exactly; "
        "`tunebridge params` reports exact: false otherwise",
    ),
    NonEquivalence(
        "Adam bias correction",
        "AdamW (MindFormers 1.9's, rendered by default): bias-corrected; AdamWeightDecay and the seeds' "
        "FP32StateAdamWeightDecay (gone in 1.9.0): none, m / (sqrt(v) + eps) from step 1",
        "torch AdamW semantics (Megatron's fallback without apex/TE): bias-corrected",
        "torch.optim.AdamW: bias-corrected",
        "train.optimizer.bias_correction sets every backend (false: tunebridge's AdamWNoBiasCorrection on torch "
        "and megatron-core, AdamWeightDecay on MindFormers); an uncorrected MindFormers run against corrected "
        "ones parts from step 2",
    ),
    NonEquivalence(
        "weight-decay groups",
        "no decay on 1-D tensors and biases (get_optimizer_grouped_parameters)",
        "no decay on biases and 1-D tensors (Megatron's param groups)",
        "the same grouping (tunebridge's make_adamw)",
        "equal by construction; LoRA matrices are 2-D, so LoRA runs decay every trainable tensor",
    ),
    NonEquivalence(
        "loss averaging",
        "one card: the global batch is one pass (MindFormers ignores gradient_accumulation_steps outside "
        "semi-auto-parallel), its loss the token mean over all its rows; several cards: the token mean of each "
        "micro-batch averaged (calculate_per_token_loss: over all tokens); positions whose input == pad_token_id are "
        "masked too",
        "token mean of each micro-batch, averaged over micro-batches and DP ranks "
        "(--calculate-per-token-loss: over all tokens)",
        "as MindSpeed-LLM (loss_average: micro-batch); 'token' averages over the global batch",
        "train.loss_average: token sets every stack to the global batch's token mean (parity recipes); the "
        "rendered pad_token_id is the data's pad id, a token the templates never produce",
    ),
    NonEquivalence(
        "warm-up length",
        "CosineWithWarmUpLR: int(total_steps * warmup_ratio) whole steps",
        "--lr-warmup-fraction * train_iters, kept fractional",
        "follows warmup_rounding (megatron by default)",
        "parity runs use one rounding for every backend (20 steps x 0.1 = 2 steps in both)",
    ),
    NonEquivalence(
        "'Network Parameters' line",
        "trainable parameters floored to whole millions (`Network Parameters: 3 M.` for 3,407,872)",
        "per-rank counts in the log (`number of parameters on (tensor, pipeline) model parallel rank`)",
        "PEFT print_trainable_parameters: trainable % of base + adapter",
        "compare exact counts: `tunebridge params` (base-model denominator for the contest ratio)",
    ),
    NonEquivalence(
        "optimizer state dtype",
        "AdamW keeps m and v in fp32; AdamWeightDecay keeps them in the parameter dtype",
        "fp32 main params and moments under --bf16 (distributed optimizer or not)",
        "AdamW state in the parameter dtype (bf16 states under dtype bf16)",
        "parity runs are fp32, where all three keep fp32 state",
    ),
    NonEquivalence(
        "MoE load-balancing loss",
        "- (MindFormers 1.9.0 runs no Qwen3-MoE tunebridge renders)",
        "Megatron's Switch loss per MoE layer, E x coeff / (k T^2) x sum_i P_i f_i over a micro-batch's tokens, "
        "added to the gradient, not to lm loss (--moe-router-load-balancing-type aux_loss --moe-aux-loss-coeff, "
        "from train.moe_aux_loss_coeff; MindSpeed-LLM's router patch calls Megatron's own for aux_loss); "
        "generation and evaluation route softmax_topk",
        "transformers' Qwen3-MoE load_balancing_loss_func is another formula (layers pooled, no 1 / k, added into "
        "loss with output_router_logits): tunebridge never uses it and adds Megatron's per layer from the router "
        "logits (train/moe_aux.py)",
        "the same objective on torch and megatron-core (the recipe's coefficient, default 0.001 as MindSpeed-LLM's "
        "qwen3_moe scripts), the LM loss logged apart and load_balancing_loss as Megatron logs it; at 0.05 both "
        "train the same curve within 1.4e-7 relative",
    ),
    NonEquivalence(
        "LoRA initialisation",
        "A ~ normal (MindFormers' default lora_a_init), B = 0",
        "A kaiming-uniform (PEFT's), B = 0",
        "A kaiming-uniform, B = 0",
        "parity runs start every backend from one PEFT adapter converted to each stack's format",
    ),
)


def flags_for(recipe_field: str, version: str | None = None) -> list[str]:
    """MindSpeed-LLM flags rendered from ``recipe_field`` (from the renderer's flag table)."""
    from ..backends.mindspeed_llm.render import DEFAULT_VERSION, FLAGS

    version = version or DEFAULT_VERSION
    return list(
        dict.fromkeys(
            f.flag
            for f in FLAGS
            if version in f.versions and recipe_field in (part.strip() for part in f.recipe_field.split("/"))
        )
    )


def get_path(config: dict, dotted: str):
    """The value at a dotted key path of a nested dict (a number indexes a list)."""
    value = config
    for key in dotted.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value
