"""Build tunebridge's embedded tokenizer (tunebridge/assets/tokenizer/tokenizer.json), deterministically.

A byte-level BPE with exactly 512 ids (the tiny catalogue models' vocabulary), trained on the project's own
text (template phrases, and arithmetic and reading-comprehension sentences generated here), with the special tokens
the prompt templates need. Run: .venv/bin/python scripts/build_tokenizer.py
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tunebridge" / "assets" / "tokenizer"
VOCAB_SIZE = 512
# ids 0..10, in this order: pad first so MindRecord padding and ignore masks use id 0
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def corpus() -> list[str]:
    rng = random.Random(0)  # generated text only, so editing the docs never changes the token ids
    lines = ["Below is an instruction that describes a task. Write a response that appropriately completes the request.",
             "### Instruction:", "### Response:", "You are a helpful assistant.", "Please answer the following math problems:",
             "Read the passage and answer the question below.", "USER: ASSISTANT: system user assistant"]
    for _ in range(3000):
        a, b = round(rng.uniform(-9999, 9999), 2), round(rng.uniform(-9999, 9999), 2)
        op = rng.choice("+-*/")
        lines.append(f"计算 {a} {op} {b} 等于多少？ What is {a} {op} {b}? The answer is {a + b:.2f}.")
    words = "the a model reads passage question answer because which where when who river city year".split()
    lines += [" ".join(rng.choice(words) for _ in range(12)) for _ in range(1000)]
    return lines


def build() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    build().save(str(OUT / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096, "pad_token": "<pad>",
              "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "clean_up_tokenization_spaces": False}
    (OUT / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {OUT} ({VOCAB_SIZE} ids)")


if __name__ == "__main__":
    main()
