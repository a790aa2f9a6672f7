"""A :class:`~tunebridge.evaluation.scorer.Scorer` over an HF transformers model (+ a PEFT adapter).

Greedy generation runs batched with left padding (transformers derives positions from the attention
mask); log-likelihoods run batched with right padding. Text is tokenized as the tokenizer does by default
(``add_special_tokens=True``: a bos for tokenizers that add one); a log-likelihood continuation is
tokenized on its own and appended to its context's ids, so every option is scored after the same context.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..errors import TunebridgeError
from ..data.encode import pad_id
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

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def _check_length(self, n: int, what: str) -> None:
        check_length(self.max_positions, n, what)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        for row in ids:
            self._check_length(len(row) + max_new_tokens, f"a prompt of {len(row)} tokens + {max_new_tokens} new tokens")
        width = max(len(row) for row in ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(row)) + row for row in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids], device=self.device)
        eos = stop_ids(self.tokenizer, stop)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1, pad_token_id=self.pad_id, eos_token_id=eos,
                                  temperature=None, top_p=None, top_k=None)
        return [self.tokenizer.decode(row[width:].tolist(), skip_special_tokens=True) for row in out]

    @torch.no_grad()
    def loglikelihood(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        if len(contexts) != len(continuations):
            raise TunebridgeError(f"{len(contexts)} contexts for {len(continuations)} continuations")
        pairs = [(self._encode(c), self.tokenizer.encode(x, add_special_tokens=False))
                 for c, x in zip(contexts, continuations)]
        for i, (ctx, cont) in enumerate(pairs):
            if not ctx or not cont:
                raise TunebridgeError(f"pair {i}: an empty context or continuation has no log-likelihood")
            self._check_length(len(ctx) + len(cont), f"a context of {len(ctx)} tokens + its continuation")
        # A continuation's scores come from the forward of context + continuation[:-1]: options that differ
        # only in their last token (" A" .. " D") share one row.
        rows: dict[tuple[int, ...], int] = {}
        for ctx, cont in pairs:
            rows.setdefault(tuple(ctx + cont[:-1]), len(rows))
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([list(r) + [self.pad_id] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        # every (row, position, target token, pair) scored, gathered in one go
        row_of, position, target, pair_of = [], [], [], []
        for i, (ctx, cont) in enumerate(pairs):
            row = rows[tuple(ctx + cont[:-1])]
            for k, token in enumerate(cont):
                row_of.append(row)
                position.append(len(ctx) - 1 + k)
                target.append(token)
                pair_of.append(i)
        picked = logits[torch.tensor(row_of, device=self.device), torch.tensor(position, device=self.device)]
        token_logprobs = torch.log_softmax(picked.float(), dim=-1).gather(
            1, torch.tensor(target, device=self.device)[:, None])[:, 0]
        sums = torch.zeros(len(pairs), dtype=torch.float64, device=self.device)
        sums.index_add_(0, torch.tensor(pair_of, device=self.device), token_logprobs.double())
        return sums.tolist()
