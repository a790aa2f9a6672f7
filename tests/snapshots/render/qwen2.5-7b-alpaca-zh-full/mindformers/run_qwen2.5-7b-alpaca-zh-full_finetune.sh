#!/usr/bin/env bash
# qwen2.5-7b-alpaca-zh-full: MindFormers finetune (8 cards, ascend)
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/qwen2.5-7b-alpaca-zh-full.ckpt}
TRAIN_DATA=${TRAIN_DATA:-./dataset/qwen2.5-7b-alpaca-zh-full/mindformers/train.mindrecord}
HERE="$(cd "$(dirname "$0")" && pwd)"
CONFIG="${CONFIG:-$HERE/finetune_qwen2.5-7b-alpaca-zh-full.yaml}"
PYTHON="${PYTHON:-python}"
# MindFormers' entry point (its repository's run_mindformer.py; the wheel has none). tunebridge's
# tunebridge/backends/mindformers/ms/entry/launch_mindformers.py runs the same config -> context -> Trainer path.
RUN_MINDFORMER="${RUN_MINDFORMER:-run_mindformer.py}"

WORKER_NUM="${WORKER_NUM:-8}"
MASTER_PORT="${MASTER_PORT:-8118}"
LOG_DIR="${LOG_DIR:-output/msrun_log}"
# msrun_launcher.sh takes the whole command as one argument; values are quoted inside it.
CMD="$(printf %q "$PYTHON") $(printf %q "$RUN_MINDFORMER") --config $(printf %q "$CONFIG") --run_mode finetune --load_checkpoint $(printf %q "$LOAD_CHECKPOINT") --train_dataset_dir $(printf %q "$TRAIN_DATA") --use_parallel True --auto_trans_ckpt True"
if [[ "${NNODES:-1}" -gt 1 ]]; then
  # multi-node: WORKER_NUM is the total; each node runs LOCAL_WORKER of them
  bash scripts/msrun_launcher.sh "$CMD" "$WORKER_NUM" "${LOCAL_WORKER:?set LOCAL_WORKER}" "${MASTER_ADDR:?set MASTER_ADDR}" "$MASTER_PORT" "${NODE_RANK:?set NODE_RANK}" "$LOG_DIR" False 300
else
  bash scripts/msrun_launcher.sh "$CMD" "$WORKER_NUM" "$MASTER_PORT" "$LOG_DIR" False 300
fi
