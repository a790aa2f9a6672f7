"""Templates, the embedded tokenizer, and each stack's data format read back by the stack itself."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.data.encode import IGNORE, Sample, _encode_texts, cut, encode, encode_turns, user_turn
from tunebridge.data.templates import TEMPLATES, fill, get_template, preprocessing_stack
from tunebridge.model.catalogue import get_model
from tunebridge.data.tokenizer import EMBEDDED_TOKENIZER, load_tokenizer
from tunebridge.data.writers import (MegatronWriter, Rows, megatron_files, write_all, write_jsonl, write_megatron,
                                     write_mindrecord)
from tunebridge.errors import TunebridgeError

# Reference strings, spelled out: MindSpeed-LLM v2.3.0 configs/finetune/templates.json and FACTS.md §5.
REFERENCE = {
    "qwen": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
    "qwen_lf": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
               "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
    "chatml": "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2 + 3?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama2": "[INST] What is 2 + 3? [/INST]",
    "alpaca": "Below is an instruction that describes a task. Write a response that appropriately completes the "
              "request.\n\n### Instruction:\nWhat is 2 + 3?\n\n### Response:\n",
    "vicuna_v1.1": "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                   "helpful, detailed, and polite answers to the user's questions. USER: What is 2 + 3? ASSISTANT: ",
    "empty": "What is 2 + 3?",
}
STOP_WORD = {"qwen": "<|im_end|>", "qwen_lf": "<|im_end|>", "chatml": "<|im_end|>", "llama3": "<|eot_id|>",
             "llama2": None, "alpaca": None, "vicuna_v1.1": None, "empty": None}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_template_strings_are_exact():
    assert sorted(TEMPLATES) == sorted(REFERENCE)
    for name, text in REFERENCE.items():
        assert get_template(name).prompt("What is 2 + 3?") == text, name
        assert get_template(name).end == STOP_WORD[name]
    assert get_template("llama3").prompt("Q", system="S") == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert get_template("llama2").prompt("Q", system="S") == "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"
    with pytest.raises(TunebridgeError, match="did you mean 'qwen'"):
        get_template("qwne")


def test_embedded_tokenizer_is_512_ids_and_rebuilt_identically(tmp_path):
    tok = load_tokenizer()
    assert len(tok) == 512 == get_model("tiny-llama").vocab_size
    for special in ("<pad>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "<s>", "</s>"):
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id
    assert tok.pad_token_id == 0
    shipped = (EMBEDDED_TOKENIZER / "tokenizer.json").read_bytes()
    code = ("import sys; sys.path.insert(0, 'scripts'); import build_tokenizer as b; "
            f"b.build().save({str(tmp_path / 't.json')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
    assert hashlib.sha256((tmp_path / "t.json").read_bytes()).hexdigest() == hashlib.sha256(shipped).hexdigest()


def test_labels_mask_the_prompt_and_keep_answer_plus_end(tok):
    s = encode(tok, get_template("qwen"), user_turn("Add the numbers.", "2 + 3"), "5")
    prompt = tok.encode(REFERENCE["qwen"].replace("What is 2 + 3?", "Add the numbers.\n2 + 3"),
                        add_special_tokens=False)
    answer = tok.encode("5", add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert s.input_ids == prompt + answer
    assert s.labels == [IGNORE] * len(prompt) + answer
    s = encode(tok, get_template("llama3"), "Q", "A")
    assert s.input_ids[0] == tok.bos_token_id and s.labels[-1] == tok.convert_tokens_to_ids("<|eot_id|>")
    assert encode(tok, get_template("alpaca"), "Q", "A").labels[-1] == tok.eos_token_id
    assert encode(tok, get_template("empty"), "Q", "A").input_ids == tok.encode("QA")  # no end token
    assert user_turn("", "x") == "x" and user_turn("i", "") == "i" and user_turn("", "") == "" == user_turn("")
    assert user_turn("i") == "i"


def _samples(tok, seq: int, n: int = 40):
    """Samples as MindSpeed-LLM keeps them (None: dropped at seq tokens or more)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a, b = rng.integers(-999, 999, 2)
        s = encode(tok, get_template("qwen"), f"计算 {a} + {b} 等于多少？" + " 请写出过程。" * int(i % 7 == 0) * 6,
                   str(a + b), seq_length=seq)
        out.append(s if len(s.input_ids) < seq else None)
    return out


