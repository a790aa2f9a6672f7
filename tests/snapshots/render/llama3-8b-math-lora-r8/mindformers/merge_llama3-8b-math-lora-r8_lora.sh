#!/usr/bin/env bash
# llama3-8b-math-lora-r8: merge the LoRA weights into the base checkpoint
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

STRATEGY_DIR=${STRATEGY_DIR:-./output/strategy}
TRAINED_CKPT_DIR=${TRAINED_CKPT_DIR:-./output/checkpoint}
MERGED_DIR=${MERGED_DIR:-./output/llama3-8b-math-lora-r8-merged}
PYTHON="${PYTHON:-python}"

mkdir -p "$MERGED_DIR"  # the tool writes $MERGED_DIR/merged_lora.ckpt and does not create the directory
"$PYTHON" -m mindformers.tools.transform_ckpt_lora \
    --src_ckpt_strategy "$STRATEGY_DIR" \
    --src_ckpt_path_or_dir "$TRAINED_CKPT_DIR" \
    --dst_ckpt_dir "$MERGED_DIR" \
    --prefix checkpoint_ \
    --lora_scaling 2.0  # = lora_alpha / lora_rank = 16 / 8
