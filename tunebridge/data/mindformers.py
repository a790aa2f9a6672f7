"""Records to MindRecord rows as MindFormers' Alpaca path makes them: alpaca_converter.py (Stanford Alpaca's
prompt, one human/gpt conversation per record) then llama_preprocess.py (FastChat's vicuna_v1.1 conversation,
MindFormers' LlamaTokenizer with bos and eos added, rows of seq_length + 1).

- The conversation text is ``system + " "`` then, per turn, ``"USER: q "`` and ``"ASSISTANT: a</s>"``; an empty
  message is written as ``"USER:"`` / ``"ASSISTANT:"`` alone. A leading system turn of a ShareGPT record is
  skipped: the system prompt is always vicuna's.
- The text is split at every "</s>" (one written by the template or found in the data) into rounds, up to the
  first empty one; the sample is bos + each round's tokens + eos.
- Labels: bos is -100; in each round the first len(tokens("... ASSISTANT: ")) - 1 tokens are -100, the rest are
  supervised; a round without exactly one " ASSISTANT: " stops the labelling. If the labelled length falls short
  of the row and differs from the number of non-pad tokens (an empty answer, a split round, an <unk> token
  counted as padding), every label is -100.
- Rows are padded with the tokenizer's pad id (<unk> for MindFormers' LlamaTokenizer) and cut to seq_length + 1:
  no sample is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import TunebridgeError
from .encode import IGNORE, Sample
from .tokenizer import row_pad_id

_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)
_ANSWER = " ASSISTANT: "
_END = "</s>"
_ALPACA = {  # Stanford Alpaca's training prompts, as alpaca_converter.py writes them
    True: "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
    "### Input:\n{input}\n\n### Response:",
    False: "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{instruction}\n\n### Response:",
}


def alpaca_human_turn(instruction: str, query: str) -> str:
    """alpaca_converter.py's human turn: the prompt with an input section when the input is not empty."""
    return _ALPACA[query != ""].format(instruction=instruction, input=query)


def conversation(turns: Sequence[tuple[str, str]], system: str | None = None) -> str:
    text = (system or _SYSTEM) + " "
    for query, answer in turns:
        text += f"USER: {query} " if query else "USER:"
        text += f"ASSISTANT: {answer}{_END}" if answer else "ASSISTANT:"
    return text


def row(tokenizer, turns: Sequence[tuple[str, str]], row_length: int | None, system: str | None = None) -> Sample:
    """The sample llama_preprocess.py writes for these turns, before padding: ids and labels cut to
    ``row_length`` (seq_length + 1); None keeps the whole sample (for formats that drop what is too long)."""
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, row_pad_id(tokenizer)
    if bos is None or eos is None:
        raise TunebridgeError("MindFormers' preprocessing needs a tokenizer with bos and eos tokens")
    rounds = []
    for text in conversation(turns, system).split(_END):
        if not text:
            break
        rounds.append(text)
    encoded = tokenizer.encode_many(rounds)
    ids = [bos] + [x for r in encoded for x in (*r, eos)]
    length = len(ids) if row_length is None else row_length
    labels = np.asarray(ids + [pad] * (length - len(ids)), dtype=np.int64)
    counted = int((labels != pad).sum())
    labels[0] = IGNORE
    done = 1
    for text, tokens in zip(rounds, encoded):
        parts = text.split(_ANSWER)
        if len(parts) != 2:
            break
        prompt = len(tokenizer.encode(parts[0] + _ANSWER, add_special_tokens=False)) - 1
        labels[done : done + prompt] = IGNORE
        done += len(tokens) + 1
    labels[done:] = IGNORE
    if done < length and done != counted:
        labels[:] = IGNORE
    return Sample(ids[:length], labels[: min(length, len(ids))].tolist())
