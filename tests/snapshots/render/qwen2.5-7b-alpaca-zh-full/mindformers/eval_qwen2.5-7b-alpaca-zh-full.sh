#!/usr/bin/env bash
# qwen2.5-7b-alpaca-zh-full: evaluate (SQuAD, EmF1Metric) and predict with the fine-tuned weights (ascend)
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

EVAL_CHECKPOINT=${EVAL_CHECKPOINT:-./output/checkpoint}
EVAL_DATA=${EVAL_DATA:-./dataset/squad8192.mindrecord}
PREDICT_INPUT=${PREDICT_INPUT:-./dataset/qwen2.5-7b-alpaca-zh-full_prompts.txt}
TOKENIZER_DIR=${TOKENIZER_DIR:-./model_from_hf/qwen2.5-7b-alpaca-zh-full}
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python}"
# MindFormers' entry point (its repository's run_mindformer.py; the wheel has none). tunebridge's
# tunebridge/backends/mindformers/ms/entry/launch_mindformers.py runs the same config -> context -> Trainer path.
RUN_MINDFORMER="${RUN_MINDFORMER:-run_mindformer.py}"

"$PYTHON" "$RUN_MINDFORMER" --config "$HERE/eval_qwen2.5-7b-alpaca-zh-full_squad.yaml" --run_mode eval --load_checkpoint "$EVAL_CHECKPOINT" --eval_dataset_dir "$EVAL_DATA" --use_parallel False --auto_trans_ckpt False --processor.tokenizer.tokenizer_file "$TOKENIZER_DIR/tokenizer.json"
# PREDICT_INPUT: one prompt per line (the template applied), newlines written as \n; MindFormers writes
# the generations to text_generation_result.txt
PROMPTS=()
# (printf %b turns \n into newlines; the x keeps $(...) from dropping the prompt's trailing ones)
while IFS= read -r line || [[ -n "$line" ]]; do p="$(printf "%bx" "$line")"; PROMPTS+=("${p%x}"); done \
    < "$PREDICT_INPUT"
"$PYTHON" "$RUN_MINDFORMER" --config "$HERE/predict_qwen2.5-7b-alpaca-zh-full.yaml" --run_mode predict --load_checkpoint "$EVAL_CHECKPOINT" --predict_data "${PROMPTS[@]}" --use_parallel False --auto_trans_ckpt False --processor.tokenizer.tokenizer_file "$TOKENIZER_DIR/tokenizer.json"
