"""What the round trips of test_convert.py do not show: the file ranges a source hands out (the same bytes as its
tensors), the messages that name a file, the progress bar, a torch zip's ZIP64 fields and short writes, and
the writer thread's back-pressure."""
from __future__ import annotations

import argparse
import gc
import io
import os
import pickle
import struct
import threading
import time
import zipfile

import pytest
import torch

from tunebridge.converters.checkpoint import convert, mcore_layout, open_source
from tunebridge.converters.formats import mcore as mcore_fmt, torchzip
from tunebridge.converters.formats.background import Background
from tunebridge.converters.formats.hf import load_bin
from tunebridge.converters.formats.mapped import FileRange, open_owned
from tunebridge.converters.formats.safetensors_stream import tensor_bytes
from tunebridge.errors import TunebridgeError
from tunebridge.model.catalogue import get_model
from tunebridge.model.dialects import MCORE

from .test_convert import make_hf


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """tiny-llama in HF and as mcore at tp 2 with its vocabulary padded (512 -> 768 rows)."""
    d = tmp_path_factory.mktemp("paths")
    hf = make_hf(d / "hf", "tiny-llama")
    convert(hf, d / "mc", "hf", "mcore", tp=2, make_vocab_size_divisible_by=384, progress=False)
    return hf, d / "mc"


def joined(pieces: list) -> bytes:
    return b"".join(bytes(p.mapped()) if isinstance(p, FileRange) else bytes(p) for p in pieces)


def test_mcore_pieces_are_the_tensors_bytes(llama):
    """Every tensor of an mcore checkpoint as file ranges of its records (a row-parallel one over tp 2 assembled
    in memory, the vocabulary cut to its real rows): the bytes ``get`` gives."""
    _, mc = llama
    src = open_source(mc, "mcore")
    assert mcore_fmt.load_rank_file(mcore_fmt.McoreLayout(mc).file(0, 0))["args"].padded_vocab_size == 768
    kinds = {}
    for part, layer in src.spec.tensors():
        pieces = src.pieces(part, layer, torch.float32)
        assert pieces is not None, (part, layer)
        kinds[part] = {type(p).__name__ for p in pieces}
        assert joined(pieces) == bytes(tensor_bytes(src.get(part, layer).contiguous())), (part, layer)
    assert src.pieces("embed", None, torch.bfloat16) is None  # another dtype: read and cast by the writer
    src.finish()
    assert kinds["embed"] == kinds["q"] == {"FileRange"} and kinds["o"] == kinds["down"] == {"memoryview"}


def test_mindformers_pieces_and_errors_name_the_ckpt(llama, tmp_path):
    hf, _ = llama
    convert(hf, tmp_path / "mf", "hf", "mindformers", progress=False)
    spec = get_model("tiny-llama")
    src = open_source(tmp_path / "mf", "mindformers", spec)
    pieces = src.pieces("embed", None, torch.float32)
    assert [type(p) for p in pieces] == [FileRange]
    assert joined(pieces) == bytes(tensor_bytes(src.get("embed", None)))
    other = spec.with_(name="llama-500", vocab_size=500)
    with pytest.raises(TunebridgeError) as e:
        open_source(tmp_path / "mf", "mindformers", other).get("embed", None)
    assert str(e.value) == (f"{tmp_path / 'mf' / 'model.ckpt'}: model.tok_embeddings.embedding_weight has shape "
                            f"[512, {spec.hidden_size}], llama-500 needs [500, {spec.hidden_size}]")


def resave(path, change) -> None:
    state = mcore_fmt.load_rank_file(path)
    change(state)
    torch.save(state, f"{path}.new")  # beside it: the old file's tensors are mapped
    os.replace(f"{path}.new", path)


def test_an_mcore_checkpoint_without_args_needs_the_model(llama, tmp_path):
    hf, _ = llama
    convert(hf, tmp_path / "mc", "hf", "mcore", progress=False)
    rank_file = mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 0)
    resave(rank_file, lambda state: state.pop("args"))
    with pytest.raises(TunebridgeError) as e:
        open_source(tmp_path / "mc", "mcore")
    assert str(e.value) == f"{rank_file}: no args saved: pass the model (--model/--hf-config)"
    src = open_source(tmp_path / "mc", "mcore", get_model("tiny-llama"))
    assert torch.equal(src.get("final_norm", None), open_source(hf, "hf").get("final_norm", None))


