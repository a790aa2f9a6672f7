"""Multi-turn conversations (MindSpeed-LLM's sharegpt handling) and MindFormers' vicuna rows."""
from __future__ import annotations

import json

import pytest

from tunebridge.cli import main
from tunebridge.data import mindformers
from tunebridge.data.encode import IGNORE, encode
from tunebridge.data.readers import read_records
from tunebridge.data.templates import get_template
from tunebridge.data.tokenizer import load_tokenizer
from tunebridge.errors import TunebridgeError

SYSTEM = "Be brief."
TURNS = [("Add 2 and 3.", "5"), ("Now double it.", "10"), ("And minus one?", "9")]

# MindSpeed-LLM v2.3.0 configs/finetune/templates.json, spelled out: (prefix, system, user, separator, stop word).
MINDSPEED = {
    "qwen": ([], "<|im_start|>system\n{}<|im_end|>\n", "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
             "\n", "<|im_end|>"),
    "llama3": (["bos"], "<|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|>",
               "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
               "\n\n", "", "<|eot_id|>"),
}

# The embedded tokenizer's ids for the 3-turn conversation (system "Be brief."), pinned.
QWEN_IDS = [5, 93, 99, 93, 94, 79, 87, 209, 44, 79, 231, 76, 315, 79, 80, 24, 6, 209, 5, 95, 93, 271, 209, 43, 78, 78,
            310, 272, 88, 78, 351, 24, 6, 209, 5, 356, 268, 94, 75, 88, 94, 209, 31, 6, 209, 5, 95, 93, 271, 209, 56,
            89, 97, 231, 78, 89, 95, 76, 86, 79, 231, 83, 94, 24, 6, 209, 5, 356, 268, 94, 75, 88, 94, 209, 461, 6,
            209, 5, 95, 93, 271, 209, 43, 88, 78, 231, 87, 83, 88, 95, 93, 231, 89, 88, 79, 41, 6, 209, 5, 356, 268,
            94, 75, 88, 94, 209, 35, 6]
QWEN_SUPERVISED = {42: 31, 43: 6, 74: 461, 75: 6, 106: 35, 107: 6}  # position: label ("5", "10", "9", <|im_end|>)
LLAMA3_IDS = [2, 8, 93, 99, 93, 94, 79, 87, 9, 209, 209, 44, 79, 231, 76, 315, 79, 80, 24, 10, 8, 95, 93, 271, 9, 209,
              209, 43, 78, 78, 310, 272, 88, 78, 351, 24, 10, 8, 356, 268, 94, 75, 88, 94, 9, 209, 209, 31, 10, 8, 95,
              93, 271, 9, 209, 209, 56, 89, 97, 231, 78, 89, 95, 76, 86, 79, 231, 83, 94, 24, 10, 8, 356, 268, 94, 75,
              88, 94, 9, 209, 209, 461, 10, 8, 95, 93, 271, 9, 209, 209, 43, 88, 78, 231, 87, 83, 88, 95, 93, 231, 89,
              88, 79, 41, 10, 8, 356, 268, 94, 75, 88, 94, 9, 209, 209, 35, 10]
LLAMA3_SUPERVISED = {47: 31, 48: 10, 81: 461, 82: 10, 115: 35, 116: 10}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def mindspeed_reference(tok, name: str, system: str, turns) -> tuple[list[int], list[int]]:
    """Template._encode restated: message i is [prefix + system if i == 0][separator if i even > 0] + its slot,
    each text element tokenized on its own; assistant = content + stop word (replace_eos); user labels -100."""
    prefix, system_slot, user_slot, separator, stop = MINDSPEED[name]
    ids, labels = [], []
    for i, (q, a) in enumerate(turns):
        if i == 0:
            elements = ([tok.bos_token_id] if prefix else []) + [system_slot.format(system), user_slot.format(q)]
        else:
            elements = [separator, user_slot.format(q)]
        source = [x for e in elements for x in ([e] if isinstance(e, int) else tok.encode(e, add_special_tokens=False))]
        target = tok.encode(a, add_special_tokens=False) + [tok.convert_tokens_to_ids(stop)]
        ids += source + target
        labels += [IGNORE] * len(source) + target
    return ids, labels


