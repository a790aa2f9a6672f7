"""MindSpore's ``.ckpt`` format, read and written here without MindSpore, streaming.

A ``.ckpt`` is a concatenation of serialized protobuf ``Checkpoint`` messages (proto2, from MindSpore's
``checkpoint.proto``), each holding one ``Value {tag; TensorProto tensor {repeated int64 dims;
string tensor_type; bytes tensor_content}}``. A tensor over ``SLICE_BYTES`` is written as several
messages with the same tag and full dims, each carrying a slice of the bytes (MindSpore's
``np.array_split`` along dim 0). Fields are emitted in field-number order with unpacked dims, exactly as
MindSpore's protobuf serializer does, so the bytes match ``mindspore.save_checkpoint``'s.
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ...errors import TunebridgeError
from .background import Background
from .mapped import FileRange, byte_range, map_range, open_owned, write_all

SLICE_BYTES = 524288 * 1024  # MindSpore's SLICE_SIZE (in KB)

# MindSpore tensor_type strings <-> numpy / torch dtype names
MS_TYPES = {
    "Float32": "float32",
    "Float16": "float16",
    "BFloat16": "bfloat16",
    "Float64": "float64",
    "Int8": "int8",
    "UInt8": "uint8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "Bool": "bool",
}
TYPE_OF = {v: k for k, v in MS_TYPES.items()}
ITEMSIZE = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "bool": 1,
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _message_prefix(name: str, dims: list[int], dtype: str, content_len: int) -> bytes:
    """Everything of one Checkpoint message before its tensor_content bytes."""
    tag = name.encode("utf-8")
    ttype = TYPE_OF[dtype].encode()
    tensor_head = b"".join(_field(1, 0) + _varint(d) for d in dims)
    tensor_head += _field(2, 2) + _varint(len(ttype)) + ttype + _field(3, 2) + _varint(content_len)
    tensor_len = len(tensor_head) + content_len
    value_head = _field(1, 2) + _varint(len(tag)) + tag + _field(2, 2) + _varint(tensor_len)
    value_len = len(value_head) + tensor_len
    return _field(1, 2) + _varint(value_len) + value_head + tensor_head


def _slices(shape: list[int], nbytes: int) -> list[int]:
    """Byte lengths of the slices MindSpore writes (np.array_split along dim 0 into ceil(KB / SLICE) parts)."""
    if nbytes / 1024 <= SLICE_BYTES / 1024 or not shape:
        return [nbytes]
    count = -(-nbytes // SLICE_BYTES)
    rows, row_bytes = shape[0], nbytes // shape[0]
    base, extra = divmod(rows, count)
    return [(base + (1 if i < extra else 0)) * row_bytes for i in range(count)]


class CkptWriter:
    """Append tensors to a ``.ckpt`` one at a time (name, dims, dtype name, raw little-endian bytes), through
    ``background`` if given (the caller closes it before closing ``f``)."""

    def __init__(self, f: BinaryIO, background: Background | None = None):
        self._f = f
        self._background = background or Background(max_bytes=0)

    def write(self, name: str, dims: list[int], dtype: str, data: bytes | memoryview | list) -> None:
        """One tensor's bytes: a buffer, or the byte views and file ranges whose bytes in order are its bytes."""
        if dtype not in TYPE_OF:
            raise TunebridgeError(f"{name}: dtype {dtype} cannot be stored in a MindSpore checkpoint")
        pieces = data if isinstance(data, list) else [memoryview(data).cast("B")]
        nbytes = sum(len(p) for p in pieces)
        out: list = []
        start = 0
        for length in _slices(list(dims), nbytes):
            out += [memoryview(_message_prefix(name, list(dims), dtype, length)), *byte_range(pieces, start, length)]
            start += length
        self._background.submit(lambda: self._write(out), nbytes)

    def _write(self, pieces: list) -> None:
        self._f.flush()
        write_all(self._f.fileno(), pieces)


def finish_readonly(path: Path) -> None:
    """MindSpore leaves its checkpoints read-only for the owner (0400); so do we."""
    os.chmod(path, stat.S_IRUSR)


@dataclass(frozen=True)
class CkptEntry:
    name: str
    dims: tuple[int, ...]
    dtype: str
    pieces: tuple[tuple[int, int], ...]  # (offset, length) of each slice's bytes in the file