def test_a_rank_file_without_a_model_is_named(llama, tmp_path):
    hf, _ = llama
    convert(hf, tmp_path / "mc", "hf", "mcore", pp=2, progress=False)
    rank_file = mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 1)
    resave(rank_file, lambda state: state.pop("model"))
    with pytest.raises(TunebridgeError) as e:
        convert(tmp_path / "mc", tmp_path / "hf", "mcore", "hf", progress=False)
    assert str(e.value) == f"{rank_file}: no 'model' state dict"
    assert rank_file.parent.name == "mp_rank_00_001"


def test_checkpoint_args_are_named_in_their_errors():
    args = argparse.Namespace(model_type="mystery", intermediate_size=64, num_hidden_layers=2)
    with pytest.raises(TunebridgeError) as e:
        mcore_fmt.spec_from_args(args, "x")
    assert str(e.value).startswith("checkpoint args: model_type 'mystery' is not supported (supported: ")


def test_the_progress_bar_names_the_conversion(llama, tmp_path, capsys):
    hf, _ = llama
    capsys.readouterr()
    convert(hf, tmp_path / "out", "hf", "hf", progress=True)
    n = sum(1 for _ in get_model("tiny-llama").tensors())
    last = capsys.readouterr().err.split("\r")[-1]
    assert last.startswith("hf -> hf: 100%|") and f"| {n}/{n} [" in last and "tensor/s]" in last


def test_a_bin_whose_pickle_is_cut_short(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "good.bin")
    with zipfile.ZipFile(tmp_path / "good.bin") as good, zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as bad:
        for name in good.namelist():
            bad.writestr(name, b"\x80\x02}q\x00" if name.endswith("data.pkl") else good.read(name))
    with pytest.raises(TunebridgeError) as e:  # EOFError's message is empty
        load_bin(tmp_path / "pytorch_model.bin")
    assert str(e.value) == f"{tmp_path / 'pytorch_model.bin'}: cannot read as a weights-only torch file (EOFError: )"


class Reduces:
    def __reduce__(self):
        return os.system, ("true",)


def test_a_framework_module_private_name_is_refused():
    data = pickle.dumps(Reduces(), protocol=2).replace(b"cposix\nsystem\n", b"cmegatron.core.enums\n_system\n")
    with pytest.raises(pickle.UnpicklingError) as e:
        torchzip._Unpickler(io.BytesIO(data), archive=None).load()
    assert str(e.value) == "global 'megatron.core.enums._system' is not allowed"


def test_zip64_fields_of_a_record_past_4_gib():
    """The headers of a record of 5 GiB at offset 6 GiB, and of a small record past 4 GiB (no 5 GiB file
    needed: the headers are all that changes)."""
    big = torchzip._Record("archive/data/0", size=5 << 30, offset=6 << 30, crc=0x1234ABCD)
    local = big.local_header()
    fields = struct.unpack("<IHHHHHIIIHH", local[:30])
    assert fields == (0x04034B50, 45, 0x0800, 0, 0, 0, 0x1234ABCD, 0xFFFFFFFF, 0xFFFFFFFF, 14, len(local) - 44)
    assert local[30:44] == b"archive/data/0"
    assert struct.unpack("<HHQQ", local[44:64]) == (1, 16, 5 << 30, 5 << 30) and local[64:66] == b"FB"
    assert (big.offset + len(local)) % torchzip.ALIGNMENT == 0 and len(local) == big.local_header_len()
    central = big.central_header()
    fields = struct.unpack("<IHHHHHHIIIHHHHHII", central[:46])
    assert fields == (0x02014B50, 45, 45, 0x0800, 0, 0, 0, 0x1234ABCD, 0xFFFFFFFF, 0xFFFFFFFF, 14, 28, 0, 0, 0, 0,
                      0xFFFFFFFF)
    assert struct.unpack("<HHQQQ", central[60:]) == (1, 24, 5 << 30, 5 << 30, 6 << 30)
    small = torchzip._Record("archive/data/1", size=100, offset=6 << 30, crc=7)
    local = small.local_header()
    assert struct.unpack("<IHHHHHIII", local[:26]) == (0x04034B50, 20, 0x0800, 0, 0, 0, 7, 100, 100)
    assert local[44:46] == b"FB"  # no ZIP64 field: only the alignment padding
    central = small.central_header()
    assert struct.unpack("<HH", central[4:8]) == (45, 45) and struct.unpack("<II", central[20:28]) == (100, 100)
    assert struct.unpack("<HHQ", central[60:]) == (1, 8, 6 << 30) and struct.unpack("<I", central[42:46]) == (
        0xFFFFFFFF,)


