"""MindFormers launch artifacts: the finetune YAML (as seed 002's), and the run/launch/merge commands."""
from __future__ import annotations

import io

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ..accounting import LoraPlan
from ..data.encode import EMBEDDED_VOCAB
from ..dialects.mindformers import pet_target_regex
from ..models import ModelSpec
from .shell import assign, q

_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _layer_offset(spec: ModelSpec, pp: int, num_layer_list: list[int] | None) -> int | list[int]:
    """MindFormers' model_config.offset: extra layers per stage over num_layers // pp."""
    if not num_layer_list:
        return 0
    base = spec.num_layers // pp
    return [n - base for n in num_layer_list]


def optimizer_type(recipe) -> str:
    """MindFormers 1.9's AdamW (fp32 moments, bias-corrected) unless the recipe turns bias correction off:
    then MindSpore's AdamWeightDecay, the uncorrected update of the seeds' FP32StateAdamWeightDecay (a class
    MindFormers 1.9.0 no longer registers)."""
    return "AdamWeightDecay" if recipe.train.optimizer.bias_correction is False else "AdamW"


def accumulation(recipe) -> int:
    t, p = recipe.train, recipe.parallel
    return t.global_batch_size // (t.micro_batch_size * p.dp)


def finetune_config(recipe, spec: ModelSpec, lora: LoraPlan | None, save_steps: int = 10000) -> dict:
    """The run YAML for ``run_mindformer.py --run_mode finetune`` as a nested dict."""
    t, p = recipe.train, recipe.parallel
    accum = accumulation(recipe)
    model_config = {
        "type": "LlamaConfig",
        "batch_size": t.micro_batch_size,
        "seq_length": t.seq_length,
        "hidden_size": spec.hidden_size,
        "num_layers": spec.num_layers,
        "num_heads": spec.num_heads,
        "n_kv_heads": spec.num_kv_heads,
        "vocab_size": spec.vocab_size,
        "intermediate_size": spec.ffn_hidden_size,
        "rms_norm_eps": spec.norm_eps,
        "bos_token_id": spec.bos_token_id if spec.bos_token_id is not None else 1,
        "eos_token_id": spec.eos_token_id if spec.eos_token_id is not None else 2,
        "pad_token_id": spec.pad_token_id if spec.pad_token_id is not None else 0,
        "ignore_token_id": -100,
        "qkv_has_bias": spec.qkv_bias,
        "attn_proj_has_bias": spec.o_bias,
        "tie_word_embeddings": spec.tied_embeddings,
        "max_position_embedding": max(spec.max_position_embeddings, t.seq_length),
        "compute_dtype": _DTYPE[t.dtype],
        "layernorm_compute_type": "float32",
        "softmax_compute_type": "float32",
        "rotary_dtype": "float32",
        "param_init_type": "float32" if t.dtype == "fp32" else _DTYPE[t.dtype],
        "use_past": False,
        "scaling_factor": 1.0,
        "theta": spec.rope_theta,
        "extend_method": "None",
        "use_flash_attention": True,
        "offset": _layer_offset(spec, p.pp, p.num_layer_list),
        "fine_grain_interleave": 1,
        "checkpoint_name_or_path": "",
        "repetition_penalty": 1,
        "max_decode_length": 512,
        "top_k": 3,
        "top_p": 1,
        "do_sample": False,
    }
    if lora is not None:
        lc = recipe.finetune.lora
        model_config["pet_config"] = {
            "pet_type": "lora", "lora_rank": lc.rank, "lora_alpha": lc.alpha, "lora_dropout": lc.dropout,
            "target_modules": pet_target_regex(lora.covered),
        }
    dataset = {
        "data_loader": {"type": "MindDataset", "dataset_dir": "", "shuffle": True},
        "input_columns": ["input_ids", "labels"],
        "num_parallel_workers": 8,
        "python_multiprocessing": False,
        "drop_remainder": True,
        "batch_size": t.micro_batch_size,
        "repeat": 1,
        "numa_enable": False,
        "prefetch_size": 1,
    }
    return {
        "seed": t.seed,
        "output_dir": "./output",
        "load_checkpoint": "",
        "src_strategy_path_or_dir": "",
        "auto_trans_ckpt": p.tp * p.pp * p.dp > 1,
        "only_save_strategy": False,
        "resume_training": False,
        "run_mode": "finetune",
        "trainer": {"type": "CausalLanguageModelingTrainer", "model_name": recipe.name},
        "runner_config": {"epochs": t.epochs, "batch_size": t.micro_batch_size, "sink_mode": True, "sink_size": 2,
                          "gradient_accumulation_steps": accum if p.pp == 1 else 1},
        "optimizer": {"type": optimizer_type(recipe), "beta1": t.optimizer.beta1, "beta2": t.optimizer.beta2,
                      "eps": t.optimizer.eps, "weight_decay": t.optimizer.weight_decay},
        "lr_schedule": {"type": {"cosine": "CosineWithWarmUpLR", "constant": "ConstantWarmUpLR",
                                 "linear": "LinearWithWarmUpLR"}[t.lr_schedule],
                        "learning_rate": t.lr, "lr_end": t.min_lr, "warmup_ratio": t.warmup_ratio,
                        "total_steps": -1},
        "train_dataset": dataset,
        "train_dataset_task": {"type": "CausalLanguageModelDataset", "dataset_config": dataset},
        "do_eval": False,
        "use_parallel": p.tp * p.pp * p.dp > 1,
        "parallel": {
            "parallel_mode": 1, "gradients_mean": False, "enable_alltoall": False, "full_batch": True,
            "search_mode": "sharding_propagation", "enable_parallel_optimizer": p.dp > 1,
            "strategy_ckpt_config": {"save_file": "./ckpt_strategy.ckpt", "only_trainable_params": False},
            "parallel_optimizer_config": {"gradient_accumulation_shard": False, "parallel_optimizer_threshold": 64},
        },
        "parallel_config": {"data_parallel": p.dp, "model_parallel": p.tp, "pipeline_stage": p.pp,
                            "use_seq_parallel": p.sequence_parallel, "micro_batch_num": accum if p.pp > 1 else 1,
                            "vocab_emb_dp": True, "gradient_aggregation_group": 4},
        "micro_batch_interleave_num": 1,
        "recompute_config": {"recompute": False, "select_recompute": False,
                             "parallel_optimizer_comm_recompute": False, "mp_comm_recompute": True,
                             "recompute_slice_activation": True},
        "callbacks": [{"type": "MFLossMonitor"},
                      {"type": "CheckpointMonitor", "prefix": recipe.name, "save_checkpoint_steps": save_steps,
                       "integrated_save": False, "async_save": False}],
        "context": {"mode": 0, "device_target": "Ascend", "max_call_depth": 10000, "max_device_memory": "58GB",
                    "save_graphs": False, "device_id": 0},
        "model": {"model_config": model_config, "arch": {"type": "LlamaForCausalLM"}},
        "metric": {"type": "PerplexityMetric"},
        "runner_wrapper": {"type": "MFTrainOneStepCell", "scale_sense": 1.0, "use_clip_grad": t.clip_grad > 0,
                           "max_grad_norm": t.clip_grad},
    }


