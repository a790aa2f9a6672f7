"""A :class:`~tunebridge.evaluation.scorer.Scorer` over an HF transformers model (+ a PEFT adapter).

A call's rows are run together: the prefix every row shares (a subject's shot text) runs once and its keys
and values are reused by every row; the rest runs left-padded with explicit positions and a padding mask,
so each row computes what it would alone, and only the positions that are read get logits. Greedy decoding then continues all rows through the cache, one
token per step, by the rules of transformers' greedy ``generate`` (argmax; a row stops once it produced eos
or a stop token, kept in its ids; special tokens dropped when decoding). A log-likelihood continuation is
tokenized on its own and appended to its context's ids, so every option is scored after the same context;
options that differ only in their last token share one row.

Text is tokenized as the tokenizer does by default (``add_special_tokens=True``: a bos for tokenizers that
add one); token-id prompts are taken as they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..errors import TunebridgeError
from ..data.encode import pad_id
from .greedy import loglik_plan, sum_by_pair, worth_sharing
from .tokens import encoded_pairs
from .tokens import Prompt, check_length, prompt_ids, stop_ids

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_hf_model(model_dir: str | Path, adapter: str | Path | None, dtype: str, device: torch.device):
    from transformers import AutoModelForCausalLM
    if not (Path(model_dir) / "config.json").exists():
        raise TunebridgeError(f"{model_dir}: not an HF model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=DTYPES[dtype], local_files_only=True)
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

    @classmethod
    def from_dir(cls, model_dir: str | Path, adapter: str | Path | None = None, tokenizer=None,
                 dtype: str = "fp32") -> "HFScorer":
        from ..backends.pytorch import detect_device
        from ..data.encode import load_tokenizer
        device = detect_device()
        return cls(load_hf_model(model_dir, adapter, dtype, device), tokenizer or load_tokenizer(None), device)

    def _check_length(self, n: int, what: str) -> None:
        check_length(self.max_positions, n, what)

    def _run(self, rows: list[list[int]], shared: int, keep: int):
        """One forward over ``rows`` whose first ``shared`` tokens are the same: those run once (batch 1), their
        keys and values are repeated for every row, and the rest runs left-padded after them, so every row ends
        at the same index. Positions are explicit and padding is masked: each row computes what it would alone.

        Returns the logits of the last ``keep`` indices [rows, keep, vocab], the cache, the attention mask, and
        the padded width of the suffixes."""
        model, device = self.model, self.device
        cache = None
        if shared:
            cache = model(input_ids=torch.tensor([rows[0][:shared]], device=device), use_cache=True,
                          logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(len(rows))
        lengths = [len(r) - shared for r in rows]
        width = max(lengths)
        ids = torch.tensor([[self.pad_id] * (width - n) + r[shared:] for r, n in zip(rows, lengths)], device=device)
        mask = torch.tensor([[1] * shared + [0] * (width - n) + [1] * n for n in lengths], device=device)
        start = torch.tensor([width - n for n in lengths], device=device)[:, None]
        positions = (shared + torch.arange(width, device=device)[None, :] - start).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                    logits_to_keep=keep)
        return out.logits, out.past_key_values, mask, width

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        rows = [prompt_ids(self.tokenizer, p) for p in prompts]
        for row in rows:
            self._check_length(len(row) + max_new_tokens, f"a prompt of {len(row)} tokens + {max_new_tokens} new tokens")
        if not rows or max_new_tokens < 1:
            return ["" for _ in rows]
        stops = set(stop_ids(self.tokenizer, stop))
        logits, cache, mask, _ = self._run(rows, worth_sharing(rows), keep=1)
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
            # every row takes one more token (finished rows too, masked out), at its own next position
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype, device=self.device)], dim=1)
            positions = (ends + step)[:, None]
            out = self.model(input_ids=picks[:, None], attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True)
            cache, picks = out.past_key_values, out.logits[:, -1].argmax(-1)
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
        shared = min(worth_sharing(rows), *(len(ctx) - 1 for ctx, _ in pairs))
        # only the positions scored need logits: rows end together, so those are among the last ``keep``
        row, position, target = (torch.tensor(col, device=self.device) for col in zip(*picks))
        from_end = torch.tensor([len(r) for r in rows], device=self.device)[row] - position
        keep = int(from_end.max())
        logits, _, _, _ = self._run(rows, shared, keep)
        token_logprobs = torch.log_softmax(logits[row, keep - from_end].float(), dim=-1).gather(
            1, target[:, None])[:, 0]
        return sum_by_pair(token_logprobs.double().tolist(), pair_of, len(pairs))
