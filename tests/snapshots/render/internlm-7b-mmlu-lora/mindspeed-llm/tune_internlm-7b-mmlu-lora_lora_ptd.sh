#!/usr/bin/env bash
# internlm-7b-mmlu-lora: lora fine-tuning with MindSpeed-LLM 2.3.0
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1

# cluster layout (override from the environment for multi-node runs)
NPUS_PER_NODE="${NPUS_PER_NODE:-4}"
MASTER_ADDR="${MASTER_ADDR:-localhost}"
MASTER_PORT="${MASTER_PORT:-6000}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"

# paths
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/internlm-7b-mmlu-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/internlm-7b-mmlu-lora}
DATA_PATH=${DATA_PATH:-./finetune_dataset/internlm-7b-mmlu-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/internlm-7b-mmlu-lora}
TRAIN_ITERS=${TRAIN_ITERS:-625}

DISTRIBUTED_ARGS=(
    --nproc_per_node "$NPUS_PER_NODE"
    --nnodes "$NNODES"
    --node_rank "$NODE_RANK"
    --master_addr "$MASTER_ADDR"
    --master_port "$MASTER_PORT"
)

GPT_ARGS=(
    --use-mcore-models
    --num-layers 32
    --hidden-size 4096
    --ffn-hidden-size 11008
    --num-attention-heads 32
    --position-embedding-type rope
    --use-rotary-position-embeddings
    --rotary-base 10000
    --normalization RMSNorm
    --norm-epsilon 1e-6
    --swiglu
    --disable-bias-linear
    --add-qkv-bias
    --add-dense-bias
    --untie-embeddings-and-output-weights
    --max-position-embeddings 2048
    --make-vocab-size-divisible-by 1
    --padded-vocab-size 103168
    --attention-dropout 0
    --hidden-dropout 0
    --no-masked-softmax-fusion
    --attention-softmax-in-fp32
    --no-gradient-accumulation-fusion
    --tokenizer-type PretrainedFromHF
    --tokenizer-name-or-path "${TOKENIZER_PATH}"
    --tensor-model-parallel-size 1
    --pipeline-model-parallel-size 1
    --seq-length 2048
    --micro-batch-size 4
    --global-batch-size 16
    --train-iters "${TRAIN_ITERS}"
    --lr 5e-5
    --min-lr 0
    --lr-decay-style cosine
    --lr-warmup-fraction 0.03
    --weight-decay 0.01
    --adam-beta1 0.9
    --adam-beta2 0.999
    --adam-eps 1e-8
    --clip-grad 1
    --seed 0
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
    --prompt-type alpaca
    --lora-r 8
    --lora-alpha 16
    --lora-fusion
    --lora-target-modules linear_qkv linear_proj
)

mkdir -p logs
torchrun "${DISTRIBUTED_ARGS[@]}" posttrain_gpt.py \
    "${GPT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "${TUNE_ARGS[@]}" \
    --distributed-backend nccl \
    | tee logs/tune_internlm-7b-mmlu-lora_lora.log
