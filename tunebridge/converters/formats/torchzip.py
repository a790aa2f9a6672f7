"""Lazy, allow-listed reading and streaming writing of ``torch.save`` zip files (``model_optim_rng.pt``).

``torch.load(mmap=True)`` keeps every page it touches resident until the whole state dict is freed, so
a streaming converter's memory would grow with the file. Here the pickle is read with a restricted
unpickler (the same allow-list idea as ``weights_only=True``), tensors come back as :class:`LazyTensor`,
and each one's storage record is read from the archive only when asked for.

The allow-list is what Megatron and MindSpeed-LLM checkpoints hold: tensors, torch dtypes and sizes,
``argparse.Namespace``, ``OrderedDict`` and ``defaultdict`` (MindSpeed-LLM's converter saves its state
dict as one), plain builtin containers, numpy arrays, dtypes and scalars (Megatron's ``rng_state``), and
Megatron / MindSpeed enum values in ``args`` (e.g. ``AttnBackend``), which come back as inert
:class:`ForeignValue` records: their classes are never imported, nothing in the file runs.
"""

from __future__ import annotations

import _codecs
import argparse
import builtins
import collections
import io
import math
import os
import pickle
import struct
import sys
import zipfile

try:  # ISA-L's CRC-32 (carry-less multiply): the same checksum, ~5x zlib's speed on this machine
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - isal is a dependency of the torch extra
    from zlib import crc32
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import TunebridgeError
from .background import Background
from .mapped import FileRange, map_range, open_owned
from .safetensors_stream import tensor_bytes

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_DTYPES = {
    name: getattr(torch, name)
    for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
}


@dataclass(frozen=True)
class _Storage:
    archive: Archive
    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class LazyTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def shape(self) -> torch.Size:
        return torch.Size(self.size)

    def load(self) -> torch.Tensor:
        raw = self.storage.archive.record(self.storage.key)
        flat = torch.frombuffer(raw, dtype=self.storage.dtype) if raw else torch.empty(0, dtype=self.storage.dtype)
        return torch.as_strided(flat, self.size, self.stride, self.offset)

    def is_whole_storage(self) -> bool:
        """Whether this tensor is its storage, in row-major order (then :meth:`read_into` applies)."""
        contiguous = tuple(math.prod(self.size[i + 1 :]) for i in range(len(self.size)))
        return self.offset == 0 and self.stride == contiguous and math.prod(self.size) == self.storage.numel

    def read_into(self, targets: list[memoryview]) -> None:
        """Read the bytes, in order, into ``targets`` (which together hold exactly its bytes)."""
        self.storage.archive.read_into(self.storage.key, targets)

    def map_unchecked(self) -> memoryview:
        """Its storage's bytes, mapped read-only and not yet checked (:meth:`check` them)."""
        return self.storage.archive.map_record(self.storage.key)

    def range_unchecked(self) -> FileRange:
        """Where its storage's bytes are in the file, not yet checked (:meth:`check` them)."""
        return self.storage.archive.record_range(self.storage.key)

    def check(self) -> None:
        """Raise unless its storage's bytes match the record's CRC-32."""
        self.storage.archive.check_record(self.storage.key)


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, requires_grad=False, hooks=None, metadata=None):
    return LazyTensor(storage, offset, tuple(size), tuple(stride))


