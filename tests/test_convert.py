"""Checkpoint conversion: bit-exact round trips, MindSpore's own bytes, logits through three frameworks, bad input."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.model.catalogue import get_model
from tunebridge.cli import main
from tunebridge.converters.checkpoint import convert
from tunebridge.model.dialects import MCORE
from tunebridge.errors import TunebridgeError
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.converters.formats.hf import HFReader
from tunebridge.converters.formats.msckpt import CkptWriter, index
from tunebridge.model.spec import ModelSpec
from tunebridge.parity.logits import MAX_ABS, verify

from .families import MINDFORMERS_TINY, TINY


def make_hf(path: Path, model: str | ModelSpec, seed: int = 0) -> Path:
    """A tiny HF model with random weights and non-trivial norms."""
    spec = get_model(model) if isinstance(model, str) else model
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config()))
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(1 + 0.3 * torch.randn_like(v) if k.endswith("norm.weight") else 0.1 * torch.randn_like(v))
    model.save_pretrained(path)
    return path


def same_tensors(a: Path, b: Path) -> bool:
    ra, rb = HFReader(a), HFReader(b)
    return sorted(ra.names()) == sorted(rb.names()) and all(torch.equal(ra.get(n), rb.get(n)) for n in ra.names())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {n: make_hf(d / n, n) for n in TINY}


LAYOUTS = [(1, 1, None, 1), (2, 1, None, 1), (1, 2, [1, 3], 1), (2, 2, None, 128)]
CASES = [(name, *layout) for name in TINY
         for layout in LAYOUTS if get_model(name).num_kv_heads % layout[0] == 0]


@pytest.mark.parametrize("name,tp,pp,layers,divisible", CASES, ids=lambda v: str(v))
def test_hf_mcore_hf_is_bit_exact(models, tmp_path, name, tp, pp, layers, divisible):
    spec = get_model(name)
    convert(models[name], tmp_path / "mc", "hf", "mcore", tp=tp, pp=pp, num_layer_list=layers,
            make_vocab_size_divisible_by=divisible, progress=False)
    layout = mcore_fmt.McoreLayout(tmp_path / "mc")
    assert (layout.tp, layout.pp) == (tp, pp)
    assert (tmp_path / "mc" / "latest_checkpointed_iteration.txt").read_text() == "1"
    saved = mcore_fmt.load_rank_file(layout.file(0, 0))
    assert saved["checkpoint_version"] == 3.0 and saved["iteration"] == 1
    assert saved["args"].padded_vocab_size == -(-spec.vocab_size // (divisible * tp)) * divisible * tp
    assert saved["model"]["embedding.word_embeddings.weight"].shape[0] == saved["args"].padded_vocab_size // tp
    convert(tmp_path / "mc", tmp_path / "back", "mcore", "hf", progress=False)
    assert same_tensors(models[name], tmp_path / "back")


@pytest.mark.parametrize("name", MINDFORMERS_TINY)
def test_hf_mindformers_hf_is_bit_exact(models, tmp_path, name):
    convert(models[name], tmp_path / "mf", "hf", "mindformers", progress=False)
    assert oct(os.stat(tmp_path / "mf" / "model.ckpt").st_mode & 0o777) == "0o400"  # as MindSpore leaves it
    convert(tmp_path / "mf", tmp_path / "back", "mindformers", "hf", progress=False)
    assert same_tensors(models[name], tmp_path / "back")


def test_ckpt_slices_cut_from_file_ranges(models, tmp_path, monkeypatch):
    """Tensors over MindSpore's slice size are split into several records, whether their bytes come as file
    ranges (copied from the safetensors file) or as tensors: the same bytes either way, read back exactly."""
    from tunebridge.converters.formats import msckpt
    from tunebridge.converters.formats.safetensors_stream import tensor_bytes
    monkeypatch.setattr(msckpt, "SLICE_BYTES", 3000)
    convert(models["tiny-llama"], tmp_path / "mf", "hf", "mindformers", progress=False)
    reader = msckpt.CkptReader(tmp_path / "mf" / "model.ckpt")
    embed = reader.entries["model.tok_embeddings.embedding_weight"]
    assert len(embed.pieces) > 1
    src = HFReader(models["tiny-llama"])
    with open(tmp_path / "from_tensors.ckpt", "wb") as f:
        writer = CkptWriter(f)
        for name in reader.entries:
            t = reader.get(name)
            writer.write(name, list(t.shape), str(t.dtype).removeprefix("torch."), tensor_bytes(t.clone()))
    assert (tmp_path / "from_tensors.ckpt").read_bytes() == (tmp_path / "mf" / "model.ckpt").read_bytes()
    assert torch.equal(reader.get("model.tok_embeddings.embedding_weight"), src.get("model.embed_tokens.weight"))
    convert(tmp_path / "mf", tmp_path / "back", "mindformers", "hf", progress=False)
    assert same_tensors(models["tiny-llama"], tmp_path / "back")


def test_dtype_and_sharded_output(models, tmp_path):
    convert(models["tiny-llama"], tmp_path / "bf16", "hf", "hf", dtype="bf16", max_shard_bytes=100_000, progress=False)
    index_file = json.loads((tmp_path / "bf16" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index_file["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    r = HFReader(tmp_path / "bf16")
    assert all(r.get(n).dtype == torch.bfloat16 for n in r.names())
    assert index_file["metadata"]["total_size"] == sum(r.get(n).numel() * 2 for n in r.names())
    # bf16 through mcore and MindFormers stays bf16 and bit-exact
    convert(tmp_path / "bf16", tmp_path / "mc", "hf", "mcore", tp=2, progress=False)
    convert(tmp_path / "mc", tmp_path / "mf", "mcore", "mindformers", progress=False)
    convert(tmp_path / "mf", tmp_path / "back", "mindformers", "hf", progress=False)
    assert same_tensors(tmp_path / "bf16", tmp_path / "back")


def test_reads_pytorch_model_bin(models, tmp_path):
    src = HFReader(models["tiny-qwen2"])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((models["tiny-qwen2"] / "config.json").read_text())
    torch.save({n: src.get(n) for n in src.names()}, tmp_path / "bin" / "pytorch_model.bin")
    convert(tmp_path / "bin", tmp_path / "st", "hf", "hf", progress=False)
    assert same_tensors(models["tiny-qwen2"], tmp_path / "st")


def test_our_ckpt_bytes_equal_mindspore_save_checkpoint(ms_python, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"model.w": rng.standard_normal((7, 5)).astype(np.float32),
              "model.h": rng.standard_normal(9).astype(np.float16),
              "model.i": rng.integers(-5, 5, (3, 4)).astype(np.int32),
              # bf16-representable float32 values, so both writers store the same bits
              "model.b": (rng.standard_normal((6, 3)).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)}
    np.savez(tmp_path / "in.npz", **arrays)
    call_mindspore("backends.mindformers.ms.ckpt_ref", "save_reference", npz_path=str(tmp_path / "in.npz"),
                   ckpt_path=str(tmp_path / "ref.ckpt"), bf16=["model.b"])
    with open(tmp_path / "ours.ckpt", "wb") as f:
        w = CkptWriter(f)
        for name, a in arrays.items():
            if name == "model.b":
                w.write(name, list(a.shape), "bfloat16", torch.from_numpy(a).to(torch.bfloat16).view(torch.uint8)
                        .numpy().tobytes())
            else:
                w.write(name, list(a.shape), str(a.dtype), a.tobytes())
    assert (tmp_path / "ours.ckpt").read_bytes() == (tmp_path / "ref.ckpt").read_bytes()
    dtypes = call_mindspore("backends.mindformers.ms.ckpt_ref", "load_reference", ckpt_path=str(tmp_path / "ours.ckpt"),
                            npz_path=str(tmp_path / "out.npz"))
    assert dtypes == {"model.w": "Float32", "model.h": "Float16", "model.i": "Int32", "model.b": "BFloat16"}
    back = np.load(tmp_path / "out.npz")
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
    assert {k: e.dims for k, e in index(tmp_path / "ref.ckpt").items()} == {k: a.shape for k, a in arrays.items()}


@pytest.mark.parametrize("name", TINY)
def test_logits_agree_across_the_frameworks(ms_python, models, tmp_path, name):
    """Through transformers, megatron-core (tp 2 where the KV groups split, pp 2) and MindFormers where the
    family runs there."""
    tp = 2 if get_model(name).num_kv_heads % 2 == 0 else 1
    convert(models[name], tmp_path / "mc", "hf", "mcore", tp=tp, pp=2, num_layer_list=[1, 3], progress=False)
    paths = [(models[name], "hf"), (tmp_path / "mc", "mcore")]
    if name in MINDFORMERS_TINY:
        convert(models[name], tmp_path / "mf", "hf", "mindformers", progress=False)
        paths.append((tmp_path / "mf", "mindformers"))
    results = verify(paths, get_model(name))
    assert len(results) == len(paths) * (len(paths) - 1) // 2
    for r in results:
        assert r.passed, r
        assert r.max_abs < 2e-5 and r.cosine > 0.99999


def tampered_mcore(models, tmp_path: Path, edit) -> Path:
    """tiny-llama as mcore, with ``edit(state, spec, hf_reader)`` applied to its state dict."""
    spec = get_model("tiny-llama")
    convert(models["tiny-llama"], tmp_path / "mc", "hf", "mcore", progress=False)
    path = mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 0)
    saved = mcore_fmt.load_rank_file(path)
    state = {k: v.clone() for k, v in saved["model"].items()}
    edit(state, spec, HFReader(models["tiny-llama"]))
    path.unlink()
    mcore_fmt.write_rank(tmp_path / "mc", 0, 0, 1, state, saved["args"])
    return tmp_path / "mc"


def test_wrong_qkv_packing_fails_verification(models, tmp_path):
    def naive_qkv(state, spec, hf):  # the classic porting mistake: a plain [Q; K; V] concatenation
        for i in range(spec.num_layers):
            p = f"model.layers.{i}.self_attn."
            state[MCORE.rule_for_part("q", spec).format(i)] = torch.cat(
                [hf.get(p + "q_proj.weight"), hf.get(p + "k_proj.weight"), hf.get(p + "v_proj.weight")])
    (r,) = verify([(models["tiny-llama"], "hf"), (tampered_mcore(models, tmp_path, naive_qkv), "mcore")],
                  get_model("tiny-llama"))
    assert not r.passed and r.max_abs > 1e-2 > MAX_ABS
    from tunebridge.parity.verdicts import logits
    assert not logits(r).passed  # and the report's verdict says so


def test_gate_up_swap_fails_verification(models, tmp_path):
    def up_gate(state, spec, hf):  # [up; gate] instead of [gate; up]
        name = MCORE.rule_for_part("gate", spec).format(0)
        gate, up = state[name].chunk(2)
        state[name] = torch.cat([up, gate])
    (r,) = verify([(models["tiny-llama"], "hf"), (tampered_mcore(models, tmp_path, up_gate), "mcore")],
                  get_model("tiny-llama"))
    assert not r.passed


# --- bad input: a clear error, and nothing written ------------------------------------------------


def refused(tmp_path: Path, fn, *args, match: str, **kwargs) -> None:
    with pytest.raises(TunebridgeError, match=match):
        fn(*args, **kwargs)
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())


def test_missing_tensor(models, tmp_path):
    src = HFReader(models["tiny-llama"])
    tensors = {n: src.get(n) for n in src.names() if n != "model.layers.2.mlp.up_proj.weight"}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text((models["tiny-llama"] / "config.json").read_text())
    from safetensors.torch import save_file
    save_file(tensors, tmp_path / "bad" / "model.safetensors")
    refused(tmp_path, convert, tmp_path / "bad", tmp_path / "out", "hf", "mcore", progress=False,
            match="model.layers.2.mlp.up_proj.weight is missing")


def test_wrong_shape(models, tmp_path):
    refused(tmp_path, convert, models["tiny-llama"], tmp_path / "out", "hf", "mcore",
            spec=get_model("tiny-llama").with_(ffn_hidden_size=128),
            progress=False, match="has shape")


def test_tp_must_divide_kv_groups(models, tmp_path):
    refused(tmp_path, convert, models["tiny-qwen2-tied"], tmp_path / "out", "hf", "mcore", tp=2, progress=False,
            match="does not divide")


@pytest.mark.parametrize("pp,layers", [(3, None), (2, [1, 2]), (2, [1, 1, 2])])
def test_pipeline_split_must_add_up(models, tmp_path, pp, layers):
    refused(tmp_path, convert, models["tiny-llama"], tmp_path / "out", "hf", "mcore", pp=pp, num_layer_list=layers,
            progress=False, match="cannot be split")


def test_truncated_files(models, tmp_path):
    import shutil
    shutil.copytree(models["tiny-llama"], tmp_path / "cut")
    st = tmp_path / "cut" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:1000])
    refused(tmp_path, convert, tmp_path / "cut", tmp_path / "out", "hf", "mcore", progress=False, match="safetensors")
    convert(models["tiny-llama"], tmp_path / "mf", "hf", "mindformers", progress=False)
    ckpt = tmp_path / "mf" / "model.ckpt"
    data = ckpt.read_bytes()
    os.chmod(ckpt, 0o600)
    ckpt.write_bytes(data[:-100])
    refused(tmp_path, convert, tmp_path / "mf", tmp_path / "out", "mindformers", "hf", progress=False,
            match="truncated")
    convert(models["tiny-llama"], tmp_path / "mc", "hf", "mcore", progress=False)
    pt = mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 0)
    pt.write_bytes(pt.read_bytes()[:5000])
    refused(tmp_path, convert, tmp_path / "mc", tmp_path / "out", "mcore", "hf", progress=False,
            match="not a readable torch checkpoint")


@pytest.mark.parametrize("tensor", ["decoder.layers.1.self_attention.linear_proj.weight",  # rows interleaved
                                    "decoder.layers.0.mlp.linear_fc1.weight",  # copied as file ranges
                                    "embedding.word_embeddings.weight"])
def test_a_flipped_byte_in_an_mcore_record_is_refused(models, tmp_path, tensor):
    """Every record's CRC-32 is checked while the HF output is written; a corrupt one leaves no output."""
    import struct
    import zipfile
    from tunebridge.converters.formats.torchzip import lazy_load
    convert(models["tiny-llama"], tmp_path / "mc", "hf", "mcore", tp=2, progress=False)
    pt = mcore_fmt.McoreLayout(tmp_path / "mc").file(1, 0)
    key = lazy_load(pt)["model"][tensor].storage.key
    with zipfile.ZipFile(pt) as z:
        record = next(i for i in z.infolist() if i.filename.endswith(f"/data/{key}"))
    data = bytearray(pt.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    start = record.header_offset + 30 + name_len + extra_len
    data[start + record.file_size // 2] ^= 0x01
    pt.write_bytes(bytes(data))
    refused(tmp_path, convert, tmp_path / "mc", tmp_path / "out", "mcore", "hf", progress=False,
            match=f"storage {key} is corrupt \\(CRC-32 mismatch\\)")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/tunebridge-pwned",))


def test_non_allow_listed_pickle_is_refused(models, tmp_path):
    convert(models["tiny-llama"], tmp_path / "mc", "hf", "mcore", progress=False)
    pt = mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 0)
    saved = mcore_fmt.load_rank_file(pt)  # memory-mapped: copy before replacing the file
    evil = {"model": {k: v.clone() for k, v in saved["model"].items()}, "args": Evil()}
    pt.unlink()
    torch.save(evil, pt)
    refused(tmp_path, convert, tmp_path / "mc", tmp_path / "out", "mcore", "hf", progress=False,
            match="refused to unpickle")
    assert not Path("/tmp/tunebridge-pwned").exists()


def test_existing_destination_needs_force(models, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["convert", str(models["tiny-llama"]), str(tmp_path / "out"), "--to", "mcore"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    assert main(["convert", str(models["tiny-llama"]), str(tmp_path / "out"), "--to", "mcore", "--force"]) == 0
    assert not (tmp_path / "out" / "keep.txt").exists()
    assert (tmp_path / "out" / "latest_checkpointed_iteration.txt").exists()


def test_interrupted_conversion_leaves_nothing(models, tmp_path, monkeypatch):
    import tunebridge.model.layout as layout_module
    calls = {"n": 0}
    real = layout_module.pack_shards

    def dies_half_way(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(layout_module, "pack_shards", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        convert(models["tiny-llama"], tmp_path / "out", "hf", "mcore", tp=2, progress=False)
    assert calls["n"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bare_ckpt_needs_a_model(models, tmp_path):
    convert(models["tiny-llama"], tmp_path / "mf", "hf", "mindformers", progress=False)
    refused(tmp_path, convert, tmp_path / "mf" / "model.ckpt", tmp_path / "out", "mindformers", "hf", progress=False,
            match="carries no model config")
    convert(tmp_path / "mf" / "model.ckpt", tmp_path / "ok", "mindformers", "hf", spec=get_model("tiny-llama"),
            progress=False)
    assert same_tensors(models["tiny-llama"], tmp_path / "ok")


def test_verify_cli_reports_each_pair(ms_python, models, tmp_path, capsys):
    assert main(["convert", str(models["tiny-qwen2"]), str(tmp_path / "mf"), "--to", "mindformers"]) == 0
    capsys.readouterr()
    assert main(["verify", str(models["tiny-qwen2"]), str(tmp_path / "mf"), "--json"]) == 0
    (pair,) = json.loads(capsys.readouterr().out)
    assert pair["passed"] and pair["max_abs"] < 1e-4 and "MindFormers" in pair["b"]


# --- exact behaviour the mutation run found unchecked ------------------------------------------------------


def test_tied_embedding_copied_to_the_last_stage(models, tmp_path):
    """Megatron keeps a copy of a tied embedding as the last stage's output_layer.weight."""
    convert(models["tiny-qwen2-tied"], tmp_path / "mc", "hf", "mcore", pp=2, progress=False)
    layout = mcore_fmt.McoreLayout(tmp_path / "mc")
    first, last = (mcore_fmt.load_rank_file(layout.file(0, s))["model"] for s in (0, 1))
    assert "output_layer.weight" not in first and "embedding.word_embeddings.weight" not in last
    assert torch.equal(last["output_layer.weight"], first["embedding.word_embeddings.weight"])


def test_missing_rank_file_and_undetectable_formats_are_named(models, tmp_path):
    from tunebridge.converters.formats import detect_adapter_format, detect_format
    convert(models["tiny-llama"], tmp_path / "mc", "hf", "mcore", tp=2, progress=False)
    gone = tmp_path / "mc" / "iter_0000001" / "mp_rank_01" / "model_optim_rng.pt"
    gone.unlink()
    with pytest.raises(TunebridgeError) as e:
        mcore_fmt.McoreLayout(tmp_path / "mc")
    assert str(e.value) == f"{gone}: missing (tp=2, pp=1, ep=1)"
    (tmp_path / "empty").mkdir()
    with pytest.raises(TunebridgeError) as e:
        detect_format(tmp_path / "empty")
    assert str(e.value) == f"{tmp_path / 'empty'}: cannot tell the checkpoint format (pass --from/--to)"
    with pytest.raises(TunebridgeError) as e:
        detect_adapter_format(tmp_path / "empty")
    assert str(e.value) == f"{tmp_path / 'empty'}: cannot tell the adapter format (pass --from)"


def test_hf_index_and_shard_plan_and_config_text(models, tmp_path):
    from tunebridge.converters.formats.hf import shard_plan
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(models["tiny-llama"] / "config.json", bad / "config.json")
    (bad / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(TunebridgeError) as e:
        HFReader(bad)
    assert str(e.value) == f"{bad / 'model.safetensors.index.json'}: not a valid index ('weight_map')"
    f32 = torch.float32
    entries = [("a", f32, (2,)), ("b", f32, (2,)), ("c", f32, (10,)), ("d", f32, (1,)), ("e", f32, (3,))]
    # 8 + 8 bytes fill 16; a 40-byte tensor gets its own shard; 4 + 12 fill the next
    assert [[n for n, *_ in s] for s in shard_plan(entries, 16)] == [["a", "b"], ["c"], ["d", "e"]]
    convert(models["tiny-llama"], tmp_path / "hf", "hf", "hf", progress=False)
    config = (tmp_path / "hf" / "config.json").read_text()
    assert config.startswith('{\n  "') and config.endswith("}\n")  # indented as transformers writes it


def test_ckpt_records_cut_inside_are_named_and_empty_tensors_keep_their_dtype(tmp_path):
    from tunebridge.converters.formats.msckpt import CkptReader
    cases = {  # a record's value cut inside a varint, or missing its data field
        "name": (b"\x0a\x02\x0a\x85", "truncated or corrupt MindSpore checkpoint (at byte 4)"),
        "data": (b"\x0a\x09\x0a\x01w\x12\x04\x12\x00\x1a\x85", "truncated or corrupt MindSpore checkpoint (at byte 11)"),
        "no data": (b"\x0a\x07\x0a\x01w\x12\x02\x12\x00", "corrupt checkpoint record near byte 9"),
        "start": (b"\x8a", "truncated or corrupt MindSpore checkpoint (at byte 1)"),
    }
    for what, (data, message) in cases.items():
        path = tmp_path / f"{what}.ckpt"
        path.write_bytes(data)
        with pytest.raises(TunebridgeError) as e:
            index(path)
        assert str(e.value) == f"{path}: {message}", what
    with open(tmp_path / "e.ckpt", "wb") as f:
        CkptWriter(f).write("e", [0, 3], "bfloat16", b"")
    empty = CkptReader(tmp_path / "e.ckpt").get("e")
    assert empty.shape == (0, 3) and empty.dtype == torch.bfloat16
