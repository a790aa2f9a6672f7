"""Lazy, allow-listed reading and streaming writing of ``torch.save`` zip files (``model_optim_rng.pt``).

``torch.load(mmap=True)`` keeps every page it touches resident until the whole state dict is freed, so
a streaming converter's memory would grow with the file. Here the pickle is read with a restricted
unpickler (tensors, ``argparse.Namespace``, ``OrderedDict`` and torch dtypes only: the same allow-list
idea as ``weights_only=True``), tensors come back as :class:`LazyTensor`, and each one's storage record
is read from the archive only when asked for.
"""
from __future__ import annotations

import argparse
import collections
import io
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TunebridgeError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}
_DTYPES = {name: getattr(torch, name) for name in ("float32", "float16", "bfloat16", "float64", "int64", "int32",
                                                   "int16", "int8", "uint8", "bool")}


@dataclass(frozen=True)
class _Storage:
    archive: "Archive"
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
        self.prefix = pkl[0][:-len("data.pkl")]

    def record(self, key: str) -> bytearray:
        try:
            info = self._zip.getinfo(f"{self.prefix}data/{key}")
            data = bytearray(info.file_size)
            with self._zip.open(info) as f:
                f.readinto(data)
            return data
        except (KeyError, zipfile.BadZipFile, OSError, EOFError) as e:
            raise TunebridgeError(f"{self.path}: storage {key} is missing or corrupt ({e})") from None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, archive: Archive):
        super().__init__(data)
        self.archive = archive

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("argparse", "Namespace"):
            return argparse.Namespace
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
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
        raise TunebridgeError(f"{path}: refused to unpickle: {e} (only tensors and argparse.Namespace are "
                              f"allowed)") from None
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
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, self.stride, False,
                                                 collections.OrderedDict())


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return "storage", getattr(torch, _STORAGE_NAME[obj.dtype]), obj.key, "cpu", obj.numel
        return None


class TorchZipWriter:
    """Write a ``torch.save``-compatible file one tensor at a time: storage records go out as they come,
    the pickle (which only references them) last. ``torch.load`` reads the result as usual."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._writer = torch._C.PyTorchFileWriter(str(self.path), torch.serialization.get_crc32_options(),
                                                  torch.serialization._get_storage_alignment())
        self._count = 0

    def add(self, t: torch.Tensor) -> _TensorRef:
        """Write ``t``'s data now; return what stands for it in the object given to :meth:`finish`."""
        data = t.detach().contiguous()
        if data.storage_offset() or data.untyped_storage().nbytes() != data.nbytes:
            data = data.clone()
        key = str(self._count)
        self._count += 1
        self._writer.write_record(f"data/{key}", data.untyped_storage(), data.nbytes)
        return _TensorRef(_StorageRef(key, data.dtype, data.numel()), tuple(data.shape), tuple(data.stride()))

    def finish(self, obj) -> None:
        buf = io.BytesIO()
        _Pickler(buf, protocol=2).dump(obj)
        data = buf.getvalue()
        self._writer.write_record("data.pkl", data, len(data))
        self._writer.write_record(".format_version", "1", 1)
        alignment = str(torch.serialization._get_storage_alignment())
        self._writer.write_record(".storage_alignment", alignment, len(alignment))
        self._writer.write_record("byteorder", sys.byteorder, len(sys.byteorder))
        self._writer.write_end_of_file()
