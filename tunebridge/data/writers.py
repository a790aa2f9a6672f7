"""Each stack's tokenized format: Megatron indexed files (MindSpeed-LLM), MindRecord (MindFormers), JSONL (torch)."""
from __future__ import annotations

import json
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def write_megatron(prefix: str | Path, samples: list[Sample], seq_length: int) -> WriteCounts:
    """``<prefix>_packed_{input_ids,attention_mask,labels}_document.{bin,idx}`` as MindSpeed-LLM's instruction
    handler writes them (int32, one document per sample, attention mask all ones); samples of seq_length
    tokens or more are dropped and counted."""
    kept = [s for s in samples if len(s.input_ids) < seq_length]
    counts = WriteCounts(len(kept), len(samples) - len(kept))
    if not kept:
        raise TunebridgeError(f"no sample is shorter than seq_length {seq_length}: nothing to write")
    columns = {"input_ids": [s.input_ids for s in kept], "attention_mask": [[1] * len(s.input_ids) for s in kept],
               "labels": [s.labels for s in kept]}
    files = iter(megatron_files(prefix))
    for key in MEGATRON_KEYS:
        bin_path, idx_path = next(files), next(files)
        rows = columns[key]
        with atomic_file(bin_path, mode="wb") as f:
            for row in rows:
                f.write(np.asarray(row, dtype=np.int32).tobytes())
        sizes = np.array([len(r) for r in rows], dtype=np.int32)
        pointers = np.concatenate([[0], np.cumsum(sizes[:-1].astype(np.int64) * 4)]).astype(np.int64)
        with atomic_file(idx_path, mode="wb") as f:
            f.write(_IDX_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", _INT32_CODE))
            f.write(struct.pack("<Q", len(rows)) + struct.pack("<Q", len(rows) + 1))
            f.write(sizes.tobytes() + pointers.tobytes() + np.arange(len(rows) + 1, dtype=np.int64).tobytes())
    return counts


def write_jsonl(path: str | Path, samples: list[Sample], seq_length: int) -> WriteCounts:
    """Tokenized JSONL for the torch backend (same drop rule as the Megatron files)."""
    kept = [s for s in samples if len(s.input_ids) < seq_length]
    if not kept:
        raise TunebridgeError(f"no sample is shorter than seq_length {seq_length}: nothing to write")
    with atomic_file(path, encoding="utf-8") as f:
        for s in kept:
            f.write(json.dumps({"input_ids": s.input_ids, "labels": s.labels}) + "\n")
    return WriteCounts(len(kept), len(samples) - len(kept))


def mindrecord_rows(samples: list[Sample], seq_length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """MindFormers' instruction rows: seq_length + 1 ids padded with pad_id, labels -100 on the padding."""
    kept = [s for s in samples if len(s.input_ids) < seq_length]
    ids = np.full((len(kept), seq_length + 1), pad_id, dtype=np.int32)
    labels = np.full((len(kept), seq_length + 1), IGNORE, dtype=np.int32)
    for i, s in enumerate(kept):
        ids[i, :len(s.input_ids)] = s.input_ids
        labels[i, :len(s.labels)] = s.labels
    return ids, labels, len(samples) - len(kept)


def write_mindrecord(path: str | Path, samples: list[Sample], seq_length: int, pad_id: int) -> WriteCounts:
    """A MindRecord file (columns input_ids, labels) written by MindSpore in its own environment."""
    from ..bridge import call_mindspore
    ids, labels, dropped = mindrecord_rows(samples, seq_length, pad_id)
    if not len(ids):
        raise TunebridgeError(f"no sample is shorter than seq_length {seq_length}: nothing to write")
    path = Path(path).resolve()
    with tempfile.TemporaryDirectory(prefix="tunebridge-mr-") as tmp:
        np.savez(Path(tmp) / "rows.npz", input_ids=ids, labels=labels)
        call_mindspore("ms.mindrecord", "write", npz_path=str(Path(tmp) / "rows.npz"), out_path=str(path))
    return WriteCounts(len(ids), dropped)