def test_megatron_indexed_files_read_back_by_megatron(tok, tmp_path):
    seq = 100
    samples = _samples(tok, seq)
    counts = write_megatron(tmp_path / "alpaca", samples, seq)
    kept = [s for s in samples if s is not None]
    assert counts.written == len(kept) and counts.too_long == len(samples) - len(kept) > 0
    assert all(p.exists() for p in megatron_files(tmp_path / "alpaca"))
    for key in ("input_ids", "attention_mask", "labels"):
        ds = IndexedDataset(str(tmp_path / f"alpaca_packed_{key}_document"))
        assert len(ds) == len(kept)
        for i, s in enumerate(kept):
            expected = {"input_ids": s.input_ids, "labels": s.labels, "attention_mask": [1] * len(s.input_ids)}[key]
            assert ds[i].dtype == np.int32 and ds[i].tolist() == expected
        # one document per input record, a dropped one empty (MindSpeed-LLM's end_document per record)
        assert ds.document_indices.tolist() == [0] + np.cumsum([s is not None for s in samples]).tolist()


def test_mindrecord_read_back_by_mindspore_and_same_tokens_everywhere(ms_python, tok, tmp_path):
    seq = 100
    samples = _samples(tok, seq)
    write_megatron(tmp_path / "m", samples, seq)
    write_jsonl(tmp_path / "t.jsonl", samples, seq)
    counts = write_mindrecord(tmp_path / "d.mindrecord", samples, seq, tok.pad_token_id)
    call_mindspore("backends.mindformers.ms.mindrecord", "read", path=str(tmp_path / "d.mindrecord"), npz_path=str(tmp_path / "r.npz"))
    rows = np.load(tmp_path / "r.npz")
    megatron_ids = IndexedDataset(str(tmp_path / "m_packed_input_ids_document"))
    megatron_labels = IndexedDataset(str(tmp_path / "m_packed_labels_document"))
    torch_rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert counts.written == len(rows["input_ids"]) == len(megatron_ids) == len(torch_rows)
    assert rows["input_ids"].shape[1] == seq + 1  # MindFormers' rows: seq_length + 1, padded
    for i, t in enumerate(torch_rows):
        n = len(t["input_ids"])
        # identical tokens and supervised positions; MindRecord adds pad ids with label -100 after them
        assert megatron_ids[i].tolist() == t["input_ids"] == rows["input_ids"][i][:n].tolist()
        assert megatron_labels[i].tolist() == t["labels"] == rows["labels"][i][:n].tolist()
        assert (rows["input_ids"][i][n:] == tok.pad_token_id).all() and (rows["labels"][i][n:] == IGNORE).all()


def test_nothing_to_write_is_an_error(tok, tmp_path):
    with pytest.raises(TunebridgeError, match="nothing to write"):
        write_megatron(tmp_path / "x", [None] * 3, 5)
    assert list(tmp_path.iterdir()) == []


def test_squad_eval_set_as_mindformers_builds_it(ms_python, tok, tmp_path):
    from tunebridge.data.squad import eval_rows, squad_eval_items, write_squad_eval
    src = Path("data/samples/squad_dev_sample.json")
    assert write_squad_eval(src, tmp_path / "sq", tok, 128) == {"paragraphs": 24, "questions_used": 24}
    items = [json.loads(line) for line in (tmp_path / "sq" / "squad_eval.jsonl").read_text().splitlines()]
    assert len(items) == 24 and all(i["id"].endswith("0") for i in items)  # the first question of each paragraph
    first = json.loads(src.read_text())["data"][0]["paragraphs"][0]
    assert items[0]["prompt"] == ("Read the passage and answer the question below.\n\n### Instruction:\n"
                                  f"{first['context']}\n\n### Input:\n{first['qas'][0]['question']}\n\n### Response:")
    assert items[0]["answers"] == [a["text"] for a in first["qas"][0]["answers"]]
    call_mindspore("backends.mindformers.ms.mindrecord", "read", path=str(tmp_path / "sq" / "squad_eval.mindrecord"),
                   npz_path=str(tmp_path / "r.npz"))
    rows = np.load(tmp_path / "r.npz")
    ids, labels = eval_rows(squad_eval_items(src), tok, 128)
    assert np.array_equal(rows["input_ids"], ids) and np.array_equal(rows["labels"], labels)
    assert rows["input_ids"][0][0] == tok.bos_token_id and rows["input_ids"].shape == (24, 128)
    assert (rows["labels"][0][:len(tok.encode(items[0]["answers"][0], add_special_tokens=False))]
            == tok.encode(items[0]["answers"][0], add_special_tokens=False)).all()