@pytest.mark.parametrize("name,expected_ids,supervised", [("qwen", QWEN_IDS, QWEN_SUPERVISED),
                                                          ("llama3", LLAMA3_IDS, LLAMA3_SUPERVISED)])
def test_three_turns_every_assistant_turn_supervised(tok, name, expected_ids, supervised):
    (q1, a1), (q2, a2), (q3, a3) = TURNS
    s = encode(tok, get_template(name), q3, a3, system=SYSTEM, history=[(q1, a1), (q2, a2)])
    assert s.input_ids == expected_ids
    assert {i: x for i, x in enumerate(s.labels) if x != IGNORE} == supervised
    assert (s.input_ids, s.labels) == mindspeed_reference(tok, name, SYSTEM, TURNS)
    assert [s.input_ids[i] for i in supervised] == list(supervised.values())
    text = tok.decode(s.input_ids)
    if name == "qwen":
        assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd 2 and 3.<|im_end|>\n"
                        "<|im_start|>assistant\n5<|im_end|>\n<|im_start|>user\nNow double it.<|im_end|>\n"
                        "<|im_start|>assistant\n10<|im_end|>\n<|im_start|>user\nAnd minus one?<|im_end|>\n"
                        "<|im_start|>assistant\n9<|im_end|>")


def test_llama2_every_user_turn_has_its_bos_and_alpaca_its_separator(tok):
    s = encode(tok, get_template("llama2"), "Q2", "A2", history=[("Q1", "A1")])
    assert tok.decode(s.input_ids) == "<s>[INST] Q1 [/INST]A1</s><s>[INST] Q2 [/INST]A2</s>"
    s = encode(tok, get_template("alpaca"), "Q2", "A2", history=[("Q1", "A1")])
    assert tok.decode(s.input_ids).endswith("### Response:\nA1</s>\n\n### Instruction:\nQ2\n\n### Response:\nA2</s>")
    assert tok.decode([x for x in s.labels if x != IGNORE]) == "A1</s>A2</s>"
    s = encode(tok, get_template("qwen_lf"), "Q2", "A2", history=[("Q1", "A1")])  # LlamaFactory's: no separator
    assert tok.decode(s.input_ids).endswith("assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
                                            "<|im_start|>assistant\nA2<|im_end|>\n")


def _conversations(tmp_path, *records) -> str:
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"conversations": [{"from": f, "value": v} for f, v in r]}) + "\n"
                            for r in records))
    return str(path)


def test_reader_and_convert_cli_carry_the_history(tok, tmp_path):
    three = [("system", SYSTEM)] + [x for q, a in TURNS for x in (("human", q), ("gpt", a))]
    src = _conversations(tmp_path, three, [("human", "Q"), ("gpt", "A")])
    multi, single = read_records(src, "sharegpt")
    assert (multi.system, multi.history, multi.prompt, multi.response) == (SYSTEM, tuple(TURNS[:2]), *TURNS[2])
    assert single.history == () and single.system is None
    assert main(["data", "convert", src, str(tmp_path / "out"), "--reader", "sharegpt", "--template", "qwen",
                 "--seq-length", "256", "--to", "jsonl"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "c.jsonl").read_text().splitlines()]
    assert rows[0] == {"input_ids": QWEN_IDS, "labels": mindspeed_reference(tok, "qwen", SYSTEM, TURNS)[1]}
    one = encode(tok, get_template("qwen"), "Q", "A")  # one turn: the single-turn encoding, byte for byte
    assert rows[1] == {"input_ids": one.input_ids, "labels": one.labels}


@pytest.mark.parametrize("turns,message", [
    ([("human", "a"), ("human", "b")], r"c.jsonl:1: conversations\[1\] is from 'human' where 'gpt' is expected"),
    ([("human", "a"), ("gpt", "b"), ("human", "c")], "c.jsonl:1: a conversation must end with a gpt turn"),
    ([("human", "a"), ("system", "s"), ("gpt", "b")], r"conversations\[1\] is from 'system'"),
    ([("system", "s"), ("gpt", "b")], r"conversations\[1\] is from 'gpt' where 'human'"),
    ([("system", "s")], "must end with a gpt turn"),
])
def test_malformed_conversations_are_named(tmp_path, turns, message):
    with pytest.raises(TunebridgeError, match=message):
        list(read_records(_conversations(tmp_path, turns), "sharegpt"))


