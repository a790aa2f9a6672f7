"""tunebridge's tokenizer against the stacks' own: transformers 4.57.1 (MindSpeed-LLM 2.3.0, MindFormers 1.9.0),
transformers 5.2.0 (MindSpeed-LLM master) and MindFormers' LlamaTokenizer, on the ids they gave for 325 edge-case
strings (tests/fixtures/data-goldens/tokenizer_ids.json, made by scripts/make_data_goldens.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebridge.data.tokenizer import load_tokenizer
from tunebridge.errors import TunebridgeError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIXTURES / "data-goldens" / "tokenizer_ids.json").read_text(encoding="utf-8"))
DIRS = {"bpe": None, "sp": FIXTURES / "tokenizer-sp", "sp-json": FIXTURES / "tokenizer-sp-json"}
RULES = {"transformers-4.57.1": "transformers-4", "transformers-5.2.0": "transformers-5", "mindformers": "mindformers"}
CASES = [(stack, name) for stack, per in GOLDEN["ids"].items() for name in per]


@pytest.mark.parametrize("stack,name", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_ids_equal_the_stacks_tokenizer(stack, name):
    tok = load_tokenizer(DIRS[name], RULES[stack])
    expected = GOLDEN["ids"][stack][name]
    got = [tok.encode(text, add_special_tokens=False) for text in GOLDEN["strings"]]
    wrong = [(text, want, have) for text, want, have in zip(GOLDEN["strings"], expected, got) if want != have]
    assert not wrong, f"{len(wrong)} of {len(expected)} differ, e.g. {wrong[:3]}"
    assert tok.encode_many(GOLDEN["strings"]) == expected


def test_a_lone_tokenizer_model_is_read_as_transformers_converts_it(tmp_path):
    """A directory with only a Llama-2 tokenizer.model: its control and user-defined pieces split the text, as
    transformers 4.57.1's converter makes them added tokens."""
    (tmp_path / "tokenizer.model").write_bytes((DIRS["sp"] / "tokenizer.model").read_bytes())
    assert load_tokenizer(tmp_path).encode_many(GOLDEN["strings"]) == GOLDEN["ids"]["transformers-4.57.1"]["sp"]


def test_the_stacks_disagree_where_the_rules_say():
    """Why the rules are named: transformers 5 drops the second "▁" of a leading space, MindFormers does not
    split at the chat tokens that tokenizer_config.json declares."""
    ids = GOLDEN["ids"]
    at = GOLDEN["strings"].index(" hello")
    assert ids["transformers-4.57.1"]["sp"][at] == ids["mindformers"]["sp"][at] != ids["transformers-5.2.0"]["sp"][at]
    at = GOLDEN["strings"].index("<|im_end|>")
    assert ids["transformers-4.57.1"]["sp"][at] == [4] and ids["mindformers"]["sp"][at] == [447, 4]
    assert ids["transformers-4.57.1"]["bpe"] == ids["transformers-5.2.0"]["bpe"]  # a tokenizer.json is as written


def test_sentencepiece_tokenizer_is_rebuilt_byte_identically():
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_sp", FIXTURES.parent.parent / "scripts" / "build_sp_tokenizer.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert build.build() == (DIRS["sp"] / "tokenizer.model").read_bytes()
    assert json.loads((DIRS["sp"] / "tokenizer_config.json").read_text()) == build.config()


def test_special_tokens_and_decode():
    sp = load_tokenizer(DIRS["sp"])
    assert (sp.bos_token_id, sp.eos_token_id, sp.unk_token_id, sp.pad_token_id) == (1, 2, 0, None)
    assert sp.convert_tokens_to_ids("<|im_end|>") == 4 and len(sp) == 512
    ids = sp.encode("Add 2 and 3. 中文 😀")
    assert ids[0] == 1 and sp.decode(ids[1:]) == "Add 2 and 3. 中文 😀"
    assert sp.decode([1, *sp.encode("5", add_special_tokens=False), 2], skip_special_tokens=True) == "5"
    assert load_tokenizer(DIRS["sp"], "mindformers").pad_token_id == 0  # MindFormers' LlamaTokenizer pads with <unk>
    bpe = load_tokenizer()
    assert bpe.encode("<|im_end|>") == [6] and bpe.pad_token_id == 0


def test_unusable_tokenizers_are_refused(tmp_path):
    from sentencepiece import sentencepiece_model_pb2 as model_pb2
    with pytest.raises(TunebridgeError, match="no such tokenizer directory"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(TunebridgeError, match="not a tokenizer directory"):
        load_tokenizer(tmp_path)
    proto = model_pb2.ModelProto()
    proto.ParseFromString((DIRS["sp"] / "tokenizer.model").read_bytes())
    proto.normalizer_spec.name = "nmt_nfkc"
    (tmp_path / "tokenizer.model").write_bytes(proto.SerializeToString())
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    with pytest.raises(TunebridgeError, match="normalizes text .nmt_nfkc.*give the tokenizer.json"):
        load_tokenizer(tmp_path)
    with pytest.raises(TunebridgeError, match="unknown tokenizer rules 'transformers-6'"):
        load_tokenizer(None, "transformers-6")
