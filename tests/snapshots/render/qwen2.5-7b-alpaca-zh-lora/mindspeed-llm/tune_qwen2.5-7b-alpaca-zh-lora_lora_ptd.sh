#!/usr/bin/env bash
# qwen2.5-7b-alpaca-zh-lora: lora fine-tuning with MindSpeed-LLM 2.3.0
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1

# cluster layout (override from the environment for multi-node runs)
NPUS_PER_NODE="${NPUS_PER_NODE:-8}"
MASTER_ADDR="${MASTER_ADDR:-localhost}"
MASTER_PORT="${MASTER_PORT:-6000}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"

# paths
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen2.5-7b-alpaca-zh-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/qwen2.5-7b-alpaca-zh-lora}
DATA_PATH=${DATA_PATH:-./finetune_dataset/qwen2.5-7b-alpaca-zh-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen2.5-7b-alpaca-zh-lora}
TRAIN_ITERS=${TRAIN_ITERS:-16}

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
    --hidden-size 3584
    --ffn-hidden-size 18944
    --num-attention-heads 28
    --group-query-attention
    --num-query-groups 4
    --position-embedding-type rope
    --use-rotary-position-embeddings
    --rotary-base 1000000
    --normalization RMSNorm
    --norm-epsilon 1e-6
    --swiglu
    --disable-bias-linear
    --add-qkv-bias
    --untie-embeddings-and-output-weights
    --max-position-embeddings 131072
    --make-vocab-size-divisible-by 1
    --padded-vocab-size 152064
    --attention-dropout 0
    --hidden-dropout 0
    --no-masked-softmax-fusion
    --attention-softmax-in-fp32
    --no-gradient-accumulation-fusion
    --tokenizer-type PretrainedFromHF
    --tokenizer-name-or-path "${TOKENIZER_PATH}"
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 8
    --num-layer-list 4,4,4,4,3,3,3,3
    --seq-length 4096
    --micro-batch-size 1
    --global-batch-size 64
    --train-iters "${TRAIN_ITERS}"
    --lr 1.25e-6
    --min-lr 1.25e-7
    --lr-decay-style cosine
    --lr-warmup-fraction 0.01
    --weight-decay 0
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
    --lora-r 8
    --lora-alpha 16
    --lora-fusion
    --lora-target-modules linear_qkv linear_proj linear_fc1 linear_fc2
)

mkdir -p logs
torchrun "${DISTRIBUTED_ARGS[@]}" posttrain_gpt.py \
    "${GPT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "${TUNE_ARGS[@]}" \
    --distributed-backend nccl \
    | tee logs/tune_qwen2.5-7b-alpaca-zh-lora_lora.log
