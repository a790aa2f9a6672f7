#!/usr/bin/env bash
# qwen3-30b-a3b-lora: lora fine-tuning with MindSpeed-LLM 2.3.0
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
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen3-30b-a3b-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/qwen3-30b-a3b-lora}
DATA_PATH=${DATA_PATH:-./finetune_dataset/qwen3-30b-a3b-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen3-30b-a3b-lora}
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
    --num-layers 48
    --hidden-size 2048
    --ffn-hidden-size 6144
    --num-attention-heads 32
    --kv-channels 128
    --group-query-attention
    --num-query-groups 4
    --position-embedding-type rope
    --use-rotary-position-embeddings
    --rotary-base 1000000
    --normalization RMSNorm
    --norm-epsilon 1e-6
    --swiglu
    --disable-bias-linear
    --qk-layernorm
    --untie-embeddings-and-output-weights
    --num-experts 128
    --moe-router-topk 8
    --moe-ffn-hidden-size 768
    --norm-topk-prob
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
    --tensor-model-parallel-size 4
    --pipeline-model-parallel-size 1
    --expert-model-parallel-size 2
    --sequence-parallel
    --seq-length 4096
    --micro-batch-size 8
    --global-batch-size 64
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
    --lora-target-modules linear_qkv linear_proj
    --moe-router-load-balancing-type aux_loss
    --moe-aux-loss-coeff 0.001
    --moe-token-dispatcher-type alltoall_seq
)

mkdir -p logs
torchrun "${DISTRIBUTED_ARGS[@]}" posttrain_gpt.py \
    "${GPT_ARGS[@]}" "${DATA_ARGS[@]}" "${OUTPUT_ARGS[@]}" "${TUNE_ARGS[@]}" \
    --distributed-backend nccl \
    | tee logs/tune_qwen3-30b-a3b-lora_lora.log
