"""Each stack's tokenized format: Megatron indexed files (MindSpeed-LLM), MindRecord (MindFormers), JSONL (torch)."""
from __future__ import annotations

import json
import struct
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..atomic import atomic_file
from ..errors import TunebridgeError
from .encode import IGNORE, Sample

_IDX_MAGIC = b"MMIDIDX\x00\x00"
_INT32_CODE = 4
MEGATRON_KEYS = ("input_ids", "attention_mask", "labels")


@dataclass
class WriteCounts:
    written: int = 0
    too_long: int = 0


def megatron_files(prefix: str | Path) -> list[Path]:
    prefix = Path(prefix)
    return [prefix.with_name(f"{prefix.name}_packed_{k}_document.{ext}") for k in MEGATRON_KEYS
            for ext in ("bin", "idx")]


class MegatronWriter:
    """Megatron indexed files written sample by sample: rows go to the .bin files as they come, the .idx
    files (sizes, pointers, document index) at :meth:`close`. Memory holds one int per sample."""

    def __init__(self, prefix: str | Path, seq_length: int):
        self.paths = megatron_files(prefix)
        self.seq_length = seq_length
        self.counts = WriteCounts()
        self._sizes = array("i")
        self._bins = [open(p, "wb") for p in self.paths[::2]]

    def add(self, s: Sample) -> None:
        if len(s.input_ids) >= self.seq_length:
            self.counts.too_long += 1
            return
        for f, row in zip(self._bins, (s.input_ids, [1] * len(s.input_ids), s.labels)):
            f.write(np.asarray(row, dtype=np.int32).tobytes())
        self._sizes.append(len(s.input_ids))
        self.counts.written += 1

    def abort(self) -> None:
        for f in self._bins:
            f.close()
        for p in self.paths:
            p.unlink(missing_ok=True)

    def close(self) -> WriteCounts:
        for f in self._bins:
            f.close()
        if not self._sizes:
            self.abort()
            raise TunebridgeError(f"no sample is shorter than seq_length {self.seq_length}: nothing to write")
        sizes = np.frombuffer(self._sizes, dtype=np.int32)
        pointers = np.concatenate([[0], np.cumsum(sizes[:-1].astype(np.int64) * 4)]).astype(np.int64)
        n = len(sizes)
        header = _IDX_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", _INT32_CODE) + struct.pack("<QQ", n, n + 1)
        for idx_path in self.paths[1::2]:
            with open(idx_path, "wb") as f:
                f.write(header + sizes.tobytes() + pointers.tobytes() + np.arange(n + 1, dtype=np.int64).tobytes())
        return self.counts


def write_megatron(prefix: str | Path, samples: Iterable[Sample], seq_length: int) -> WriteCounts:
    """``<prefix>_packed_{input_ids,attention_mask,labels}_document.{bin,idx}`` as MindSpeed-LLM's instruction
    handler writes them (int32, one document per sample, attention mask all ones); samples of seq_length
    tokens or more are dropped and counted. On failure no file is left behind."""
    writer = MegatronWriter(prefix, seq_length)
    try:
        for s in samples:
            writer.add(s)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def write_jsonl(path: str | Path, samples: Iterable[Sample], seq_length: int) -> WriteCounts:
    """Tokenized JSONL for the torch backend (same drop rule as the Megatron files)."""
    counts = WriteCounts()
    with atomic_file(path, encoding="utf-8") as f:
        for s in samples:
            if len(s.input_ids) >= seq_length:
                counts.too_long += 1
                continue
            f.write(json.dumps({"input_ids": s.input_ids, "labels": s.labels}) + "\n")
            counts.written += 1
        if not counts.written:
            raise TunebridgeError(f"no sample is shorter than seq_length {seq_length}: nothing to write")
    return counts


def mindrecord_rows(samples: list[Sample], seq_length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """MindFormers' instruction rows: seq_length + 1 ids padded with pad_id, labels -100 on the padding."""
    kept = [s for s in samples if len(s.input_ids) < seq_length]
    ids = np.full((len(kept), seq_length + 1), pad_id, dtype=np.int32)
    labels = np.full((len(kept), seq_length + 1), IGNORE, dtype=np.int32)
    for i, s in enumerate(kept):
        ids[i, :len(s.input_ids)] = s.input_ids
        labels[i, :len(s.labels)] = s.labels
    return ids, labels, len(samples) - len(kept)


def write_mindrecord(path: str | Path, samples: Iterable[Sample], seq_length: int, pad_id: int) -> WriteCounts:
    """A MindRecord file (columns input_ids, labels) written by MindSpore in its own environment (the rows
    travel as one .npz: memory grows with the data set here, unlike the Megatron and JSONL writers)."""
    samples = list(samples)
    from ..bridge import call_mindspore
    ids, labels, dropped = mindrecord_rows(samples, seq_length, pad_id)
    if not len(ids):
        raise TunebridgeError(f"no sample is shorter than seq_length {seq_length}: nothing to write")
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="tunebridge-mr-") as tmp:
        np.savez(Path(tmp) / "rows.npz", input_ids=ids, labels=labels)
        call_mindspore("ms.mindrecord", "write", npz_path=str(Path(tmp) / "rows.npz"), out_path=str(path))
    return WriteCounts(len(ids), dropped)
