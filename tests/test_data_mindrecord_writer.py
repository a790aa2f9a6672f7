"""MindRecordWriter's side of the stream, against a stand-in for the MindSpore environment (no MindSpore: fast).

The stand-in "interpreter" is this environment's Python running the real streaming writer
(``tunebridge.backends.mindformers.ms.mindrecord stream``) with a fake ``mindspore.mindrecord.FileWriter`` that
records every ``write_raw_data`` call, so the tests see exactly which rows, in which frames, reach MindSpore, and
what the writer makes of MindSpore's failures. test_data_mindrecord_stream.py runs the same protocol against the
real MindSpore and reads the file back with MindDataset.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

import tunebridge
from tunebridge.backends.mindformers.ms.mindrecord import SCHEMA
from tunebridge.data.encode import IGNORE, Sample
from tunebridge.data.writers import MindRecordWriter, Rows, write_all, write_mindrecord
from tunebridge.errors import TunebridgeError

FAKE_FILEWRITER = '''
import json, os, sys

MODE = os.environ.get("FAKE_MS_MODE", "")


class FileWriter:
    def __init__(self, path, shard_num, overwrite):
        if MODE == "fail-FileWriter":
            raise RuntimeError("cannot create the file")
        self.path, self.frames, self.ids, self.labels = path, [], [], []
        self.header = dict(shard_num=shard_num, overwrite=overwrite)
        print("a MindSpore notice on stdout")  # the writer's result is the last line

    def add_schema(self, schema, description):
        if MODE == "fail-add_schema":
            raise RuntimeError("cannot add the schema")
        self.header.update(schema=schema, description=description)

    def write_raw_data(self, rows):
        if MODE == "error":  # what MindSpore does when it cannot write: an [ERROR] line, an exception
            sys.stderr.write("[WARNING] MD: a warning first\\n[ERROR] MD: No space left on device\\n")
            raise RuntimeError("write_raw_data failed")
        if MODE == "crash":  # a failure without an [ERROR] line: exit 3, long output, a byte that is not UTF-8
            lines = int(os.environ["FAKE_MS_LINES"])
            sys.stderr.buffer.write(b"\\xff" + b"".join(b"line %04d\\n" % i for i in range(lines)))
            sys.stderr.flush()
            sys.exit(3)
        self.frames.append(len(rows))
        self.ids += [r["input_ids"].tolist() for r in rows]
        self.labels += [r["labels"].tolist() for r in rows]

    def commit(self):
        with open(self.path, "w") as f:
            json.dump(dict(self.header, frames=self.frames, input_ids=self.ids, labels=self.labels), f)
        with open(self.path + ".db", "w") as f:
            f.write("index")
'''

# the stand-in interpreter: records what it was started with, then runs the real module (or, in mode "count",
# a writer that reads everything and reports one row)
FAKE_PYTHON = """#!/bin/sh
echo "${{PYTHONPATH-unset}}" > "$FAKE_MS_RECORD/pythonpath"
echo "GLOG_v=${{GLOG_v-unset}} PYTHONUNBUFFERED=${{PYTHONUNBUFFERED-unset}}" > "$FAKE_MS_RECORD/env"
pwd > "$FAKE_MS_RECORD/cwd"
echo "$@" > "$FAKE_MS_RECORD/argv"
if [ "$FAKE_MS_MODE" = count ]; then
  exec "{python}" -c 'import sys; sys.stdin.buffer.read(); print("{{\\"rows\\": 1}}")'
