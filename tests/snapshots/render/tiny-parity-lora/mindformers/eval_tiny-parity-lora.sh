#!/usr/bin/env bash
# tiny-parity-lora: evaluate (SQuAD, EmF1Metric) and predict with the fine-tuned weights
# Rendered by tunebridge; run from the root of a MindFormers checkout.
set -euo pipefail

EVAL_CHECKPOINT=${EVAL_CHECKPOINT:-./output/checkpoint/rank_0}
EVAL_DATA=${EVAL_DATA:-./dataset/squad8192.mindrecord}
PREDICT_INPUT=${PREDICT_INPUT:-./dataset/tiny-parity-lora_test.json}
HERE="$(dirname "$0")"

python run_mindformer.py --config "$HERE/eval_tiny-parity-lora_squad.yaml" --run_mode eval --load_checkpoint "$EVAL_CHECKPOINT" --eval_dataset_dir "$EVAL_DATA" --use_parallel False --auto_trans_ckpt False
python run_mindformer.py --config "$HERE/predict_tiny-parity-lora.yaml" --run_mode predict --load_checkpoint "$EVAL_CHECKPOINT" --predict_data "$PREDICT_INPUT" --use_parallel False --auto_trans_ckpt False
