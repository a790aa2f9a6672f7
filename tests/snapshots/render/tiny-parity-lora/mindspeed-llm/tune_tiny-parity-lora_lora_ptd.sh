#!/usr/bin/env bash
# tiny-parity-lora: lora fine-tuning with MindSpeed-LLM 2.3.0
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
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/tiny-parity-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/tiny-parity-lora}
DATA_PATH=${DATA_PATH:-./finetune_dataset/tiny-parity-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/tiny-parity-lora}
TRAIN_ITERS=${TRAIN_ITERS:-20}

DISTRIBUTED_ARGS=(
    --nproc_per_node "$NPUS_PER_NODE"
    --nnodes "$NNODES"
    --node_rank "$NODE_RANK"
    --master_addr "$MASTER_ADDR"
    --master_port "$MASTER_PORT"
)

GPT_ARGS=(
    --use-mcore-models
    --num-layers 4
    --hidden-size 64
    --ffn-hidden-size 160
    --num-attention-heads 4
    --group-query-attention
    --num-query-groups 2
    --position-embedding-type rope
    --use-rotary-position-embeddings
    --rotary-base 10000
    --normalization RMSNorm
    --norm-epsilon 1e-5
    --swiglu
    --disable-bias-linear
    --untie-embeddings-and-output-weights
    --max-position-embeddings 512
    --make-vocab-size-divisible-by 1
    --padded-vocab-size 512
    --attention-dropout 0
    --hidden-dropout 0
    --no-masked-softmax-fusion
    --attention-softmax-in-fp32
    --no-gradient-accumulation-fusion
    --tokenizer-type PretrainedFromHF
    --tokenizer-name-or-path "${TOKENIZER_PATH}"
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 1
    --seq-length 64
    --micro-batch-size 2
    --global-batch-size 8
    --train-iters "${TRAIN_ITERS}"
    --lr 0.002
    --min-lr 0
    --lr-decay-style cosine
    --lr-warmup-fraction 0.1
    --weight-decay 0.01
    --adam-beta1 0.9
    --adam-beta2 0.95
    --adam-eps 1e-8
    --clip-grad 1
    --seed 0
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
    --lora-target-modules linear_proj linear_fc2
)

mkdir -p logs
torchrun "${DISTRIBUTED_ARGS[@]}" posttrain_gpt.py \
    "${GPT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "${TUNE_ARGS[@]}" \
    --distributed-backend nccl \
    | tee logs/tune_tiny-parity-lora_lora.log
