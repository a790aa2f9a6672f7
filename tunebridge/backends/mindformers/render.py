"""MindFormers launch artifacts: finetune / eval / predict YAML for an Ascend or a CPU run, and the scripts around
them (prepare, run, evaluate, LoRA merge), checked by running them with MindFormers 1.9.0 itself (tests).

Two profiles (``device``): ``ascend`` (the default, for real NPU runs) and ``cpu``, the settings MindFormers 1.9.0 /
MindSpore 2.9.0 need to run the same YAML on a CPU: ``device_target: CPU``, rotary slicing, unfused RMSNorm, no
flash attention, no dataset sink mode, one data worker, rows read in file order, and the two ops without a CPU
kernel adapted by tunebridge's ``tunebridge/backends/mindformers/ms/cpu_site/sitecustomize.py``, which the CPU run script puts on
``PYTHONPATH``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ...data.encode import IGNORE
from ...data.tokenizer import EMBEDDED_VOCAB
from ...errors import TunebridgeError
from ...model.accounting import LoraPlan
from ...model.dialects.mindformers import pet_target_regex
from ...model.families import keys as config_keys, mindformers_model
from ...model.spec import ModelSpec
from ..shell import assign

DEVICES = ("ascend", "cpu")
_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _layer_offset(spec: ModelSpec, pp: int, num_layer_list: list[int] | None) -> int | list[int]:
    """MindFormers' model_config.offset: extra layers per stage over num_layers // pp."""
    if not num_layer_list:
        return 0
    base = spec.num_layers // pp
    return [n - base for n in num_layer_list]


def cards(recipe) -> int:
    p = recipe.parallel
    return p.tp * p.pp * p.dp


def optimizer_type(recipe) -> str:
    """MindFormers 1.9's AdamW (fp32 moments, bias-corrected) unless the recipe turns bias correction off:
    then MindSpore's AdamWeightDecay, the uncorrected update of the seeds' FP32StateAdamWeightDecay (a class
    MindFormers 1.9.0 no longer registers)."""
    return "AdamWeightDecay" if recipe.train.optimizer.bias_correction is False else "AdamW"


def optimizer_config(recipe) -> dict:
    """The optimizer block with each type's own keywords (mindformers.core.optim.AdamW takes ``betas``;
    mindspore.nn.AdamWeightDecay takes ``beta1`` / ``beta2``)."""
    o = recipe.train.optimizer
    kind = optimizer_type(recipe)
    betas = {"betas": [o.beta1, o.beta2]} if kind == "AdamW" else {"beta1": o.beta1, "beta2": o.beta2}
    return {"type": kind, **betas, "eps": o.eps, "weight_decay": o.weight_decay}


def accumulation(recipe) -> int:
    t, p = recipe.train, recipe.parallel
    return t.global_batch_size // (t.micro_batch_size * p.dp)


@dataclass(frozen=True)
class Batching:
    batch_size: int  # rows per forward pass (runner_config.batch_size, model batch_size)
    accumulation_steps: int  # runner_config.gradient_accumulation_steps
    micro_batch_num: int  # parallel_config.micro_batch_num (pipeline stages)
    note: str = ""


def batching(recipe) -> Batching:
    """How the recipe's global batch is laid out. On one card (``use_parallel: False``, stand-alone mode)
    MindFormers resets gradient_accumulation_steps to 1 ("Reset the gradient_accumulation_steps from N to 1"), so
    the global batch is one forward pass; its loss is then the token mean over the global batch, which is
    ``train.loss_average: token``. With several cards accumulation runs in semi-auto-parallel mode (pipeline stages:
    micro_batch_num), each micro-batch's token mean averaged, unless loss_average is token."""
    t = recipe.train
    accum = accumulation(recipe)
    if cards(recipe) == 1:
        if accum > 1 and t.loss_average == "micro-batch":
            raise TunebridgeError(
                f"{recipe.source or recipe.name}: train.loss_average micro-batch with {accum} accumulation steps "
                f"cannot run on one MindFormers card (it ignores gradient_accumulation_steps there and trains "
                f"the global batch of {t.global_batch_size} in one pass, a token mean): set train.loss_average: "
                f"token"
            )
        note = (
            f"one card: MindFormers ignores gradient_accumulation_steps outside semi-auto-parallel, so the "
            f"global batch {t.global_batch_size} (= micro {t.micro_batch_size} x {accum} accumulation) is one "
            f"batch of {t.global_batch_size} rows; its loss is the token mean over those rows"
            if accum > 1
            else ""
        )
        return Batching(t.global_batch_size, 1, 1, note)
    if recipe.parallel.pp > 1:
        return Batching(t.micro_batch_size, 1, accum)
    return Batching(t.micro_batch_size, accum, 1)


