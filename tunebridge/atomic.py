"""Write outputs to a temporary sibling and rename at the end: no half-written results."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import TunebridgeError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(dst: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``dst``; on success it replaces ``dst``.

    An existing ``dst`` is refused unless ``force``. On any exception the temporary directory is
    removed and ``dst`` is left as it was.
    """
    dst = Path(dst)
    if dst.exists() and not force:
        raise TunebridgeError(f"{dst}: already exists (pass --force to overwrite)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; the output gets a plain mkdir's mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
        tmp.rename(dst)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    else:
        tmp.rename(dst)


@contextlib.contextmanager
def atomic_file(dst: str | Path, force: bool = True, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``dst`` for writing; rename over ``dst`` on success."""
    dst = Path(dst)
    if dst.exists() and not force:
        raise TunebridgeError(f"{dst}: already exists (pass --force to overwrite)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.partial-", dir=dst.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; the output gets a plain open's mode
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
