"""Byte ranges of a file as zero-copy buffers (a memory map of just that range) or as :class:`FileRange`
handles that :func:`write_all` copies inside the kernel.

Reading a tensor this way costs no copy (the pages are the page cache's), and the map lives exactly as
long as the tensor made from it, so a streaming converter's resident memory still holds only the tensors
in flight, as with positioned reads. :func:`map_range` is copy-on-write: writing to such a tensor never
reaches the file. :func:`map_range_readonly` maps its pages up front, for bytes that are read whole at once.
"""

from __future__ import annotations

import errno
import mmap
import os
import weakref
from dataclasses import dataclass

from ...errors import TunebridgeError

_PAGE = mmap.ALLOCATIONGRANULARITY


@dataclass(frozen=True)
class FileRange:
    """``nbytes`` bytes of the open file ``fd`` from ``offset``, not read: a writer copies them file to file
    (``os.copy_file_range``, as ``cp`` does), which on this VM runs about twice as fast as writing the same
    bytes from a memory map. Sliced like a byte ``memoryview``; the file must stay open until written."""

    fd: int
    offset: int
    nbytes: int

    def __getitem__(self, s: slice) -> FileRange:
        start, stop, step = s.indices(self.nbytes)
        if step != 1:
            raise ValueError("a FileRange is sliced with step 1 only")
        return FileRange(self.fd, self.offset + start, max(0, stop - start))

    def __len__(self) -> int:
        return self.nbytes

    def mapped(self) -> memoryview:
        return map_range_readonly(self.fd, self.offset, self.nbytes)


def open_owned(owner: object, path) -> int:
    """A read-only descriptor of ``path`` that stays open as long as ``owner`` lives (for the file ranges
    and maps ``owner`` hands out)."""
    fd = os.open(path, os.O_RDONLY)
    weakref.finalize(owner, os.close, fd)
    return fd


def byte_range(pieces: list, start: int, nbytes: int) -> list:
    """The pieces (byte views or file ranges) holding bytes ``start`` .. ``start + nbytes`` of their
    concatenation."""
    out = []
    for p in pieces:
        if nbytes <= 0:
            break
        if start >= len(p):
            start -= len(p)
            continue
        out.append(p[start : start + nbytes])
        nbytes -= len(out[-1])
        start = 0
    return out


def map_range(fd: int, offset: int, length: int) -> memoryview:
    """``length`` bytes of the open file ``fd`` from ``offset`` (a writable, private view)."""
    if length == 0:
        return memoryview(bytearray())
    start = offset - offset % _PAGE
    m = mmap.mmap(fd, length + offset - start, access=mmap.ACCESS_COPY, offset=start)
    return memoryview(m)[offset - start : offset - start + length]


def map_range_readonly(fd: int, offset: int, length: int) -> memoryview:
    """``length`` bytes of ``fd`` from ``offset`` as a read-only view whose pages are mapped in one go
    (``MAP_POPULATE``: one kernel call instead of a page fault every few pages)."""
    if length == 0:
        return memoryview(b"")
    start = offset - offset % _PAGE
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    m = mmap.mmap(fd, length + offset - start, flags=flags, prot=mmap.PROT_READ, offset=start)
    return memoryview(m)[offset - start : offset - start + length]


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def write_all(fd: int, pieces: list[memoryview | FileRange]) -> None:
    """Write the pieces' bytes in order at ``fd``'s position: runs of flat byte views many per call
    (``os.writev``), file ranges copied inside the kernel (:func:`copy_range`)."""
    views: list[memoryview] = []
    for p in pieces:
        if isinstance(p, FileRange):
            _writev_all(fd, views)
            views = []
            copy_range(p, fd)
        elif p.nbytes:
            views.append(p)
    _writev_all(fd, views)


def _writev_all(fd: int, pending: list[memoryview]) -> None:
    i = 0
    while i < len(pending):
        n = os.writev(fd, pending[i : i + _IOV_MAX])
        while i < len(pending) and n >= pending[i].nbytes:
            n -= pending[i].nbytes
            i += 1
        if n:
            pending[i] = pending[i][n:]


_NO_COPY_RANGE = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}


def copy_range(src: FileRange, fd: int) -> None:
    """Append ``src``'s bytes at ``fd``'s position with ``os.copy_file_range`` (where the kernel or the
    file systems refuse it, by writing a memory map of the range)."""
    at, left = src.offset, src.nbytes
    while left:
        try:
            n = os.copy_file_range(src.fd, fd, left, at)
        except OSError as e:
            if e.errno not in _NO_COPY_RANGE:
                raise
            _writev_all(fd, [src[at - src.offset :].mapped()])
            return
        if n == 0:
            raise TunebridgeError(f"source file ended {left} bytes early while copying (truncated under us?)")
        at, left = at + n, left - n