class Archive:
    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
            names = self._zip.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise TunebridgeError(f"{path}: not a readable torch checkpoint ({e})") from None
        pkl = [n for n in names if n.endswith("/data.pkl")]
        if not pkl:
            raise TunebridgeError(f"{path}: not a torch checkpoint (no data.pkl)")
        self.prefix = pkl[0][: -len("data.pkl")]
        self._fd = open_owned(self, path)

    def _locate(self, key: str) -> tuple[zipfile.ZipInfo, int]:
        """A stored record's entry and where its bytes start."""
        try:
            info = self._zip.getinfo(f"{self.prefix}data/{key}")
        except KeyError:
            raise TunebridgeError(f"{self.path}: storage {key} is missing") from None
        head = os.pread(self._fd, 30, info.header_offset)
        if len(head) < 30 or head[:4] != b"PK\x03\x04" or info.compress_type != zipfile.ZIP_STORED:
            raise TunebridgeError(f"{self.path}: storage {key} is corrupt (bad local header)")
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if start + info.file_size > os.fstat(self._fd).st_size:
            raise TunebridgeError(f"{self.path}: storage {key} is truncated")
        return info, start

    def _check(self, key: str, info: zipfile.ZipInfo, crc: int) -> None:
        if crc != info.CRC:
            raise TunebridgeError(f"{self.path}: storage {key} is corrupt (CRC-32 mismatch)")

    def record(self, key: str) -> memoryview:
        """A stored record's bytes (:func:`map_range`), checked against its CRC-32."""
        info, start = self._locate(key)
        data = map_range(self._fd, start, info.file_size)
        self._check(key, info, crc32(data))
        return data

    def record_range(self, key: str) -> FileRange:
        """Where a stored record's bytes are, not checked: see :meth:`check_record`."""
        info, start = self._locate(key)
        return FileRange(self._fd, start, info.file_size)

    def map_record(self, key: str) -> memoryview:
        """A stored record's bytes (:func:`map_range_readonly`), not checked: see :meth:`check_record`."""
        return self.record_range(key).mapped()

    def check_record(self, key: str) -> None:
        """Raise unless the record's bytes match its CRC-32 (they are mapped for the check only)."""
        data = self.map_record(key)
        self._check(key, self._zip.getinfo(f"{self.prefix}data/{key}"), crc32(data))

    def read_into(self, key: str, targets: list[memoryview]) -> None:
        """A stored record's bytes read in order into ``targets``, chunk by chunk, each chunk's CRC-32
        taken while it is in the CPU cache."""
        info, at = self._locate(key)
        if sum(len(t) for t in targets) != info.file_size:
            raise TunebridgeError(
                f"{self.path}: storage {key} holds {info.file_size} bytes, expected {sum(len(t) for t in targets)}"
            )
        crc = 0
        for target in targets:
            for start in range(0, len(target), _CHUNK):
                chunk = target[start : start + _CHUNK]
                if os.preadv(self._fd, [chunk], at) != len(chunk):
                    raise TunebridgeError(f"{self.path}: storage {key} is truncated")
                crc = crc32(chunk, crc)
                at += len(chunk)
        self._check(key, info, crc)


@dataclass
class ForeignValue:
    """A pickled object of a framework class (a Megatron enum in ``args``), kept as its class's name and the
    arguments it was pickled with; the class itself is never imported."""

    cls: str
    args: tuple = ()


def _foreign(cls: str):
    return lambda *args: ForeignValue(cls, args)


_NUMPY_CORE = getattr(np, "_core", None) or np.core
_SAFE_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch", "Size"): torch.Size,
    ("_codecs", "encode"): _codecs.encode,  # protocol 2 pickles bytes (numpy arrays' data) through it
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{
        (f"numpy.{core}.multiarray", name): getattr(_NUMPY_CORE.multiarray, name)
        for core in ("core", "_core")
        for name in ("_reconstruct", "scalar")
    },
    **{
        ("builtins", name): getattr(builtins, name)
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "complex",
            "str",
            "bytes",
            "bool",
            "slice",
        )
    },
    **{("torch", name): dtype for name, dtype in _STORAGE_DTYPES.items()},
    **{("torch", name): dtype for name, dtype in _DTYPES.items()},
}
_FOREIGN_MODULES = ("megatron.", "mindspeed.", "mindspeed_llm.")


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, archive: Archive):
        super().__init__(data)
        self.archive = archive

    def find_class(self, module: str, name: str):
        module = "builtins" if module == "__builtin__" else module  # protocol 2 writes Python 2's name
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module.startswith(_FOREIGN_MODULES) and name.isidentifier() and not name.startswith("_"):
            return _foreign(f"{module}.{name}")
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        return _Storage(self.archive, str(key), dtype, int(numel))


