#!/usr/bin/env bash
# tiny-demo-lora: MindFormers finetune (1 card, ascend)
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/tiny-demo-lora.ckpt}
TRAIN_DATA=${TRAIN_DATA:-./dataset/tiny-demo-lora/mindformers/train.mindrecord}
HERE="$(cd "$(dirname "$0")" && pwd)"
CONFIG="${CONFIG:-$HERE/finetune_tiny-demo-lora.yaml}"
PYTHON="${PYTHON:-python}"
# MindFormers' entry point (its repository's run_mindformer.py; the wheel has none). tunebridge's
# tunebridge/backends/mindformers/ms/entry/launch_mindformers.py runs the same config -> context -> Trainer path.
RUN_MINDFORMER="${RUN_MINDFORMER:-run_mindformer.py}"

"$PYTHON" "$RUN_MINDFORMER" --config "$CONFIG" --run_mode finetune --load_checkpoint "$LOAD_CHECKPOINT" --train_dataset_dir "$TRAIN_DATA" --use_parallel False --auto_trans_ckpt False
