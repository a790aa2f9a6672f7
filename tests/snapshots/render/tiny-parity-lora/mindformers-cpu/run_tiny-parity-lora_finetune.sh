#!/usr/bin/env bash
# tiny-parity-lora: MindFormers finetune (1 card, cpu)
# Rendered by tunebridge; run from the root of a MindFormers checkout (or set the paths below).
set -euo pipefail

LOAD_CHECKPOINT=${LOAD_CHECKPOINT:-./checkpoint_download/tiny-parity-lora.ckpt}
TRAIN_DATA=${TRAIN_DATA:-./dataset/tiny-parity-lora/mindformers/train.mindrecord}
HERE="$(cd "$(dirname "$0")" && pwd)"
CONFIG="${CONFIG:-$HERE/finetune_tiny-parity-lora.yaml}"
PYTHON="${PYTHON:-python}"
# MindFormers' entry point (its repository's run_mindformer.py; the wheel has none). tunebridge's
# tunebridge/backends/mindformers/ms/entry/launch_mindformers.py runs the same config -> context -> Trainer path.
RUN_MINDFORMER="${RUN_MINDFORMER:-run_mindformer.py}"
# MindSpore ops without a CPU kernel (NPUGetFloatStatusV2, mint.argmax): tunebridge's adapters, imported at
# start-up from PYTHONPATH (tunebridge/backends/mindformers/ms/cpu_site/sitecustomize.py says what each one does and why)
CPU_ADAPTERS="${CPU_ADAPTERS:-$("$PYTHON" -c 'import os, tunebridge.backends.mindformers.ms as m; print(os.path.join(os.path.dirname(m.__file__), "cpu_site"))')}"
export PYTHONPATH="$CPU_ADAPTERS${PYTHONPATH:+:$PYTHONPATH}"

"$PYTHON" "$RUN_MINDFORMER" --config "$CONFIG" --run_mode finetune --load_checkpoint "$LOAD_CHECKPOINT" --train_dataset_dir "$TRAIN_DATA" --use_parallel False --auto_trans_ckpt False
