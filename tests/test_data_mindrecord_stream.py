"""MindRecord written in chunks through one MindSpore process, read back by MindDataset; nothing half-written."""
from __future__ import annotations

import numpy as np
import pytest

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.data.encode import IGNORE, Sample
from tunebridge.data.writers import write_mindrecord
from tunebridge.errors import TunebridgeError

SEQ, PAD = 24, 0


def samples(n: int = 60) -> list[Sample | None]:
    """Random samples; None for a record whose sample was dropped (some at or over SEQ)."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        length = int(rng.integers(2, SEQ + 6))
        ids = rng.integers(0, 512, length).tolist()  # pad id 0 inside a sample too
        prompt = int(rng.integers(1, length))
        out.append(Sample(ids, [IGNORE] * prompt + ids[prompt:]) if length < SEQ else None)
    return out


def test_chunks_read_back_row_for_row(ms_python, tmp_path):
    data = samples()
    kept = [s for s in data if s is not None]
    counts = write_mindrecord(tmp_path / "d.mindrecord", iter(data), SEQ, PAD, chunk=7)  # 7 rows a frame
    assert (counts.written, counts.too_long) == (len(kept), len(data) - len(kept)) and len(kept) % 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mindrecord", "d.mindrecord.db"]
    call_mindspore("backends.mindformers.ms.mindrecord", "read", path=str(tmp_path / "d.mindrecord"), npz_path=str(tmp_path / "r.npz"))
    rows = np.load(tmp_path / "r.npz")
    expected_ids = np.array([s.input_ids + [PAD] * (SEQ + 1 - len(s.input_ids)) for s in kept], dtype=np.int32)
    expected_labels = np.array([s.labels + [IGNORE] * (SEQ + 1 - len(s.labels)) for s in kept], dtype=np.int32)
    assert rows["input_ids"].dtype == np.int32 and rows["input_ids"].shape == (len(kept), SEQ + 1)
    assert np.array_equal(rows["input_ids"], expected_ids) and np.array_equal(rows["labels"], expected_labels)


def test_failure_mid_stream_leaves_nothing(ms_python, tmp_path):
    def broken():
        yield from samples()[:30]
        raise ValueError("reader failed")
    with pytest.raises(ValueError, match="reader failed"):
        write_mindrecord(tmp_path / "d.mindrecord", broken(), SEQ, PAD, chunk=4)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TunebridgeError, match="nothing to write"):
        write_mindrecord(tmp_path / "e.mindrecord", iter([None] * 5), 1, PAD)
    assert list(tmp_path.iterdir()) == []


def test_mindspore_side_failure_is_reported(ms_python, tmp_path):
    with pytest.raises(RuntimeError, match="MindRecord writer exited"):
        write_mindrecord(tmp_path / "missing" / "d.mindrecord", iter(samples()), SEQ, PAD, chunk=4)
    assert list(tmp_path.iterdir()) == []
