"""Build the sentencepiece test tokenizer (tests/fixtures/tokenizer-sp/), deterministically.

A Llama-2-style sentencepiece model: BPE with byte fallback, identity normalization, a dummy prefix, spaces kept
as written, digits split, <unk> 0 / <s> 1 / </s> 2 and no pad; the chat templates' special tokens are user-defined
pieces, declared special in tokenizer_config.json (as Yi and InternLM2 ship theirs). Exactly 512 ids, like the
tiny models. Trained on generated text only. Run: .venv/bin/python scripts/build_sp_tokenizer.py
"""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import sentencepiece as spm

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tokenizer-sp"
VOCAB_SIZE = 512
CONTROL = ["<unk>", "<s>", "</s>"]
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
               "<|eot_id|>"]


def corpus() -> list[str]:
    rng = random.Random(0)
    lines = ["Below is an instruction that describes a task. Write a response that appropriately completes the request.",
             "### Instruction:", "### Input:", "### Response:", "You are a helpful assistant.",
             "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
             "detailed, and polite answers to the user's questions.", "USER: ASSISTANT: system user assistant",
             "[INST] <<SYS>> <</SYS>> [/INST]"]
    for _ in range(3000):
        a, b = round(rng.uniform(-9999, 9999), 2), round(rng.uniform(-9999, 9999), 2)
        lines.append(f"计算 {a} + {b} 等于多少？ What is {a} + {b}? The answer is {a + b:.2f}.")
    words = "the a model reads passage question answer because which where when who river city year".split()
    lines += [" ".join(rng.choice(words) for _ in range(12)) for _ in range(1000)]
    return lines


def build() -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=model, vocab_size=VOCAB_SIZE, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, user_defined_symbols=CHAT_TOKENS, num_threads=1, minloglevel=2)
    return model.getvalue()


def config() -> dict:
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for i, t in enumerate(CONTROL + CHAT_TOKENS)}
    return {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
            "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None, "model_max_length": 4096,
            "clean_up_tokenization_spaces": False, "added_tokens_decoder": added}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = build()
    processor = spm.SentencePieceProcessor(model_proto=model)
    assert processor.get_piece_size() == VOCAB_SIZE, processor.get_piece_size()
    assert [processor.id_to_piece(i) for i in range(len(CONTROL + CHAT_TOKENS))] == CONTROL + CHAT_TOKENS
    (OUT / "tokenizer.model").write_bytes(model)
    (OUT / "tokenizer_config.json").write_text(json.dumps(config(), indent=2) + "\n")
    print(f"wrote {OUT} ({VOCAB_SIZE} ids)")


if __name__ == "__main__":
    main()
