"""MindFormers' SQuAD evaluation (``run_mode eval`` with ``metric: EmF1Metric``), labelled ``mindformers``.

What MindFormers does with the seeds' ``squad8192.mindrecord`` (its ``squad_data_process.py --mode eval`` and
``CausalLanguageModelingTrainer.evaluate``), reproduced here:

- the prompt below, per paragraph with its first question, tokenized with a bos (``add_bos_token``, no eos);
- greedy decoding (``do_sample: False``) up to ``max_new_tokens`` new tokens (its ``model_config.max_new_tokens``;
  without it, up to ``max_decode_length`` tokens in all), stopping at eos; the new ids decoded with special
  tokens skipped;
- the gold is the paragraph's first answer as the MindRecord stores it: its token ids, decoded the same way;
- scored by ``EmF1Metric`` (:mod:`.mindformers_emf1`): first line, its punctuation list, CJK / jieba
  segments, longest common run; x100.

``PROMPT`` and ``MAX_NEW_TOKENS`` are the one place these facts live: ``tunebridge data squad`` writes the
prompt into the MindRecord and the JSONL, and an eval YAML that sets ``max_new_tokens`` to the same value
generates what ``eval run --protocol mindformers`` generates.
"""

from __future__ import annotations

PROTOCOL = "mindformers"
PROMPT = (
    "Read the passage and answer the question below.\n\n### Instruction:\n{context}\n\n### Input:\n{question}"
    "\n\n### Response:"
)
MAX_NEW_TOKENS = 64


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids as the MindRecord holds them: a bos (when the tokenizer has one), then the text."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer.encode(prompt, add_special_tokens=False)


def gold_as_stored(tokenizer, answer: str) -> str:
    """The first gold answer as MindFormers scores it: encoded into the MindRecord's labels, decoded back."""
    return tokenizer.decode(tokenizer.encode(answer, add_special_tokens=False), skip_special_tokens=True)
