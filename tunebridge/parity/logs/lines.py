"""Reading a training log as clean lines: ANSI colours, carriage-return progress bars and rank prefixes removed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import TunebridgeError

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# Launchers that merge ranks into one stream prefix each line: torchrun --tee ("[default0]:", "[rank0]:"),
# Open MPI --tag-output ("[1,0]<stdout>:"), srun -l ("0: "), grep -H over msrun's worker files ("worker_0.log:").
RANK_PREFIXES = (
    re.compile(r"^\[(?:default|rank)(\d+)\]:\s?"),
    re.compile(r"^\[\d+,(\d+)\]<std(?:out|err)>:\s?"),
    re.compile(r"^(?:\S*/)?worker_(\d+)\.log[:-]\s?"),
    re.compile(r"^\s{0,3}(\d{1,5}): "),
)
# `tail -f worker_*.log` separates files by "==> path <==" headers.
TAIL_HEADER = re.compile(r"^==> (.+) <==$")
WORKER_FILE = re.compile(r"worker_(\d+)\.log$")


@dataclass(frozen=True)
class Line:
    number: int  # 1-based line number in the file
    rank: int | None  # from a prefix, a tail header or the file name; None if the log does not say
    text: str
    terminated: bool  # False for a last line without its newline: the writer was cut off mid-line


def read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: no such log file") from None
    except IsADirectoryError:
        raise TunebridgeError(f"{path}: is a directory, not a log file") from None


def file_rank(path: Path) -> int | None:
    m = WORKER_FILE.search(path.name)
    return int(m.group(1)) if m else None


def split_rank(text: str) -> tuple[int | None, str]:
    for pattern in RANK_PREFIXES:
        m = pattern.match(text)
        if m:
            return int(m.group(1)), text[m.end() :]
    return None, text


def clean_lines(path: Path) -> list[Line]:
    """The file's lines without colour codes, each with the rank that wrote it (when known)."""
    raw = read_text(path)
    default_rank = file_rank(path)
    physical = raw.split("\n")
    ends_with_newline = physical[-1] == ""
    if ends_with_newline:
        physical.pop()
    lines, tail_rank = [], default_rank
    for i, text in enumerate(physical):
        text = ANSI.sub("", text)
        terminated = ends_with_newline or i < len(physical) - 1
        header = TAIL_HEADER.match(text.strip())
        if header:
            tail_rank = file_rank(Path(header.group(1)))
            continue
        # A progress bar rewrites its line with "\r": each segment is a line of its own.
        segments = text.split("\r")
        for j, segment in enumerate(segments):
            rank, body = split_rank(segment)
            if body.strip():
                lines.append(
                    Line(i + 1, rank if rank is not None else tail_rank, body, terminated or j < len(segments) - 1)
                )
    return lines
