"""Tokenize instruction samples with a template: token ids plus labels (-100 where not supervised).

Two label masks:

- ``tunebridge`` (default, every template): MindSpeed-LLM's. Prompt, system and every user turn -100; every
  assistant turn (its text + the template's end token) supervised.
- ``mindformers`` (vicuna_v1.1 only): MindFormers' llama_preprocess.py. The sample is bos + one piece per round
  ``"{system} USER: {q} ASSISTANT: {a}"`` tokenized as a whole + eos; in each round the first
  len(tokens of ``"... ASSISTANT: "``) - 1 tokens are -100, the rest supervised. MindFormers writes that count as
  ``len(tokenizer(instruction)) - 3`` for a sentencepiece LlamaTokenizer that adds bos and eos: the 3 are bos,
  eos and the lone "▁" that the instruction's trailing space becomes when it is tokenized alone, a space that
  joins the answer's first piece ("▁5") inside the round. Byte-level BPE tokenizers split the same way (" " alone,
  " 5" in the round), so the same rule masks exactly "... ASSISTANT:" there too, and the space before the answer
  is supervised: ids and labels differ from the default mask, which puts that space in the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import TunebridgeError
from .templates import Template
from .tokenizer import EMBEDDED_TOKENIZER, load_tokenizer, pad_id  # noqa: F401  (imported from here by callers)

IGNORE = -100
MASKS = ("tunebridge", "mindformers")


@dataclass(frozen=True)
class Sample:
    """Unshifted token ids and labels of one sample (labels[t] is the target id at position t, or -100)."""
    input_ids: list[int]
    labels: list[int]


def alpaca_query(instruction: str, query: str = "") -> str:
    """MindSpeed-LLM's user turn for Alpaca records: instruction, then the input on its own line if any."""
    return f"{instruction}\n{query}" if query else instruction


def encode(tokenizer, template: Template, query: str, response: str, system: str | None = None,
           history: Sequence[tuple[str, str]] = (), mask: str = "tunebridge") -> Sample:
    """One sample: the (user, assistant) turns of ``history``, then ``query`` / ``response``."""
    turns = [*history, (query, response)]
    if mask == "mindformers":
        return _mindformers_vicuna(tokenizer, template, turns, system)
    if mask != "tunebridge":
        raise TunebridgeError(f"unknown label mask {mask!r} (known: {', '.join(MASKS)})")
    if len(turns) > 1 and template.single_turn_only:
        raise TunebridgeError(f"template {template.name!r} encodes single-turn samples only: "
                              f"{template.single_turn_only}")
    end = _end_id(tokenizer, template)
    ids: list[int] = []
    labels: list[int] = []
    for i, (q, a) in enumerate(turns):
        source = _first_prompt(tokenizer, template, q, system) if i == 0 else _later_prompt(tokenizer, template, q)
        answer = _text_ids(tokenizer, a) + [end]
        ids += source + answer
        labels += [IGNORE] * len(source) + answer
    return Sample(ids, labels)


def _text_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) if text else []


def _end_id(tokenizer, template: Template) -> int:
    end = tokenizer.convert_tokens_to_ids(template.end) if template.end else tokenizer.eos_token_id
    if end is None or (template.end and end == tokenizer.unk_token_id):
        raise TunebridgeError(f"the tokenizer has no {template.end or 'eos'} token, which template "
                              f"{template.name!r} ends answers with")
    return end


def _first_prompt(tokenizer, template: Template, query: str, system: str | None) -> list[int]:
    prompt = tokenizer.encode(template.prompt(query, system), add_special_tokens=False)
    if template.bos_prefix and tokenizer.bos_token_id is not None:
        prompt = [tokenizer.bos_token_id] + prompt
    return prompt


def _later_prompt(tokenizer, template: Template, query: str) -> list[int]:
    separator, user = template.later_user_turn(query)
    bos = [tokenizer.bos_token_id] if template.bos_every_user and tokenizer.bos_token_id is not None else []
    return _text_ids(tokenizer, separator) + bos + _text_ids(tokenizer, user)


def _mindformers_vicuna(tokenizer, template: Template, turns: list[tuple[str, str]], system: str | None) -> Sample:
    if template.name != "vicuna_v1.1":
        raise TunebridgeError(f"mask 'mindformers' is MindFormers' llama_preprocess.py rule for the vicuna_v1.1 "
                              f"template, not for {template.name!r}")
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise TunebridgeError("mask 'mindformers' needs a tokenizer with bos and eos tokens")
    system = template.default_system if system is None else system
    ids, labels = [tokenizer.bos_token_id], [IGNORE]
    for i, (q, a) in enumerate(turns):
        instruction = (template.system.format(content=system) if i == 0 and system else "") + template.user.format(
            content=q)
        round_ids = tokenizer.encode(instruction + a, add_special_tokens=False) + [tokenizer.eos_token_id]
        masked = max(len(tokenizer.encode(instruction, add_special_tokens=False)) - 1, 0)
        ids += round_ids
        labels += [IGNORE] * masked + round_ids[masked:]
    return Sample(ids, labels)