def test_samples_of_exactly_seq_length_are_dropped(tok, tmp_path, capsys):
    """MindSpeed-LLM drops samples at or over --seq-length; one token shorter is kept (Megatron and JSONL)."""
    from tunebridge.cli import main
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"instruction": "Add 2 and 3.", "input": "", "output": "5"}) + "\n")
    n = len(encode(tok, get_template("qwen"), "Add 2 and 3.", "5").input_ids)
    for to in ("megatron", "jsonl"):
        def convert(seq: int) -> int:
            return main(["data", "convert", str(src), str(tmp_path / f"{to}-{seq}"), "--template", "qwen",
                         "--seq-length", str(seq), "--to", to])
        assert convert(n) == 2 and f"no sample is shorter than seq_length {n}" in capsys.readouterr().err
        assert convert(n + 1) == 0


# --- exact values of the encoding rules (what mutation testing found untested) -------------------------


@pytest.fixture
def tok_without_bos_eos(tmp_path):
    """The embedded tokenizer under a config that names no bos and no eos token."""
    shutil.copy(EMBEDDED_TOKENIZER / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "unk_token": "<unk>"}))
    t = load_tokenizer(tmp_path)
    assert (t.bos_token_id, t.eos_token_id) == (None, None)
    return t


def test_missing_bos_and_eos_ids_are_left_out_or_refused(tok_without_bos_eos):
    t = tok_without_bos_eos
    # llama3's prefix is bos: nothing there without one; its stop word still ends the answer
    assert encode(t, get_template("llama3"), "Q", "A").input_ids == [
        8, 95, 93, 271, 9, 209, 209, 59, 10, 8, 356, 268, 94, 75, 88, 94, 9, 209, 209, 43, 10]
    empty = encode(t, get_template("empty"), "Q", "A")  # no end token asked for: no eos needed
    assert (empty.input_ids, empty.labels) == ([59, 43], [IGNORE, 43])
    with pytest.raises(TunebridgeError) as e:
        encode(t, get_template("alpaca"), "Q", "A")
    assert str(e.value) == ("the tokenizer has no eos token, which template 'alpaca' ends answers with "
                            "(MindSpeed-LLM would add it as a new id beyond the model's vocabulary)")


def test_encoding_memo_is_used_and_cleared_past_4096_texts(tok):
    memo = {}
    turns = encode_turns(tok, get_template("qwen"), [("Q", "A")], None, memo)
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    user = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    assert list(memo) == [system, user, "A"] and memo["A"] == [43] and turns[0][1] == [43, 6]
    memo["A"] = [999]  # a text seen before is not tokenized again
    assert encode_turns(tok, get_template("qwen"), [("Q", "A")], None, memo)[0][1] == [999, 6]
    memo = {f"t{i}": [i] for i in range(4096)}
    assert _encode_texts(tok, ["A"], memo) == [[43]] and len(memo) == 4097 and memo["t0"] == [0]  # 4096 kept
    assert _encode_texts(tok, ["Q"], memo) == [[59]] and memo == {"Q": [59]}  # over 4096: cleared first


def test_encode_cuts_to_seq_length(tok):
    # qwen's 47 prompt tokens and the answer "A" + <|im_end|> in 10: the answer's share int(10 * 2/49) = 0, at
    # least 1; the prompt the other 9
    s = encode(tok, get_template("qwen"), "Q", "A", seq_length=10)
    assert s.input_ids == [5, 93, 99, 93, 94, 79, 87, 209, 67, 43] and s.labels == [IGNORE] * 9 + [43]
    assert len(encode(tok, get_template("qwen"), "Q", "A").input_ids) == 49


def _ids(n: int, start: int = 0) -> list[int]:
    return list(range(start, start + n))


