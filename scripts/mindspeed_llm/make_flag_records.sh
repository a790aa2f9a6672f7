#!/usr/bin/env bash
# Record one MindSpeed-LLM version's parsers and what its validation makes of every script tunebridge renders
# for that version (all bundled recipes), into tests/fixtures/mindspeed_llm_flags/VERSION.json.
#
#   bash scripts/mindspeed_llm/make_flag_records.sh VERSION MINDSPEED_LLM MINDSPEED MEGATRON_LM COMMITS PYTHON
#
# COMMITS: "MindSpeed-LLM,MindSpeed,Megatron-LM" commits of the three checkouts; PYTHON: an interpreter with
# MindSpeed-LLM's Python requirements (tests/fixtures/mindspeed_llm_flags/README.md lists what was used).
set -euo pipefail
version=$1 msllm=$2 mindspeed=$3 megatron=$4 commits=$5 python=$6
repo=$(cd "$(dirname "$0")/../.." && pwd)
scripts=$(mktemp -d)
trap 'rm -rf "$scripts"' EXIT
for recipe in "$repo"/recipes/*.yaml; do
    "$repo/.venv/bin/tunebridge" render "$recipe" --backend mindspeed-llm --mindspeed-llm-version "$version" \
        --num-samples 1000 --out "$scripts/$(basename "$recipe" .yaml)" > /dev/null
done
# and the flag the scripts do not use, to record what validation does with it
tune=$(ls "$scripts"/tiny-parity-lora/tune_*.sh)
mkdir "$scripts/variant"
sed 's/--no-pad-to-seq-lengths/--variable-seq-lengths/' "$tune" > "$scripts/variant/variant_variable-seq-lengths_$(basename "$tune")"
mkdir -p "$repo/tests/fixtures/mindspeed_llm_flags"
"$python" "$repo/scripts/mindspeed_llm/flag_records.py" "$msllm" --mindspeed "$mindspeed" --megatron "$megatron" \
    --version "$version" --commits "$commits" --probe "$scripts"/*/*.sh \
    --out "$repo/tests/fixtures/mindspeed_llm_flags/$version.json"
# what Megatron's load_args_from_checkpoint (as MindSpeed-LLM patches it) takes from the args tunebridge writes
ckpt="$scripts/qwen2-tp2pp2-mcore"
"$repo/.venv/bin/tunebridge" convert "$repo/tests/fixtures/mindspeed_llm/hf/qwen2" "$ckpt" --to mcore --tp 2 --pp 2 \
    > /dev/null 2>&1
echo '["--use-mcore-models", "--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2",
       "--micro-batch-size", "1", "--tokenizer-type", "PretrainedFromHF", "--tokenizer-name-or-path", "."]' \
    > "$ckpt.flags.json"
WORLD_SIZE=4 RANK=0 "$python" "$repo/scripts/mindspeed_llm/flag_records.py" "$msllm" --mindspeed "$mindspeed" \
    --megatron "$megatron" --checkpoint-args "$ckpt" \
    --out "$repo/tests/fixtures/mindspeed_llm_flags/checkpoint_args-$version.json" > /dev/null
