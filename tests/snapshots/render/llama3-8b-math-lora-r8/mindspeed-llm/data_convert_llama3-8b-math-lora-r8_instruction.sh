#!/usr/bin/env bash
# llama3-8b-math-lora-r8: instruction data -> Megatron indexed dataset
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

RAW_DATA=${RAW_DATA:-./dataset/llama3-8b-math-lora-r8.json}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/llama3-8b-math-lora-r8}
DATA_PATH=${DATA_PATH:-./finetune_dataset/llama3-8b-math-lora-r8}

PREPROCESS_ARGS=(
    --input "$RAW_DATA"
    --tokenizer-type PretrainedFromHF
    --tokenizer-name-or-path "$TOKENIZER_PATH"
    --output-prefix "$DATA_PATH"
    --workers 4
    --log-interval 1000
    --handler-name AlpacaStyleInstructionHandler
    --prompt-type llama3
    --seq-length 256
    --map-keys '{"prompt": "problem", "response": "solution"}'
)
mkdir -p "$(dirname "$DATA_PATH")"  # preprocess_data.py refuses an output prefix in a missing directory
python ./preprocess_data.py "${PREPROCESS_ARGS[@]}"
