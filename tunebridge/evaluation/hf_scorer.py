"""A :class:`~tunebridge.evaluation.scorer.Scorer` over an HF transformers model (+ a PEFT adapter).

A call's rows are run together: the prefix every row shares (a subject's shot text) runs once and every row
attends to its one copy of keys and values (:mod:`.shared_prefix`); the rest runs right-padded at explicit
positions under the plain causal mask, so each row computes what it would alone, and only the positions
that are read get logits. Rows of very different lengths run in separate length buckets (after the same
prefix) when that saves more padding than a forward costs. Greedy decoding then continues all rows through
the cache (its padding keys masked), one token per step, by the rules of transformers' greedy ``generate`` (argmax; a row stops once it produced eos
or a stop token, kept in its ids; special tokens dropped when decoding). A log-likelihood continuation is
tokenized on its own and appended to its context's ids, so every option is scored after the same context;
options that differ only in their last token share one row.

Text is tokenized as the tokenizer does by default (``add_special_tokens=True``: a bos for tokenizers that
add one); token-id prompts are taken as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.tokenizer import pad_id
from ..errors import TunebridgeError
from . import shared_prefix
from .greedy import length_buckets, loglik_plan, sum_by_pair, worth_sharing
from .tokens import Prompt, check_length, encoded_pairs, prompt_ids, stop_ids

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# One forward's fixed cost in tokens' worth of compute (measured on tiny models, CPU): a batch is split into
# length buckets, each a forward of its own, when the padding saved outweighs that.
FORWARD_COST = 160


def load_hf_model(model_dir: str | Path, adapter: str | Path | None, dtype: str, device: torch.device):
    from transformers import AutoModelForCausalLM

    if not (Path(model_dir) / "config.json").exists():
        raise TunebridgeError(f"{model_dir}: not an HF model directory (no config.json)")
    model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=DTYPES[dtype], local_files_only=True
    )
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").exists():
            raise TunebridgeError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.to(device).eval()


class HFScorer:
    name = "hf"

    def __init__(self, model, tokenizer, device: torch.device | None = None):
        from ..backends.pytorch import detect_device

        self.model = model
        self.tokenizer = tokenizer
        self.device = device or detect_device()
        self.pad_id = pad_id(tokenizer)
        config = getattr(model, "config", None)
        self.max_positions = getattr(config, "max_position_embeddings", None)
        # rows' shared prefix run once and attended once (else every row runs its whole prompt)
        self.shares_prefix = shared_prefix.install(model)

    @classmethod
    def from_dir(
        cls, model_dir: str | Path, adapter: str | Path | None = None, tokenizer=None, dtype: str = "fp32"
    ) -> HFScorer:
        from ..backends.pytorch import detect_device
        from .tokens import load_eval_tokenizer

        device = detect_device()
        return cls(load_hf_model(model_dir, adapter, dtype, device), tokenizer or load_eval_tokenizer(None), device)

    def _check_length(self, n: int, what: str) -> None:
        check_length(self.max_positions, n, what)

    def _prefix(self, rows: list[list[int]], shared: int):
        """Per layer, the keys and values of the first ``shared`` tokens every row has, computed once (None for none)."""
        if not shared:
            return None
        cache = self.model(
            input_ids=torch.tensor([rows[0][:shared]], device=self.device), use_cache=True, logits_to_keep=1
        ).past_key_values
        return shared_prefix.layers(cache)

    def _forward(
        self,
        ids: torch.Tensor,
        valid: torch.Tensor | None,
        positions: torch.Tensor,
        prefix,
        cache,
        keep: int | torch.Tensor,
        use_cache: bool,
    ):
        """The model over ``ids`` after the shared prefix when there is one: a whole row each (``valid`` None,
        causal) or one new token per row after ``cache``, ``valid`` marking which of its keys are real."""
        mask = None
        if valid is not None:
            dtype = self.model.dtype
            mask = torch.zeros(valid.shape, dtype=dtype, device=self.device).masked_fill_(
                ~valid, torch.finfo(dtype).min
            )[:, None, None, :]
        extra = {shared_prefix.KEYWORD: prefix} if prefix is not None else {}
        return self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=use_cache,
            logits_to_keep=keep,
            **extra,
        )

    def _run(self, rows: list[list[int]], shared: int, prefix, keep: list[list[int]], use_cache: bool):
        """One forward over ``rows`` after their shared prefix (attended once for all rows, see
        :mod:`.shared_prefix`), the rest right-padded at explicit positions: under the causal mask no real token
        sees the padding after it, so each row computes what it would alone with no mask at all (the faster
        attention kernel). ``keep`` holds, per row, the indices after the prefix whose logits are read (the
        same count for every row).

        Returns those logits [rows, len(keep[0]), vocab], the cache of the rows' own tokens and which of its
        keys are real (None: all)."""
        device = self.device
        lengths = [len(r) - shared for r in rows]
        width = max(lengths)
        ids = torch.tensor([r[shared:] + [self.pad_id] * (width - n) for r, n in zip(rows, lengths)], device=device)
        positions = (shared + torch.arange(width, device=device))[None, :].expand(len(rows), width)
        out = self._forward(ids, None, positions, prefix, None, torch.tensor(keep, device=device), use_cache)
        valid = None
        if min(lengths) < width:
            valid = torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
        return out.logits, out.past_key_values, valid

    def _greedy(
        self, rows: list[list[int]], shared: int, prefix, max_new_tokens: int, stops: set[int]
    ) -> list[list[int]]:
        logits, cache, valid = self._run(rows, shared, prefix, [[len(r) - shared - 1] for r in rows], use_cache=True)
        ends = torch.tensor([len(r) for r in rows], device=self.device)
        picks = logits[:, -1].argmax(-1)
        generated: list[list[int]] = [[] for _ in rows]
        live = list(range(len(rows)))
        for step in range(max_new_tokens):
            for i in live:
                generated[i].append(int(picks[i]))
            live = [i for i in live if generated[i][-1] not in stops]
            if not live or step == max_new_tokens - 1:
                break
            # every row takes one more token (finished rows too, their output unread), at its own next position
            if valid is not None:
                valid = torch.cat([valid, torch.ones(len(rows), 1, dtype=torch.bool, device=self.device)], dim=1)
            out = self._forward(picks[:, None], valid, (ends + step)[:, None], prefix, cache, 1, True)
            cache, picks = out.past_key_values, out.logits[:, -1].argmax(-1)
        return generated

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        rows = [prompt_ids(self.tokenizer, p) for p in prompts]
        for row in rows:
            self._check_length(
                len(row) + max_new_tokens, f"a prompt of {len(row)} tokens + {max_new_tokens} new tokens"
            )
        if not rows or max_new_tokens < 1:
            return ["" for _ in rows]
        stops = set(stop_ids(self.tokenizer, stop))
        shared = worth_sharing(rows) if self.shares_prefix else 0
        prefix = self._prefix(rows, shared)
        generated: list[list[int]] = [[] for _ in rows]
        for bucket in length_buckets([len(r) - shared for r in rows], FORWARD_COST * max_new_tokens):
            for i, new in zip(bucket, self._greedy([rows[i] for i in bucket], shared, prefix, max_new_tokens, stops)):
                generated[i] = new
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in generated]

    @torch.no_grad()
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
        # options that differ only in their last token (" A" .. " D") share one row: one forward for all four
        rows, picks, pair_of = loglik_plan(pairs)
        shared = min(worth_sharing(rows) if self.shares_prefix else 0, *(len(ctx) - 1 for ctx, _ in pairs))
        prefix = self._prefix(rows, shared)
        by_row: dict[int, list[int]] = {}
        for j, (r, _, _) in enumerate(picks):
            by_row.setdefault(r, []).append(j)
        token_logprobs = [0.0] * len(picks)
        for bucket in length_buckets([len(r) - shared for r in rows], FORWARD_COST):
            # per row the distinct indices it is read at (after the prefix), padded to one count by repetition
            read = [sorted({picks[j][1] - shared for j in by_row[r]}) for r in bucket]
            count = max(len(k) for k in read)
            keep = [k + k[:1] * (count - len(k)) for k in read]
            logits, _, _ = self._run([rows[r] for r in bucket], shared, prefix, keep, use_cache=False)
            mine = [j for r in bucket for j in by_row[r]]
            at = logits[
                torch.tensor([b for b, r in enumerate(bucket) for _ in by_row[r]], device=self.device),
                torch.tensor(
                    [keep[b].index(picks[j][1] - shared) for b, r in enumerate(bucket) for j in by_row[r]],
                    device=self.device,
                ),
            ]
            target = torch.tensor([picks[j][2] for j in mine], device=self.device)
            values = torch.log_softmax(at.float(), dim=-1).gather(1, target[:, None])[:, 0].double().tolist()
            for j, value in zip(mine, values):
                token_logprobs[j] = value
        return sum_by_pair(token_logprobs, pair_of, len(pairs))
