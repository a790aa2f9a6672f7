"""tunebridge's data files against what the stacks' own preprocessing wrote for the same edge-case records
(tests/fixtures/data-goldens, made by scripts/make_data_goldens.py; its README names commits and commands):
MindSpeed-LLM's preprocess_data.py (2.3.0 and master) for every template x a BPE and a sentencepiece tokenizer,
byte for byte; MindFormers' alpaca_converter.py + llama_preprocess.py rows, id for id."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tunebridge.data.prepare import Encoding, encode_records, write, writer
from tunebridge.data.readers import read_records
from tunebridge.data.writers import megatron_files
from tunebridge.backends.mindspeed_llm.render import VERSIONS  # each version with its tokenizer rules

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDENS = FIXTURES / "data-goldens"
MANIFEST = json.loads((GOLDENS / "manifest.json").read_text(encoding="utf-8"))
TOKENIZERS = {"bpe": None, "sp": str(FIXTURES / "tokenizer-sp")}
READERS = {"alpaca_edge.json": "alpaca", "sharegpt_edge.json": "sharegpt"}
MINDSPEED = sorted(MANIFEST["mindspeed-llm"])


def _records(run: dict):
    return read_records(GOLDENS / "inputs" / run["input"], READERS[run["input"]], run.get("map_keys"))


@pytest.mark.parametrize("run_id", MINDSPEED)
def test_megatron_files_equal_preprocess_data_py(run_id, tmp_path):
    run = MANIFEST["mindspeed-llm"][run_id]
    expected = GOLDENS / "mindspeed-llm" / run.get("same_as", run_id) / "edge"
    encoding = Encoding(template=run["template"], seq_length=run["seq_length"], tokenizer=TOKENIZERS[run["tokenizer"]],
                        tokenizer_rules=VERSIONS[run_id.split("/")[0]], record_format=READERS[run["input"]])
    out = writer("megatron", tmp_path, "edge", encoding)
    counts = write(_records(run), encoding, {"megatron": out})["megatron"]
    assert counts.written + counts.too_long == run["records"]
    for mine, theirs in zip(megatron_files(tmp_path / "edge"), megatron_files(expected)):
        if "_attention_mask_" in mine.name:  # not stored: ones for every input id, as the generator checked
            theirs = Path(str(mine).replace("_attention_mask_", "_input_ids_"))
            if mine.suffix == ".bin":
                assert mine.read_bytes() == np.ones(theirs.stat().st_size // 4, dtype="<i4").tobytes()
                continue
        assert mine.read_bytes() == theirs.read_bytes(), mine.name


@pytest.mark.parametrize("name", sorted(MANIFEST["mindformers"]))
def test_mindrecord_rows_equal_llama_preprocess_py(name):
    run = MANIFEST["mindformers"][name]
    expected = json.loads((GOLDENS / "mindformers" / f"{name}.json").read_text())
    seq = run["seq_length"]
    encoding = Encoding(template="vicuna_v1.1", seq_length=seq, tokenizer=TOKENIZERS["sp"],
                        record_format=READERS[run["input"]])
    rows = [r for batch in encode_records(_records(run), encoding, ("mindrecord",)) for r in batch[0].samples()]
    assert len(rows) == len(expected) == run["records"]
    pad = 0  # MindFormers' LlamaTokenizer pads with <unk>
    for i, ((ids, labels), row) in enumerate(zip(rows, expected)):
        assert np.pad(ids, (0, seq + 1 - len(ids)), constant_values=pad).tolist() == row["input_ids"], i
        assert np.pad(labels, (0, seq + 1 - len(labels)), constant_values=-100).tolist() == row["labels"], i


@pytest.mark.parametrize("name", sorted(MANIFEST["mindformers"]))
def test_vicuna_samples_are_llama_preprocess_rows_in_every_format(name):
    """vicuna_v1.1 is MindFormers' template alone (MindSpeed-LLM has none): per stack, the Megatron files and the
    torch JSONL hold llama_preprocess.py's samples too, under their own drop rule (seq_length tokens or more)."""
    run = MANIFEST["mindformers"][name]
    seq = run["seq_length"]
    expected = []
    for row in json.loads((GOLDENS / "mindformers" / f"{name}.json").read_text()):
        n = len(row["input_ids"]) - next(i for i, x in enumerate(reversed(row["input_ids"])) if x != 0)  # unpadded
        expected.append((row["input_ids"][:n], row["labels"][:n]) if n < seq else None)
    encoding = Encoding(template="vicuna_v1.1", seq_length=seq, tokenizer=TOKENIZERS["sp"],
                        record_format=READERS[run["input"]])
    kinds = ("megatron", "jsonl")
    batches = list(encode_records(_records(run), encoding, kinds))
    kept = [s for s in expected if s]
    assert 0 < len(kept) < len(expected)
    for i, kind in enumerate(kinds):
        sizes = [int(n) for b in batches for n in b[i].sizes]
        assert sizes == [len(s[0]) if s else -1 for s in expected], kind
        got = [(ids.tolist(), labels.tolist()) for b in batches for ids, labels in b[i].samples()]
        assert got == kept, kind


