"""Conversion on shapes the catalogue's tiny models never have: a vocabulary that needs padding at tp 2
(509, 511 rows), several KV groups per TP rank (8 heads in 4 groups at tp 2), fp16 output, and a corrupt
record met on every path that reads an mcore checkpoint."""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest
import torch

from tunebridge.cli import main
from tunebridge.converters.checkpoint import convert
from tunebridge.errors import TunebridgeError
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.converters.formats.hf import HFReader
from tunebridge.converters.formats.msckpt import CkptReader
from tunebridge.converters.formats.torchzip import lazy_load
from tunebridge.model.catalogue import get_model
from tunebridge.parity.logits import verify

from .test_convert import make_hf, same_tensors

# 8 query heads in 4 KV groups (head dim 8): at tp 2 each rank packs two groups [q q k v][q q k v]
SPECS = {
    "llama-509": get_model("tiny-llama").with_(name="llama-509", vocab_size=509, num_heads=8, num_kv_heads=4,
                                               head_dim=8),
    "qwen2-511": get_model("tiny-qwen2").with_(name="qwen2-511", vocab_size=511, num_heads=8, num_kv_heads=4,
                                               head_dim=8),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("irregular")
    return {name: make_hf(d / name, spec) for name, spec in SPECS.items()}


def rank_state(root: Path, tp_rank: int, stage: int = 0) -> dict:
    return mcore_fmt.load_rank_file(mcore_fmt.McoreLayout(root).file(tp_rank, stage))


@pytest.mark.parametrize("tp,divisible,padded", [(2, 128, 512), (1, 128, 512), (2, 1, 510), (2, 200, 800),
                                                 (1, 1, 509)])
def test_vocabulary_padding_repeats_the_last_row(models, tmp_path, tp, divisible, padded):
    """Megatron pads the vocabulary to a multiple of make-vocab-size-divisible-by x tp; MindSpeed-LLM's
    converter fills the padding with copies of the last row. The HF result drops the padding again."""
    src = HFReader(models["llama-509"])
    embed, head = src.get("model.embed_tokens.weight"), src.get("lm_head.weight")
    convert(models["llama-509"], tmp_path / "mc", "hf", "mcore", tp=tp, make_vocab_size_divisible_by=divisible,
            progress=False)
    states = [rank_state(tmp_path / "mc", t) for t in range(tp)]
    assert {s["args"].padded_vocab_size for s in states} == {padded}
    for name, full in (("embedding.word_embeddings.weight", embed), ("output_layer.weight", head)):
        rows = torch.cat([s["model"][name] for s in states])
        assert [s["model"][name].shape[0] for s in states] == [padded // tp] * tp
        assert torch.equal(rows[:509], full)
        assert torch.equal(rows[509:], full[-1:].expand(padded - 509, -1)), name
    convert(tmp_path / "mc", tmp_path / "back", "mcore", "hf", progress=False)
    assert same_tensors(models["llama-509"], tmp_path / "back")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_several_kv_groups_per_rank_pack_group_by_group(models, tmp_path, name):
    """Rank r of tp 2 holds KV groups 2r and 2r + 1, each as its two query heads, its k head, its v head."""
    spec = SPECS[name]
    src = HFReader(models[name])
    convert(models[name], tmp_path / "mc", "hf", "mcore", tp=2, progress=False)
    d = spec.head_dim
    for part in (("weight",) + (("bias",) if spec.qkv_bias else ())):
        q, k, v = (src.get(f"model.layers.1.self_attn.{p}_proj.{part}") for p in "qkv")
        for rank in range(2):
            fused = rank_state(tmp_path / "mc", rank)["model"][f"decoder.layers.1.self_attention.linear_qkv.{part}"]
            want = torch.cat([torch.cat([q[2 * d * g:2 * d * (g + 1)], k[d * g:d * (g + 1)], v[d * g:d * (g + 1)]])
                              for g in (2 * rank, 2 * rank + 1)])
            assert torch.equal(fused, want), (part, rank)
    convert(tmp_path / "mc", tmp_path / "back", "mcore", "hf", progress=False)
    assert same_tensors(models[name], tmp_path / "back")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_logits_agree_across_the_three_frameworks(ms_python, models, tmp_path, name):
    """Two KV groups per rank and a padded vocabulary, through megatron-core at tp 2 x pp 2 (uneven) and
    MindFormers: the same logits as transformers."""
    spec = SPECS[name]
    convert(models[name], tmp_path / "mc", "hf", "mcore", tp=2, pp=2, num_layer_list=[1, 3],
            make_vocab_size_divisible_by=128, progress=False)
    convert(models[name], tmp_path / "mf", "hf", "mindformers", progress=False)
    results = verify([(models[name], "hf"), (tmp_path / "mc", "mcore"), (tmp_path / "mf", "mindformers")], spec)
    assert len(results) == 3
    for r in results:
        assert r.passed and r.max_abs < 2e-5 and r.cosine > 0.99999, r


@pytest.mark.parametrize("to", ["hf", "mcore", "mindformers"])
def test_fp16_output(models, tmp_path, capsys, to):
    """`convert --dtype fp16` writes float16, the values rounded from the source, whatever the target."""
    src = HFReader(models["qwen2-511"])
    assert main(["convert", str(models["qwen2-511"]), str(tmp_path / "out"), "--to", to, "--dtype", "fp16"]
                + (["--tp", "2"] if to == "mcore" else [])) == 0
    if to == "hf":
        out = HFReader(tmp_path / "out")
        got = {n: out.get(n) for n in out.names()}
    elif to == "mindformers":
        reader = CkptReader(tmp_path / "out" / "model.ckpt")
        got = {n: reader.get(n) for n in reader.entries}
    else:
        got = {n: t for t in range(2) for n, t in rank_state(tmp_path / "out", t)["model"].items()}
        assert rank_state(tmp_path / "out", 0)["args"].params_dtype == torch.float16
    assert got and {t.dtype for t in got.values()} == {torch.float16}
    # and back to HF: each tensor is its source rounded to fp16
    if to != "hf":
        assert main(["convert", str(tmp_path / "out"), str(tmp_path / "back"), "--to", "hf"]) == 0
        out = HFReader(tmp_path / "back")
    for name in src.names():
        assert torch.equal(out.get(name), src.get(name).to(torch.float16)), name


def _flip_a_byte(rank_file: Path, tensor: str) -> None:
    key = lazy_load(rank_file)["model"][tensor].storage.key
    with zipfile.ZipFile(rank_file) as z:
        record = next(i for i in z.infolist() if i.filename.endswith(f"/data/{key}"))
    data = bytearray(rank_file.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    data[record.header_offset + 30 + name_len + extra_len + record.file_size // 2] ^= 0x01
    rank_file.write_bytes(bytes(data))


READS = {  # every way a conversion reads an mcore checkpoint's records
    "mcore -> mcore (re-sharded)": dict(dst_format="mcore", tp=1),
    "mcore -> hf --dtype bf16 (assembled tensors)": dict(dst_format="hf", dtype="bf16"),
    "mcore -> hf (file ranges)": dict(dst_format="hf"),
    "mcore -> mindformers": dict(dst_format="mindformers"),
    "mcore -> mindformers --dtype fp16": dict(dst_format="mindformers", dtype="fp16"),
}
TENSORS = ("decoder.layers.1.self_attention.linear_proj.weight",  # row-parallel: rows interleave the ranks'
           "decoder.layers.0.self_attention.linear_qkv.weight",  # fused, split by whole KV groups
           "output_layer.weight")  # vocabulary, padded


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize("tensor", TENSORS)
def test_a_corrupt_record_is_refused_on_every_read_path(models, tmp_path, read, tensor):
    convert(models["llama-509"], tmp_path / "mc", "hf", "mcore", tp=2, make_vocab_size_divisible_by=128,
            progress=False)
    rank_file = mcore_fmt.McoreLayout(tmp_path / "mc").file(1, 0)
    key = lazy_load(rank_file)["model"][tensor].storage.key
    _flip_a_byte(rank_file, tensor)
    options = dict(READS[read])
    with pytest.raises(TunebridgeError, match=f"storage {key} is corrupt \\(CRC-32 mismatch\\)"):
        convert(tmp_path / "mc", tmp_path / "out", "mcore", options.pop("dst_format"), progress=False, **options)
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())



@pytest.mark.parametrize("name", ["llama-509", "qwen2-511"])
def test_the_unpacking_fallbacks_give_the_parts_back(name):
    """What a conversion does when it cannot read a rank's rows straight into place (shards that are not whole
    storages of one dtype), and what adapters do with a fused LoRA B: the same parts as were packed, per rule
    with several parts (q/k/v grouped per KV group, gate/up stacked), at tp 2 (two KV groups per rank)."""
    from tunebridge.model.dialects import MCORE
    from tunebridge.model.layout import merge, pack, split, unpack, unpack_shards
    spec = SPECS[name]
    g = torch.Generator().manual_seed(0)
    for rule in (r for r in MCORE.layer_rules if len(r.parts) > 1 and r.applies_to(spec)):
        parts = [torch.randn(*spec.shape(p), generator=g) for p in rule.parts]
        shards = split(pack(rule, parts, spec, 2), rule.shard, 2)
        for got in (unpack_shards(rule, shards, spec), unpack(rule, merge(shards, rule.shard), spec, 2)):
            assert len(got) == len(parts) and all(torch.equal(a, b) for a, b in zip(got, parts)), rule.name


def test_partition_arithmetic_exact():
    """Megatron's vocabulary padding, layer lists and stage split, and MindSpeed-LLM's repeated last row."""
    from tunebridge.model.layout import pad_vocab
    from tunebridge.model.partition import padded_vocab_size, parse_layer_list, stage_layers
    assert padded_vocab_size(511, 2, 128) == 512 and padded_vocab_size(513, 2, 128) == 768
    assert padded_vocab_size(500, 3) == 501 and padded_vocab_size(512, 1) == 512
    assert parse_layer_list(None) is None and parse_layer_list("") is None
    assert parse_layer_list("4,4,3,3") == [4, 4, 3, 3] and parse_layer_list("1") == [1]
    for bad in ("4,0", "2,-1"):
        with pytest.raises(ValueError) as e:
            parse_layer_list(bad)
        assert str(e.value) == f"layer counts must be positive: {bad!r}"
    assert stage_layers(10, 2) == [range(0, 5), range(5, 10)] and stage_layers(7, 2, [4, 3]) == [range(0, 4), range(4, 7)]
    assert stage_layers(3, 1) == [range(0, 3)]
    for layers, pp, listed, counts in ((7, 2, None, [3, 3]), (7, 2, [4, 4], [4, 4]), (7, 3, [4, 3], [4, 3])):
        with pytest.raises(ValueError) as e:
            stage_layers(layers, pp, listed)
        assert str(e.value) == f"{layers} layers cannot be split over pp={pp} as {counts}"
    t = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(pad_vocab(t, 5), torch.tensor([[0.0, 1], [2, 3], [4, 5], [4, 5], [4, 5]]))
    assert pad_vocab(t, 3) is t and pad_vocab(t, 2) is t  # nothing to pad: no copy


def test_dialect_names_in_megatron_order_and_unknown_parts():
    """A stage's tensor names as Megatron orders its state dict (embedding, the stage's layers, final norm, output
    layer), and the names of what a dialect does not hold."""
    from tunebridge.model.dialects import HF, MCORE
    spec = get_model("tiny-llama")
    layer = ["input_layernorm.weight", "self_attention.linear_qkv.weight", "self_attention.linear_proj.weight",
             "pre_mlp_layernorm.weight", "mlp.linear_fc1.weight", "mlp.linear_fc2.weight"]
    assert MCORE.tensor_names(spec, range(1, 2)) == ["embedding.word_embeddings.weight",
                                                     *(f"decoder.layers.1.{n}" for n in layer),
                                                     "decoder.final_layernorm.weight", "output_layer.weight"]
    everything = MCORE.tensor_names(spec)
    assert len(everything) == 3 + 6 * spec.num_layers == 27 and everything[-3] == "decoder.layers.3.mlp.linear_fc2.weight"
    with pytest.raises(KeyError) as e:
        MCORE.rule_for_part("nope", spec)
    assert e.value.args[0] == "mcore: no tensor holds canonical 'nope'"
    with pytest.raises(KeyError) as e:
        HF.lora_module_for("nope")
    assert e.value.args[0] == "hf: no LoRA module covers 'nope'"


def test_tp_problem_names_the_size_and_the_possible_tp():
    import dataclasses

    from tunebridge.model.partition import tp_problem
    spec = get_model("tiny-llama")  # 2 KV groups, 4 heads, FFN 160, hidden 64
    assert tp_problem(spec, 2) is None
    assert tp_problem(spec, 3) == "tp 3 does not divide tiny-llama's 2 KV groups (tp can be 1, 2)"
    odd = dataclasses.replace(spec, name="odd", hidden_size=66, num_heads=8, num_kv_heads=4, ffn_hidden_size=64)
    assert tp_problem(odd, 4) == "tp 4 does not divide odd's 66 hidden size (tp can be 1, 2)"