def _represent_float(representer, value: float):
    # YAML 1.1 (PyYAML, which MindFormers reads configs with) needs a dot in the mantissa: 1e-08 would be a string.
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def dump_yaml(config: dict) -> str:
    """YAML text; the train dataset is written once with an anchor and referenced, as MindFormers' configs do."""
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
    y = YAML()
    y.representer.add_representer(float, _represent_float)
    y.default_flow_style = False
    y.width = 120
    buf = io.StringIO()
    y.dump(root, buf)
    return buf.getvalue()


def _header(title: str) -> str:
    return f"#!/usr/bin/env bash\n# {title}\n# Rendered by tunebridge; run from the root of a MindFormers checkout.\nset -euo pipefail\n"


def run_script(recipe, paths: dict[str, str], config_name: str) -> str:
    """Single-card and msrun multi-card launch of the finetune YAML."""
    p = recipe.parallel
    workers = p.tp * p.pp * p.dp
    run = ('python run_mindformer.py --config "$CONFIG" --run_mode finetune --load_checkpoint "$LOAD_CHECKPOINT" '
           '--train_dataset_dir "$TRAIN_DATA"')
    lines = [_header(f"{recipe.name}: MindFormers finetune ({workers} card{'s' if workers > 1 else ''})"),
             *(assign(k, v) for k, v in paths.items()),
             f'CONFIG="${{CONFIG:-$(dirname "$0")/{config_name}}}"', ""]
    if workers == 1:
        lines += [f"{run} --use_parallel False --auto_trans_ckpt False"]
    else:
        lines += [
            f'WORKER_NUM="${{WORKER_NUM:-{workers}}}"',
            'MASTER_PORT="${MASTER_PORT:-8118}"',
            'LOG_DIR="${LOG_DIR:-output/msrun_log}"',
            "# msrun_launcher.sh takes the whole command as one argument; values are quoted inside it.",
            'CMD="python run_mindformer.py --config $(printf %q "$CONFIG") --run_mode finetune '
            '--load_checkpoint $(printf %q "$LOAD_CHECKPOINT") --train_dataset_dir $(printf %q "$TRAIN_DATA") '
            '--use_parallel True --auto_trans_ckpt True"',
            'if [[ "${NNODES:-1}" -gt 1 ]]; then',
            '  # multi-node: WORKER_NUM is the total; each node runs LOCAL_WORKER of them',
            '  bash scripts/msrun_launcher.sh "$CMD" "$WORKER_NUM" "${LOCAL_WORKER:?set LOCAL_WORKER}" '
            '"${MASTER_ADDR:?set MASTER_ADDR}" "$MASTER_PORT" "${NODE_RANK:?set NODE_RANK}" "$LOG_DIR" False 300',
            "else",
            '  bash scripts/msrun_launcher.sh "$CMD" "$WORKER_NUM" "$MASTER_PORT" "$LOG_DIR" False 300',
            "fi",
        ]
    return "\n".join(lines) + "\n"


