"""MindRecord files written and read by MindSpore itself (runs in .venv-mindspore)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def write(npz_path: str, out_path: str) -> dict:
    """input_ids / labels rows (int32) from an .npz into a MindRecord file; written beside it and renamed."""
    from mindspore.mindrecord import FileWriter
    rows = np.load(npz_path)
    out = Path(out_path)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp = tmp_dir / out.name
    writer = FileWriter(str(tmp), shard_num=1, overwrite=True)
    writer.add_schema({"input_ids": {"type": "int32", "shape": [-1]}, "labels": {"type": "int32", "shape": [-1]}},
                      "tunebridge instruction data")
    writer.write_raw_data([{"input_ids": i, "labels": l} for i, l in zip(rows["input_ids"], rows["labels"])])
    writer.commit()
    for suffix in ("", ".db"):
        os.replace(f"{tmp}{suffix}", f"{out}{suffix}")
    tmp_dir.rmdir()
    return {"rows": int(len(rows["input_ids"]))}


def read(path: str, npz_path: str) -> dict:
    """Rows as MindFormers' data loader sees them (mindspore.dataset.MindDataset), in file order."""
    import mindspore.dataset as ds
    data = ds.MindDataset(path, columns_list=["input_ids", "labels"], shuffle=False)
    ids, labels = [], []
    for row in data.create_dict_iterator(output_numpy=True):
        ids.append(row["input_ids"])
        labels.append(row["labels"])
    np.savez(npz_path, input_ids=np.stack(ids), labels=np.stack(labels))
    return {"rows": len(ids)}
