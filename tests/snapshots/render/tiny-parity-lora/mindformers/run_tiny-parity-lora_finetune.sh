#!/usr/bin/env bash
# tiny-parity-lora: MindFormers finetune (1 card)
# Rendered by tunebridge; run from the root of a MindFormers checkout.
set -euo pipefail

LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/tiny-parity-lora.ckpt}
TRAIN_DATA=${TRAIN_DATA:-./dataset/tiny-parity-lora.mindrecord}
CONFIG="${CONFIG:-$(dirname "$0")/finetune_tiny-parity-lora.yaml}"

python run_mindformer.py --config "$CONFIG" --run_mode finetune --load_checkpoint "$LOAD_CHECKPOINT" --train_dataset_dir "$TRAIN_DATA" --use_parallel False --auto_trans_ckpt False