# --- MindFormers' vicuna rows (llama_preprocess.py; tests/test_data_goldens.py holds its own output) -------


def mindformers_reference(tokenize, bos: int, system: str, turns) -> tuple[list[int], list[int]]:
    """llama_preprocess.py's preprocess() restated for a tokenizer whose calls add bos and eos: FastChat's prompt
    split at "</s>", each round tokenized without its bos, labels -100 over bos and each round's first
    len(tokenize(instruction)) - 3 tokens."""
    conversation = system + " " + "".join(f"USER: {q} ASSISTANT: {a}</s>" for q, a in turns)
    rounds = [r for r in conversation.split("</s>") if r]
    ids = [bos] + [x for r in rounds for x in tokenize(r)[1:]]
    labels = list(ids)
    labels[0] = IGNORE
    cur = 1
    for r in rounds:
        instruction = r.split(" ASSISTANT: ")[0] + " ASSISTANT: "
        n = len(tokenize(instruction)) - 3
        labels[cur:cur + n] = [IGNORE] * n
        cur += len(tokenize(r)) - 1
    return ids, labels


def test_mindformers_rows_on_the_embedded_tokenizer(tok):
    turns = [TURNS[0], TURNS[2]]
    s = mindformers.row(tok, turns, None, system=SYSTEM)
    assert s.input_ids == [2, 44, 79, 231, 76, 315, 79, 80, 24, 231, 63, 61, 47, 60, 36, 231, 43, 78, 78, 310, 272, 88,
                           78, 351, 24, 231, 43, 61, 61, 51, 61, 62, 43, 56, 62, 36, 362, 3, 63, 61, 47, 60, 36, 231,
                           43, 88, 78, 231, 87, 83, 88, 95, 93, 231, 89, 88, 79, 41, 231, 43, 61, 61, 51, 61, 62, 43,
                           56, 62, 36, 352, 3]
    assert {i: x for i, x in enumerate(s.labels) if x != IGNORE} == {36: 362, 37: 3, 69: 352, 70: 3}
    # what is masked is exactly "... ASSISTANT:"; the space before the answer is supervised with it
    assert tok.decode(s.input_ids[:36]) == "<s>Be brief. USER: Add 2 and 3. ASSISTANT:"
    assert [tok.decode([x]) for x in s.input_ids[36:38]] == [" 5", "</s>"]
    assert tok.decode(s.input_ids[38:69]) == "USER: And minus one? ASSISTANT:"
    with_specials = lambda text: [tok.bos_token_id] + tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    assert (s.input_ids, s.labels) == mindformers_reference(with_specials, tok.bos_token_id, SYSTEM, turns)
    default = encode(tok, get_template("vicuna_v1.1"), *turns[0], system=SYSTEM)  # MindSpeed-LLM-style: the space
    assert tok.decode([x for x in default.labels if x != IGNORE]) == "5</s>"     # goes with the prompt


def test_mindformers_rows_of_edge_cases(tok):
    """An empty answer, a literal </s> and a too-long sample, as llama_preprocess.py treats them."""
    empty = mindformers.row(tok, [("Q", "")], 256)
    assert tok.decode(empty.input_ids).endswith("USER: Q ASSISTANT:</s>") and set(empty.labels) == {IGNORE}
    split = mindformers.row(tok, [("Q", "a</s>b")], 256)  # two rounds, the second without an answer: all masked
    assert tok.decode(split.input_ids).endswith("ASSISTANT: a</s>b</s>") and set(split.labels) == {IGNORE}
    whole = mindformers.row(tok, [("Q", "long " * 40)], None)
    cut = mindformers.row(tok, [("Q", "long " * 40)], 64)
    assert len(whole.input_ids) > 64 and cut.input_ids == whole.input_ids[:64] and cut.labels == whole.labels[:64]
    assert mindformers.alpaca_human_turn("Add.", "") == ("Below is an instruction that describes a task. Write a "
                                                        "response that appropriately completes the request.\n\n"
                                                        "### Instruction:\nAdd.\n\n### Response:")
