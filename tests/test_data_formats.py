"""Templates, the embedded tokenizer, and each stack's data format read back by the stack itself."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.model.catalogue import get_model
from tunebridge.data.encode import IGNORE, encode, user_turn
from tunebridge.data.templates import TEMPLATES, get_template
from tunebridge.data.tokenizer import EMBEDDED_TOKENIZER, load_tokenizer
from tunebridge.data.writers import megatron_files, write_jsonl, write_megatron, write_mindrecord
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
    assert user_turn("", "x") == "x" and user_turn("i", "") == "i" and user_turn("", "") == ""


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