def merge_lora_script(recipe, paths: dict[str, str]) -> str:
    """Merge LoRA into the base with the right scaling (alpha / rank; the tool's default of 1 is wrong)."""
    lc = recipe.finetune.lora
    scaling = lc.alpha / lc.rank
    return "\n".join([
        _header(f"{recipe.name}: merge the LoRA weights into the base checkpoint"),
        *(assign(k, v) for k, v in paths.items()),
        "",
        "python mindformers/tools/transform_ckpt_lora.py \\",
        '    --src_ckpt_strategy "$STRATEGY_DIR" \\',
        '    --src_ckpt_path_or_dir "$TRAINED_CKPT_DIR" \\',
        '    --dst_ckpt_dir "$MERGED_DIR" \\',
        "    --prefix checkpoint_ \\",
        f"    --lora_scaling {scaling!r}  # = lora_alpha / lora_rank = {lc.alpha} / {lc.rank}",
        "",
    ])


def _without_training(config: dict) -> dict:
    out = {k: v for k, v in config.items()
           if k not in ("train_dataset", "train_dataset_task", "optimizer", "lr_schedule", "runner_wrapper",
                        "callbacks", "runner_config")}
    out["model"] = {"model_config": dict(config["model"]["model_config"]), "arch": dict(config["model"]["arch"])}
    return out