def _row(name: str, i: int) -> tuple[list[int], list[int]]:
    row = json.loads((GOLDENS / "mindformers" / f"{name}.json").read_text())[i]
    return row["input_ids"], row["labels"]


def test_mindformers_goldens_hold_the_edge_cases():
    """What the fixtures pin (issue 14, item 6): rows of S and S+1 tokens kept, longer ones cut and kept, an empty
    answer written "ASSISTANT:" and masked, a </s> in the data splitting the rounds, a ShareGPT system turn
    skipped, padding with <unk> (0)."""
    from tunebridge.data.tokenizer import load_tokenizer
    tok = load_tokenizer(TOKENIZERS["sp"], "mindformers")
    seq = MANIFEST["mindformers"]["alpaca_edge"]["seq_length"]
    ladder = [_row("alpaca_edge", i) for i in range(17, 22)]  # answers ok, ok!, ... one token apart
    lengths = [len(ids) - ids[::-1].index(next(x for x in reversed(ids) if x != 0)) for ids, _ in ladder]
    assert lengths == [seq - 2, seq - 1, seq, seq + 1, seq + 1]
    assert ladder[3][0][-1] == tok.eos_token_id and ladder[4][0][-1] != tok.eos_token_id  # S+1 fits; S+2 is cut
    assert all(set(labels) != {-100} for _, labels in ladder)
    ids, labels = _row("alpaca_edge", 4)
    assert tok.decode(ids, skip_special_tokens=True).endswith("### Response: ASSISTANT:") and set(labels) == {-100}
    ids, labels = _row("sharegpt_edge", 5)  # "</s> then <s>": two rounds, the second without an answer
    assert ids.count(tok.eos_token_id) == 2 and set(labels) == {-100}
    ids, _ = _row("sharegpt_edge", 0)
    assert tok.decode(ids[:12], skip_special_tokens=True).startswith("A chat between a curious user")
    assert _row("sharegpt_edge", 1)[0][-1] == 0 == tok.pad_token_id  # padded with <unk>


