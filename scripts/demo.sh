#!/usr/bin/env bash
# The README's first command: set up, then run tunebridge end to end on what works today:
# parameter accounting and launch artifacts for a seed recipe, then a tiny model's weights converted
# to MindSpeed-LLM's mcore layout (tp 2, pp 2) and MindFormers' .ckpt, proven by logits through
# transformers, megatron-core and MindFormers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TB=.venv/bin/tunebridge
RECIPE=${1:-recipes/llama3-8b-math-lora-r8.yaml}
OUT=${OUT:-out/demo}
mkdir -p "$OUT"

echo "== 1. parameters of $RECIPE on each backend"
$TB params "$RECIPE" --backend all

echo "== 2. launch artifacts for MindFormers and MindSpeed-LLM"
$TB render "$RECIPE" --backend all --out "$OUT/render" --num-samples 100000 --force

echo "== 3. a tiny Qwen2-shaped model (GQA, qkv bias) across the three checkpoint formats"
$TB init-model tiny-qwen2 "$OUT/tiny-hf" --force
$TB convert "$OUT/tiny-hf" "$OUT/tiny-mcore" --to mcore --tp 2 --pp 2 --num-layer-list 1,3 --force
$TB convert "$OUT/tiny-hf" "$OUT/tiny-mindformers" --to mindformers --force
$TB verify "$OUT/tiny-hf" "$OUT/tiny-mcore" "$OUT/tiny-mindformers"

echo "demo output: $OUT"