def eval_config(recipe, spec: ModelSpec, lora: LoraPlan | None) -> dict:
    """``run_mode eval`` on MindFormers' SQuAD set (squad8192.mindrecord), scored by its EmF1Metric (the seeds')."""
    config = _without_training(finetune_config(recipe, spec, lora))
    seq = min(8192, max(spec.max_position_embeddings, recipe.train.seq_length))
    config["run_mode"] = "eval"
    config["model"]["model_config"].update(batch_size=1, seq_length=seq, use_past=False, use_flash_attention=False)
    dataset = {"data_loader": {"type": "MindDataset", "dataset_dir": "", "shuffle": False},
               "input_columns": ["input_ids", "labels"], "num_parallel_workers": 1, "python_multiprocessing": False,
               "drop_remainder": False, "batch_size": 1, "repeat": 1, "numa_enable": False, "prefetch_size": 1}
    config["eval_dataset"] = dataset
    config["eval_dataset_task"] = {"type": "CausalLanguageModelDataset", "dataset_config": dataset}
    config["metric"] = {"type": "EmF1Metric"}
    config["runner_config"] = {"epochs": 1, "batch_size": 1, "sink_mode": True, "sink_size": 1}
    return config


def predict_config(recipe, spec: ModelSpec, lora: LoraPlan | None, max_decode_length: int = 512) -> dict:
    """``run_mode predict``: greedy generation with the incremental (use_past) graph."""
    config = _without_training(finetune_config(recipe, spec, lora))
    config["run_mode"] = "predict"
    config["model"]["model_config"].update(batch_size=1, use_past=True, do_sample=False, top_k=1,
                                           max_decode_length=max_decode_length)
    return config


def eval_script(recipe, paths: dict[str, str], eval_name: str, predict_name: str) -> str:
    """SQuAD evaluation (the retention check) and generation on a test file, single card."""
    return "\n".join([
        _header(f"{recipe.name}: evaluate (SQuAD, EmF1Metric) and predict with the fine-tuned weights"),
        *(assign(k, v) for k, v in paths.items()),
        'HERE="$(dirname "$0")"',
        "",
        'python run_mindformer.py --config "$HERE/' + eval_name + '" --run_mode eval '
        '--load_checkpoint "$EVAL_CHECKPOINT" --eval_dataset_dir "$EVAL_DATA" --use_parallel False '
        '--auto_trans_ckpt False',
        'python run_mindformer.py --config "$HERE/' + predict_name + '" --run_mode predict '
        '--load_checkpoint "$EVAL_CHECKPOINT" --predict_data "$PREDICT_INPUT" --use_parallel False '
        '--auto_trans_ckpt False',
        "",
    ])


def prepare_script(recipe, paths: dict[str, str]) -> str:
    """Weights and data for the finetune run, made by tunebridge (the same tokens every stack trains on)."""
    dtype = recipe.train.dtype
    return "\n".join([
        _header(f"{recipe.name}: HF weights -> MindFormers .ckpt, recipe data -> MindRecord"),
        *(assign(k, v) for k, v in paths.items()),
        "",
        "# MindFormers' own convert_weight.py is broken for llama in recent releases; tunebridge's converter writes",
        "# the .ckpt byte-identically to mindspore.save_checkpoint.",
        'WEIGHTS_DIR="$(dirname "$LOAD_CHECKPOINT")/.tunebridge-weights"',
        f'tunebridge convert "$HF_DIR" "$WEIGHTS_DIR" --to mindformers --dtype {dtype} --force',
        'mv -f "$WEIGHTS_DIR/model.ckpt" "$LOAD_CHECKPOINT" && rm -rf "$WEIGHTS_DIR"',
        'DATA_DIR="$(dirname "$TRAIN_DATA")/.tunebridge-data"',
        # a real model's data is tokenized with its own tokenizer (HF_DIR's); the embedded one fits only the tiny models
        'tunebridge data prepare "$RECIPE" --backend mindformers'
        + (' --tokenizer "$HF_DIR"' if recipe.spec.vocab_size != EMBEDDED_VOCAB else "") + ' --out "$DATA_DIR" --force',
        'mv -f "$DATA_DIR/mindformers/train.mindrecord" "$TRAIN_DATA"',
        'mv -f "$DATA_DIR/mindformers/train.mindrecord.db" "$TRAIN_DATA.db" && rm -rf "$DATA_DIR"',
        "",
    ])
