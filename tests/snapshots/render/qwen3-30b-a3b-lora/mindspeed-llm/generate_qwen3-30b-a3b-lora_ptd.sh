#!/usr/bin/env bash
# qwen3-30b-a3b-lora: generate with the fine-tuned model (MindSpeed-LLM 2.3.0)
# Rendered by tunebridge; run from the root of a MindSpeed-LLM checkout.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
CKPT_LOAD_DIR=${CKPT_LOAD_DIR:-./model_weights/qwen3-30b-a3b-lora-mcore}
CKPT_SAVE_DIR=${CKPT_SAVE_DIR:-./ckpt/qwen3-30b-a3b-lora}
TOKENIZER_PATH=${TOKENIZER_PATH:-./model_from_hf/qwen3-30b-a3b-lora}
NPUS_PER_NODE="${NPUS_PER_NODE:-8}"
MASTER_ADDR="${MASTER_ADDR:-localhost}"
MASTER_PORT="${MASTER_PORT:-6011}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"

DISTRIBUTED_ARGS=(
    --nproc_per_node "$NPUS_PER_NODE"
    --nnodes "$NNODES"
    --node_rank "$NODE_RANK"
    --master_addr "$MASTER_ADDR"
    --master_port "$MASTER_PORT"
)

MODEL_ARGS=(
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
    --seed 42
    --bf16
)

INFER_ARGS=(
    --load "${CKPT_LOAD_DIR}"
    --lora-load "${CKPT_SAVE_DIR}"
    --lora-r 16
    --lora-alpha 32
    --lora-target-modules linear_qkv linear_proj
    --micro-batch-size 1
    --moe-router-load-balancing-type softmax_topk
    --moe-token-dispatcher-type alltoall_seq
    --exit-on-missing-checkpoint
)

GENERATE_ARGS=(
    --task chat
    --prompt-type qwen
    --max-new-tokens 256
)

mkdir -p logs
torchrun "${DISTRIBUTED_ARGS[@]}" inference.py "${MODEL_ARGS[@]}" "${INFER_ARGS[@]}" "${GENERATE_ARGS[@]}" \
    | tee logs/generate_qwen3-30b-a3b-lora.log
