"""HF model directories: config.json + model.safetensors (or shards + index), or pytorch_model*.bin."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from ...errors import TunebridgeError
from ...model.spec import ModelSpec
from .background import Background
from .mapped import FileRange
from .safetensors_stream import SafetensorsReader, SafetensorsWriter

INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


def load_bin(f: Path) -> dict[str, torch.Tensor]:
    """A ``.bin`` state dict through torch's weights-only unpickler (anything but tensors is refused)."""
    try:
        state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input problem
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise TunebridgeError(
            f"{f}: cannot read as a weights-only torch file ({type(e).__name__}: {message})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise TunebridgeError(f"{f}: not a state dict of tensors")
    return state


class HFReader:
    """Tensors of an HF model directory by name, loaded lazily (safetensors are memory-mapped)."""

    def __init__(self, path: str | Path, spec: ModelSpec | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise TunebridgeError(f"{self.path}: not an HF model directory")
        self.spec = spec or ModelSpec.from_hf_config(self.path)
        self._open: dict[Path, object] = {}
        self._files: dict[str, Path] = self._weight_map()

    def _weight_map(self) -> dict[str, Path]:
        for index_name in (INDEX, BIN_INDEX):
            index = self.path / index_name
            if index.exists():
                try:
                    weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise TunebridgeError(f"{index}: not a valid index ({e})") from None
                return {k: self.path / v for k, v in weight_map.items()}
        single = self.path / "model.safetensors"
        if single.exists():
            return {k: single for k in self._safetensors_keys(single)}
        bins = sorted(self.path.glob("pytorch_model*.bin"))
        if len(bins) == 1:
            return {k: bins[0] for k in self._bin(bins[0])}
        raise TunebridgeError(f"{self.path}: no model.safetensors, {INDEX}, pytorch_model.bin or {BIN_INDEX}")

    def _safetensors_keys(self, f: Path) -> list[str]:
        return list(self._handle(f).keys())

    def _bin(self, f: Path) -> dict[str, torch.Tensor]:
        return load_bin(f)

    def _handle(self, f: Path):
        if f not in self._open:
            if not f.exists():
                raise TunebridgeError(f"{f}: listed in the index but missing")
            if f.suffix == ".bin":
                self._open[f] = self._bin(f)
            else:
                self._open[f] = SafetensorsReader(f)
        return self._open[f]

    def names(self) -> list[str]:
        return list(self._files)

    def locate(self, name: str) -> tuple[torch.dtype, tuple[int, ...], list[FileRange]] | None:
        """A safetensors tensor's dtype, shape and bytes as a file range; None for a ``.bin`` one."""
        handle = self._handle(self._file(name))
        if isinstance(handle, dict):
            return None
        dtype, shape, where = handle.locate(name)
        return dtype, shape, [where]

    def _file(self, name: str) -> Path:
        if name not in self._files:
            raise TunebridgeError(f"{self.path}: tensor {name} is missing")
        return self._files[name]

    def get(self, name: str) -> torch.Tensor:
        handle = self._handle(self._file(name))
        try:
            return handle[name] if isinstance(handle, dict) else handle.get_tensor(name)
        except Exception as e:  # noqa: BLE001
            raise TunebridgeError(f"{self._files[name]}: cannot read {name} ({e})") from None


def shard_plan(entries: list[tuple[str, torch.dtype, tuple[int, ...]]], max_shard_bytes: int) -> list[list]:
    """Split entries (in order) into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shards: list[list] = [[]]
    size = 0
    for e in entries:
        n = e[1].itemsize * int(torch.Size(e[2]).numel())
        if shards[-1] and size + n > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += n
    return shards


GENERATION_CONFIG = "generation_config.json"


def write_hf(
    out: Path,
    spec: ModelSpec,
    entries: list[tuple[str, torch.dtype, tuple[int, ...]]],
    tensors: Iterable[tuple[str, torch.Tensor | list[memoryview]]],
    max_shard_bytes: int = 2 << 30,
    background: Background | None = None,
    generation_config: dict | None = None,
) -> list[Path]:
    """Write config.json, generation_config.json (``generation_config``, else the spec's token ids) and the
    weights, streaming ``tensors`` (in ``entries`` order) into shards (through ``background``, if given: the
    caller closes it). A tensor may come as the buffers whose bytes, in order, are its row-major bytes
    (:meth:`SafetensorsWriter.write_pieces`)."""
    (out / "config.json").write_text(json.dumps(spec.to_hf_config(), indent=2) + "\n", encoding="utf-8")
    generation = generation_config or spec.to_generation_config()
    if generation:
        (out / GENERATION_CONFIG).write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    plan = shard_plan(entries, max_shard_bytes)
    names = (
        ["model.safetensors"]
        if len(plan) == 1
        else [f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]
    )
    it: Iterator = iter(tensors)
    weight_map, total = {}, 0
    for fname, shard in zip(names, plan):
        writer = SafetensorsWriter(out / fname, shard, metadata={"format": "pt"}, background=background)
        for name, dtype, shape in shard:
            got_name, t = next(it)
            if isinstance(t, torch.Tensor):
                writer.write(got_name, t)
            else:
                writer.write_pieces(got_name, t)
            weight_map[name] = fname
            total += dtype.itemsize * int(torch.Size(shape).numel())
        writer.close()
    if len(plan) > 1:
        (out / INDEX).write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n", encoding="utf-8"
        )
    return [out / n for n in names]
