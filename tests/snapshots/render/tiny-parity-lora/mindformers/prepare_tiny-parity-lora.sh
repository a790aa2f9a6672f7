#!/usr/bin/env bash
# tiny-parity-lora: HF weights -> MindFormers .ckpt, recipe data -> MindRecord
# Rendered by tunebridge; run from the root of a MindFormers checkout.
set -euo pipefail

HF_DIR=${HF_DIR:-./model_from_hf/tiny-parity-lora}
LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/tiny-parity-lora.ckpt}
RECIPE=${RECIPE:-./tiny-parity-lora.yaml}
TRAIN_DATA=${TRAIN_DATA:-./dataset/tiny-parity-lora.mindrecord}

# MindFormers' own convert_weight.py is broken for llama in recent releases; tunebridge's converter writes
# the .ckpt byte-identically to mindspore.save_checkpoint.
WEIGHTS_DIR="$(dirname "$LOAD_CHECKPOINT")/.tunebridge-weights"
tunebridge convert "$HF_DIR" "$WEIGHTS_DIR" --to mindformers --dtype fp32 --force
mv -f "$WEIGHTS_DIR/model.ckpt" "$LOAD_CHECKPOINT" && rm -rf "$WEIGHTS_DIR"
DATA_DIR="$(dirname "$TRAIN_DATA")/.tunebridge-data"
tunebridge data prepare "$RECIPE" --backend mindformers --out "$DATA_DIR" --force
mv -f "$DATA_DIR/mindformers/train.mindrecord" "$TRAIN_DATA"
mv -f "$DATA_DIR/mindformers/train.mindrecord.db" "$TRAIN_DATA.db" && rm -rf "$DATA_DIR"
