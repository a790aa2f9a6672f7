"""Outputs: refused if they exist (unless --force), locked while written, written to a temporary sibling that is
renamed at the end, so that an interrupted or failed command leaves nothing half-written.

- :func:`check_output` refuses before any work: an existing output without ``force``, a parent that is a file.
- :func:`output_lock` holds ``.NAME.lock`` beside the output (``flock``; the kernel drops it when the process
  dies): a second process writing the same output fails at once, naming the holder. Holding it, stale partials of
  the same output (``.NAME.partial-PID-*``, ``.NAME.old-PID`` of a process that no longer runs) are removed, and
  said so; partials of live processes and of other outputs are left alone. It is re-entrant within a process.
- :func:`atomic_dir` / :func:`atomic_file` write under the lock to ``.NAME.partial-PID-XXXX`` and rename; a write
  error (full disk, read-only file system) becomes one :class:`TunebridgeError` naming the output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import TunebridgeError

# errno values that mean "the output cannot be written" rather than "an input is wrong"
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES, errno.EPERM}

_HELD: dict[Path, int] = {}  # output -> nesting depth of this process's lock on it


def _key(dst: Path) -> Path:
    return Path(os.path.abspath(dst))


def _existing_ancestor(path: Path) -> Path:
    for parent in _key(path).parents:
        if parent.exists():
            return parent
    return Path("/")


def check_output(dst: str | Path, force: bool = False) -> Path:
    """Refuse ``dst`` before any work is done: it exists (without ``force``), or a parent is not a directory."""
    dst = Path(dst)
    ancestor = _existing_ancestor(dst)
    if not ancestor.is_dir():
        raise TunebridgeError(f"{dst}: cannot be created: {ancestor} is a file, not a directory")
    if dst.exists() and not force:
        raise TunebridgeError(f"{dst}: already exists (pass --force to overwrite)")
    return dst


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(dst: Path) -> None:
    """Remove partial outputs of ``dst`` whose writer process is gone (it was killed before it could clean up)."""
    pattern = re.compile(rf"^\.{re.escape(dst.name)}\.(?:partial-(\d+)-[0-9a-f]+|old-(\d+))$")
    for entry in dst.parent.iterdir():
        m = pattern.match(entry.name)
        if not m:
            continue
        pid = int(m.group(1) or m.group(2))
        if pid == os.getpid() or _pid_running(pid):
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        print(
            f"tunebridge: removed {entry}, a partial output of {dst.name} left by process {pid} (no longer running)",
            file=sys.stderr,
        )


def write_error(dst: Path, e: OSError) -> TunebridgeError:
    return TunebridgeError(f"{dst}: cannot write ({e.strerror or e}); nothing was written")


@contextlib.contextmanager
def output_lock(dst: str | Path) -> Iterator[Path]:
    """Hold the lock of output ``dst`` (see the module docstring); yields ``dst``."""
    dst = Path(dst)
    key = _key(dst)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield dst
        finally:
            _HELD[key] -= 1
        return
    check_output(dst, force=True)
    lock = dst.parent / f".{dst.name}.lock"
    made = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]  # removed again if the command fails
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        where = dst.parent if e.filename in (None, str(lock)) else e.filename
        raise TunebridgeError(f"{dst}: cannot write in {where} ({e.strerror})") from None
    done = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise TunebridgeError(
                f"{dst}: another process (pid {holder}) is writing it; wait for it to finish or choose another output"
            ) from None
        if os.fstat(fd).st_ino != os.stat(lock).st_ino:  # the holder removed it as we opened it: it is done
            raise TunebridgeError(f"{dst}: another process was writing it just now; run again")
        with contextlib.suppress(OSError):  # the holder's pid only informs a second writer's message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _remove_stale(dst)
        _HELD[key] = 1
        try:
            yield dst
            done = True
        finally:
            del _HELD[key]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
    finally:
        os.close(fd)
        if not done:
            for directory in made:  # deepest first; only those still empty
                with contextlib.suppress(OSError):
                    directory.rmdir()


def partial_name(dst: Path) -> Path:
    """A fresh temporary sibling of ``dst`` that :func:`output_lock` recognises as stale once this process is gone."""
    return dst.parent / f".{dst.name}.partial-{os.getpid()}-{os.urandom(4).hex()}"


def _readable(root: Path) -> None:
    """Give group and others the read (and, for directories, search) access the owner has, less the umask, as
    files the user makes have: some writers create 0600 files (safetensors) or 0700 directories (mkdtemp).
    Files made read-only on purpose (0400, as MindSpore leaves a .ckpt) stay as they are."""
    umask = os.umask(0)
    os.umask(umask)
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o7777
        if not mode & 0o200:
            continue
        owner = (mode & 0o500) if path.is_dir() else (mode & 0o400)
        wanted = mode | ((owner >> 3 | owner >> 6) & ~umask)
        if wanted != mode:
            os.chmod(path, wanted)


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _reraise_write_error(dst: Path, tmp: Path, e: OSError) -> None:
    """A write error inside the partial output (or one without a file name: a full disk) names ``dst``."""
    inside = e.filename is None or str(e.filename).startswith(str(tmp))
    if e.errno in WRITE_ERRNOS and inside:
        raise write_error(dst, e) from None
    raise e


@contextlib.contextmanager
def _partial(dst: Path, force: bool, create) -> Iterator[Path]:
    """Under ``dst``'s lock, refuse it (unless ``force``), ``create`` its partial sibling and yield it; on any
    exception the partial is removed (a write error names ``dst``)."""
    with output_lock(dst):
        check_output(dst, force)
        tmp = partial_name(dst)
        try:
            create(tmp)
        except OSError as e:
            raise write_error(dst, e) from None
        try:
            yield tmp
        except OSError as e:
            _discard(tmp)
            _reraise_write_error(dst, tmp, e)
        except BaseException:
            _discard(tmp)
            raise


@contextlib.contextmanager
def atomic_dir(dst: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``dst``; on success it replaces ``dst``.

    An existing ``dst`` is refused unless ``force``. On any exception the temporary directory is
    removed and ``dst`` is left as it was.
    """
    dst = Path(dst)
    # mkdir: mode 0777 & ~umask, as any directory the user makes (mkdtemp would give 0700)
    with _partial(dst, force, Path.mkdir) as tmp:
        yield tmp
        _readable(tmp)
        if dst.exists():
            old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
            dst.rename(old)
            tmp.rename(dst)
            _discard(old)
        else:
            tmp.rename(dst)


@contextlib.contextmanager
def atomic_file(dst: str | Path, force: bool = True, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``dst`` for writing; rename over ``dst`` on success."""
    dst = Path(dst)
    # 0666 & ~umask, as open() makes files (mkstemp would give 0600)
    with _partial(dst, force, lambda tmp: os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
        os.replace(tmp, dst)
