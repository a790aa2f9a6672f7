#!/usr/bin/env bash
# The README's first command: set up both environments (idempotent), then run tunebridge end to end on the
# embedded tiny base model and embedded data: data prepared for the three stacks, weights converted and proven by
# logits, LoRA-tuned on torch, MindFormers (MindSpore CPU) and megatron-core from the same inputs, evaluated
# (math accuracy, SQuAD retention), scored through the three frameworks, every parity check, and a report.
# Before that, a 7-8B seed recipe's exact parameter counts and launch artifacts for both Ascend stacks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TB=.venv/bin/tunebridge
OUT=${OUT:-out/demo}
RECIPE=${RECIPE:-recipes/llama3-8b-math-lora-r8.yaml}

echo "== 0. $RECIPE: parameters on each stack, and its launch artifacts for MindFormers and MindSpeed-LLM"
$TB params "$RECIPE" --backend all
$TB render "$RECIPE" --backend all --out "$OUT-render" --num-samples 100000 --force
echo "launch artifacts: $OUT-render"

$TB demo --out "$OUT" --force
