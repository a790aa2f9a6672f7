"""MindRecord files written and read by MindSpore itself (runs in .venv-mindspore).

``python -m tunebridge.backends.mindformers.ms.mindrecord stream OUT`` is the streaming writer: it reads frames from stdin, each a
``<II`` header (rows, width) then rows x width int32 input ids and as many labels, passes each frame to
``FileWriter.write_raw_data`` and, on the (0, 0) end frame, commits and renames the file into place. Input that
ends without the end frame leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

FRAME = struct.Struct("<II")
SCHEMA = {"input_ids": {"type": "int32", "shape": [-1]}, "labels": {"type": "int32", "shape": [-1]}}


def _writer(out: Path):
    from mindspore.mindrecord import FileWriter

    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        writer = FileWriter(str(tmp_dir / out.name), shard_num=1, overwrite=True)
        writer.add_schema(SCHEMA, "tunebridge instruction data")
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return writer, tmp_dir


def _publish(writer, tmp_dir: Path, out: Path) -> None:
    writer.commit()
    for suffix in ("", ".db"):
        os.replace(f"{tmp_dir / out.name}{suffix}", f"{out}{suffix}")
    tmp_dir.rmdir()


def write(npz_path: str, out_path: str) -> dict:
    """input_ids / labels rows (int32) from an .npz into a MindRecord file; written beside it and renamed."""
    rows = np.load(npz_path)
    out = Path(out_path)
    writer, tmp_dir = _writer(out)
    pairs = zip(rows["input_ids"], rows["labels"])
    writer.write_raw_data([{"input_ids": ids, "labels": labels} for ids, labels in pairs])
    _publish(writer, tmp_dir, out)
    return {"rows": int(len(rows["input_ids"]))}


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError(f"the row stream ended after {len(data)} of {n} bytes")
    return data


def stream(out_path: str, source=None) -> dict:
    """Frames from ``source`` (stdin) into a MindRecord file, one ``write_raw_data`` call per frame."""
    source = source or sys.stdin.buffer
    out = Path(out_path)
    writer, tmp_dir = _writer(out)
    rows = 0
    try:
        while True:
            n, width = FRAME.unpack(_read_exactly(source, FRAME.size))
            if n == 0:
                break
            block = np.frombuffer(_read_exactly(source, 2 * n * width * 4), dtype=np.int32).reshape(2, n, width)
            writer.write_raw_data([{"input_ids": ids, "labels": labels} for ids, labels in zip(block[0], block[1])])
            rows += n
        _publish(writer, tmp_dir, out)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return {"rows": rows}


def _rows(path: str) -> tuple[np.ndarray, np.ndarray]:
    import mindspore.dataset as ds

    data = ds.MindDataset(path, columns_list=["input_ids", "labels"], shuffle=False)
    ids, labels = [], []
    for row in data.create_dict_iterator(output_numpy=True):
        ids.append(row["input_ids"])
        labels.append(row["labels"])
    return np.stack(ids), np.stack(labels)


def read(path: str, npz_path: str) -> dict:
    """Rows as MindFormers' data loader sees them (mindspore.dataset.MindDataset), in file order."""
    ids, labels = _rows(path)
    np.savez(npz_path, input_ids=ids, labels=labels)
    return {"rows": len(ids)}


def select(path: str, out_path: str, rows: list[int]) -> dict:
    """A new MindRecord holding rows ``rows`` of ``path`` (file order indices), in that order: with
    ``shuffle: False`` MindFormers reads them in exactly this order."""
    ids, labels = _rows(path)
    bad = [r for r in rows if not 0 <= r < len(ids)]
    if bad:
        from ....errors import TunebridgeError

        raise TunebridgeError(f"{path}: has {len(ids)} rows, asked for row {bad[0]}")
    out = Path(out_path)
    writer, tmp_dir = _writer(out)
    try:
        writer.write_raw_data([{"input_ids": ids[r], "labels": labels[r]} for r in rows])
        _publish(writer, tmp_dir, out)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return {"rows": len(rows)}


if __name__ == "__main__":
    if sys.argv[1:2] != ["stream"] or len(sys.argv) != 3:
        sys.exit("usage: python -m tunebridge.backends.mindformers.ms.mindrecord stream OUT")
    sys.stdout.write(json.dumps(stream(sys.argv[2])) + "\n")
