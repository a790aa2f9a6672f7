"""Readers, transforms and `tunebridge data`: the seeds' preprocessing with exact counts, and bad input."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tunebridge.cli import main
from tunebridge.data.readers import read_records
from tunebridge.data.transforms import allot, apply, format_number_text
from tunebridge.errors import TunebridgeError
from tunebridge.recipe.schema import load_recipe

SAMPLES = Path("data/samples")


def prepare(tmp_path, recipe: str, *extra) -> dict:
    out = tmp_path / Path(recipe).stem
    assert main(["data", "prepare", recipe, "--out", str(out), *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def steps(summary: dict) -> list[tuple]:
    return [(t["name"], t["kept"], t["changed"], t["dropped"]) for t in summary["transforms"]]


def test_seed001_conversations_strip_sample_filter_prompts(tmp_path):
    s = prepare(tmp_path, "recipes/data/seed001-math.yaml")
    assert s["read"] == 300
    assert steps(s) == [("strip", 300, 300, 0), ("sample:subsets", 240, 0, 60), ("filter_regex", 120, 0, 120),
                        ("prefix", 120, 120, 0), ("suffix", 120, 120, 0)]
    assert s["written"] == {"torch/train": 120, "mindformers/train": 120, "mindspeed-llm/train": 120}
    first = json.loads((tmp_path / "seed001-math" / "torch" / "train.jsonl").read_text().splitlines()[0])
    from tunebridge.data.tokenizer import load_tokenizer
    text = load_tokenizer().decode(first["input_ids"])
    assert "Please answer the following math problems:\n" in text and "\n###answer" in text
    assert "Below is an instruction" not in text and "### Instruction:" not in text
    assert "*" not in text.split("###answer")[0] and "/" not in text.split("###answer")[0]


def test_seed002_stratified_and_number_formatting(tmp_path):
    s = prepare(tmp_path, "recipes/data/seed002-math.yaml")
    assert steps(s) == [("sample:stratified", 100, 0, 300), ("format_numbers", 100, 83, 0)]
    recipe = load_recipe("recipes/data/seed002-math.yaml")
    records = list(read_records(SAMPLES / "seed002_math_ranked.jsonl", "math"))
    kept, _ = apply(records, recipe.data.transforms[:1], seed=0)
    assert Counter(r.fields["difficulty"] for r in kept) == {1: 40, 2: 30, 3: 20, 4: 10}
    # deterministic under the seed, different under another
    again, _ = apply(records, recipe.data.transforms[:1], seed=0)
    other, _ = apply(records, recipe.data.transforms[:1], seed=1)
    assert [r.where for r in again] == [r.where for r in kept] != [r.where for r in other]


def test_seed003_map_keys_and_validation_split(tmp_path):
    s = prepare(tmp_path, "recipes/data/seed003-alpaca-zh.yaml", "--backend", "mindspeed-llm")
    assert (s["read"], s["train"], s["validation"]) == (200, 180, 20)
    assert s["written"] == {"mindspeed-llm/train": 180, "mindspeed-llm/validation": 20}
    r = next(read_records(SAMPLES / "seed003_alpaca_zh.json", "alpaca",
                          {"prompt": "zh_instruction", "query": "zh_input", "response": "zh_output"}))
    assert r.prompt.startswith("给出") and r.query == "读者 #0" and r.where.endswith(":2")


def test_seed004_head_and_prefix(tmp_path):
    s = prepare(tmp_path, "recipes/data/seed004-math.yaml", "--backend", "torch")
    assert steps(s) == [("sample:head", 150, 0, 150), ("prefix", 150, 150, 0)]


@pytest.mark.parametrize("text,truncated,rounded", [
    ("-6925.76", "-6925.76", "-6925.76"),               # the seed's examples
    ("-7825393.7784", "-7825393.77", "-7825393.78"),
    ("-0.8961641", "-0.89", "-0.90"),
    ("3412.88", "3412.88", "3412.88"),
    ("12", "12", "12"), ("1.5", "1.5", "1.5"), ("-3", "-3", "-3"),
    ("1.230", "1.23", "1.23"), ("0.999", "0.99", "1.00"), ("-0.001", "0.00", "0.00"),
    ("x = 1.2345e-5", "x = 1.2345e-5", "x = 1.2345e-5"),  # scientific notation untouched
    ("1,234.5678", "1,234.56", "1,234.57"),
    ("计算 -1269.54 * 6163.96 等于多少？ -7825393.7784", "计算 -1269.54 * 6163.96 等于多少？ -7825393.77",
     "计算 -1269.54 * 6163.96 等于多少？ -7825393.78"),
    ("v1.2.345", "v1.2.345", "v1.2.345"), ("3.14159%", "3.14%", "3.14%"),
])
def test_number_formatting(text, truncated, rounded):
    assert format_number_text(text) == truncated
    assert format_number_text(text, mode="round") == rounded


def test_allot_gives_remainders_to_the_largest_fractions():
    assert allot(100_000, {1: 4, 2: 3, 3: 2, 4: 1}) == {1: 40_000, 2: 30_000, 3: 20_000, 4: 10_000}
    assert allot(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(allot(7, {"x": 5, "y": 2}).values()) == 7


def test_workers_give_identical_files(tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    assert main(["data", "prepare", "recipes/data/seed004-math.yaml", "--backend", "mindspeed-llm",
                 "--out", str(one)]) == 0
    assert main(["data", "prepare", "recipes/data/seed004-math.yaml", "--backend", "mindspeed-llm",
                 "--out", str(two), "--workers", "2"]) == 0
    for f in sorted((one / "mindspeed-llm").iterdir()):
        assert f.read_bytes() == (two / "mindspeed-llm" / f.name).read_bytes()


def test_readers_csv_parquet_and_json_lines(tmp_path):
    (tmp_path / "mc.csv").write_text("question,A,B,C,D,answer\n1+1=?,1,2,3,4,B\n2+2=?,4,5,6,7,A\n")
    recs = list(read_records(tmp_path / "mc.csv", "mc"))
    assert recs[1].prompt == "2+2=?\nA. 4\nB. 5\nC. 6\nD. 7" and recs[1].response == "A" and recs[1].where.endswith(":3")
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"problem": ["1+2"], "solution": ["3"]}), tmp_path / "m.parquet")
    assert [r.response for r in read_records(tmp_path / "m.parquet", "math")] == ["3"]


# --- bad input ------------------------------------------------------------------------------------------


def test_malformed_json_line_names_file_and_line(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"problem": "1", "solution": "1"}\n{"problem": "2", solution}\n')
    with pytest.raises(TunebridgeError, match=r"d.jsonl:2:\d+: malformed JSON"):
        list(read_records(tmp_path / "d.jsonl", "math"))
    (tmp_path / "a.json").write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": 1}\n]')
    with pytest.raises(TunebridgeError, match=r"a.json:3:\d+: malformed JSON"):
        list(read_records(tmp_path / "a.json", "alpaca"))
    (tmp_path / "t.json").write_text('[{"instruction": "a", "output": "b"},')
    with pytest.raises(TunebridgeError, match="not closed"):
        list(read_records(tmp_path / "t.json", "alpaca"))


def test_json_array_records_keep_their_lines(tmp_path):
    rows = [{"instruction": f"q{i}", "output": "two\nlines" * (i % 3)} for i in range(40)]
    (tmp_path / "a.json").write_bytes(("[\r\n" + ",\r\n\r\n".join(json.dumps(r, indent=1) for r in rows) + "]").encode())
    records = list(read_records(tmp_path / "a.json", "alpaca"))
    assert [r.prompt for r in records] == [f"q{i}" for i in range(40)]
    assert [int(r.where.rsplit(":", 1)[1]) for r in records] == [2 + 5 * i for i in range(40)]  # 4 lines, a blank one
    (tmp_path / "b.json").write_text('[\n{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}]')
    with pytest.raises(TunebridgeError, match=r"b.json:4: expected ',' or ']'"):
        list(read_records(tmp_path / "b.json", "alpaca"))


def test_missing_key_lists_available_keys(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"question": "1+1", "answer": "2"}\n')
    with pytest.raises(TunebridgeError, match=r"d.jsonl:1: missing key 'problem' \(the record has: question, answer\)"):
        list(read_records(tmp_path / "d.jsonl", "math"))


def test_non_utf8_is_reported(tmp_path):
    (tmp_path / "d.jsonl").write_bytes(b'{"problem": "\xff\xfe", "solution": "1"}\n')
    with pytest.raises(TunebridgeError, match=r"d\.jsonl:1: not UTF-8 \(byte 0xff at column 14\)"):
        list(read_records(tmp_path / "d.jsonl", "math"))


def test_empty_result_is_an_error_and_nothing_is_written(tmp_path, capsys):
    text = Path("recipes/data/seed004-math.yaml").read_text().replace("../../data/samples", str(Path.cwd() / SAMPLES))
    text = text.replace("- sample: {strategy: head, n: 150}", "- filter_regex: {field: prompt, pattern: '.', action: drop}")
    (tmp_path / "r.yaml").write_text(text)
    assert main(["data", "prepare", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "left no records" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_transform_is_a_recipe_error(tmp_path, capsys):
    text = Path("recipes/data/seed004-math.yaml").read_text().replace("- prefix:", "- prefxi:")
    (tmp_path / "r.yaml").write_text(text.replace("../../data/samples", str(Path.cwd() / SAMPLES)))
    assert main(["validate", str(tmp_path / "r.yaml")]) == 2
    err = capsys.readouterr().err
    assert "data.transforms[1].prefxi: unknown transform" in err and "did you mean 'prefix'?" in err


def test_stratified_sample_without_n_names_what_it_needs():
    with pytest.raises(TunebridgeError, match="sample: stratified needs n, field and ratios"):
        apply([], [{"sample": {"strategy": "stratified", "field": "difficulty", "ratios": {1: 1}}}], seed=0)


def test_data_convert_cli(tmp_path, capsys):
    assert main(["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"), str(tmp_path / "out"), "--template",
                 "qwen", "--seq-length", "256", "--to", "megatron", "--map-keys",
                 '{"prompt": "zh_instruction", "query": "zh_input", "response": "zh_output"}']) == 0
    assert (tmp_path / "out" / "seed003_alpaca_zh_packed_labels_document.idx").exists()
    assert main(["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"), str(tmp_path / "out2"), "--template",
                 "qwen", "--seq-length", "256", "--to", "jsonl", "--map-keys", "{bad"]) == 2
    assert "--map-keys: not JSON" in capsys.readouterr().err


def test_map_keys_name_known_fields_and_history_pairs(tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"q": "Q", "a": "A", "h": [["q0", "a0"]], "s": "S"}) + "\n"
                   + json.dumps({"q": "Q", "a": "A", "h": "not pairs"}) + "\n")
    keys = {"prompt": "q", "response": "a", "history": "h", "system": "s"}
    first = next(iter(read_records(src, "alpaca", keys)))
    assert (first.history, first.system) == ((("q0", "a0"),), "S")
    assert next(iter(read_records(src, "alpaca", {"prompt": "q", "response": "a"}))).history == ()  # not named
    with pytest.raises(TunebridgeError, match=r"a.jsonl:2: 'h' should be a list of \[user, assistant\] text pairs"):
        list(read_records(src, "alpaca", keys))
    assert main(["data", "convert", str(src), str(tmp_path / "o"), "--template", "qwen", "--seq-length", "64",
                 "--to", "jsonl", "--map-keys", '{"histroy": "h"}']) == 2
    assert "unknown map_keys field 'histroy'; did you mean 'history'?" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    math = tmp_path / "m.jsonl"
    math.write_text(json.dumps({"problem": "1+1", "solution": "2", "ctx": "c"}) + "\n")
    with pytest.raises(TunebridgeError, match=r"map_keys field 'query' is not read from math records "
                                              r"\(they take: prompt, response\)"):
        list(read_records(math, "math", {"query": "ctx"}))  # it was ignored
    with pytest.raises(TunebridgeError, match="sharegpt records take no map_keys"):
        list(read_records(math, "sharegpt", {"prompt": "problem"}))
