"""Token-level facts every scorer shares: the tokenizer, the stop ids and the model's position limit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import TunebridgeError

# What a scorer is asked to continue: text (encoded as the tokenizer does by default, a bos when it adds one)
# or token ids used as they are (a protocol that tokenizes itself, e.g. through a chat template).
Prompt = str | Sequence[int]


def load_eval_tokenizer(path: str | Path | None = None):
    """transformers' tokenizer of a directory (the embedded one when None), for evaluation: MindSpeed-LLM's
    evaluation.py encodes prompts with transformers' AutoTokenizer, and its protocol needs ``chat_template`` /
    ``apply_chat_template``. Data is encoded with tunebridge's own tokenizer
    (:func:`tunebridge.data.tokenizer.load_tokenizer`)."""
    from transformers import AutoTokenizer

    from ..data.tokenizer import EMBEDDED_TOKENIZER

    where = Path(path) if path else EMBEDDED_TOKENIZER
    try:
        return AutoTokenizer.from_pretrained(str(where), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TunebridgeError(f"{where}: not a tokenizer directory ({e})") from None


def prompt_ids(tokenizer, prompt: Prompt) -> list[int]:
    return tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]


def encoded_pairs(
    tokenizer, contexts: Sequence[str], continuations: Sequence[str]
) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) per pair: contexts as the tokenizer encodes them by default, continuations
    without special tokens; each distinct text encoded once (a question's four options share its context)."""
    ctx_ids = {c: tokenizer.encode(c) for c in dict.fromkeys(contexts)}
    cont_ids = {x: tokenizer.encode(x, add_special_tokens=False) for x in dict.fromkeys(continuations)}
    return [(ctx_ids[c], cont_ids[x]) for c, x in zip(contexts, continuations)]


def stop_ids(tokenizer, stop: Sequence[str]) -> list[int]:
    """The tokenizer's eos and the ids of the ``stop`` tokens (each must be one token of the vocabulary)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for token in stop:
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id:
            raise TunebridgeError(f"stop token {token!r} is not in the tokenizer's vocabulary")
        ids.append(i)
    return ids


def check_length(max_positions: int | None, n: int, what: str) -> None:
    if max_positions and n > max_positions:
        raise TunebridgeError(
            f"{what} needs {n} positions, the model has {max_positions} (shorten the prompt, e.g. fewer --shots)"
        )
