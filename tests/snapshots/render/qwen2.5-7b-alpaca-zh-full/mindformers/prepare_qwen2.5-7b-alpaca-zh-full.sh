#!/usr/bin/env bash
# qwen2.5-7b-alpaca-zh-full: HF weights -> MindFormers .ckpt, recipe data -> MindRecord
# Rendered by tunebridge; run from the root of a MindFormers checkout.
set -euo pipefail

HF_DIR=${HF_DIR:-./model_from_hf/qwen2.5-7b-alpaca-zh-full}
LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/qwen2.5-7b-alpaca-zh-full.ckpt}
RECIPE=${RECIPE:-./qwen2.5-7b-alpaca-zh-full.yaml}
TRAIN_DATA=${TRAIN_DATA:-./dataset/qwen2.5-7b-alpaca-zh-full.mindrecord}

# MindFormers' own convert_weight.py is broken for llama in recent releases; tunebridge's converter writes
# the .ckpt byte-identically to mindspore.save_checkpoint.
WEIGHTS_DIR="$(dirname "$LOAD_CHECKPOINT")/.tunebridge-weights"
tunebridge convert "$HF_DIR" "$WEIGHTS_DIR" --to mindformers --dtype bf16 --force
mv -f "$WEIGHTS_DIR/model.ckpt" "$LOAD_CHECKPOINT" && rm -rf "$WEIGHTS_DIR"
DATA_DIR="$(dirname "$TRAIN_DATA")/.tunebridge-data"
tunebridge data prepare "$RECIPE" --backend mindformers --tokenizer "$HF_DIR" --out "$DATA_DIR" --force
mv -f "$DATA_DIR/mindformers/train.mindrecord" "$TRAIN_DATA"
mv -f "$DATA_DIR/mindformers/train.mindrecord.db" "$TRAIN_DATA.db" && rm -rf "$DATA_DIR"