def test_template_cut_shares_the_room_in_proportion():
    pairs = get_template("qwen")
    # 20 + 2 tokens into 10: the answer int(10 * 2/22) = 0, at least 1; the prompt 9. Full: the next turn is dropped
    assert cut([(_ids(20), _ids(2, 100)), (_ids(2, 200), [300])], pairs, 10) == [(_ids(9), [100])]
    # 6 + 4 into 5: the answer int(5 * 4/10) = 2, the prompt 3
    assert cut([(_ids(6), _ids(4, 100))], pairs, 5) == [(_ids(3), _ids(2, 100))]
    assert cut([(_ids(3), _ids(2, 100))], pairs, 8) == [(_ids(3), _ids(2, 100))]  # fits: unchanged


def test_lf_cut_rules():
    lf = get_template("qwen_lf")  # cuts to seq_length - 1
    # a short answer (2 * 2 < 10) is kept whole, the prompt gets the rest
    assert cut([(_ids(30), _ids(2, 100))], lf, 11) == [(_ids(8), _ids(2, 100))]
    # a short prompt (2 * 3 < 8) is kept whole, the answer gets the rest
    assert cut([(_ids(3), _ids(20, 100))], lf, 9) == [(_ids(3), _ids(5, 100))]
    # neither short (2 * 5 = 10, not < 10): in proportion, the answer int(10 * 8/13) = 6, the prompt 4
    assert cut([(_ids(5), _ids(8, 100))], lf, 11) == [(_ids(4), _ids(6, 100))]


def test_fill_replaces_the_first_content_slot_only():
    # LlamaFactory's StringFormatter: slot.replace("{{content}}", value, 1); the text put in is not read again
    assert fill(("{content} and {content}", "x"), "{content}!") == ["{content}! and {content}", "x"]


def test_preprocessing_stack_and_unknown_template_message():
    assert preprocessing_stack(get_template("qwen"), "per-stack") == "mindspeed-llm"
    assert preprocessing_stack(get_template("vicuna_v1.1"), "per-stack") == "mindformers"
    assert preprocessing_stack(get_template("qwen"), "mindformers") == "mindformers"
    with pytest.raises(TunebridgeError) as e:
        get_template("qwne")
    assert str(e.value) == ("unknown template 'qwne'; did you mean 'qwen'? (known: qwen, qwen_lf, chatml, llama3, "
                            "llama2, alpaca, empty, vicuna_v1.1)")


def test_megatron_writer_over_batches_byte_for_byte(tmp_path):
    """Two batches of rows, an empty sample kept (size 0) and a dropped record (an empty document)."""
    first = Rows.of([Sample([7, 8], [IGNORE, 8]), None, Sample([], [])])
    assert first.sizes.tolist() == [2, -1, 0] and first.kept().tolist() == [2, 0]
    counts = write_all(MegatronWriter(tmp_path / "m", 5), [first, Rows.of([Sample([9], [9])])])
    assert (counts.written, counts.too_long) == (3, 1)
    bins = {p.name: p.read_bytes() for p in megatron_files(tmp_path / "m")}
    assert bins["m_packed_input_ids_document.bin"] == np.array([7, 8, 9], dtype="<i4").tobytes()
    assert bins["m_packed_attention_mask_document.bin"] == np.array([1, 1, 1], dtype="<i4").tobytes()
    assert bins["m_packed_labels_document.bin"] == np.array([IGNORE, 8, 9], dtype="<i4").tobytes()
    idx = (b"MMIDIDX\x00\x00" + (1).to_bytes(8, "little") + bytes([4]) + (3).to_bytes(8, "little")
           + (5).to_bytes(8, "little") + np.array([2, 0, 1], "<i4").tobytes() + np.array([0, 8, 8], "<i8").tobytes()
           + np.array([0, 1, 1, 2, 3], "<i8").tobytes())
    for key in ("input_ids", "attention_mask", "labels"):
        assert bins[f"m_packed_{key}_document.idx"] == idx, key


def test_jsonl_writer_lines_and_nothing_to_write(tmp_path):
    counts = write_jsonl(tmp_path / "t.jsonl", [Sample([1, 2], [IGNORE, 2]), None, Sample([3], [3])], 4)
    assert (counts.written, counts.too_long) == (2, 1)
    assert (tmp_path / "t.jsonl").read_text() == ('{"input_ids": [1, 2], "labels": [-100, 2]}\n'
                                                  '{"input_ids": [3], "labels": [3]}\n')
    for write in (write_jsonl, write_megatron):
        with pytest.raises(TunebridgeError) as e:
            write(tmp_path / "x", [None, None], 4)
        assert str(e.value) == "no sample is shorter than seq_length 4: nothing to write"
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]
