"""Tensor bytes written from views and from file ranges (copied inside the kernel) land in order."""
from __future__ import annotations

import os

import pytest

from tunebridge.errors import TunebridgeError
from tunebridge.converters.formats.mapped import FileRange, byte_range, copy_range, write_all


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src.bin"
    path.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


def test_a_file_range_slices_like_a_memoryview(source):
    r = FileRange(source, 100, 50)
    assert r[10:20] == FileRange(source, 110, 10)
    assert r[:5] == FileRange(source, 100, 5)
    assert r[45:] == FileRange(source, 145, 5)
    assert r[40:999].nbytes == 10 and len(r[60:]) == 0
    assert bytes(r[3:7].mapped()) == bytes([103, 104, 105, 106])
    with pytest.raises(ValueError, match="step 1"):
        r[::2]


@pytest.mark.parametrize("flags", [0, os.O_APPEND])  # copy_file_range refuses O_APPEND (EBADF): the mapped fallback
def test_views_and_ranges_are_written_in_order(source, tmp_path, flags):
    data = bytes(range(256)) * 1024
    pieces = [memoryview(b"head"), FileRange(source, 70_000, 100_000), memoryview(b""), memoryview(b"mid"),
              FileRange(source, 3, 5), FileRange(source, 0, 0), FileRange(source, 200_000, 62_144)]
    out = tmp_path / "out.bin"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | flags)
    try:
        os.write(fd, b"<")
        write_all(fd, pieces)
        os.write(fd, b">")
    finally:
        os.close(fd)
    assert out.read_bytes() == (b"<head" + data[70_000:170_000] + b"mid" + data[3:8] + data[200_000:262_144]
                                + b">")


def test_a_range_past_the_end_of_its_file_is_an_error(source, tmp_path):
    fd = os.open(tmp_path / "out.bin", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(TunebridgeError, match="ended 10 bytes early"):
            copy_range(FileRange(source, 256 * 1024 - 20, 30), fd)
    finally:
        os.close(fd)


def test_byte_range_cuts_across_views_and_ranges(source):
    data = bytes(range(256)) * 1024
    pieces = [memoryview(b"abcdef"), FileRange(source, 1000, 10), memoryview(b"xyz")]
    cut = byte_range(pieces, 4, 10)  # "ef" + 8 bytes of the range
    assert bytes(cut[0]) == b"ef" and cut[1] == FileRange(source, 1000, 8) and len(cut) == 2
    assert byte_range(pieces, 16, 3)[0].tobytes() == b"xyz"
    assert byte_range(pieces, 6, 10) == [FileRange(source, 1000, 10)]
    assert bytes(byte_range(pieces, 14, 1)[0].mapped()) == data[1008:1009]


def test_safetensors_header_compact_overlap_refused_and_empty_tensors(tmp_path):
    """The header as the safetensors library writes it (compact JSON); overlapping entries named with their
    bytes; a zero-element tensor keeps its shape and dtype."""
    import json
    import struct

    import torch
    from safetensors.torch import save_file

    from tunebridge.converters.formats.safetensors_stream import SafetensorsReader, SafetensorsWriter
    w = SafetensorsWriter(tmp_path / "a.safetensors", [("x", torch.float32, (2,))], metadata={"format": "pt"})
    w.write("x", torch.tensor([1.0, 2.0]))
    w.close()
    raw = (tmp_path / "a.safetensors").read_bytes()
    header = raw[8 : 8 + int.from_bytes(raw[:8], "little")].rstrip(b" ")
    assert header == json.dumps(json.loads(header), separators=(",", ":")).encode()
    entries = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    head = json.dumps(entries).encode()
    (tmp_path / "o.safetensors").write_bytes(struct.pack("<Q", len(head)) + head + bytes(12))
    with pytest.raises(TunebridgeError) as e:
        SafetensorsReader(tmp_path / "o.safetensors")
    assert str(e.value) == (f"{tmp_path / 'o.safetensors'}: corrupt safetensors header: tensors 'a' and 'b' "
                            "overlap (bytes 4..8)")
    save_file({"e": torch.empty(0, 3, dtype=torch.bfloat16), "f": torch.ones(2)}, str(tmp_path / "e.safetensors"))
    t = SafetensorsReader(tmp_path / "e.safetensors").get_tensor("e")
    assert t.shape == (0, 3) and t.dtype == torch.bfloat16
    save_file({"e": torch.empty(0, 3)}, str(tmp_path / "h.safetensors"))  # a header and no data at all
    assert SafetensorsReader(tmp_path / "h.safetensors").get_tensor("e").shape == (0, 3)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes((tmp_path / "e.safetensors").read_bytes()[:-4])
    with pytest.raises(TunebridgeError) as e:
        SafetensorsReader(cut)
    size = cut.stat().st_size
    assert str(e.value) == f"{cut}: corrupt or truncated safetensors file ({size} bytes, the header describes {size + 4})"


def test_torch_zip_whole_storages_and_empty_tensors(tmp_path):
    import torch

    from tunebridge.converters.formats.torchzip import lazy_load
    base = torch.arange(12.0)
    torch.save({"whole": torch.ones(2, 3), "view": base[2:8].view(2, 3), "empty": torch.empty(0, 4, dtype=torch.bfloat16)},
               tmp_path / "m.pt")
    lazy = lazy_load(tmp_path / "m.pt")
    assert lazy["whole"].is_whole_storage() and not lazy["view"].is_whole_storage()
    assert torch.equal(lazy["view"].load(), base[2:8].view(2, 3))
    empty = lazy["empty"].load()
    assert empty.shape == (0, 4) and empty.dtype == torch.bfloat16
