"""Prompt templates, with exactly the strings of MindSpeed-LLM's configs/finetune/templates.json (v2.3.0) and
MindFormers' vicuna_v1.1 conversation.

A single-turn sample is encoded as MindSpeed-LLM encodes it: the prompt is prefix + system + user turn
(every token labelled -100), the answer is the response followed by the template's end token (the stop word
when the template replaces eos, else the tokenizer's eos), all supervised.

A conversation is encoded as MindSpeed-LLM's SharegptStyleInstructionHandler encodes it (its Template._encode):
turn 0 is that prompt, every later user turn is the template's separator then the user slot (for llama2 with its
own bos: Llama2Template's user slot starts with one), every assistant turn is the answer + end token. User and
system tokens are -100, every assistant turn is supervised.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import TunebridgeError, unknown


@dataclass(frozen=True)
class Template:
    name: str
    user: str                      # "{content}" is the user turn
    system: str = "{content}"      # how a system prompt is written
    default_system: str = ""
    bos_prefix: bool = False       # the tokenizer's bos before everything (llama3, llama2)
    end: str | None = None         # the answer's end token; None: the tokenizer's eos
    system_in_user: bool = False   # llama2: the system block goes inside the first [INST]
    separator: str = ""            # before every user turn but the first (MindSpeed-LLM's format_separator)
    bos_every_user: bool = False   # llama2: every user turn starts with bos, not only the first
    single_turn_only: str = ""     # why conversations of several turns are refused, if they are

    def prompt(self, query: str, system: str | None = None) -> str:
        """The prompt text (without the bos token, which is added as an id)."""
        system = self.default_system if system is None else system
        if self.system_in_user:
            content = (self.system.format(content=system) if system else "") + query
            return self.user.format(content=content)
        head = self.system.format(content=system) if system else ""
        return head + self.user.format(content=query)

    def later_user_turn(self, query: str) -> tuple[str, str]:
        """(separator, user slot) of a user turn after the first; MindSpeed-LLM tokenizes the two apart."""
        return self.separator, self.user.format(content=query)


TEMPLATES: dict[str, Template] = {t.name: t for t in (
    Template("qwen", user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
             system="<|im_start|>system\n{content}<|im_end|>\n", default_system="You are a helpful assistant.",
             end="<|im_end|>", separator="\n"),
    Template("qwen_lf", user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
             system="<|im_start|>system\n{content}<|im_end|>\n",
             default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", end="<|im_end|>",
             single_turn_only="MindSpeed-LLM's qwen_lf (an LFDefaultTemplate) ends every answer with '<|im_end|>\\n' "
                              "and has no separator; tunebridge's qwen_lf answer ends at '<|im_end|>'"),
    Template("chatml", user="<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
             system="<|im_start|>system\n{content}<|im_end|>\n", end="<|im_end|>", separator="\n"),
    Template("llama3", user="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>"
                            "<|start_header_id|>assistant<|end_header_id|>\n\n",
             system="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>", bos_prefix=True,
             end="<|eot_id|>"),
    Template("llama2", user="[INST] {content} [/INST]", system="<<SYS>>\n{content}\n<</SYS>>\n\n", bos_prefix=True,
             system_in_user=True, bos_every_user=True),
    Template("alpaca", user="### Instruction:\n{content}\n\n### Response:\n",
             default_system="Below is an instruction that describes a task. Write a response that appropriately "
                            "completes the request.\n\n", separator="\n\n"),
    # MindFormers' Alpaca converter (llama_preprocess.py): FastChat's vicuna_v1.1,
    # "{system} USER: {q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>". Its own label mask is
    # encode.py's mask="mindformers"; by default the prompt is masked exactly, as for every other template.
    Template("vicuna_v1.1", user="USER: {content} ASSISTANT: ",
             system="{content} ", default_system="A chat between a curious user and an artificial intelligence "
             "assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."),
    Template("none", user="{content}"),
)}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TunebridgeError(unknown("template", name, TEMPLATES)) from None
