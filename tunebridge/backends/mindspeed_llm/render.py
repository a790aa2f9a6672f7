"""MindSpeed-LLM launch artifacts: one versioned flag table, rendered into the stack's shell scripts.

Every flag the renderer emits comes from ``FLAGS`` (or, for the checkpoint converters, ``_converter_args``); each
entry names the recipe field it reads, so ``tunebridge explain`` and the tests read the same table. Versions:
``2.3.0`` (the release: Megatron-LM core_v0.12.1, MindSpeed 2.3.0_core_r0.12.1) and ``master`` (the same
Megatron, MindSpeed master; ``convert_ckpt.py`` deleted for ``convert_ckpt_v2.py``). Each version's parsers
were recorded by ``scripts/mindspeed_llm/flag_records.py`` (tests/fixtures/mindspeed_llm_flags); a test checks
every rendered flag and entry point against them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from ...data.templates import TEMPLATES, get_template
from ...errors import TunebridgeError
from ...evaluation import protocol_mindspeed_llm as msllm_eval
from ...model.accounting import LoraPlan
from ...model.families import FAMILIES, Converter, keys as config_keys, megatron_keys
from ...model.partition import padded_vocab_size
from ...model.spec import ModelSpec
from ..shell import args_block, assign, fmt_number, q

if TYPE_CHECKING:
    from ...data.readers import MapKey
    from ...recipe.schema import Recipe

# each version, with the tokenizer rules (tunebridge.data.tokenizer, data.tokenizer_rules) that give its
# preprocess_data.py's ids: those of the transformers it pins (2.3.0: 4.57.1; master: 5.2.0)
VERSIONS = {"2.3.0": "transformers-4", "master": "transformers-5"}
DEFAULT_VERSION = "2.3.0"
ALL = frozenset(VERSIONS)


# The values a flag function sees.
@dataclass(frozen=True)
class Context:
    recipe: Recipe
    spec: ModelSpec
    lora: LoraPlan | None
    prompt_type: str


Value = object  # None: omit; True: bare flag; str/int/float: one value; list: several values


# torchrun's launch arguments, as MindSpeed-LLM's own scripts pass them from their environment variables.
DISTRIBUTED_ARGS = args_block(
    "DISTRIBUTED_ARGS",
    [
        '--nproc_per_node "$NPUS_PER_NODE"',
        '--nnodes "$NNODES"',
        '--node_rank "$NODE_RANK"',
        '--master_addr "$MASTER_ADDR"',
        '--master_port "$MASTER_PORT"',
    ],
)


def prompt_type(template: str) -> str:
    """MindSpeed-LLM's --prompt-type for tunebridge's template ``template``: the same name, for its templates only."""
    if get_template(template).stack != "mindspeed-llm":
        own = ", ".join(t.name for t in TEMPLATES.values() if t.stack == "mindspeed-llm")
        raise TunebridgeError(
            f"template {template!r} is MindFormers' (llama_preprocess.py's conversation) and "
            f"MindSpeed-LLM has no --prompt-type {template}: render this recipe for mindformers, or "
            f"give it one of MindSpeed-LLM's templates (data.template: {own})"
        )
    return template


@dataclass(frozen=True)
class Flag:
    flag: str
    value: Callable[[Context], Value]
    group: str
    recipe_field: str = ""
    versions: frozenset = field(default=ALL)


def _t(c: Context):
    return c.recipe.train


def _p(c: Context):
    return c.recipe.parallel


def _lora(c: Context):
    return c.recipe.finetune.lora if c.recipe.finetune.method == "lora" else None


def _moe(c: Context, value: Value) -> Value:
    """``value`` for a mixture of experts, nothing for a dense model."""
    return value if c.spec.num_experts else None


def _aux(c: Context) -> float:
    from ...recipe.schema import moe_aux_loss_coeff

    return moe_aux_loss_coeff(c.recipe)


def _model_rows() -> tuple[Flag, ...]:
    """The architecture's flags: each family's Megatron table spelt as flags (one row per flag of any family, in
    table order; a row renders what the recipe's family table gives for it), then the family's --spec."""
    rows: dict[str, Flag] = {}
    for fam in FAMILIES.values():
        for key in megatron_keys(fam):
            if key.flag is not None:
                flag = key.flag or "--" + key.key.replace("_", "-")
                rows.setdefault(flag, Flag(flag, partial(_model_flag, flag), "GPT_ARGS", "model"))
    return (
        *rows.values(),
        Flag("--spec", lambda c: list(c.spec.family_record.msllm_spec or ()) or None, "GPT_ARGS", "model"),
    )


def _model_flag(flag: str, c: Context) -> Value:
    return dict(config_keys.flags(megatron_keys(c.spec.family_record), c.spec)).get(flag)


FLAGS: tuple[Flag, ...] = (
    # architecture, from the ModelSpec through its family's Megatron table
    *_model_rows(),
    Flag(
        "--max-position-embeddings",
        lambda c: max(c.spec.max_position_embeddings, _t(c).seq_length),
        "GPT_ARGS",
        "model",
    ),
    Flag(
        "--make-vocab-size-divisible-by",
        lambda c: _p(c).make_vocab_size_divisible_by,
        "GPT_ARGS",
        "parallel.make_vocab_size_divisible_by",
    ),
    Flag(
        "--padded-vocab-size",
        lambda c: padded_vocab_size(c.spec.vocab_size, _p(c).tp, _p(c).make_vocab_size_divisible_by),
        "GPT_ARGS",
        "model",
    ),
    Flag("--attention-dropout", lambda c: 0.0, "GPT_ARGS"),
    Flag("--hidden-dropout", lambda c: 0.0, "GPT_ARGS"),
    Flag("--no-masked-softmax-fusion", lambda c: True, "GPT_ARGS"),
    Flag("--attention-softmax-in-fp32", lambda c: True, "GPT_ARGS"),
    Flag("--no-gradient-accumulation-fusion", lambda c: True, "GPT_ARGS"),
    Flag("--tokenizer-type", lambda c: "PretrainedFromHF", "GPT_ARGS", "data.tokenizer"),
    Flag("--tokenizer-name-or-path", lambda c: "$TOKENIZER_PATH", "GPT_ARGS", "data.tokenizer"),
    # parallelism and batch
    Flag("--tensor-model-parallel-size", lambda c: _p(c).tp, "GPT_ARGS", "parallel.tp"),
    Flag("--pipeline-model-parallel-size", lambda c: _p(c).pp, "GPT_ARGS", "parallel.pp"),
    Flag("--expert-model-parallel-size", lambda c: _moe(c, _p(c).ep), "GPT_ARGS", "parallel.ep"),
    Flag(
        "--num-layer-list",
        lambda c: ",".join(map(str, _p(c).num_layer_list)) if _p(c).num_layer_list else None,
        "GPT_ARGS",
        "parallel.num_layer_list",
    ),
    Flag(
        "--sequence-parallel",
        lambda c: (_p(c).sequence_parallel and _p(c).tp > 1) or None,
        "GPT_ARGS",
        "parallel.sequence_parallel",
    ),
    Flag("--seq-length", lambda c: _t(c).seq_length, "GPT_ARGS", "train.seq_length"),
    Flag("--micro-batch-size", lambda c: _t(c).micro_batch_size, "GPT_ARGS", "train.micro_batch_size"),
    Flag("--global-batch-size", lambda c: _t(c).global_batch_size, "GPT_ARGS", "train.global_batch_size"),
    # optimisation
    Flag("--train-iters", lambda c: "$TRAIN_ITERS", "GPT_ARGS", "train.epochs / train.max_steps"),
    Flag("--lr", lambda c: _t(c).lr, "GPT_ARGS", "train.lr"),
    Flag("--min-lr", lambda c: _t(c).min_lr, "GPT_ARGS", "train.min_lr"),
    Flag("--lr-decay-style", lambda c: _t(c).lr_schedule, "GPT_ARGS", "train.lr_schedule"),
    Flag("--lr-warmup-fraction", lambda c: _t(c).warmup_ratio, "GPT_ARGS", "train.warmup_ratio"),
    Flag("--weight-decay", lambda c: _t(c).optimizer.weight_decay, "GPT_ARGS", "train.optimizer.weight_decay"),
    Flag("--adam-beta1", lambda c: _t(c).optimizer.beta1, "GPT_ARGS", "train.optimizer.beta1"),
    Flag("--adam-beta2", lambda c: _t(c).optimizer.beta2, "GPT_ARGS", "train.optimizer.beta2"),
    Flag("--adam-eps", lambda c: _t(c).optimizer.eps, "GPT_ARGS", "train.optimizer.eps"),
    Flag("--clip-grad", lambda c: _t(c).clip_grad, "GPT_ARGS", "train.clip_grad"),
    Flag("--seed", lambda c: _t(c).seed, "GPT_ARGS", "train.seed"),
    Flag("--bf16", lambda c: _t(c).dtype == "bf16" or None, "GPT_ARGS", "train.dtype"),
    Flag("--fp16", lambda c: _t(c).dtype == "fp16" or None, "GPT_ARGS", "train.dtype"),
    Flag("--initial-loss-scale", lambda c: 4096 if _t(c).dtype == "fp16" else None, "GPT_ARGS", "train.dtype"),
    Flag("--no-load-optim", lambda c: True, "GPT_ARGS"),
    Flag("--no-load-rng", lambda c: True, "GPT_ARGS"),
    # fine-tuning
    Flag("--stage", lambda c: "sft", "TUNE_ARGS", "finetune"),
    Flag("--finetune", lambda c: True, "TUNE_ARGS", "finetune"),
    Flag("--is-instruction-dataset", lambda c: True, "TUNE_ARGS", "data"),
    # Megatron core_v0.12.1's validate_args resets --variable-seq-lengths to False; MindSpeed-LLM's finetune
    # feature turns it back on after validation when --no-pad-to-seq-lengths is given (both versions' records)
    Flag("--no-pad-to-seq-lengths", lambda c: True, "TUNE_ARGS", "data"),
    Flag("--prompt-type", lambda c: c.prompt_type, "TUNE_ARGS", "data.template"),
    Flag("--lora-r", lambda c: _lora(c).rank if _lora(c) else None, "TUNE_ARGS", "finetune.lora.rank"),
    Flag("--lora-alpha", lambda c: _lora(c).alpha if _lora(c) else None, "TUNE_ARGS", "finetune.lora.alpha"),
    Flag("--lora-fusion", lambda c: True if _lora(c) else None, "TUNE_ARGS", "finetune.lora"),
    Flag(
        "--lora-target-modules",
        lambda c: list(c.lora.native_targets) if c.lora else None,
        "TUNE_ARGS",
        "finetune.lora.targets",
    ),
    # a mixture of experts' routing in training: the auxiliary load-balancing loss at the recipe's coefficient
    # (by default 0.001, as MindSpeed-LLM's own qwen3_moe tune scripts set it, examples/mcore/qwen3_moe/
    # tune_qwen3_30b_a3b_4K_lora_ptd.sh, 2.3.0 and master; 0: routing type none, Megatron's plain top-k) and
    # the all-to-all dispatcher (whose variable-length check MindSpeed-LLM's TransformerConfig patch lets
    # --no-pad-to-seq-lengths pass)
    Flag(
        "--moe-router-load-balancing-type",
        lambda c: _moe(c, "aux_loss" if _aux(c) > 0 else "none"),
        "TUNE_ARGS",
        "train.moe_aux_loss_coeff",
    ),
    Flag("--moe-aux-loss-coeff", lambda c: _moe(c, _aux(c)), "TUNE_ARGS", "train.moe_aux_loss_coeff"),
    Flag("--moe-token-dispatcher-type", lambda c: _moe(c, "alltoall_seq"), "TUNE_ARGS"),
    # data and output
    Flag("--data-path", lambda c: "$DATA_PATH", "DATA_ARGS", "data"),
    Flag("--split", lambda c: "100,0,0", "DATA_ARGS", "data"),
    Flag("--log-interval", lambda c: 1, "OUTPUT_ARGS"),
    Flag("--save-interval", lambda c: "$TRAIN_ITERS", "OUTPUT_ARGS"),
    Flag("--eval-interval", lambda c: "$TRAIN_ITERS", "OUTPUT_ARGS"),
    Flag("--eval-iters", lambda c: 0, "OUTPUT_ARGS"),
    Flag("--load", lambda c: "$CKPT_LOAD_DIR", "OUTPUT_ARGS"),
    Flag("--save", lambda c: "$CKPT_SAVE_DIR", "OUTPUT_ARGS"),
    # generation and evaluation (inference.py, evaluation.py): the trained LoRA on the base checkpoint
    Flag("--load", lambda c: "$CKPT_LOAD_DIR", "INFER_ARGS"),
    Flag("--lora-load", lambda c: "$CKPT_SAVE_DIR" if _lora(c) else None, "INFER_ARGS", "finetune.lora"),
    Flag("--lora-r", lambda c: _lora(c).rank if _lora(c) else None, "INFER_ARGS", "finetune.lora.rank"),
    Flag("--lora-alpha", lambda c: _lora(c).alpha if _lora(c) else None, "INFER_ARGS", "finetune.lora.alpha"),
    Flag(
        "--lora-target-modules",
        lambda c: list(c.lora.native_targets) if c.lora else None,
        "INFER_ARGS",
        "finetune.lora.targets",
    ),
    Flag("--micro-batch-size", lambda c: 1, "INFER_ARGS"),
    # and in generation and evaluation (generate_/evaluate_qwen3_30b_a3b_ptd.sh): softmax, top-k, renormalised
    # (--norm-topk-prob), no auxiliary loss; the all-gather dispatcher for the base model, but a LoRA on a mixture
    # of experts runs only with alltoall_seq (mindspeed_llm/features_manager/finetune/lora.py, validate_args)
    Flag("--moe-router-load-balancing-type", lambda c: _moe(c, "softmax_topk"), "INFER_ARGS"),
    Flag(
        "--moe-token-dispatcher-type",
        lambda c: _moe(c, "alltoall_seq" if c.lora else "allgather"),
        "INFER_ARGS",
        "finetune.lora",
    ),
    Flag("--exit-on-missing-checkpoint", lambda c: True, "INFER_ARGS"),
    Flag("--task", lambda c: "chat", "GENERATE_ARGS"),
    Flag("--prompt-type", lambda c: c.prompt_type, "GENERATE_ARGS", "data.template"),
    Flag("--max-new-tokens", lambda c: 256, "GENERATE_ARGS"),
    Flag("--task", lambda c: "$TASK", "EVAL_ARGS", "evaluate"),
    Flag("--task-data-path", lambda c: "$EVAL_DATA", "EVAL_ARGS", "evaluate"),
    # evaluation.py's default path, the protocol `eval run --protocol mindspeed-llm` reproduces: no --prompt-type
    # (it would switch to random dev shots in chat turns), the chat-template choice, tokens and batch size as there
    Flag("--no-chat-template", lambda c: not msllm_eval.CHAT_TEMPLATE or None, "EVAL_ARGS", "evaluate"),
    Flag("--max-new-tokens", lambda c: msllm_eval.MAX_NEW_TOKENS, "EVAL_ARGS", "evaluate"),
    Flag("--evaluation-batch-size", lambda c: msllm_eval.BATCH_SIZE, "EVAL_ARGS", "evaluate"),
)

TUNE_GROUPS = ("GPT_ARGS", "DATA_ARGS", "OUTPUT_ARGS", "TUNE_ARGS")
GROUPS = (*TUNE_GROUPS, "INFER_ARGS", "GENERATE_ARGS", "EVAL_ARGS")
# GPT_ARGS flags that only training reads: generation and evaluation leave them out.
TRAINING_ONLY = frozenset(
    {
        "--micro-batch-size",
        "--global-batch-size",
        "--train-iters",
        "--lr",
        "--min-lr",
        "--lr-decay-style",
        "--lr-warmup-fraction",
        "--weight-decay",
        "--adam-beta1",
        "--adam-beta2",
        "--adam-eps",
        "--clip-grad",
        "--initial-loss-scale",
        "--no-load-optim",
        "--no-load-rng",
    }
)


def _render_value(v: object) -> list[str]:
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
        if isinstance(item, str) and item.startswith("$"):
            out.append(f'"{item[0]}{{{item[1:]}}}"')  # a shell variable, expanded inside double quotes
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(fmt_number(item))
        else:
            out.append(q(item))
    return out


def flag_args(ctx: Context, group: str, version: str = DEFAULT_VERSION) -> list[str]:
    """Rendered ``--flag value`` lines of one group for one MindSpeed-LLM version."""
    lines = []
    for f in FLAGS:
        if f.group != group or version not in f.versions:
            continue
        v = f.value(ctx)
        if v is None or v is False:
            continue
        lines.append(f.flag if v is True else f"{f.flag} {' '.join(_render_value(v))}")
    return lines


def _header(title: str) -> str:
    return f"#!/usr/bin/env bash\n# {title}\n# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.\nset -euo pipefail\n"


def tune_script(
    ctx: Context,
    paths: dict[str, str],
    train_iters: int | None,
    version: str = DEFAULT_VERSION,
    nproc_per_node: int | None = None,
) -> str:
    r = ctx.recipe
    world = r.parallel.tp * r.parallel.pp * r.parallel.dp
    iters = (
        assign("TRAIN_ITERS", train_iters)
        if train_iters is not None
        else 'TRAIN_ITERS="${TRAIN_ITERS:?set TRAIN_ITERS = ceil(epochs x samples / global_batch_size)}"'
    )
    method = r.finetune.method
    parts = [
        _header(f"{r.name}: {method} fine-tuning with MindSpeed-LLM {version}"),
        "export CUDA_DEVICE_MAX_CONNECTIONS=1",
        "",
        "# cluster layout (override from the environment for multi-node runs)",
        f'NPUS_PER_NODE="${{NPUS_PER_NODE:-{nproc_per_node or world}}}"',
        'MASTER_ADDR="${MASTER_ADDR:-localhost}"',
        'MASTER_PORT="${MASTER_PORT:-6000}"',
        'NNODES="${NNODES:-1}"',
        'NODE_RANK="${NODE_RANK:-0}"',
        "",
        "# paths",
        *(assign(k, v) for k, v in paths.items()),
        iters,
        "",
        DISTRIBUTED_ARGS,
        "",
        *(args_block(g, flag_args(ctx, g, version)) + "\n" for g in TUNE_GROUPS),
        "mkdir -p logs",
        'torchrun "${DISTRIBUTED_ARGS[@]}" posttrain_gpt.py \\',
        '    "${GPT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "${TUNE_ARGS[@]}" \\',
        "    --distributed-backend nccl \\",
        f"    | tee {q('logs/tune_' + r.name + '_' + method + '.log')}",
        "",
    ]
    return "\n".join(parts)


# MindSpeed-LLM's checkpoint converters, as the family names them per version and direction: convert_ckpt.py
# builds Megatron models (--use-mcore-models, --params-dtype, bias flags, the family's --spec, a tokenizer; mg->hf
# needs tp = pp = 1 targets and writes $HF_DIR/mg2hf/), convert_ckpt_v2.py maps tensors itself (the model type
# carries the biases, the HF dtype is kept, mg->hf writes into --save-dir with the HF config of --hf-cfg-dir).
V1 = "convert_ckpt.py"


def _converter(ctx: Context, version: str, direction: str) -> Converter | None:
    conversion = ctx.spec.family_record.conversions.get(version)
    return None if conversion is None else getattr(conversion, direction)


def _converter_args(ctx: Context, version: str, direction: str) -> tuple[str, list[str]] | None:
    """(entry point, flags) of MindSpeed-LLM's converter for ``direction`` (hf2mcore / mcore2hf), None when the
    version's converters have no model type for the family."""
    r, spec = ctx.recipe, ctx.spec
    converter = _converter(ctx, version, direction)
    if converter is None:
        return None
    entry = converter.entry
    load, save = ("hf", "mg") if direction == "hf2mcore" else ("mg", "hf")
    args = [f"--load-model-type {load}", f"--save-model-type {save}", f"--model-type-hf {converter.model_type_hf}"]
    if entry == V1:
        args = ["--use-mcore-models", "--model-type GPT", *args]
        args += ["--add-qkv-bias"] if spec.qkv_bias else []
        args += ["--add-dense-bias"] if spec.o_bias else []
        args += [f"--spec {' '.join(spec.family_record.msllm_spec)}"] if spec.family_record.msllm_spec else []
    if direction == "hf2mcore":
        args += [f"--target-tensor-parallel-size {r.parallel.tp}", f"--target-pipeline-parallel-size {r.parallel.pp}"]
        args += [f"--target-expert-parallel-size {r.parallel.ep}"] if spec.num_experts else []
        if r.parallel.num_layer_list:
            args.append(f"--num-layer-list {','.join(map(str, r.parallel.num_layer_list))}")
        args += ['--load-dir "$HF_DIR"', '--save-dir "$CKPT_LOAD_DIR"']
        if entry == V1:
            args += ["--params-dtype bf16", '--tokenizer-model "$TOKENIZER_PATH"']
        return entry, args
    if entry == V1:
        args += ["--target-tensor-parallel-size 1", "--target-pipeline-parallel-size 1"]
        # as 2.3.0's own MoE mg->hf scripts (examples/mcore/phi35/ckpt_convert_phi35_moe_mcore2hf.sh)
        args += ["--target-expert-parallel-size 1"] if spec.num_experts else []
    args.append('--load-dir "$CKPT_LOAD_DIR"')
    lora = _lora(ctx)
    if lora:
        assert ctx.lora is not None, "a LoRA recipe is rendered with its LoRA plan"
        args += [
            '--lora-load "$CKPT_SAVE_DIR"',
            f"--lora-r {lora.rank}",
            f"--lora-alpha {lora.alpha}",
            f"--lora-target-modules {' '.join(ctx.lora.native_targets)}",
        ]
    args += ['--save-dir "$HF_DIR"'] if entry == V1 else ['--save-dir "$HF_EXPORT_DIR"', '--hf-cfg-dir "$HF_DIR"']
    return entry, args


def _tunebridge_lines(ctx: Context, direction: str) -> list[str]:
    """tunebridge's own converter, for a family the version's converter has no model type for (it writes the
    tensors MindSpeed-LLM's converter writes: tests/test_mindspeed_llm_interop.py)."""
    r = ctx.recipe
    if direction == "hf2mcore":
        layers = (
            f" --num-layer-list {','.join(map(str, r.parallel.num_layer_list))}" if r.parallel.num_layer_list else ""
        )
        return [
            f'tunebridge convert "$HF_DIR" "$CKPT_LOAD_DIR" --to mcore --tp {r.parallel.tp} --pp {r.parallel.pp}'
            f"{layers} --dtype bf16"
        ]
    if not _lora(ctx):
        return ['tunebridge convert "$CKPT_LOAD_DIR" "$HF_EXPORT_DIR" --to hf']
    return [
        'tunebridge convert "$CKPT_LOAD_DIR" "$HF_EXPORT_DIR.base" --to hf',
        'tunebridge merge-lora "$HF_EXPORT_DIR.base" "$CKPT_SAVE_DIR" "$HF_EXPORT_DIR"',
    ]


def _convert_lines(ctx: Context, version: str, direction: str) -> list[str]:
    found = _converter_args(ctx, version, direction)
    if found is None:
        return [
            f"# MindSpeed-LLM {version}'s converters have no --model-type-hf for {ctx.spec.family}: "
            f"tunebridge converts",
            *_tunebridge_lines(ctx, direction),
        ]
    entry, args = found
    return [args_block("CONVERT_ARGS", args), f'python {entry} "${{CONVERT_ARGS[@]}}"']


def convert_script(ctx: Context, paths: dict[str, str], version: str = DEFAULT_VERSION) -> str:
    r = ctx.recipe
    return "\n".join(
        [
            _header(
                f"{r.name}: HF -> Megatron-mcore weights (tp {r.parallel.tp}, pp {r.parallel.pp}"
                f"{f', ep {r.parallel.ep}' if ctx.spec.num_experts else ''}; MindSpeed-LLM {version})"
            ),
            "export CUDA_DEVICE_MAX_CONNECTIONS=1",
            *(assign(k, v) for k, v in paths.items()),
            "",
            *_convert_lines(ctx, version, "hf2mcore"),
            "",
        ]
    )


# MindSpeed-LLM's preprocess_data.py handler for each recipe data format, and the --map-keys a format implies
HANDLERS = {
    "alpaca": "AlpacaStyleInstructionHandler",
    "math": "AlpacaStyleInstructionHandler",
    "sharegpt": "SharegptStyleInstructionHandler",
    "mc": "AlpacaStyleInstructionHandler",
}
FORMAT_KEYS: dict[str, dict[MapKey, str]] = {"math": {"prompt": "problem", "response": "solution"}}


def preprocess_script(ctx: Context, paths: dict[str, str]) -> str:
    r = ctx.recipe
    source = r.data.train if r.data is not None else None
    fmt = source.format if source is not None else "alpaca"
    own: dict[MapKey, str] = (source.map_keys if source is not None else None) or {}
    map_keys = {**FORMAT_KEYS.get(fmt, {}), **own}
    args = [
        '--input "$RAW_DATA"',
        "--tokenizer-type PretrainedFromHF",
        '--tokenizer-name-or-path "$TOKENIZER_PATH"',
        '--output-prefix "$DATA_PATH"',
        "--workers 4",
        "--log-interval 1000",
        f"--handler-name {HANDLERS[fmt]}",
        f"--prompt-type {q(ctx.prompt_type)}",
        f"--seq-length {r.train.seq_length}",
    ]
    if map_keys:
        args.append(f"--map-keys {q(json.dumps(map_keys, ensure_ascii=False))}")
    return "\n".join(
        [
            _header(f"{r.name}: instruction data -> Megatron indexed dataset"),
            *(assign(k, v) for k, v in paths.items()),
            "",
            args_block("PREPROCESS_ARGS", args),
            'mkdir -p "$(dirname "$DATA_PATH")"  # preprocess_data.py refuses an output prefix in a missing directory',
            'python ./preprocess_data.py "${PREPROCESS_ARGS[@]}"',
            "",
        ]
    )


def _distributed_lines(world: int) -> list[str]:
    return [
        f'NPUS_PER_NODE="${{NPUS_PER_NODE:-{world}}}"',
        'MASTER_ADDR="${MASTER_ADDR:-localhost}"',
        'MASTER_PORT="${MASTER_PORT:-6011}"',
        'NNODES="${NNODES:-1}"',
        'NODE_RANK="${NODE_RANK:-0}"',
        "",
        DISTRIBUTED_ARGS,
    ]


def _model_args(ctx: Context, version: str) -> list[str]:
    return [line for line in flag_args(ctx, "GPT_ARGS", version) if line.split(" ", 1)[0] not in TRAINING_ONLY]


def inference_script(ctx: Context, paths: dict[str, str], kind: str, version: str = DEFAULT_VERSION) -> str:
    """``generate`` (inference.py, chat with the tuned model) or ``evaluate`` (evaluation.py, C-Eval/MMLU...)."""
    r = ctx.recipe
    world = r.parallel.tp * r.parallel.pp * r.parallel.ep  # an expert-parallel checkpoint loads on ep ranks (dp = ep)
    entry, group = {"generate": ("inference.py", "GENERATE_ARGS"), "evaluate": ("evaluation.py", "EVAL_ARGS")}[kind]
    extra = (
        [
            "# evaluation.py's default path: fixed 5-shot texts, no --prompt-type"
            f"{', --no-chat-template' if not msllm_eval.CHAT_TEMPLATE else ''}; "
            "`tunebridge eval run` scores C-Eval/MMLU/CMMLU the same way by default (--protocol mindspeed-llm)",
            'TASK="${TASK:-mmlu}"  # ceval, mmlu, cmmlu, boolq, gsm8k, ...',
        ]
        if kind == "evaluate"
        else []
    )
    return "\n".join(
        [
            _header(f"{r.name}: {kind} with the fine-tuned model (MindSpeed-LLM {version})"),
            "export CUDA_DEVICE_MAX_CONNECTIONS=1",
            *(assign(k, v) for k, v in paths.items()),
            *extra,
            *_distributed_lines(world),
            "",
            args_block("MODEL_ARGS", _model_args(ctx, version)),
            "",
            *(args_block(g, flag_args(ctx, g, version)) + "\n" for g in ("INFER_ARGS", group)),
            "mkdir -p logs",
            f'torchrun "${{DISTRIBUTED_ARGS[@]}}" {entry} "${{MODEL_ARGS[@]}}" "${{INFER_ARGS[@]}}" "${{{group}[@]}}" \\',
            f"    | tee {q('logs/' + kind + '_' + r.name + '.log')}",
            "",
        ]
    )


def render_recipe(
    recipe: Recipe, lora: LoraPlan | None, num_samples: int | None, *, version: str = DEFAULT_VERSION, **_
) -> dict[str, str]:
    """File name -> text of every MindSpeed-LLM script for ``recipe`` (the stack record's render entry point)."""
    from ..render import default_prompt_type, train_iters

    if version not in VERSIONS:
        raise TunebridgeError(f"unknown MindSpeed-LLM version {version!r} (known: {', '.join(VERSIONS)})")
    if lora is not None:
        recipe.param_report("mindspeed-llm")  # what `params` refuses for this recipe is not rendered either
    name = recipe.name
    ctx = Context(recipe, recipe.spec, lora, prompt_type(default_prompt_type(recipe)))
    paths = {
        "HF_DIR": f"./model_from_hf/{name}",
        "TOKENIZER_PATH": f"./model_from_hf/{name}",
        "HF_EXPORT_DIR": f"./model_from_hf/{name}-tuned",
        "CKPT_LOAD_DIR": f"./model_weights/{name}-mcore",
        "CKPT_SAVE_DIR": f"./ckpt/{name}",
        "RAW_DATA": f"./dataset/{name}.json",
        "DATA_PATH": f"./finetune_dataset/{name}",
    }

    def some(*keys: str) -> dict[str, str]:
        return {k: paths[k] for k in keys}

    method = recipe.finetune.method
    return {
        f"ckpt_convert_{name}_hf2mcore.sh": convert_script(
            ctx, some("HF_DIR", "TOKENIZER_PATH", "CKPT_LOAD_DIR"), version
        ),
        f"data_convert_{name}_instruction.sh": preprocess_script(ctx, some("RAW_DATA", "TOKENIZER_PATH", "DATA_PATH")),
        f"tune_{name}_{method}_ptd.sh": tune_script(
            ctx,
            some("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "DATA_PATH", "TOKENIZER_PATH"),
            train_iters(recipe, num_samples),
            version,
        ),
        f"generate_{name}_ptd.sh": inference_script(
            ctx, some("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "TOKENIZER_PATH"), "generate", version
        ),
        f"evaluate_{name}_ptd.sh": inference_script(
            ctx,
            {**some("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "TOKENIZER_PATH"), "EVAL_DATA": "./mmlu/data/test"},
            "evaluate",
            version,
        ),
        f"ckpt_convert_{name}_mcore2hf.sh": export_script(
            ctx, some("CKPT_LOAD_DIR", "CKPT_SAVE_DIR", "HF_DIR", "HF_EXPORT_DIR"), version
        ),
    }


def export_script(ctx: Context, paths: dict[str, str], version: str = DEFAULT_VERSION) -> str:
    """mcore -> HF, merging the trained LoRA when there is one. 2.3.0's convert_ckpt.py writes into
    $HF_DIR/mg2hf/; master's convert_ckpt_v2.py into $HF_EXPORT_DIR, with $HF_DIR's config files."""
    r = ctx.recipe
    converter = _converter(ctx, version, "mcore2hf")
    where = "$HF_DIR/mg2hf/" if converter is not None and converter.entry == V1 else "$HF_EXPORT_DIR"
    return "\n".join(
        [
            _header(
                f"{r.name}: Megatron-mcore -> HF{' with the LoRA merged' if _lora(ctx) else ''} "
                f"(written to {where}; MindSpeed-LLM {version})"
            ),
            "export CUDA_DEVICE_MAX_CONNECTIONS=1",
            *(assign(k, v) for k, v in paths.items()),
            "",
            *_convert_lines(ctx, version, "mcore2hf"),
            "",
        ]
    )