def test_short_writes_are_continued(tmp_path, monkeypatch):
    real = os.pwrite
    calls = []

    def short(fd, data, offset):  # as Linux does past 2 GiB in one call
        calls.append(offset)
        return real(fd, memoryview(data)[:3], offset)

    monkeypatch.setattr(os, "pwrite", short)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        torchzip._pwrite_all(fd, [b"hello world", memoryview(b"xyz")], 4)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"\0\0\0\0hello worldxyz"
    assert calls == [4, 7, 10, 13, 15]


def test_the_writer_thread_is_a_daemon_and_bounds_the_bytes_it_holds():
    first, second, ran = threading.Event(), threading.Event(), []
    with Background(max_bytes=10) as bg:
        assert [t.daemon for t in threading.enumerate() if t.name == "tunebridge-writer"] == [True]
        bg.submit(lambda: (first.wait(10), ran.append(1)), 4)
        bg.submit(lambda: (second.wait(10), ran.append(2)), 6)  # 4 + 6 fit
        third = threading.Thread(target=bg.submit, args=(lambda: ran.append(3), 5))
        third.start()
        time.sleep(0.2)
        assert third.is_alive() and ran == []
        first.set()  # 6 + 5 still do not fit: the third waits for the second job
        for _ in range(100):
            if ran:
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert ran == [1] and third.is_alive()
        second.set()
        third.join(10)
        assert not third.is_alive()
    assert ran == [1, 2, 3]


def test_a_descriptor_lives_as_long_as_its_owner(tmp_path):
    (tmp_path / "f").write_bytes(b"data")

    class Owner:
        pass

    owner = Owner()
    fd = open_owned(owner, tmp_path / "f")
    assert os.pread(fd, 4, 0) == b"data"
    del owner
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_rank_file_is_written_over_an_existing_one(tmp_path):
    args = argparse.Namespace(iteration=1)
    mcore_fmt.write_rank(tmp_path, 0, 0, 1, {"w": torch.zeros(2)}, args)
    path = mcore_fmt.write_rank(tmp_path, 0, 0, 1, {"w": torch.ones(3)}, args)
    assert torch.equal(mcore_fmt.load_rank_file(path)["model"]["w"], torch.ones(3))


def test_a_tensor_of_another_shape_is_named(llama):
    _, mc = llama
    other = get_model("tiny-llama").with_(name="llama-ffn", ffn_hidden_size=96)
    with pytest.raises(TunebridgeError) as e:
        open_source(mc, "mcore", other).get("down", 1)
    ffn = get_model("tiny-llama").ffn_hidden_size
    hidden = other.hidden_size
    assert str(e.value) == (f"{mc}: decoder.layers.1.mlp.linear_fc2.weight gives down of shape [{hidden}, {ffn}], "
                            f"llama-ffn needs [{hidden}, 96]")


def test_the_layout_options_of_an_mcore_checkpoint(llama, tmp_path):
    hf, mc = llama
    assert mcore_layout(mc, open_source(mc, "mcore")) == {"tp": 2, "pp": 1, "ep": 1, "num_layer_list": None}
    convert(hf, tmp_path / "pp", "hf", "mcore", pp=2, num_layer_list=[3, 1], progress=False)
    src = open_source(tmp_path / "pp", "mcore")
    assert mcore_layout(tmp_path / "pp", src) == {"tp": 1, "pp": 2, "ep": 1, "num_layer_list": [3, 1]}