fi
PYTHONPATH="{fake}:{package}" exec "{python}" "$@"
"""

SEQ, PAD = 5, 7


@pytest.fixture
def fake_ms(tmp_path_factory, monkeypatch):
    """Points the MindSpore interpreter at the stand-in; returns the directory it records into."""
    root = tmp_path_factory.mktemp("fake-ms")
    (root / "mindspore").mkdir()
    (root / "mindspore" / "__init__.py").write_text("")
    (root / "mindspore" / "mindrecord.py").write_text(FAKE_FILEWRITER)
    python = root / "python"
    package = Path(tunebridge.__file__).resolve().parent.parent  # the tunebridge these tests import
    python.write_text(FAKE_PYTHON.format(python=sys.executable, fake=root, package=package))
    python.chmod(0o755)
    record = root / "record"
    record.mkdir()
    monkeypatch.setenv("TUNEBRIDGE_MINDSPORE_PYTHON", str(python))
    monkeypatch.setenv("FAKE_MS_RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", str(root / "not-for-mindspore"))
    monkeypatch.delenv("FAKE_MS_MODE", raising=False)
    for name in ("GLOG_v", "PYTHONUNBUFFERED"):  # what the writer sets, not inherited
        monkeypatch.delenv(name, raising=False)
    return record


def written(path: Path) -> dict:
    return json.loads(path.read_text())


def started_in(record: Path) -> Path:
    return Path((record / "cwd").read_text().strip())


def sample(n: int, start: int = 1, prompt: int = 1) -> Sample:
    ids = list(range(start, start + n))
    return Sample(ids, [IGNORE] * prompt + ids[prompt:])


def test_rows_reach_the_writer_padded_in_frames_of_chunk(fake_ms, tmp_path):
    data = [sample(3), None, sample(1, 10), sample(4, 20, 2), sample(2, 30), None, sample(5, 40), sample(3, 50)]
    data += [sample(2, 60), sample(1, 70)]
    counts = write_mindrecord(tmp_path / "d.mindrecord", iter(data), SEQ, PAD, chunk=3)
    assert (counts.written, counts.too_long) == (8, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mindrecord", "d.mindrecord.db"]
    out = written(tmp_path / "d.mindrecord")
    assert out["frames"] == [3, 3, 2]  # chunk rows a frame, the rest at close
    assert out["input_ids"] == [
        [1, 2, 3, 7, 7, 7], [10, 7, 7, 7, 7, 7], [20, 21, 22, 23, 7, 7], [30, 31, 7, 7, 7, 7],
        [40, 41, 42, 43, 44, 7], [50, 51, 52, 7, 7, 7], [60, 61, 7, 7, 7, 7], [70, 7, 7, 7, 7, 7],
    ]
    x = IGNORE
    assert out["labels"] == [
        [x, 2, 3, x, x, x], [x, x, x, x, x, x], [x, x, 22, 23, x, x], [x, 31, x, x, x, x],
        [x, 41, 42, 43, 44, x], [x, 51, 52, x, x, x], [x, 61, x, x, x, x], [x, x, x, x, x, x],
    ]
    assert (out["schema"], out["description"]) == (SCHEMA, "tunebridge instruction data")
    # MindSpore's own environment: without this one's PYTHONPATH, in a scratch directory that is gone after
    assert (fake_ms / "pythonpath").read_text() == "unset\n"
    assert (fake_ms / "env").read_text() == "GLOG_v=3 PYTHONUNBUFFERED=1\n"  # MindSpore's errors only, unbuffered
    assert (fake_ms / "argv").read_text() == f"-m tunebridge.backends.mindformers.ms.mindrecord stream {tmp_path / 'd.mindrecord'}\n"
    scratch = started_in(fake_ms)
    assert scratch.name.startswith("tunebridge-mr-") and scratch.parent == Path(tempfile.gettempdir())
    assert not scratch.exists()


def test_a_row_holds_seq_length_plus_one_tokens(fake_ms, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    writer = MindRecordWriter("d.mindrecord", SEQ, PAD, chunk=2)  # a relative path is MindSpore's absolute one
    assert writer.paths == [tmp_path / "d.mindrecord", tmp_path / "d.mindrecord.db"]
    counts = write_all(writer, [Rows.of([sample(SEQ + 1)]), Rows.of([None, sample(1, 9)])])
    assert (counts.written, counts.too_long) == (2, 1)
    assert written(tmp_path / "d.mindrecord")["input_ids"] == [[1, 2, 3, 4, 5, 6], [9, 7, 7, 7, 7, 7]]
    assert written(tmp_path / "d.mindrecord")["frames"] == [2]
    writer = MindRecordWriter(tmp_path / "e.mindrecord", SEQ, PAD)
    with pytest.raises(ValueError) as e:
        write_all(writer, [Rows.of([sample(SEQ + 2)])])
    assert str(e.value) == "a MindRecord row holds 6 tokens, not 7"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mindrecord", "d.mindrecord.db"]


def test_frames_of_1024_rows_by_default(fake_ms, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH")  # nothing to take out of MindSpore's environment
    counts = write_mindrecord(tmp_path / "d.mindrecord", (sample(1, i) for i in range(1030)), SEQ, PAD)
    assert (counts.written, counts.too_long) == (1030, 0)
    assert written(tmp_path / "d.mindrecord")["frames"] == [1024, 6]
    writer = MindRecordWriter(tmp_path / "e.mindrecord", SEQ, PAD)
    write_all(writer, [Rows.of(sample(1, i) for i in range(1025))])
    assert written(tmp_path / "e.mindrecord")["frames"] == [1024, 1]


def test_nothing_to_write_stops_the_writer_and_leaves_nothing(fake_ms, tmp_path):
    with pytest.raises(TunebridgeError) as e:
        write_mindrecord(tmp_path / "e.mindrecord", iter([None] * 5), 1, PAD)
    assert str(e.value) == "no sample is shorter than seq_length 1: nothing to write"
    assert list(tmp_path.iterdir()) == [] and not started_in(fake_ms).exists()


def test_samples_that_fail_stop_the_writer_and_leave_nothing(fake_ms, tmp_path):
    def samples():
        yield sample(3)
        raise ValueError("record 2: a bad record")

    with pytest.raises(ValueError, match="record 2: a bad record"):
        write_mindrecord(tmp_path / "d.mindrecord", samples(), SEQ, PAD)
    assert list(tmp_path.iterdir()) == []
    assert not started_in(fake_ms).exists()  # MindSpore was stopped then, not when the writer is collected


@pytest.mark.parametrize("fails_in", ["FileWriter", "add_schema"])
def test_a_writer_that_cannot_start_leaves_no_partial_directory(fake_ms, tmp_path, monkeypatch, fails_in):
    monkeypatch.setenv("FAKE_MS_MODE", f"fail-{fails_in}")
    with pytest.raises(RuntimeError, match="MindSpore's MindRecord writer exited 1"):
        write_mindrecord(tmp_path / "d.mindrecord", iter([sample(3)]), SEQ, PAD)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_stream_is_the_one_reported(fake_ms, tmp_path, monkeypatch):
    def rows():
        yield Rows.of([sample(3)] * 5)
        raise ValueError("reader failed")

    writer = MindRecordWriter(tmp_path / "d.mindrecord", SEQ, PAD, chunk=2)
    with pytest.raises(ValueError, match="^reader failed$"):  # not MindSpore's error on the cut stream
        write_all(writer, rows())
    assert writer._proc.returncode == 1 and list(tmp_path.iterdir()) == [] and not started_in(fake_ms).exists()
    monkeypatch.setenv("FAKE_MS_MODE", "error")  # nor MindSpore's own [ERROR] line
    writer = MindRecordWriter(tmp_path / "d.mindrecord", SEQ, PAD, chunk=2)
    with pytest.raises(ValueError, match="^reader failed$"):
        write_all(writer, rows())
    assert writer._proc.returncode == 1 and list(tmp_path.iterdir()) == []


def test_the_error_line_is_the_message(fake_ms, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MS_MODE", "error")
    # more frames than the pipe holds: MindSpore fails on the first, a later write fails (BrokenPipeError), and
    # the error reported is MindSpore's
    data = [sample(16)] * 1024
    with pytest.raises(TunebridgeError) as e:
        write_mindrecord(tmp_path / "d.mindrecord", iter(data), 16, PAD, chunk=1)
    assert str(e.value) == "d.mindrecord: MindSpore's MindRecord writer: MD: No space left on device"
    with pytest.raises(TunebridgeError) as e:  # a small one fits in the pipe: the same error at the end
        write_mindrecord(tmp_path / "d.mindrecord", iter(data[:2]), 16, PAD)
    assert str(e.value) == "d.mindrecord: MindSpore's MindRecord writer: MD: No space left on device"
    assert list(tmp_path.iterdir()) == [] and not started_in(fake_ms).exists()


@pytest.mark.parametrize("lines", [300, 600])
def test_a_crash_reports_the_exit_code_and_the_last_output(fake_ms, tmp_path, monkeypatch, lines):
    monkeypatch.setenv("FAKE_MS_MODE", "crash")
    monkeypatch.setenv("FAKE_MS_LINES", str(lines))
    with pytest.raises(RuntimeError) as e:
        write_mindrecord(tmp_path / "d.mindrecord", iter([sample(3)]), SEQ, PAD)
    err = "\ufffd" + "".join(f"line {i:04d}\n" for i in range(lines))  # 3,001 or 6,001 characters
    assert str(e.value) == f"MindSpore's MindRecord writer exited 3:\n{err[-4000:]}"
    assert list(tmp_path.iterdir()) == [] and not started_in(fake_ms).exists()


def test_a_row_count_that_differs_is_an_error(fake_ms, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MS_MODE", "count")
    with pytest.raises(RuntimeError) as e:
        write_mindrecord(tmp_path / "d.mindrecord", iter([sample(3), None, sample(2)]), SEQ, PAD)
    assert str(e.value) == "MindSpore wrote 1 rows of 2"
