#!/usr/bin/env bash
# llama3-8b-math-lora-r12: MindFormers finetune (1 card)
# Rendered by tunebridge; run from the root of a MindFormers checkout.
set -euo pipefail

LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/llama3-8b-math-lora-r12.ckpt}
TRAIN_DATA=${TRAIN_DATA:-./dataset/llama3-8b-math-lora-r12.mindrecord}
CONFIG="${CONFIG:-$(dirname "$0")/finetune_llama3-8b-math-lora-r12.yaml}"

python run_mindformer.py --config "$CONFIG" --run_mode finetune --load_checkpoint "$LOAD_CHECKPOINT" --train_dataset_dir "$TRAIN_DATA" --use_parallel False --auto_trans_ckpt False
