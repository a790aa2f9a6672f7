"""The backend-neutral scorer interface every evaluation task is written against.

A scorer wraps one model on one framework (HF transformers + PEFT, megatron-core, MindFormers) and answers
two questions in batches: what does greedy decoding produce after each prompt, and how likely is each
continuation after its context. Tasks (SQuAD, math, C-Eval/MMLU/CMMLU) never see the framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .tokens import Prompt


class Scorer(Protocol):
    name: str  # "hf", "mcore", "mindformers": named in every report
    tokenizer: object  # the HF tokenizer that turns text into the model's ids and back

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        """Greedy continuation of each prompt (text after the prompt, special tokens dropped), ending at the
        tokenizer's eos or at any of the ``stop`` tokens (a template's end token, e.g. ``<|im_end|>``).
        A prompt is text, encoded as the tokenizer does by default, or token ids taken as they are."""
        ...

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens given its context."""
        ...