def test_data_convert_writes_llama_preprocess_rows_to_mindrecord(ms_python, tmp_path):
    """The whole path: `data convert --to mindrecord` (per-stack: MindFormers' preprocessing for vicuna_v1.1),
    the file written by MindSpore and read back by MindDataset, equal to what llama_preprocess.py wrote."""
    from tunebridge.backends.mindformers.bridge import call_mindspore
    from tunebridge.cli import main
    run = MANIFEST["mindformers"]["sharegpt_edge"]
    assert main(["data", "convert", str(GOLDENS / "inputs" / run["input"]), str(tmp_path / "out"), "--reader",
                 "sharegpt", "--template", "vicuna_v1.1", "--tokenizer", TOKENIZERS["sp"], "--seq-length",
                 str(run["seq_length"]), "--to", "mindrecord"]) == 0
    call_mindspore("backends.mindformers.ms.mindrecord", "read", path=str(tmp_path / "out" / "sharegpt_edge.mindrecord"),
                   npz_path=str(tmp_path / "rows.npz"))
    rows = np.load(tmp_path / "rows.npz")
    expected = json.loads((GOLDENS / "mindformers" / "sharegpt_edge.json").read_text())
    assert rows["input_ids"].tolist() == [r["input_ids"] for r in expected]
    assert rows["labels"].tolist() == [r["labels"] for r in expected]


def _documents(run_id: str, key: str = "input_ids") -> list[list[int] | None]:
    """Each input record's sample in a golden Megatron file set (None: the record's document is empty)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    ds = IndexedDataset(str(GOLDENS / "mindspeed-llm" / run_id / f"edge_packed_{key}_document"))
    docs = ds.document_indices.tolist()
    return [ds[a].tolist() if b > a else None for a, b in zip(docs, docs[1:])]


def test_mindspeed_goldens_hold_the_edge_cases():
    """What the fixtures pin (issue 14, items 1-5), read from MindSpeed-LLM's own files."""
    from tunebridge.data.tokenizer import load_tokenizer
    bpe, sp = load_tokenizer(), load_tokenizer(TOKENIZERS["sp"])
    mapped = [bpe.decode(d) for d in _documents("2.3.0/bpe/alpaca_edge_mapped/qwen_lf")]  # qwen_lf keeps them all
    plain = [bpe.decode(d) if d else None for d in _documents("2.3.0/bpe/alpaca_edge/qwen")]
    assert "<|im_start|>user\nTranslate: good morn" in mapped[1]  # 1: no leading newline (the rest is cut: S - 1)
    assert "system\nYou are terse." in mapped[11] and "system\nYou are a helpful assistant." in plain[11]  # 2
    assert "Add 2 and 3." in mapped[13] and "Add 2 and 3." not in plain[13]  # 2: history only through --map-keys
    default = get_template_default("qwen_lf")
    assert f"system\n{default}" in bpe.decode(_documents("2.3.0/bpe/sharegpt_edge/qwen_lf")[1])  # empty system
    alpaca = _documents("2.3.0/sp/alpaca_edge_mapped/alpaca")[4]  # 3: every text slot tokenized on its own
    system = get_template_default("alpaca")
    n = len(sp.encode(system, False))
    head = sp.encode("### Instruction:\n", False)  # with its own dummy prefix: "▁###"
    assert alpaca[:n] == sp.encode(system, False)
    assert alpaca[n:n + len(head)] == head != sp.encode(system + "### Instruction:\n", False)[n:n + len(head)]
    run = MANIFEST["mindspeed-llm"]["2.3.0/bpe/alpaca_edge_mapped/qwen_lf"]
    lf = _documents("2.3.0/bpe/alpaca_edge_mapped/qwen_lf")
    assert len(lf[15]) == run["seq_length"] - 1  # 4: the long answer cut to S - 1 and kept
    assert bpe.decode(lf[0]).endswith("<|im_end|>\n")  # 4: answers end with a newline
    assert len(plain) == run["records"] and None in plain  # 5: a document per record, empty when dropped
    sizes = [len(d) if d else None for d in _documents("2.3.0/sp/sharegpt_edge/llama3")[-5:]]  # the ladder
    seq = MANIFEST["mindspeed-llm"]["2.3.0/sp/sharegpt_edge/llama3"]["seq_length"]
    assert sizes == [seq - 2, seq - 1, None, None, None]  # S - 1 kept; S, S + 1 and longer dropped


def get_template_default(name: str) -> str:
    from tunebridge.data.templates import get_template
    return get_template(name).default_system