def _read_varint(buf, pos: int, end: int, path: Path) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= end:
            raise TunebridgeError(f"{path}: truncated or corrupt MindSpore checkpoint (at byte {pos})")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def index(path: str | Path) -> dict[str, CkptEntry]:
    """Name -> where its bytes are, without reading the tensors."""
    path = Path(path)
    entries: dict[str, dict] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise TunebridgeError(f"{path}: empty file, not a MindSpore checkpoint")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            pos = 0
            while pos < size:
                key, pos = _read_varint(buf, pos, size, path)
                if key != 0x0A:
                    raise TunebridgeError(
                        f"{path}: not a MindSpore checkpoint (unexpected field {key:#x} at byte {pos - 1})"
                    )
                length, pos = _read_varint(buf, pos, size, path)
                end = pos + length
                if end > size:
                    raise TunebridgeError(f"{path}: truncated MindSpore checkpoint (a record runs past the end)")
                name, dims, dtype, piece = _parse_value(buf, pos, end, path)
                e = entries.setdefault(name, {"dims": dims, "dtype": dtype, "pieces": []})
                e["pieces"].append(piece)
                pos = end
        finally:
            buf.close()
    return {n: CkptEntry(n, tuple(e["dims"]), e["dtype"], tuple(e["pieces"])) for n, e in entries.items()}


def _parse_value(buf, pos: int, end: int, path: Path):
    name = dtype = None
    dims: list[int] = []
    piece = None
    while pos < end:
        key, pos = _read_varint(buf, pos, end, path)
        if key == 0x0A:  # tag
            n, pos = _read_varint(buf, pos, end, path)
            name = bytes(buf[pos : pos + n]).decode("utf-8")
            pos += n
        elif key == 0x12:  # tensor
            n, pos = _read_varint(buf, pos, end, path)
            tend = pos + n
            while pos < tend:
                k, pos = _read_varint(buf, pos, tend, path)
                if k == 0x08:
                    d, pos = _read_varint(buf, pos, tend, path)
                    dims.append(d)
                elif k == 0x12:
                    m, pos = _read_varint(buf, pos, tend, path)
                    dtype = bytes(buf[pos : pos + m]).decode()
                    pos += m
                elif k == 0x1A:
                    m, pos = _read_varint(buf, pos, tend, path)
                    piece = (pos, m)
                    pos += m
                else:
                    raise TunebridgeError(f"{path}: unexpected tensor field {k:#x}")
        else:
            raise TunebridgeError(f"{path}: unsupported checkpoint value field {key:#x} (map tensors?)")
    if name is None or dtype is None or piece is None:
        raise TunebridgeError(f"{path}: corrupt checkpoint record near byte {end}")
    if dtype not in MS_TYPES:
        raise TunebridgeError(f"{path}: {name}: unsupported tensor type {dtype}")
    return name, dims, MS_TYPES[dtype], piece


class CkptReader:
    """The tensors of a ``.ckpt`` by name: indexed once, each one's bytes mapped (one slice) or read (several)
    when asked for, or handed out as file ranges to copy."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries = index(self.path)
        self._fd = open_owned(self, self.path)

    def entry(self, name: str) -> CkptEntry:
        if name not in self.entries:
            raise TunebridgeError(f"{self.path}: tensor {name} is missing")
        e = self.entries[name]
        expected = ITEMSIZE[e.dtype] * (int(np.prod(e.dims, dtype=np.int64)) if e.dims else 1)
        got = sum(length for _, length in e.pieces)
        if got != expected:
            raise TunebridgeError(
                f"{self.path}: {name} holds {got} bytes, its shape {list(e.dims)} of {e.dtype} needs {expected}"
            )
        return e

    def locate(self, name: str) -> tuple[torch.dtype, tuple[int, ...], list[FileRange]]:
        """The tensor's dtype, shape and where its bytes are, slice by slice (valid while this reader lives)."""
        e = self.entry(name)
        return getattr(torch, e.dtype), e.dims, [FileRange(self._fd, offset, length) for offset, length in e.pieces]

    def get(self, name: str) -> torch.Tensor:
        """The tensor: its bytes in the file as they are (:func:`map_range`) when stored in one slice, else
        the slices read into one buffer."""
        e = self.entry(name)
        data: memoryview | bytearray
        if len(e.pieces) == 1:
            data = map_range(self._fd, *e.pieces[0])
        else:
            data = bytearray(sum(length for _, length in e.pieces))
            view, at = memoryview(data), 0
            for offset, length in e.pieces:
                at += os.preadv(self._fd, [view[at : at + length]], offset)
        dtype = getattr(torch, e.dtype)
        return torch.frombuffer(data, dtype=dtype).reshape(e.dims) if data else torch.empty(e.dims, dtype=dtype)
