#!/usr/bin/env bash
# qwen2.5-7b-alpaca-zh-lora: HF weights -> MindFormers .ckpt, recipe data -> MindRecord
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

HF_DIR=${HF_DIR:-./model_from_hf/qwen2.5-7b-alpaca-zh-lora}
LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/qwen2.5-7b-alpaca-zh-lora.ckpt}
RECIPE=${RECIPE:-./qwen2.5-7b-alpaca-zh-lora.yaml}
DATA_DIR=${DATA_DIR:-./dataset/qwen2.5-7b-alpaca-zh-lora}
TUNEBRIDGE="${TUNEBRIDGE:-tunebridge}"

# MindFormers' own convert_weight.py is broken for llama in recent releases; tunebridge's converter writes
# the .ckpt byte-identically to mindspore.save_checkpoint.
WEIGHTS_DIR="$(dirname "$LOAD_CHECKPOINT")/.tunebridge-weights"
"$TUNEBRIDGE" convert "$HF_DIR" "$WEIGHTS_DIR" --to mindformers --dtype bf16 --force
mv -f "$WEIGHTS_DIR/model.ckpt" "$LOAD_CHECKPOINT" && rm -rf "$WEIGHTS_DIR"
# writes $DATA_DIR/mindformers/train.mindrecord (+ .db), the run script's TRAIN_DATA; a real model's data is
# tokenized with its own tokenizer (HF_DIR's), the embedded one fits only the tiny models
"$TUNEBRIDGE" data prepare "$RECIPE" --backend mindformers --tokenizer "$HF_DIR" --out "$DATA_DIR" --force
