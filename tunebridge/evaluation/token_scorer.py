"""The text side of scorers whose framework runs in other processes (megatron-core ranks, MindSpore).

Tokenizing, length checks and decoding follow :class:`~tunebridge.evaluation.hf_scorer.HFScorer` exactly
(``tokenizer.encode`` with its default special tokens, continuations without, decoding with special tokens
skipped); a subclass only turns token ids into new ids or log-probabilities, all of a call's work in one
framework start.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data.tokenizer import pad_id
from ..errors import TunebridgeError
from .greedy import loglik_plan, sum_by_pair
from .tokens import Prompt, check_length, encoded_pairs, prompt_ids, stop_ids


class TokenScorer:
    name = ""
    # Each call starts the framework (seconds): the runner passes a whole task in one call and the
    # scorer batches it by ``batch_size`` itself.
    whole_task_per_call = True

    def __init__(self, tokenizer, max_positions: int | None, batch_size: int = 8):
        if batch_size < 1:
            raise TunebridgeError(f"batch_size must be >= 1, got {batch_size}")
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.batch_size = batch_size
        self.pad_id = pad_id(tokenizer)

    def _generate_ids(
        self, prompts: list[list[int]], max_new_tokens: int, eos_id: int | list[int] | None
    ) -> list[list[int]]:
        raise NotImplementedError

    def _pick_logprobs(self, rows: list[list[int]], picks: list[tuple[int, int, int]]) -> list[float]:
        """log p(target | row[:position + 1]) for each (row, position, target)."""
        raise NotImplementedError

    def _check_length(self, n: int, what: str) -> None:
        check_length(self.max_positions, n, what)

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        for row in ids:
            self._check_length(
                len(row) + max_new_tokens, f"a prompt of {len(row)} tokens + {max_new_tokens} new tokens"
            )
        if not ids:
            return []
        new = self._generate_ids(ids, max_new_tokens, stop_ids(self.tokenizer, stop))
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]

    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        if len(contexts) != len(continuations):
            raise TunebridgeError(f"{len(contexts)} contexts for {len(continuations)} continuations")
        pairs = encoded_pairs(self.tokenizer, contexts, continuations)
        for i, (ctx, cont) in enumerate(pairs):
            if not ctx or not cont:
                raise TunebridgeError(f"pair {i}: an empty context or continuation has no log-likelihood")
            self._check_length(len(ctx) + len(cont), f"a context of {len(ctx)} tokens + its continuation")
        if not pairs:
            return []
        rows, picks, pair_of = loglik_plan(pairs)
        return sum_by_pair(self._pick_logprobs(rows, picks), pair_of, len(pairs))
