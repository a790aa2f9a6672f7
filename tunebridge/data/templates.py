"""Prompt templates as MindSpeed-LLM's configs/finetune/templates.json (v2.3.0 and master) writes them, plus
MindFormers' vicuna_v1.1 conversation.

A template is a list of slots per part of a conversation, as in templates.json: text (``{content}`` is the turn's
text), and BOS / EOS for the tokenizer's bos and eos ids. MindSpeed-LLM tokenizes every text slot on its own,
which matters for sentencepiece tokenizers (each text gets its own "▁" prefix), and so does tunebridge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import TunebridgeError, unknown

Preprocess = Literal["per-stack", "mindspeed-llm", "mindformers"]  # whose preprocessing makes the samples
PREPROCESS: tuple[Preprocess, ...] = get_args(Preprocess)
BOS, EOS = "<<bos>>", "<<eos>>"  # slot markers: the tokenizer's bos id / eos id (after the stop word replaces eos)
CONTENT = "{content}"
Slots = tuple[str, ...]


@dataclass(frozen=True)
class Template:
    name: str
    user: Slots
    assistant: Slots = (CONTENT, EOS)
    system: Slots = (CONTENT,)
    prefix: Slots = ()  # before the first turn (llama3: bos)
    separator: Slots = ()  # before every user turn but the first
    default_system: str = ""
    end: str | None = None  # the stop word that replaces eos (templates.json replace_eos, stop_words[0])
    system_in_user: bool = False  # Llama2Template: the system block goes inside the first user slot
    truncation: Literal["pairs", "lf"] = "pairs"  # Template._make_pairs, or LFDefaultTemplate's (qwen_lf)
    stack: Literal["mindspeed-llm", "mindformers"] = "mindspeed-llm"  # whose template: a --prompt-type, or MindFormers'

    @property
    def bos_first(self) -> bool:
        """The first turn starts with the tokenizer's bos (llama3's prefix, llama2's user slot)."""
        return (self.prefix or self.user)[:1] == (BOS,)

    def prompt(self, query: str, system: str | None = None) -> str:
        """The first turn's prompt as text, bos/eos markers left out (for reading, not for encoding)."""
        return "".join(s for s in first_user_slots(self, query, system) if s not in (BOS, EOS))


def fill(slots: Slots, content: str) -> list[str]:
    return [s.replace(CONTENT, content, 1) for s in slots]


def first_user_slots(template: Template, query: str, system: str | None) -> list[str]:
    """Prefix, system and user slots of turn 0; ``system`` empty or None means the template's default."""
    system = system or template.default_system
    if template.system_in_user:
        block = fill(template.system, system)[0] if system else ""
        return [*template.prefix, *fill(template.user, block + query)]
    return [*template.prefix, *(fill(template.system, system) if system else []), *fill(template.user, query)]


def later_user_slots(template: Template, query: str) -> list[str]:
    return [*template.separator, *fill(template.user, query)]


_CHATML_USER = ("<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",)
_CHATML_SYSTEM = ("<|im_start|>system\n{content}<|im_end|>\n",)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "qwen",
            user=_CHATML_USER,
            system=_CHATML_SYSTEM,
            separator=("\n",),
            default_system="You are a helpful assistant.",
            end="<|im_end|>",
        ),
        # an LFDefaultTemplate: its answers end with "<|im_end|>\n"; it never writes templates.json's separator
        Template(
            "qwen_lf",
            user=_CHATML_USER,
            system=_CHATML_SYSTEM,
            assistant=("{content}<|im_end|>\n",),
            end="<|im_end|>",
            truncation="lf",
            default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        ),
        Template("chatml", user=_CHATML_USER, system=_CHATML_SYSTEM, separator=("\n",), end="<|im_end|>"),
        Template(
            "llama3",
            user=(
                "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            system=("<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",),
            prefix=(BOS,),
            end="<|eot_id|>",
        ),
        Template(
            "llama2",
            user=(BOS, "[INST] {content} [/INST]"),
            system=("<<SYS>>\n{content}\n<</SYS>>\n\n",),
            system_in_user=True,
        ),
        Template(
            "alpaca",
            user=("### Instruction:\n{content}\n\n### Response:\n",),
            separator=("\n\n",),
            default_system="Below is an instruction that describes a task. Write a response that appropriately "
            "completes the request.\n\n",
        ),
        Template("empty", user=(CONTENT,), assistant=(CONTENT,)),
        # MindFormers' llama_preprocess.py conversation (FastChat's vicuna_v1.1), for tunebridge's MindSpeed-LLM-style
        # encoding; preprocess "mindformers" encodes it as llama_preprocess.py does (mindformers.py).
        Template(
            "vicuna_v1.1",
            user=("USER: {content} ASSISTANT: ",),
            system=("{content} ",),
            stack="mindformers",
            default_system="A chat between a curious user and an artificial intelligence assistant. The assistant "
            "gives helpful, detailed, and polite answers to the user's questions.",
        ),
    )
}


def preprocessing_stack(template: Template, preprocess: str) -> str:
    """The stack whose preprocessing makes the samples: the one ``preprocess`` names, or for "per-stack" the
    template's own (tunebridge.data.prepare)."""
    return template.stack if preprocess == "per-stack" else preprocess


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TunebridgeError(unknown("template", name, TEMPLATES)) from None
