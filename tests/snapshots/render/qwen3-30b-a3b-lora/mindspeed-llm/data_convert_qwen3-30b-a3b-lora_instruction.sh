#!/usr/bin/env bash
# qwen3-30b-a3b-lora: instruction data -> Megatron indexed dataset
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

RAW_DATA=${RAW_DATA:-./dataset/qwen3-30b-a3b-lora.json}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen3-30b-a3b-lora}
DATA_PATH=${DATA_PATH:-./finetune_dataset/qwen3-30b-a3b-lora}

PREPROCESS_ARGS=(
    --input "$RAW_DATA"
    --tokenizer-type PretrainedFromHF
    --tokenizer-name-or-path "$TOKENIZER_PATH"
    --output-prefix "$DATA_PATH"
    --workers 4
    --log-interval 1000
    --handler-name AlpacaStyleInstructionHandler
    --prompt-type qwen
    --seq-length 4096
    --map-keys '{"prompt": "zh_instruction", "query": "zh_input", "response": "zh_output"}'
)
mkdir -p "$(dirname "$DATA_PATH")"  # preprocess_data.py refuses an output prefix in a missing directory
python ./preprocess_data.py "${PREPROCESS_ARGS[@]}"
