"""Byte ranges of a file as zero-copy buffers: a private memory map of just that range.

Reading a tensor this way costs no copy (the pages are the page cache's), and the map lives exactly as
long as the tensor made from it, so a streaming converter's resident memory still holds only the tensors
in flight, as with positioned reads. The map is copy-on-write: writing to such a tensor never reaches the file.
"""
from __future__ import annotations

import mmap
import os

_PAGE = mmap.ALLOCATIONGRANULARITY


def map_range(fd: int, offset: int, length: int) -> memoryview:
    """``length`` bytes of the open file ``fd`` from ``offset`` (a writable, private view)."""
    if length == 0:
        return memoryview(bytearray())
    start = offset - offset % _PAGE
    m = mmap.mmap(fd, length + offset - start, access=mmap.ACCESS_COPY, offset=start)
    return memoryview(m)[offset - start:offset - start + length]
