"""Token-level facts every scorer shares: the stop ids and the model's position limit."""
from __future__ import annotations

from typing import Sequence

from ..errors import TunebridgeError

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
        raise TunebridgeError(f"{what} needs {n} positions, the model has {max_positions} "
                              f"(shorten the prompt, e.g. fewer --shots)")
