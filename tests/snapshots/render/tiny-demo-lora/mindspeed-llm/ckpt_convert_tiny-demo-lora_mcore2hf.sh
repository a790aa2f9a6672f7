#!/usr/bin/env bash
# tiny-demo-lora: Megatron-mcore -> HF with the LoRA merged (written to $HF_DIR/mg2hf/; MindSpeed-LLM 2.3.0)
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/tiny-demo-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/tiny-demo-lora}
HF_DIR=${HF_DIR:-./model_from_hf/tiny-demo-lora}
HF_EXPORT_DIR=${HF_EXPORT_DIR:-./model_from_hf/tiny-demo-lora-tuned}

CONVERT_ARGS=(
    --use-mcore-models
    --model-type GPT
    --load-model-type mg
    --save-model-type hf
    --model-type-hf llama2
    --target-tensor-parallel-size 1
    --target-pipeline-parallel-size 1
    --load-dir "$CKPT_LOAD_DIR"
    --lora-load "$CKPT_SAVE_DIR"
    --lora-r 8
    --lora-alpha 16
    --lora-target-modules linear_proj linear_fc2
    --save-dir "$HF_DIR"
)
python convert_ckpt.py "${CONVERT_ARGS[@]}"
