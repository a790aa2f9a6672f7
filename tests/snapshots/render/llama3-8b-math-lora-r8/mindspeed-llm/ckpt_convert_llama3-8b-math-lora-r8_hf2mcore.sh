#!/usr/bin/env bash
# llama3-8b-math-lora-r8: HF -> Megatron-mcore weights (tp 4, pp 1; MindSpeed-LLM 2.3.0)
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
HF_DIR=${HF_DIR:-./model_from_hf/llama3-8b-math-lora-r8}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/llama3-8b-math-lora-r8}
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/llama3-8b-math-lora-r8-mcore}

CONVERT_ARGS=(
    --use-mcore-models
    --model-type GPT
    --load-model-type hf
    --save-model-type mg
    --model-type-hf llama2
    --target-tensor-parallel-size 4
    --target-pipeline-parallel-size 1
    --load-dir "$HF_DIR"
    --save-dir "$CKPT_LOAD_DIR"
    --params-dtype bf16
    --tokenizer-model "$TOKENIZER_PATH"
)
python convert_ckpt.py "${CONVERT_ARGS[@]}"
