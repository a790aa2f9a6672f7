#!/usr/bin/env bash
# qwen3-30b-a3b-lora: HF -> Megatron-mcore weights (tp 4, pp 1, ep 2; MindSpeed-LLM 2.3.0)
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
HF_DIR=${HF_DIR:-./model_from_hf/qwen3-30b-a3b-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen3-30b-a3b-lora}
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen3-30b-a3b-lora-mcore}

CONVERT_ARGS=(
    --load-model-type hf
    --save-model-type mg
    --model-type-hf qwen3-moe
    --target-tensor-parallel-size 4
    --target-pipeline-parallel-size 1
    --target-expert-parallel-size 2
    --load-dir "$HF_DIR"
    --save-dir "$CKPT_LOAD_DIR"
)
python convert_ckpt_v2.py "${CONVERT_ARGS[@]}"
