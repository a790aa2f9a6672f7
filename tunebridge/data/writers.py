"""Each stack's tokenized format: Megatron indexed files (MindSpeed-LLM), MindRecord (MindFormers), JSONL (torch).
All three are written as the samples come, in memory flat in the number of samples."""
from __future__ import annotations

import json
import os
import struct
import subprocess
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


class MindRecordWriter:
    """A MindRecord file written by one long-lived MindSpore process (``tunebridge.ms.mindrecord stream``):
    rows of seq_length + 1 are buffered ``chunk`` at a time and piped to it, which passes each chunk to
    ``FileWriter.write_raw_data``. Memory here holds one chunk; the file appears only at :meth:`close`."""

    def __init__(self, path: str | Path, seq_length: int, pad_id: int, chunk: int = 1024):
        from ..bridge import mindspore_python
        from ..ms.mindrecord import FRAME
        self.path = Path(path).resolve()
        self.seq_length, self.pad_id, self._frame = seq_length, pad_id, FRAME
        self.counts = WriteCounts()
        self._block = np.empty((2, chunk, seq_length + 1), dtype=np.int32)
        self._n = 0
        self._done = False
        self._scratch = tempfile.TemporaryDirectory(prefix="tunebridge-mr-")
        self._stderr = open(Path(self._scratch.name) / "stderr", "w+b")
        env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        self._proc = subprocess.Popen([str(mindspore_python()), "-m", "tunebridge.ms.mindrecord", "stream",
                                       str(self.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._stderr, env=env, cwd=self._scratch.name)

    def add(self, s: Sample) -> None:
        n = len(s.input_ids)
        if n >= self.seq_length:
            self.counts.too_long += 1
            return
        ids, labels = self._block[0, self._n], self._block[1, self._n]
        ids[:n], ids[n:] = s.input_ids, self.pad_id
        labels[:n], labels[n:] = s.labels, IGNORE
        self._n += 1
        self.counts.written += 1
        if self._n == self._block.shape[1]:
            self._flush()

    def _flush(self) -> None:
        if self._n:
            self._send(self._frame.pack(self._n, self._block.shape[2]) + self._block[:, :self._n].tobytes())
        self._n = 0

    def _send(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            self._finish()  # raises with MindSpore's error output
            raise

    def _finish(self) -> dict:
        """Close the pipe, wait for MindSpore, and return its result (or raise with its error output)."""
        self._done = True
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        out = self._proc.stdout.read()
        self._proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        self._scratch.cleanup()
        if self._proc.returncode != 0:
            # MindSpore states what the user can fix (a full disk) on an "[ERROR]" line; anything else is a bug
            problem = next((line.strip() for line in err.splitlines() if line.strip().startswith("[ERROR]")), None)
            if problem:
                raise TunebridgeError(f"{self.path.name}: MindSpore's MindRecord writer: "
                                      f"{problem.removeprefix('[ERROR]').strip()}")
            raise RuntimeError(f"MindSpore's MindRecord writer exited {self._proc.returncode}:\n{err[-4000:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def abort(self) -> None:
        """Stop without the end frame: MindSpore removes its partial file."""
        self._n = 0
        if not self._done:
            try:
                self._finish()
            except RuntimeError:
                pass

    def close(self) -> WriteCounts:
        if not self.counts.written:
            self.abort()
            raise TunebridgeError(f"no sample is shorter than seq_length {self.seq_length}: nothing to write")
        self._flush()
        self._send(self._frame.pack(0, 0))
        result = self._finish()
        if result["rows"] != self.counts.written:
            raise RuntimeError(f"MindSpore wrote {result['rows']} rows of {self.counts.written}")
        return self.counts


def write_mindrecord(path: str | Path, samples: Iterable[Sample], seq_length: int, pad_id: int,
                     chunk: int = 1024) -> WriteCounts:
    """A MindRecord file (columns input_ids, labels: MindFormers' instruction rows of seq_length + 1 ids padded
    with pad_id, labels -100 on the padding) written by MindSpore in its own environment, streamed in chunks of
    ``chunk`` rows: memory is flat in the number of samples. On failure no file is left behind."""
    writer = MindRecordWriter(path, seq_length, pad_id, chunk)
    try:
        for s in samples:
            writer.add(s)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
