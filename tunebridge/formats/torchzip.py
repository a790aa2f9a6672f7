"""Lazy, allow-listed reading of ``torch.save`` zip files (MindSpeed-LLM's ``model_optim_rng.pt``).

``torch.load(mmap=True)`` keeps every page it touches resident until the whole state dict is freed, so
a streaming converter's memory would grow with the file. Here the pickle is read with a restricted
unpickler (tensors, ``argparse.Namespace``, ``OrderedDict`` and torch dtypes only: the same allow-list
idea as ``weights_only=True``), tensors come back as :class:`LazyTensor`, and each one's storage record
is read from the archive only when asked for.
"""
from __future__ import annotations

import argparse
import collections
import pickle
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
            return bytearray(self._zip.read(f"{self.prefix}data/{key}"))
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
