#!/usr/bin/env bash
# qwen3-30b-a3b-lora: Megatron-mcore -> HF with the LoRA merged (written to $HF_DIR/mg2hf/; MindSpeed-LLM 2.3.0)
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen3-30b-a3b-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/qwen3-30b-a3b-lora}
HF_DIR=${HF_DIR:-./model_from_hf/qwen3-30b-a3b-lora}
HF_EXPORT_DIR=${HF_EXPORT_DIR:-./model_from_hf/qwen3-30b-a3b-lora-tuned}

CONVERT_ARGS=(
    --use-mcore-models
    --model-type GPT
    --load-model-type mg
    --save-model-type hf
    --model-type-hf qwen3-moe
    --spec mindspeed_llm.tasks.models.spec.qwen3_spec layer_spec
    --target-tensor-parallel-size 1
    --target-pipeline-parallel-size 1
    --target-expert-parallel-size 1
    --load-dir "$CKPT_LOAD_DIR"
    --lora-load "$CKPT_SAVE_DIR"
    --lora-r 16
    --lora-alpha 32
    --lora-target-modules linear_qkv linear_proj
    --save-dir "$HF_DIR"
)
python convert_ckpt.py "${CONVERT_ARGS[@]}"
