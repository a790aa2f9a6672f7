#!/usr/bin/env bash
# The README's first command: set up, then run tunebridge on the embedded default recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TB=.venv/bin/tunebridge
RECIPE=${1:-recipes/llama3-8b-math-lora-r8.yaml}
OUT=${OUT:-out/demo}
echo "== parameters of $RECIPE on each backend"
$TB params "$RECIPE" --backend all
echo "== launch artifacts"
$TB render "$RECIPE" --backend all --out "$OUT/render" --force
echo "demo output: $OUT"
