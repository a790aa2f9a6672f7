"""A safetensors file written one tensor at a time: the header is computed up front from shapes and dtypes."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import TunebridgeError
from .background import Background
from .mapped import FileRange, map_range, open_owned, write_all

ST_DTYPE: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


DTYPE_OF = {v: k for k, v in ST_DTYPE.items()}


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """Raw little-endian bytes of a tensor (bf16 included) as a flat, writable view, without copying a
    contiguous CPU tensor."""
    t = t.detach().contiguous().cpu()
    if not t.numel():
        return memoryview(b"")
    # numpy's stubs give ndarray __buffer__ only for Python >= 3.12; the buffer protocol is there on 3.11
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


class SafetensorsWriter:
    """Write ``entries`` [(name, dtype, shape)] in that order; call :meth:`write` (or :meth:`write_pieces`)
    for each, then :meth:`close`."""

    def __init__(
        self,
        path: str | Path,
        entries: list[tuple[str, torch.dtype, tuple[int, ...]]],
        metadata: dict[str, str] | None = None,
        background: Background | None = None,
    ):
        header: dict = {"__metadata__": metadata} if metadata else {}
        offset = 0
        self._expected = []
        for name, dtype, shape in entries:
            n = dtype.itemsize * int(torch.Size(shape).numel())
            header[name] = {"dtype": ST_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
            self._expected.append((name, dtype, tuple(shape), n))
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self._f = open(path, "wb", buffering=0)
        write_all(self._f.fileno(), [memoryview(len(raw).to_bytes(8, "little") + raw)])
        self._next = 0
        self.path = Path(path)
        self._background = background or Background(max_bytes=0)

    def write(self, name: str, t: torch.Tensor) -> None:
        _, dtype, shape, _ = self._expected[self._next]
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise TunebridgeError(
                f"{self.path}: expected {self._expected[self._next][0]} {dtype} {list(shape)}, "
                f"got {name} {t.dtype} {list(t.shape)}"
            )
        self.write_pieces(name, [tensor_bytes(t)])

    def write_pieces(self, name: str, pieces: list[memoryview | FileRange]) -> None:
        """The next tensor as buffers or file ranges whose bytes, in order, are its row-major bytes."""
        exp_name, dtype, shape, n = self._expected[self._next]
        got = sum(p.nbytes for p in pieces)
        if name != exp_name or got != n:
            raise TunebridgeError(
                f"{self.path}: expected {exp_name} {dtype} {list(shape)} ({n} bytes), got {name} ({got} bytes)"
            )
        self._background.submit(lambda: write_all(self._f.fileno(), pieces), n)
        self._next += 1

    def close(self) -> None:
        self._background.submit(self._f.close, 0)
        if self._next != len(self._expected):
            raise TunebridgeError(f"{self.path}: only {self._next} of {len(self._expected)} tensors written")


def _check_entries(path: Path, header: dict) -> int:
    """The safetensors library's rules for a header: known dtypes, byte counts that match the shapes, and tensors
    that tile the data section in order, without overlap or holes. Returns the data section's length."""
    spans = []
    for name, e in header.items():
        try:
            dtype, shape, (begin, end) = DTYPE_OF[e["dtype"]], e["shape"], e["data_offsets"]
            ok = all(isinstance(x, int) and x >= 0 for x in (*shape, begin, end))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise TunebridgeError(
                f"{path}: corrupt safetensors header: tensor {name!r} has no valid dtype, shape and data_offsets"
            )
        if end - begin != dtype.itemsize * int(torch.Size(shape).numel()):
            raise TunebridgeError(
                f"{path}: corrupt safetensors header: tensor {name!r} spans {end - begin} bytes, "
                f"its shape {shape} {e['dtype']} needs {dtype.itemsize * torch.Size(shape).numel()}"
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_, end_a, a), (begin, end, b) in zip(spans, spans[1:]):
        if begin < end_a:
            raise TunebridgeError(
                f"{path}: corrupt safetensors header: tensors {a!r} and {b!r} overlap (bytes "
                f"{begin}..{min(end, end_a)})"
            )
    at = 0
    for begin, end, name in spans:
        if begin != at:
            raise TunebridgeError(
                f"{path}: corrupt safetensors header: a hole at bytes {at}..{begin} (before tensor {name!r})"
            )
        at = end
    return at


class SafetensorsReader:
    """Tensors of a safetensors file, each mapped on its own (:func:`map_range`), so a streaming
    conversion's resident memory holds only the tensors in flight."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n <= 0 or 8 + n > size:
                raise TunebridgeError(f"{self.path}: corrupt or truncated safetensors file (bad header)")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise TunebridgeError(f"{self.path}: corrupt safetensors header") from None
        if not isinstance(header, dict):
            raise TunebridgeError(f"{self.path}: corrupt safetensors header (not a JSON object)")
        header.pop("__metadata__", None)
        end = _check_entries(self.path, header)
        self._fd = open_owned(self, self.path)
        self._start = 8 + n
        self._entries = header
        if self._start + end > size:
            raise TunebridgeError(
                f"{self.path}: corrupt or truncated safetensors file ({size} bytes, the header "
                f"describes {self._start + end})"
            )

    def keys(self) -> list[str]:
        return list(self._entries)

    def locate(self, name: str) -> tuple[torch.dtype, tuple[int, ...], FileRange]:
        """The tensor's dtype, shape and where its bytes are (valid while this reader lives)."""
        e = self._entries[name]
        begin, end = e["data_offsets"]
        return DTYPE_OF[e["dtype"]], tuple(e["shape"]), FileRange(self._fd, self._start + begin, end - begin)

    def get_tensor(self, name: str) -> torch.Tensor:
        e = self._entries[name]
        begin, end = e["data_offsets"]
        data = map_range(self._fd, self._start + begin, end - begin)
        dtype = DTYPE_OF[e["dtype"]]
        if not data:
            return torch.empty(e["shape"], dtype=dtype)
        return torch.frombuffer(data, dtype=dtype).reshape(e["shape"])