def lazy_load(path: str | Path) -> dict:
    """The checkpoint's objects with every tensor as a :class:`LazyTensor`."""
    path = Path(path)
    if not path.exists():
        raise TunebridgeError(f"{path}: missing")
    archive = Archive(path)
    try:
        with archive._zip.open(f"{archive.prefix}data.pkl") as f:
            return _Unpickler(f, archive).load()
    except pickle.UnpicklingError as e:
        raise TunebridgeError(
            f"{path}: refused to unpickle: {e} (allowed: tensors, containers, argparse.Namespace, "
            f"numpy arrays, Megatron enums)"
        ) from None
    except (EOFError, zipfile.BadZipFile, ValueError) as e:
        raise TunebridgeError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None


_STORAGE_NAME = {dtype: name for name, dtype in _STORAGE_DTYPES.items()}


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: torch.dtype
    numel: int


class _TensorRef:
    """Pickles as torch.save pickles a tensor whose storage record was already written."""

    def __init__(self, storage: _StorageRef, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (
            self.storage,
            0,
            self.size,
            self.stride,
            False,
            collections.OrderedDict(),
        )


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return "storage", getattr(torch, _STORAGE_NAME[obj.dtype]), obj.key, "cpu", obj.numel
        return None


class TorchZipWriter:
    """Write a ``torch.save``-compatible file one tensor at a time: storage records go out as they come,
    the pickle (which only references them) last. ``torch.load`` reads the result as usual.

    The archive is a stored (uncompressed) zip as torch writes it, with each record's data aligned to
    ``ALIGNMENT`` bytes by a padding extra field. Offsets are laid out when a record is added, so the
    records themselves (CRC-32 with ISA-L or zlib, positioned writes of the tensor bytes as given, no copy) can
    be written by ``background`` while the caller prepares the next tensor."""

    def __init__(self, path: str | Path, background: Background | None = None):
        self.path = Path(path)
        self._prefix = self.path.stem + "/"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._background = background or Background(max_bytes=0)
        self._at = 0
        self._central: list[_Record] = []
        self._count = 0

    def add(self, t: torch.Tensor) -> _TensorRef:
        """Write ``t``'s data now; return what stands for it in the object given to :meth:`finish`."""
        return self.add_pieces(t.dtype, tuple(t.shape), [t])

    def add_pieces(self, dtype: torch.dtype, shape: tuple[int, ...], pieces: list[torch.Tensor]) -> _TensorRef:
        """A tensor of ``shape`` whose bytes are those of ``pieces`` (CPU tensors of ``dtype``) in order."""
        pieces = [p.detach().cpu().contiguous() for p in pieces]
        views = [tensor_bytes(p) for p in pieces]
        numel = int(torch.Size(shape).numel())
        if sum(len(v) for v in views) != numel * dtype.itemsize or any(p.dtype != dtype for p in pieces):
            raise ValueError(
                f"pieces of {[p.dtype for p in pieces]} {[list(p.shape) for p in pieces]} "
                f"do not make a {dtype} tensor of shape {list(shape)}"
            )
        key = str(self._count)
        self._count += 1
        self._record(f"data/{key}", views)
        stride = tuple(math.prod(shape[i + 1 :]) for i in range(len(shape)))
        return _TensorRef(_StorageRef(key, dtype, numel), tuple(shape), stride)

    def _record(self, name: str, views: list[memoryview]) -> None:
        size = sum(len(v) for v in views)
        rec = _Record(self._prefix + name, size, self._at)
        header_len = rec.local_header_len()
        self._at += header_len + size
        self._central.append(rec)
        self._background.submit(lambda: self._write_record(rec, views), size)

    def _write_record(self, rec: _Record, views: list[memoryview]) -> None:
        # chunk by chunk, so that the CRC leaves each chunk in the CPU cache for its write
        crc, at = 0, rec.offset + rec.local_header_len()
        for v in views:
            for start in range(0, len(v), _CHUNK):
                chunk = v[start : start + _CHUNK]
                crc = crc32(chunk, crc)
                _pwrite_all(self._fd, [chunk], at)
                at += len(chunk)
        rec.crc = crc
        _pwrite_all(self._fd, [rec.local_header()], rec.offset)

    def finish(self, obj) -> None:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(obj)
        alignment = str(ALIGNMENT).encode()
        for name, data in (
            ("data.pkl", buf.getvalue()),
            (".format_version", b"1"),
            (".storage_alignment", alignment),
            ("byteorder", sys.byteorder.encode()),
            ("version", b"3\n"),
        ):
            self._record(name, [memoryview(data)])
        self._background.submit(self._write_directory, 0)

    def __del__(self) -> None:  # an aborted conversion never writes the directory, which closes the file
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            del self._fd

    def _write_directory(self) -> None:
        try:
            central = b"".join(rec.central_header() for rec in self._central)
            _pwrite_all(
                self._fd, [memoryview(central + _end_records(len(self._central), len(central), self._at))], self._at
            )
        finally:
            os.close(self._fd)
            del self._fd


ALIGNMENT = 64
_CHUNK = 1 << 20
_ZIP64 = 0xFFFFFFFF
_FLAGS = 0x0800  # names are UTF-8


@dataclass
class _Record:
    name: str
    size: int
    offset: int
    crc: int = 0

    def _zip64_local(self) -> bytes:
        return struct.pack("<HHQQ", 1, 16, self.size, self.size) if self.size >= _ZIP64 else b""

    def local_header_len(self) -> int:
        fixed = 30 + len(self.name.encode()) + len(self._zip64_local()) + 4
        return fixed + (-(self.offset + fixed) % ALIGNMENT)

    def local_header(self) -> bytes:
        name = self.name.encode()
        zip64 = self._zip64_local()
        pad = self.local_header_len() - 30 - len(name) - len(zip64) - 4
        extra = zip64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
        size32 = _ZIP64 if zip64 else self.size
        return (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                45 if zip64 else 20,
                _FLAGS,
                0,
                0,
                0,
                self.crc,
                size32,
                size32,
                len(name),
                len(extra),
            )
            + name
            + extra
        )

    def central_header(self) -> bytes:
        name = self.name.encode()
        values = [v for v in (self.size, self.size) if v >= _ZIP64] if self.size >= _ZIP64 else []
        if self.offset >= _ZIP64:
            values.append(self.offset)
        extra = struct.pack("<HH", 1, 8 * len(values)) + struct.pack(f"<{len(values)}Q", *values) if values else b""
        size32 = _ZIP64 if self.size >= _ZIP64 else self.size
        return (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                45,
                45 if extra else 20,
                _FLAGS,
                0,
                0,
                0,
                self.crc,
                size32,
                size32,
                len(name),
                len(extra),
                0,
                0,
                0,
                0,
                min(self.offset, _ZIP64),
            )
            + name
            + extra
        )


def _end_records(count: int, central_len: int, central_at: int) -> bytes:
    """Zip64 end of central directory record and locator (as torch writes them), then the classic one."""
    zip64_end = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, central_len, central_at)
    locator = struct.pack("<IIQI", 0x07064B50, 0, central_at + central_len, 1)
    end = struct.pack(
        "<IHHHHIIH",
        0x06054B50,
        0,
        0,
        min(count, 0xFFFF),
        min(count, 0xFFFF),
        min(central_len, _ZIP64),
        min(central_at, _ZIP64),
        0,
    )
    return zip64_end + locator + end


def _pwrite_all(fd: int, views: list, offset: int) -> None:
    for v in views:
        v = memoryview(v)
        while len(v):
            n = os.pwrite(fd, v, offset)
            offset += n
            v = v[n:]
