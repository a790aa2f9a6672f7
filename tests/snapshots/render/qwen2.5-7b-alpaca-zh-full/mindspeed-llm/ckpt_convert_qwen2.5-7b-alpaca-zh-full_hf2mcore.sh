#!/usr/bin/env bash
# qwen2.5-7b-alpaca-zh-full: HF -> Megatron-mcore weights (tp 1, pp 8; MindSpeed-LLM 2.3.0)
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
HF_DIR=${HF_DIR:-./model_from_hf/qwen2.5-7b-alpaca-zh-full}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen2.5-7b-alpaca-zh-full}
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen2.5-7b-alpaca-zh-full-mcore}

CONVERT_ARGS=(
    --use-mcore-models
    --model-type GPT
    --load-model-type hf
    --save-model-type mg
    --model-type-hf llama2
    --add-qkv-bias
    --target-tensor-parallel-size 1
    --target-pipeline-parallel-size 8
    --num-layer-list 4,4,4,4,3,3,3,3
    --load-dir "$HF_DIR"
    --save-dir "$CKPT_LOAD_DIR"
    --params-dtype bf16
    --tokenizer-model "$TOKENIZER_PATH"
)
python convert_ckpt.py "${CONVERT_ARGS[@]}"
