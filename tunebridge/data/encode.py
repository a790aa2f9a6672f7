"""Records to token ids and labels (-100 where not supervised) as MindSpeed-LLM's preprocess_data.py makes them
(its LlamaFactory-style handlers, AlpacaStyleInstructionHandler and SharegptStyleInstructionHandler).

- The user turn of an Alpaca record is its instruction and input joined by "\\n", each only if not empty; the
  record's ``system`` and ``history`` are used only when ``--map-keys`` names them; an empty system (an empty
  ShareGPT system turn too) means the template's default.
- Turn 0 is prefix + system + user slots, every later user turn separator + user slots, every assistant turn the
  assistant slots (content + the end token); each text slot is tokenized on its own. Prompt tokens are -100,
  every assistant turn is supervised.
- Lengths: the turns are cut to seq_length as the template class cuts them (Template: each pair shares what is
  left in proportion to its parts; LFDefaultTemplate, qwen_lf: seq_length - 1 with LlamaFactory's rule), then
  a sample of seq_length tokens or more is dropped. So every over-long sample is dropped, except with qwen_lf,
  whose samples are cut to seq_length - 1 and kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import TunebridgeError
from .templates import BOS, EOS, Template, fill, first_user_slots, later_user_slots

IGNORE = -100
Turns = list[tuple[list[int], list[int]]]


@dataclass(frozen=True)
class Sample:
    """Unshifted token ids and labels of one sample (labels[t] is the target id at position t, or -100)."""

    input_ids: list[int]
    labels: list[int]


def user_turn(prompt: str, query: str = "") -> str:
    """MindSpeed-LLM's user turn for an Alpaca record: the non-empty of instruction and input, joined by "\\n"."""
    return "\n".join(part for part in (prompt, query) if part)


def encode_turns(
    tokenizer, template: Template, turns: Sequence[tuple[str, str]], system: str | None, memo: dict | None = None
) -> Turns:
    """(prompt ids, answer ids) of each (user, assistant) turn, not cut. ``memo`` keeps the ids of texts seen
    before (a template's system block recurs in every sample)."""
    messages = []
    for i, (query, answer) in enumerate(turns):
        messages.append(first_user_slots(template, query, system) if i == 0 else later_user_slots(template, query))
        messages.append(fill(template.assistant, answer))
    texts = iter(_encode_texts(tokenizer, [s for m in messages for s in m if s and s not in (BOS, EOS)], memo))
    marks = {
        BOS: [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else [],
        EOS: [end_id(tokenizer, template)] if any(EOS in m for m in messages) else [],
    }
    ids = [[x for s in m if s for x in (marks[s] if s in marks else next(texts))] for m in messages]
    return list(zip(ids[::2], ids[1::2]))


def _encode_texts(tokenizer, texts: list[str], memo: dict | None) -> list[list[int]]:
    if memo is None:
        return tokenizer.encode_many(texts)
    if len(memo) > 4096:
        memo.clear()
    missing = [t for t in dict.fromkeys(texts) if t not in memo]
    memo.update(zip(missing, tokenizer.encode_many(missing)))
    return [memo[t] for t in texts]


def end_id(tokenizer, template: Template) -> int:
    """The answers' end token: the template's stop word, which replaces eos, else the tokenizer's eos."""
    end = tokenizer.convert_tokens_to_ids(template.end) if template.end else tokenizer.eos_token_id
    if end is None or (template.end and end == tokenizer.unk_token_id):
        raise TunebridgeError(
            f"the tokenizer has no {template.end or 'eos'} token, which template "
            f"{template.name!r} ends answers with (MindSpeed-LLM would add it as a new id beyond "
            f"the model's vocabulary)"
        )
    return end


def cut(turns: Turns, template: Template, seq_length: int) -> Turns:
    """The turns as the template class cuts them to seq_length (LlamaFactory's _make_pairs)."""
    limit = seq_length - 1 if template.truncation == "lf" else seq_length
    share = _lf_share if template.truncation == "lf" else _pair_share
    out: Turns = []
    total = 0
    for source, target in turns:
        if total >= limit:
            break
        keep_source, keep_target = share(len(source), len(target), limit - total)
        source, target = source[:keep_source], target[:keep_target]
        total += len(source) + len(target)
        out.append((source, target))
    return out


def _pair_share(source: int, target: int, room: int) -> tuple[int, int]:
    """Template: the answer gets its proportional share of the room (at least one token), the prompt the rest."""
    target_room = max(int(room * (target / (source + target))) if source + target else 0, 1)
    return room - min(target_room, target), target_room


def _lf_share(source: int, target: int, room: int) -> tuple[int, int]:
    """LFDefaultTemplate: cut the prompt if the answer is short, the answer if the prompt is, else both."""
    if target * 2 < room:
        target_room = room
    elif source * 2 < room:
        target_room = room - source
    else:
        target_room = int(room * (target / (source + target)))
    kept_target = min(target_room, target)
    return min(max(room - kept_target, 0), source), kept_target


def flatten(turns: Turns) -> Sample:
    ids: list[int] = []
    labels: list[int] = []
    for source, target in turns:
        ids += source + target
        labels += [IGNORE] * len(source) + target
    return Sample(ids, labels)


def encode(
    tokenizer,
    template: Template,
    query: str,
    response: str,
    system: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    seq_length: int | None = None,
) -> Sample:
    """One sample: the (user, assistant) turns of ``history``, then ``query`` / ``response``; cut to
    ``seq_length`` as the template cuts (the sample may still be seq_length long: MindSpeed-LLM drops those)."""
    turns = encode_turns(tokenizer, template, [*history, (query, response)], system)
    return flatten(cut(turns, template, seq_length) if seq_length else turns)