def test_args_without_an_expert_parallel_size_are_stages(llama, tmp_path):
    """Older Megatron args have no expert_model_parallel_size: mp_rank_00_000 and _001 are then two stages."""
    hf, _ = llama
    convert(hf, tmp_path / "mc", "hf", "mcore", pp=2, progress=False)
    layout = mcore_fmt.McoreLayout(tmp_path / "mc")
    for s in range(2):
        resave(layout.file(0, s), lambda state: delattr(state["args"], "expert_model_parallel_size"))
    layout = mcore_fmt.McoreLayout(tmp_path / "mc")
    assert (layout.tp, layout.pp, layout.ep) == (1, 2, 1)


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    d = tmp_path_factory.mktemp("moe")
    hf = make_hf(d / "hf", "tiny-qwen3-moe")
    convert(hf, d / "mc", "hf", "mcore", pp=2, ep=2, progress=False)
    return hf, d / "mc"


def test_a_missing_expert_rank_file_is_named(moe, tmp_path):
    _, mc = moe
    layout = mcore_fmt.McoreLayout(mc)
    import shutil
    shutil.copytree(mc, tmp_path / "mc")
    missing = mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 1, 1)
    missing.unlink()
    with pytest.raises(TunebridgeError) as e:
        mcore_fmt.McoreLayout(tmp_path / "mc")
    assert str(e.value) == f"{missing}: missing (tp=1, pp=2, ep=2)" and missing.parent.name == "mp_rank_00_001_001"
    assert (layout.pp, layout.ep) == (2, 2)


def test_experts_convert_to_another_dtype_and_come_as_file_ranges(moe, tmp_path):
    hf, _ = moe
    convert(hf, tmp_path / "bf16", "hf", "hf", dtype="bf16", progress=False)
    src, back = open_source(hf, "hf"), open_source(tmp_path / "bf16", "hf")
    spec = src.spec
    for part, layer in spec.tensors():
        assert torch.equal(back.get(part, layer), src.get(part, layer).to(torch.bfloat16)), (part, layer)
    pieces = src.pieces("expert_gate", 1, torch.float32)  # a stack of experts: theirs, in order
    assert len(pieces) == spec.num_experts and joined(pieces) == bytes(tensor_bytes(src.get("expert_gate", 1)))


def test_expert_ranks_are_joined_under_global_expert_indices():
    spec = get_model("tiny-qwen3-moe")
    rules = [r for r in MCORE.rules(spec) if r.per_expert]
    per_rank = spec.num_experts // 2
    states = [
        {"shared": torch.tensor([float(rank)]),
         **{r.format(j, e): torch.tensor([100.0 * rank + 10 * j + e]) for r in rules for j in range(2)
            for e in range(per_rank)}}
        for rank in range(2)
    ]
    joined = mcore_fmt.join_expert_ranks(spec, states, 2)
    assert set(joined) == {"shared"} | {r.format(j, g) for r in rules for j in range(2) for g in range(spec.num_experts)}
    assert joined["shared"].item() == 0.0  # every other tensor from ep rank 0
    for r in rules:
        for j in range(2):
            for g in range(spec.num_experts):
                rank, e = divmod(g, per_rank)
                assert joined[r.format(j, g)].item() == 100.0 * rank + 10 * j + e
    assert mcore_fmt.join_expert_ranks(spec, states[:1], 2) is states[0]


def test_accounting_counts_what_each_rank_file_holds(llama):
    """tp 2 with make-vocab-size-divisible-by 384: the vocabulary is padded to 768 rows (at 1, the default, it
    would stay 512), and a model without experts has no ep rank."""
    from tunebridge.model.accounting import count, mcore_rank_params
    _, mc = llama
    spec = get_model("tiny-llama")
    rows = mcore_rank_params(spec, 2, 1, make_vocab_size_divisible_by=384)
    layout = mcore_fmt.McoreLayout(mc)
    held = [sum(t.numel() for t in mcore_fmt.load_rank_file(layout.file(t, 0))["model"].values()) for t in range(2)]
    assert rows == [{"pp_rank": 0, "tp_rank": t, "layers": spec.num_layers, "trainable": held[t]} for t in range(2)]
    report = count(spec, "mindspeed-llm", "full", tp=2, make_vocab_size_divisible_by=384)
    assert (report.per_rank_trainable, report.note, report.lora_rank) == (rows, "", None)