def train_steps(recipe, num_samples: int | None) -> int | None:
    """Optimizer steps when known: train.max_steps, else epochs x whole global batches of the samples."""
    t = recipe.train
    if t.max_steps:
        return t.max_steps
    return t.epochs * (num_samples // t.global_batch_size) if num_samples else None


# --- the recipe's tokenizer as MindFormers sees it ------------------------------------------------------------


# Special tokens of the catalogue's vocabularies (as their tokenizer.json holds them), used when the recipe's own
# tokenizer is not at hand. The pad is what tunebridge pads their data with (the tokenizer's pad, else its eos).
@dataclass(frozen=True)
class KnownVocabulary:
    tokens: dict[str, str | None]  # bos_token, eos_token, pad_token, unk_token (None: the tokenizer has none)
    ids: dict[str, int]


def _known(bos: str | None, eos: str, pad: str | None, unk: str | None, ids: dict[str, int]) -> KnownVocabulary:
    return KnownVocabulary({"bos_token": bos, "eos_token": eos, "pad_token": pad, "unk_token": unk}, ids)


VOCABULARIES = {  # the special tokens of each family's tokenizer
    "llama3": _known(
        "<|begin_of_text|>",
        "<|end_of_text|>",
        None,
        None,
        {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eot_id|>": 128009},
    ),
    "qwen2": _known(None, "<|endoftext|>", "<|endoftext|>", None, {"<|endoftext|>": 151643, "<|im_end|>": 151645}),
    "sentencepiece": _known("<s>", "</s>", None, "<unk>", {"<unk>": 0, "<s>": 1, "</s>": 2}),
}


@dataclass(frozen=True)
class Vocabulary:
    """The ids and token strings MindFormers' YAML needs from the recipe's tokenizer."""

    bos: int | None
    stop: list[int]  # generation stops at any: the tokenizer's eos, the template's end token
    pad: int  # the id the MindRecord rows are padded with (and that LlamaForCausalLM masks as input)
    tokens: dict[str, str | None]  # bos_token, eos_token, pad_token, unk_token for processor.tokenizer
    add_bos: bool  # the samples start with bos
    source: str  # where the ids come from


def vocabulary(recipe) -> Vocabulary:
    """From the recipe's tokenizer (data.tokenizer, else the embedded one when it is the model's, as for the tiny
    models), with the MindRecord rows' pad rule, so the ids equal those of the data tunebridge writes; otherwise
    from the catalogue's known vocabularies. Only the tokenizer's JSON files are read (no tokenizer library)."""
    from ...data.templates import get_template, preprocessing_stack
    from ...data.tokenizer import EMBEDDED_TOKENIZER, ROW_PAD, Tokenizer, row_pad_token
    from ...evaluation.tokens import stop_ids
    from ..render import default_prompt_type

    spec = recipe.spec
    template = get_template(default_prompt_type(recipe))
    ends = [template.end] if template.end else []
    d = recipe.data
    add_bos = template.bos_first or preprocessing_stack(template, d.preprocess if d else "per-stack") == "mindformers"
    directory = recipe.path(d.tokenizer) if d is not None and d.tokenizer else None
    if directory is None and EMBEDDED_VOCAB == spec.vocab_size:
        directory = EMBEDDED_TOKENIZER
    if directory is not None:
        tok = Tokenizer(directory)
        pad = row_pad_token(tok)
        return Vocabulary(
            tok.bos_token_id,
            list(dict.fromkeys(stop_ids(tok, ends))),
            getattr(tok, f"{pad}_id"),
            {
                "bos_token": tok.bos_token,
                "eos_token": tok.eos_token,
                "pad_token": getattr(tok, pad),
                "unk_token": tok.unk_token,
            },
            add_bos,
            f"tokenizer {directory}",
        )
    name = spec.vocabulary
    known = VOCABULARIES[name]
    tokens, ids = known.tokens, known.ids
    missing = [t for t in ends if t not in ids]
    if missing:
        raise TunebridgeError(
            f"{recipe.source or recipe.name}: template {template.name!r} ends with {missing[0]!r}, "
            f"which the {name} vocabulary does not have; set data.tokenizer"
        )
    pad = next(t for k in ROW_PAD if (t := tokens[k]))
    bos, eos = tokens["bos_token"], tokens["eos_token"]
    assert eos is not None, f"the {name} vocabulary names its eos token"
    return Vocabulary(
        ids[bos] if bos else None,
        list(dict.fromkeys(ids[t] for t in [eos, *ends])),
        ids[pad],
        {**tokens, "pad_token": pad},
        add_bos,
        f"the {name} vocabulary's special tokens",
    )


def _rope(spec: ModelSpec) -> dict:
    """Llama-3.1 rope scaling as MindFormers' LLAMA3 extend method (its llama3_1 configs); none otherwise."""
    rs = spec.rope_scaling or {}
    if rs.get("rope_type", rs.get("type")) == "llama3":
        return {
            "extend_method": "LLAMA3",
            "scaling_factor": {
                k: rs[k] for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
            },
        }
    if rs:
        raise TunebridgeError(f"{spec.name}: rope scaling {rs} has no MindFormers extend_method here")
    return {"extend_method": "None", "scaling_factor": 1.0}


# --- YAML ---------------------------------------------------------------------------------------------------


def finetune_config(
    recipe,
    spec: ModelSpec,
    lora: LoraPlan | None,
    device: str = "ascend",
    num_samples: int | None = None,
    vocab: Vocabulary | None = None,
    save_steps: int = 10000,
) -> dict:
    """The run YAML for ``run_mindformer.py --run_mode finetune`` as a nested dict."""
    if device not in DEVICES:
        raise TunebridgeError(f"unknown device {device!r} (known: {', '.join(DEVICES)})")
    cpu = device == "cpu"
    t, p = recipe.train, recipe.parallel
    if cpu and t.dtype != "fp32":
        raise TunebridgeError(
            f"{recipe.source or recipe.name}: train.dtype {t.dtype}: MindSpore's CPU kernels run "
            f"fp32 only; set train.dtype: fp32 for --device cpu"
        )
    vocab = vocab or vocabulary(recipe)
    layout = batching(recipe)
    parallel = cards(recipe) > 1
    steps = train_steps(recipe, num_samples)
    model = mindformers_model(spec)
    model_config = {
        "type": model.config,
        "batch_size": layout.batch_size,
        "seq_length": t.seq_length,
        **config_keys.write(model.keys, spec),
        "bos_token_id": vocab.bos if vocab.bos is not None else vocab.pad,
        "eos_token_id": vocab.stop,
        "pad_token_id": vocab.pad,
        "ignore_token_id": IGNORE,
        "max_position_embedding": max(spec.max_position_embeddings, t.seq_length),
        "compute_dtype": _DTYPE[t.dtype],
        "layernorm_compute_type": "float32",
        "softmax_compute_type": "float32",
        "rotary_dtype": "float32",
        "param_init_type": "float32" if t.dtype == "fp32" else _DTYPE[t.dtype],
        "use_past": False,
        **_rope(spec),
        "use_flash_attention": not cpu,
        **({"use_rope_slice": True, "fused_rms_norm": False} if cpu else {}),
        "offset": _layer_offset(spec, p.pp, p.num_layer_list),
        "fine_grain_interleave": 1,
        "checkpoint_name_or_path": "",
        "repetition_penalty": 1,
        "max_decode_length": 512,
        "top_k": 1,
        "top_p": 1,
        "do_sample": False,
    }
    if lora is not None:
        lc = recipe.finetune.lora
        model_config["pet_config"] = {
            "pet_type": "lora",
            "lora_rank": lc.rank,
            "lora_alpha": lc.alpha,
            "lora_dropout": lc.dropout,
            "target_modules": pet_target_regex(lora.covered),
        }
    dataset = {
        # CPU: rows in file order, which is the recipe's step order in the file tunebridge writes for a run
        "data_loader": {"type": "MindDataset", "dataset_dir": "", "shuffle": not cpu},
        "input_columns": ["input_ids", "labels"],
        "num_parallel_workers": 1 if cpu else 8,
        "python_multiprocessing": False,
        "drop_remainder": True,
        "batch_size": layout.batch_size,
        "repeat": 1,
        "numa_enable": False,
        "prefetch_size": 1,
    }
    callbacks = [
        {"type": "MFLossMonitor"},
        {
            "type": "CheckpointMonitor",
            "prefix": recipe.name,
            "save_checkpoint_steps": save_steps,
            "integrated_save": False,
            "async_save": False,
        },
    ]
    if steps:  # stop at the recipe's last step (runner_config.stop_step is read but never installed in 1.9.0)
        callbacks.append({"type": "TrainCallBack", "stop_step": steps})
    runner = {
        "epochs": t.epochs,
        "batch_size": layout.batch_size,
        "sink_mode": not cpu,
        "sink_size": 2,
        "gradient_accumulation_steps": layout.accumulation_steps,
    }
    config = {
        "seed": t.seed,
        "output_dir": "./output",
        "load_checkpoint": "",
        "src_strategy_path_or_dir": "",
        "auto_trans_ckpt": parallel,
        "only_save_strategy": False,
        "resume_training": False,
        "run_mode": "finetune",
        "trainer": {"type": "CausalLanguageModelingTrainer", "model_name": recipe.name},
        "runner_config": runner,
        "optimizer": optimizer_config(recipe),
        "lr_schedule": {
            "type": {"cosine": "CosineWithWarmUpLR", "constant": "ConstantWarmUpLR", "linear": "LinearWithWarmUpLR"}[
                t.lr_schedule
            ],
            "learning_rate": t.lr,
            "lr_end": t.min_lr,
            "warmup_ratio": t.warmup_ratio,
            "total_steps": steps or -1,
        },
        "train_dataset": dataset,
        "train_dataset_task": {"type": "CausalLanguageModelDataset", "dataset_config": dataset},
        "do_eval": False,
        "use_parallel": parallel,
        "calculate_per_token_loss": parallel and t.loss_average == "token",
        "parallel": {
            "parallel_mode": 1,
            "gradients_mean": False,
            "enable_alltoall": False,
            "full_batch": True,
            "search_mode": "sharding_propagation",
            "enable_parallel_optimizer": p.dp > 1,
            "strategy_ckpt_config": {"save_file": "./ckpt_strategy.ckpt", "only_trainable_params": False},
            "parallel_optimizer_config": {"gradient_accumulation_shard": False, "parallel_optimizer_threshold": 64},
        },
        "parallel_config": {
            "data_parallel": p.dp,
            "model_parallel": p.tp,
            "pipeline_stage": p.pp,
            "use_seq_parallel": p.sequence_parallel,
            "micro_batch_num": layout.micro_batch_num,
            "vocab_emb_dp": True,
            "gradient_aggregation_group": 4,
        },
        "micro_batch_interleave_num": 1,
        "recompute_config": {
            "recompute": False,
            "select_recompute": False,
            "parallel_optimizer_comm_recompute": False,
            "mp_comm_recompute": True,
            "recompute_slice_activation": True,
        },
        "callbacks": callbacks,
        "context": {
            "mode": 0,
            "device_target": "CPU" if cpu else "Ascend",
            "max_call_depth": 10000,
            **({} if cpu else {"max_device_memory": "58GB"}),
            "save_graphs": False,
            "device_id": 0,
        },
        "model": {"model_config": model_config, "arch": {"type": model.arch}},
        "metric": {"type": "PerplexityMetric"},
        "runner_wrapper": {
            "type": "MFTrainOneStepCell",
            "scale_sense": 1.0,
            "use_clip_grad": t.clip_grad > 0,
            "max_grad_norm": t.clip_grad,
        },
    }
    return config


def _represent_float(representer, value: float):
    # YAML 1.1 (PyYAML, which MindFormers reads configs with) needs a dot in the mantissa: 1e-08 would be a string.
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def dump_yaml(config: dict, comments: dict[str, str] | None = None) -> str:
    """YAML text; the train dataset is written once with an anchor and referenced, as MindFormers' configs do.
    ``comments`` puts a comment line above top-level keys."""

    def convert(obj):
        if isinstance(obj, dict):
            m = CommentedMap()
            for k, v in obj.items():
                m[k] = convert(v)
            return m
        if isinstance(obj, list):
            return [convert(v) for v in obj]
        return obj

    root = convert(config)
    if "train_dataset" in root:
        root["train_dataset"].yaml_set_anchor("train_dataset", always_dump=True)
        root["train_dataset_task"]["dataset_config"] = root["train_dataset"]
    for key, text in (comments or {}).items():
        root.yaml_set_comment_before_after_key(key, before=text)
    y = YAML()
    y.representer.add_representer(float, _represent_float)
    y.default_flow_style = False
    y.width = 120
    buf = io.StringIO()
    y.dump(root, buf)
    return buf.getvalue()


def finetune_yaml(
    recipe, spec: ModelSpec, lora: LoraPlan | None, device: str, num_samples: int | None, vocab: Vocabulary
) -> str:
    note = batching(recipe).note
    return dump_yaml(
        finetune_config(recipe, spec, lora, device, num_samples, vocab),
        {"runner_config": _wrap(note)} if note else None,
    )


def _wrap(text: str, width: int = 116) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def _without_training(config: dict) -> dict:
    out = {
        k: v
        for k, v in config.items()
        if k
        not in (
            "train_dataset",
            "train_dataset_task",
            "optimizer",
            "lr_schedule",
            "runner_wrapper",
            "callbacks",
            "runner_config",
            "calculate_per_token_loss",
        )
    }
    out["model"] = {"model_config": dict(config["model"]["model_config"]), "arch": dict(config["model"]["arch"])}
    return out


def _processor(recipe, vocab: Vocabulary) -> dict:
    """MindFormers' tokenizer for decoding (eval) and encoding prompts (predict): the recipe's HF tokenizer.json
    through LlamaTokenizerFast, with its own special tokens (the scripts pass the file's location). ``vocab_file``
    is named, empty: build_tokenizer insists on the key, the fast tokenizer reads tokenizer_file."""
    return {
        "return_tensors": "ms",
        "tokenizer": {
            "type": "LlamaTokenizerFast",
            "vocab_file": None,
            "tokenizer_file": f"./model_from_hf/{recipe.name}/tokenizer.json",
            **vocab.tokens,
            "add_bos_token": vocab.add_bos,
            "add_eos_token": False,
        },
        "type": "LlamaProcessor",
    }


def eval_config(
    recipe,
    spec: ModelSpec,
    lora: LoraPlan | None,
    device: str = "ascend",
    vocab: Vocabulary | None = None,
    max_new_tokens: int = 64,
) -> dict:
    """``run_mode eval`` on MindFormers' SQuAD set (squad8192.mindrecord), scored by its EmF1Metric (the seeds')."""
    vocab = vocab or vocabulary(recipe)
    config = _without_training(finetune_config(recipe, spec, lora, device, vocab=vocab))
    seq = min(8192, max(spec.max_position_embeddings, recipe.train.seq_length))
    config["run_mode"] = "eval"
    config["model"]["model_config"].update(
        batch_size=1, seq_length=seq, use_past=False, use_flash_attention=False, max_new_tokens=max_new_tokens
    )
    dataset = {
        "data_loader": {"type": "MindDataset", "dataset_dir": "", "shuffle": False},
        "input_columns": ["input_ids", "labels"],
        "num_parallel_workers": 1,
        "python_multiprocessing": False,
        "drop_remainder": False,
        "batch_size": 1,
        "repeat": 1,
        "numa_enable": False,
        "prefetch_size": 1,
    }
    config["eval_dataset"] = dataset
    config["eval_dataset_task"] = {"type": "CausalLanguageModelDataset", "dataset_config": dataset}
    config["metric"] = {"type": "EmF1Metric"}
    config["runner_config"] = {"epochs": 1, "batch_size": 1, "sink_mode": device != "cpu", "sink_size": 1}
    config["processor"] = _processor(recipe, vocab)
    return config


def predict_config(
    recipe,
    spec: ModelSpec,
    lora: LoraPlan | None,
    device: str = "ascend",
    vocab: Vocabulary | None = None,
    max_decode_length: int = 512,
) -> dict:
    """``run_mode predict``: greedy generation stopping at the template's end token, with the incremental
    (use_past) graph on Ascend; on CPU without it (its rotary kernel, ApplyRotaryPosEmb, takes fp16/bf16 only)."""
    vocab = vocab or vocabulary(recipe)
    config = _without_training(finetune_config(recipe, spec, lora, device, vocab=vocab))
    config["run_mode"] = "predict"
    config["model"]["model_config"].update(
        batch_size=1,
        seq_length=max_decode_length,
        use_past=device != "cpu",
        do_sample=False,
        top_k=1,
        max_decode_length=max_decode_length,
    )
    config["processor"] = _processor(recipe, vocab)
    return config


# --- scripts ------------------------------------------------------------------------------------------------


def _header(title: str) -> str:
    return (
        f"#!/usr/bin/env bash\n# {title}\n# Rendered by tunebridge; run from the root of a MindFormers checkout "
        f"(or set the paths below).\nset -euo pipefail\n"
    )


_HERE = 'HERE="$(cd "$(dirname "$0")" && pwd)"'
_ENTRY = [
    'PYTHON="${PYTHON:-python}"',
    "# MindFormers' entry point (its repository's run_mindformer.py; the wheel has none). tunebridge's",
    "# tunebridge/backends/mindformers/ms/entry/launch_mindformers.py runs the same config -> context -> Trainer path.",
    'RUN_MINDFORMER="${RUN_MINDFORMER:-run_mindformer.py}"',
]
_CPU_ADAPTERS = [
    "# MindSpore ops without a CPU kernel (NPUGetFloatStatusV2, mint.argmax): tunebridge's adapters, imported at",
    "# start-up from PYTHONPATH (tunebridge/backends/mindformers/ms/cpu_site/sitecustomize.py says what each one does and why)",
    'CPU_ADAPTERS="${CPU_ADAPTERS:-$("$PYTHON" -c \'import os, tunebridge.backends.mindformers.ms as m; '
    'print(os.path.join(os.path.dirname(m.__file__), "cpu_site"))\')}"',
    'export PYTHONPATH="$CPU_ADAPTERS${PYTHONPATH:+:$PYTHONPATH}"',
]


def _launch_lines(device: str) -> list[str]:
    return [*_ENTRY, *(_CPU_ADAPTERS if device == "cpu" else [])]


def run_script(recipe, paths: dict[str, str], config_name: str, device: str = "ascend") -> str:
    """Single-card and msrun multi-card launch of the finetune YAML."""
    workers = cards(recipe)
    lines = [
        _header(f"{recipe.name}: MindFormers finetune ({workers} card{'s' if workers > 1 else ''}, {device})"),
        *(assign(k, v) for k, v in paths.items()),
        _HERE,
        f'CONFIG="${{CONFIG:-$HERE/{config_name}}}"',
        *_launch_lines(device),
        "",
    ]
    if workers == 1:
        lines += [
            '"$PYTHON" "$RUN_MINDFORMER" --config "$CONFIG" --run_mode finetune --load_checkpoint '
            '"$LOAD_CHECKPOINT" --train_dataset_dir "$TRAIN_DATA" --use_parallel False --auto_trans_ckpt False'
        ]
    else:
        lines += [
            f'WORKER_NUM="${{WORKER_NUM:-{workers}}}"',
            'MASTER_PORT="${MASTER_PORT:-8118}"',
            'LOG_DIR="${LOG_DIR:-output/msrun_log}"',
            "# msrun_launcher.sh takes the whole command as one argument; values are quoted inside it.",
            'CMD="$(printf %q "$PYTHON") $(printf %q "$RUN_MINDFORMER") --config $(printf %q "$CONFIG") '
            '--run_mode finetune --load_checkpoint $(printf %q "$LOAD_CHECKPOINT") '
            '--train_dataset_dir $(printf %q "$TRAIN_DATA") --use_parallel True --auto_trans_ckpt True"',
            'if [[ "${NNODES:-1}" -gt 1 ]]; then',
            "  # multi-node: WORKER_NUM is the total; each node runs LOCAL_WORKER of them",
            '  bash scripts/msrun_launcher.sh "$CMD" "$WORKER_NUM" "${LOCAL_WORKER:?set LOCAL_WORKER}" '
            '"${MASTER_ADDR:?set MASTER_ADDR}" "$MASTER_PORT" "${NODE_RANK:?set NODE_RANK}" "$LOG_DIR" False 300',
            "else",
            '  bash scripts/msrun_launcher.sh "$CMD" "$WORKER_NUM" "$MASTER_PORT" "$LOG_DIR" False 300',
            "fi",
        ]
    return "\n".join(lines) + "\n"


def merge_lora_script(recipe, paths: dict[str, str]) -> str:
    """Merge LoRA into the base with MindFormers' transform_ckpt_lora (in the wheel) and the right scaling (alpha /
    rank; the tool's default of 1 is wrong). One card: the newest checkpoint file, no strategy (a single-card run
    writes none); several cards: the rank directories with the run's strategy files."""
    lc = recipe.finetune.lora
    scaling = lc.alpha / lc.rank
    merge = ['"$PYTHON" -m mindformers.tools.transform_ckpt_lora \\']
    if cards(recipe) == 1:
        source = ['CKPT="$(ls -t "$TRAINED_CKPT_DIR"/rank_0/*.ckpt | head -n 1)"  # the newest checkpoint of the run']
        merge += ['    --src_ckpt_path_or_dir "$CKPT" \\']
    else:
        source = []
        merge += ['    --src_ckpt_strategy "$STRATEGY_DIR" \\', '    --src_ckpt_path_or_dir "$TRAINED_CKPT_DIR" \\']
    return "\n".join(
        [
            _header(f"{recipe.name}: merge the LoRA weights into the base checkpoint"),
            *(assign(k, v) for k, v in paths.items() if cards(recipe) > 1 or k != "STRATEGY_DIR"),
            'PYTHON="${PYTHON:-python}"',
            "",
            *source,
            'mkdir -p "$MERGED_DIR"  # the tool writes $MERGED_DIR/merged_lora.ckpt and does not create the directory',
            *merge,
            '    --dst_ckpt_dir "$MERGED_DIR" \\',
            "    --prefix checkpoint_ \\",
            f"    --lora_scaling {scaling!r}  # = lora_alpha / lora_rank = {lc.alpha} / {lc.rank}",
            "",
        ]
    )


def eval_script(recipe, paths: dict[str, str], eval_name: str, predict_name: str, device: str = "ascend") -> str:
    """SQuAD evaluation (EmF1Metric, the retention check) and generation on a test file, single card."""
    tokenizer = '--processor.tokenizer.tokenizer_file "$TOKENIZER_DIR/tokenizer.json"'
    return "\n".join(
        [
            _header(f"{recipe.name}: evaluate (SQuAD, EmF1Metric) and predict with the fine-tuned weights ({device})"),
            *(assign(k, v) for k, v in paths.items()),
            _HERE,
            *_launch_lines(device),
            "",
            '"$PYTHON" "$RUN_MINDFORMER" --config "$HERE/' + eval_name + '" --run_mode eval '
            '--load_checkpoint "$EVAL_CHECKPOINT" --eval_dataset_dir "$EVAL_DATA" --use_parallel False '
            f"--auto_trans_ckpt False {tokenizer}",
            "# PREDICT_INPUT: one prompt per line (the template applied), newlines written as \\n; MindFormers writes",
            "# the generations to text_generation_result.txt",
            "PROMPTS=()",
            "# (printf %b turns \\n into newlines; the x keeps $(...) from dropping the prompt's trailing ones)",
            'while IFS= read -r line || [[ -n "$line" ]]; do p="$(printf "%bx" "$line")"; PROMPTS+=("${p%x}"); done \\',
            '    < "$PREDICT_INPUT"',
            '"$PYTHON" "$RUN_MINDFORMER" --config "$HERE/' + predict_name + '" --run_mode predict '
            '--load_checkpoint "$EVAL_CHECKPOINT" --predict_data "${PROMPTS[@]}" --use_parallel False '
            f"--auto_trans_ckpt False {tokenizer}",
            "",
        ]
    )


def prepare_script(recipe, paths: dict[str, str]) -> str:
    """Weights and data for the finetune run, made by tunebridge (the same tokens every stack trains on). The
    MindRecord is written under the name the run reads: MindDataset refuses a renamed one."""
    dtype = recipe.train.dtype
    return "\n".join(
        [
            _header(f"{recipe.name}: HF weights -> MindFormers .ckpt, recipe data -> MindRecord"),
            *(assign(k, v) for k, v in paths.items()),
            'TUNEBRIDGE="${TUNEBRIDGE:-tunebridge}"',
            "",
            "# MindFormers' own convert_weight.py is broken for llama in recent releases; tunebridge's converter writes",
            "# the .ckpt byte-identically to mindspore.save_checkpoint.",
            'WEIGHTS_DIR="$(dirname "$LOAD_CHECKPOINT")/.tunebridge-weights"',
            f'"$TUNEBRIDGE" convert "$HF_DIR" "$WEIGHTS_DIR" --to mindformers --dtype {dtype} --force',
            'mv -f "$WEIGHTS_DIR/model.ckpt" "$LOAD_CHECKPOINT" && rm -rf "$WEIGHTS_DIR"',
            "# writes $DATA_DIR/mindformers/train.mindrecord (+ .db), the run script's TRAIN_DATA; a real model's data is",
            "# tokenized with its own tokenizer (HF_DIR's), the embedded one fits only the tiny models",
            '"$TUNEBRIDGE" data prepare "$RECIPE" --backend mindformers'
            + (' --tokenizer "$HF_DIR"' if recipe.spec.vocab_size != EMBEDDED_VOCAB else "")
            + ' --out "$DATA_DIR" --force',
            "",
        ]
    )


def render_files(recipe, spec: ModelSpec, lora: LoraPlan | None, device: str, num_samples: int | None) -> dict:
    """File name -> text of every MindFormers artifact."""
    name = recipe.name
    vocab = vocabulary(recipe)
    config_name = f"finetune_{name}.yaml"
    data_dir = f"./dataset/{name}"
    load = f"./checkpoint_download/{name}.ckpt"
    files = {
        config_name: finetune_yaml(recipe, spec, lora, device, num_samples, vocab),
        f"run_{name}_finetune.sh": run_script(
            recipe,
            {"LOAD_CHECKPOINT": load, "TRAIN_DATA": f"{data_dir}/mindformers/train.mindrecord"},
            config_name,
            device,
        ),
        f"eval_{name}_squad.yaml": dump_yaml(eval_config(recipe, spec, lora, device, vocab)),
        f"predict_{name}.yaml": dump_yaml(predict_config(recipe, spec, lora, device, vocab)),
        f"eval_{name}.sh": eval_script(
            recipe,
            {
                "EVAL_CHECKPOINT": "./output/checkpoint",
                "EVAL_DATA": "./dataset/squad8192.mindrecord",
                "PREDICT_INPUT": f"./dataset/{name}_prompts.txt",
                "TOKENIZER_DIR": f"./model_from_hf/{name}",
            },
            f"eval_{name}_squad.yaml",
            f"predict_{name}.yaml",
            device,
        ),
        f"prepare_{name}.sh": prepare_script(
            recipe,
            {
                "HF_DIR": f"./model_from_hf/{name}",
                "LOAD_CHECKPOINT": load,
                "RECIPE": f"./{name}.yaml",
                "DATA_DIR": data_dir,
            },
        ),
    }
    if lora is not None:
        files[f"merge_{name}_lora.sh"] = merge_lora_script(
            recipe,
            {
                "STRATEGY_DIR": "./output/strategy",
                "TRAINED_CKPT_DIR": "./output/checkpoint",
                "MERGED_DIR": f"./output/{name}-merged",
            },
        )
    return files


def render_recipe(
    recipe, lora: LoraPlan | None, num_samples: int | None, *, device: str = "ascend", **_
) -> dict[str, str]:
    """The stack record's render entry point: :func:`render_files` for the recipe's model."""
    return render_files(recipe, recipe.spec, lora, device, num_samples)


def launcher() -> Path:
    """tunebridge's stand-in for run_mindformer.py (for RUN_MINDFORMER)."""
    return Path(__file__).resolve().parent / "ms" / "entry" / "launch_mindformers.py"
