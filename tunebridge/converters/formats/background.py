"""One writer thread, so that a converter reads and rearranges the next tensor while the last is written.

File writes and the CRC-32 (ISA-L or zlib) release the GIL, so the two overlap. Jobs run in submission order; the
bytes they hold are bounded by ``max_bytes`` (a job bigger than that runs alone), which keeps memory flat.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable


class Background:
    """``submit`` jobs, then ``close`` (or leave the ``with`` block) to wait for them and re-raise their error.
    With ``max_bytes=0`` jobs run at once in the caller's thread."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._jobs: deque[tuple[Callable[[], None], int]] = deque()
        self._pending = 0
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="tunebridge-writer", daemon=True) if max_bytes else None
        if self._thread:
            self._thread.start()

    def submit(self, job: Callable[[], None], nbytes: int) -> None:
        if self._thread is None:
            job()
            return
        with self._cond:
            while self._error is None and self._jobs_or_running() and self._pending + nbytes > self.max_bytes:
                self._cond.wait()
            self._raise()
            self._jobs.append((job, nbytes))
            self._pending += nbytes
            self._cond.notify_all()

    def _jobs_or_running(self) -> bool:
        return self._pending > 0 or bool(self._jobs)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                job, nbytes = self._jobs[0]
            try:
                if self._error is None:
                    job()
            except BaseException as e:  # noqa: BLE001 - handed to the submitting thread
                self._error = e
            del job  # a done job's buffers (memory maps) go now, not when the next job comes
            with self._cond:
                self._jobs.popleft()
                self._pending -= nbytes
                self._cond.notify_all()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait for every job; re-raise the first error one raised."""
        if self._thread is not None:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()
        self._raise()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        elif self._thread is not None:  # already failing: stop the queue, keep the first error
            with self._cond:
                self._error = self._error or exc[1]
                self._closed = True
                self._cond.notify_all()
            self._thread.join()
