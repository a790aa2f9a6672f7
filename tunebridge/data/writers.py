"""Each stack's tokenized format: Megatron indexed files (MindSpeed-LLM), MindRecord (MindFormers), JSONL (torch).

Writers take :class:`Rows`, the samples of a run of records with one entry per record (a dropped record has
size -1), so that the per-sample work happens where the samples are made (in the worker processes) and a writer
only moves bytes. All three write as the rows come, in memory flat in the number of samples.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import tempfile
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import TunebridgeError
from .encode import IGNORE, Sample

_IDX_MAGIC = b"MMIDIDX\x00\x00"
_INT32_CODE = 4
MEGATRON_KEYS = ("input_ids", "attention_mask", "labels")


@dataclass
class WriteCounts:
    written: int = 0
    too_long: int = 0


@dataclass
class Rows:
    """Samples of consecutive records: sizes[i] tokens for record i (-1: dropped), ids and labels concatenated."""

    sizes: np.ndarray
    ids: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, samples: Iterable[Sample | None]) -> Rows:
        sizes, ids, labels = [], [], []
        for s in samples:
            sizes.append(-1 if s is None else len(s.input_ids))
            if s is not None:
                ids += s.input_ids
                labels += s.labels
        return cls(*(np.array(x, dtype=np.int32) for x in (sizes, ids, labels)))

    def kept(self) -> np.ndarray:
        return self.sizes[self.sizes >= 0]

    def samples(self) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        at = 0
        for n in self.kept():
            yield self.ids[at : at + n], self.labels[at : at + n]
            at += n


def megatron_files(prefix: str | Path) -> list[Path]:
    prefix = Path(prefix)
    return [
        prefix.with_name(f"{prefix.name}_packed_{k}_document.{ext}") for k in MEGATRON_KEYS for ext in ("bin", "idx")
    ]


class Writer:
    """Counts, and the contract: add rows, then close (or abort: nothing is left behind)."""

    paths: list[Path]

    def __init__(self, seq_length: int):
        self.seq_length = seq_length
        self.counts = WriteCounts()

    def add(self, rows: Rows) -> None:
        kept = rows.kept()
        self.counts.written += len(kept)
        self.counts.too_long += len(rows.sizes) - len(kept)
        self._write(rows)

    def _write(self, rows: Rows) -> None:
        raise NotImplementedError

    def _nothing(self) -> TunebridgeError:
        self.abort()
        return TunebridgeError(f"no sample is shorter than seq_length {self.seq_length}: nothing to write")

    def abort(self) -> None:
        raise NotImplementedError

    def close(self) -> WriteCounts:
        raise NotImplementedError


class MegatronWriter(Writer):
    """``<prefix>_packed_{input_ids,attention_mask,labels}_document.{bin,idx}`` as MindSpeed-LLM's instruction
    handlers write them: int32, attention mask all ones, one document per input record (a dropped record is an
    empty document). Rows go to the .bin files as they come, the .idx files are written at :meth:`close`."""

    def __init__(self, prefix: str | Path, seq_length: int):
        super().__init__(seq_length)
        self.paths = megatron_files(prefix)
        self._sizes = array("i")
        self._documents = array("q", [0])
        self._bins = [open(p, "wb") for p in self.paths[::2]]

    def _write(self, rows: Rows) -> None:
        kept = rows.kept()
        self._bins[0].write(rows.ids.tobytes())
        self._bins[1].write(np.ones(len(rows.ids), dtype=np.int32).tobytes())
        self._bins[2].write(rows.labels.tobytes())
        self._documents.extend((len(self._sizes) + np.cumsum(rows.sizes >= 0)).tolist())
        self._sizes.extend(kept.tolist())

    def abort(self) -> None:
        for f in self._bins:
            f.close()
        for p in self.paths:
            p.unlink(missing_ok=True)

    def close(self) -> WriteCounts:
        for f in self._bins:
            f.close()
        if not self._sizes:
            raise self._nothing()
        sizes = np.frombuffer(self._sizes, dtype=np.int32)
        pointers = np.concatenate([[0], np.cumsum(sizes[:-1].astype(np.int64) * 4)]).astype(np.int64)
        header = (
            _IDX_MAGIC
            + struct.pack("<Q", 1)
            + struct.pack("<B", _INT32_CODE)
            + struct.pack("<QQ", len(sizes), len(self._documents))
        )
        for idx_path in self.paths[1::2]:
            with open(idx_path, "wb") as f:
                f.write(
                    header + sizes.tobytes() + pointers.tobytes() + np.frombuffer(self._documents, np.int64).tobytes()
                )
        return self.counts


class JsonlWriter(Writer):
    """Tokenized JSONL for the torch backend: one ``{"input_ids", "labels"}`` line per kept sample."""

    def __init__(self, path: str | Path, seq_length: int):
        super().__init__(seq_length)
        self.paths = [Path(path)]
        self._f = open(path, "w", encoding="utf-8")

    def _write(self, rows: Rows) -> None:
        self._f.write(
            "".join(
                json.dumps({"input_ids": ids.tolist(), "labels": labels.tolist()}) + "\n"
                for ids, labels in rows.samples()
            )
        )

    def abort(self) -> None:
        self._f.close()
        self.paths[0].unlink(missing_ok=True)

    def close(self) -> WriteCounts:
        self._f.close()
        if not self.counts.written:
            raise self._nothing()
        return self.counts


class MindRecordWriter(Writer):
    """A MindRecord file written by one long-lived MindSpore process (``tunebridge.backends.mindformers.ms.mindrecord stream``):
    rows of seq_length + 1 (padded with ``pad_id``, labels -100 there) are buffered ``chunk`` at a time and
    piped to it, which passes each chunk to ``FileWriter.write_raw_data``. Memory here holds one chunk; the file
    appears only at :meth:`close`."""

    def __init__(self, path: str | Path, seq_length: int, pad_id: int, chunk: int = 1024):
        from ..backends.mindformers.bridge import mindspore_python
        from ..backends.mindformers.ms.mindrecord import FRAME

        super().__init__(seq_length)
        self.path = Path(path).resolve()
        self.paths = [self.path, Path(f"{self.path}.db")]
        self.pad_id, self._frame = pad_id, FRAME
        self._block = np.empty((2, chunk, seq_length + 1), dtype=np.int32)
        self._n = 0
        self._done = False
        self._scratch = tempfile.TemporaryDirectory(prefix="tunebridge-mr-")
        self._stderr = open(Path(self._scratch.name) / "stderr", "w+b")
        env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        self._proc = subprocess.Popen(
            [str(mindspore_python()), "-m", "tunebridge.backends.mindformers.ms.mindrecord", "stream", str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=self._scratch.name,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None, "both are pipes"
        self._to_ms, self._from_ms = self._proc.stdin, self._proc.stdout

    def _write(self, rows: Rows) -> None:
        width = self._block.shape[2]
        for ids, labels in rows.samples():
            if len(ids) > width:
                raise ValueError(f"a MindRecord row holds {width} tokens, not {len(ids)}")
            row_ids, row_labels = self._block[0, self._n], self._block[1, self._n]
            row_ids[: len(ids)], row_ids[len(ids) :] = ids, self.pad_id
            row_labels[: len(ids)], row_labels[len(ids) :] = labels, IGNORE
            self._n += 1
            if self._n == self._block.shape[1]:
                self._flush()

    def _flush(self) -> None:
        if self._n:
            self._send(self._frame.pack(self._n, self._block.shape[2]) + self._block[:, : self._n].tobytes())
        self._n = 0

    def _send(self, data: bytes) -> None:
        try:
            self._to_ms.write(data)
        except BrokenPipeError:
            self._finish()  # raises with MindSpore's error output
            raise

    def _finish(self) -> dict:
        """Close the pipe, wait for MindSpore, and return its result (or raise with its error output)."""
        self._done = True
        try:
            self._to_ms.close()
        except BrokenPipeError:
            pass
        out = self._from_ms.read()
        self._proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        self._scratch.cleanup()
        if self._proc.returncode != 0:
            # MindSpore states what the user can fix (a full disk) on an "[ERROR]" line; anything else is a bug
            problem = next((line.strip() for line in err.splitlines() if line.strip().startswith("[ERROR]")), None)
            if problem:
                raise TunebridgeError(
                    f"{self.path.name}: MindSpore's MindRecord writer: {problem.removeprefix('[ERROR]').strip()}"
                )
            raise RuntimeError(f"MindSpore's MindRecord writer exited {self._proc.returncode}:\n{err[-4000:]}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def abort(self) -> None:
        """Stop without the end frame: MindSpore removes its partial file."""
        self._n = 0
        if not self._done:
            try:
                self._finish()
            except (RuntimeError, TunebridgeError):  # the error that made us abort is the one to report
                pass

    def close(self) -> WriteCounts:
        if not self.counts.written:
            raise self._nothing()
        self._flush()
        self._send(self._frame.pack(0, 0))
        result = self._finish()
        if result["rows"] != self.counts.written:
            raise RuntimeError(f"MindSpore wrote {result['rows']} rows of {self.counts.written}")
        return self.counts


def write_all(writer: Writer, rows: Iterable[Rows]) -> WriteCounts:
    """Every batch of rows into ``writer``; on failure (``rows`` failing too: pass them lazily) no file is left
    behind."""
    try:
        for r in rows:
            writer.add(r)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def write_megatron(prefix: str | Path, samples: Iterable[Sample | None], seq_length: int) -> WriteCounts:
    """Samples (None: a record whose sample was dropped) into Megatron indexed files."""
    return write_all(MegatronWriter(prefix, seq_length), map(Rows.of, [samples]))


def write_jsonl(path: str | Path, samples: Iterable[Sample | None], seq_length: int) -> WriteCounts:
    return write_all(JsonlWriter(path, seq_length), map(Rows.of, [samples]))


def write_mindrecord(
    path: str | Path, samples: Iterable[Sample | None], seq_length: int, pad_id: int, chunk: int = 1024
) -> WriteCounts:
    """Rows of seq_length + 1 in a MindRecord file (columns input_ids, labels), written by MindSpore in its own
    environment, streamed in chunks of ``chunk`` rows."""
    # the samples are read while MindSpore starts (both take seconds); a sample that fails stops it
    return write_all(MindRecordWriter(path, seq_length, pad_id, chunk), map(Rows.of, [samples]))
