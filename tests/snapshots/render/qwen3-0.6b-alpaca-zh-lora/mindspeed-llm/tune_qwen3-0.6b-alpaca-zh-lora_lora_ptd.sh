#!/usr/bin/env bash
# qwen3-0.6b-alpaca-zh-lora: lora fine-tuning with MindSpeed-LLM 2.3.0
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1

# cluster layout (override from the environment for multi-node runs)
NPUS_PER_NODE="${NPUS_PER_NODE:-1}"
MASTER_ADDR="${MASTER_ADDR:-localhost}"
MASTER_PORT="${MASTER_PORT:-6000}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"

# paths
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen3-0.6b-alpaca-zh-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/qwen3-0.6b-alpaca-zh-lora}
DATA_PATH=${DATA_PATH:-./finetune_dataset/qwen3-0.6b-alpaca-zh-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen3-0.6b-alpaca-zh-lora}
TRAIN_ITERS=${TRAIN_ITERS:-63}

DISTRIBUTED_ARGS=(
    --nproc_per_node "$NPUS_PER_NODE"
    --nnodes "$NNODES"
    --node_rank "$NODE_RANK"
    --master_addr "$MASTER_ADDR"
    --master_port "$MASTER_PORT"
)

GPT_ARGS=(
    --use-mcore-models
    --num-layers 28
    --hidden-size 1024
    --ffn-hidden-size 3072
    --num-attention-heads 16
    --kv-channels 128
    --group-query-attention
    --num-query-groups 8
    --position-embedding-type rope
    --use-rotary-position-embeddings
    --rotary-base 1000000
    --normalization RMSNorm
    --norm-epsilon 1e-6
    --swiglu
    --disable-bias-linear
    --qk-layernorm
    --spec mindspeed_llm.tasks.models.spec.qwen3_spec layer_spec
    --max-position-embeddings 40960
    --make-vocab-size-divisible-by 1
    --padded-vocab-size 151936
    --attention-dropout 0
    --hidden-dropout 0
    --no-masked-softmax-fusion
    --attention-softmax-in-fp32
    --no-gradient-accumulation-fusion
    --tokenizer-type PretrainedFromHF
    --tokenizer-name-or-path "${TOKENIZER_PATH}"
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 1
    --seq-length 4096
    --micro-batch-size 1
    --global-batch-size 16
    --train-iters "${TRAIN_ITERS}"
    --lr 1.25e-5
    --min-lr 1.25e-7
    --lr-decay-style cosine
    --lr-warmup-fraction 0.01
    --weight-decay 0.1
    --adam-beta1 0.9
    --adam-beta2 0.95
    --adam-eps 1e-8
    --clip-grad 1
    --seed 42
    --bf16
    --no-load-optim
    --no-load-rng
)

DATA_ARGS=(
    --data-path "${DATA_PATH}"
    --split 100,0,0
)

OUTPUT_ARGS=(
    --log-interval 1
    --save-interval "${TRAIN_ITERS}"
    --eval-interval "${TRAIN_ITERS}"
    --eval-iters 0
    --load "${CKPT_LOAD_DIR}"
    --save "${CKPT_SAVE_DIR}"
)

TUNE_ARGS=(
    --stage sft
    --finetune
    --is-instruction-dataset
    --no-pad-to-seq-lengths
    --prompt-type qwen
    --lora-r 16
    --lora-alpha 32
    --lora-fusion
    --lora-target-modules linear_qkv linear_proj linear_fc1 linear_fc2
)

mkdir -p logs
torchrun "${DISTRIBUTED_ARGS[@]}" posttrain_gpt.py \
    "${GPT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "${TUNE_ARGS[@]}" \
    --distributed-backend nccl \
    | tee logs/tune_qwen3-0.6b-alpaca-zh-lora_lora.log
