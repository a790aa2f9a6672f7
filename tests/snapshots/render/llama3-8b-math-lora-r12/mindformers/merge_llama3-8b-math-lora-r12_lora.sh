#!/usr/bin/env bash
# llama3-8b-math-lora-r12: merge the LoRA weights into the base checkpoint
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

TRAINED_CKPT_DIR=${TRAINED_CKPT_DIR:-./output/checkpoint}
MERGED_DIR=${MERGED_DIR:-./output/llama3-8b-math-lora-r12-merged}
PYTHON="${PYTHON:-python}"

CKPT="$(ls -t "$TRAINED_CKPT_DIR"/rank_0/*.ckpt | head -n 1)"  # the newest checkpoint of the run
mkdir -p "$MERGED_DIR"  # the tool writes $MERGED_DIR/merged_lora.ckpt and does not create the directory
"$PYTHON" -m mindformers.tools.transform_ckpt_lora \
    --src_ckpt_path_or_dir "$CKPT" \
    --dst_ckpt_dir "$MERGED_DIR" \
    --prefix checkpoint_ \
    --lora_scaling 2.0  # = lora_alpha / lora_rank = 24 / 12
