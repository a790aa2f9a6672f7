"""Run a function on tp*pp*ep CPU processes (gloo), each with megatron's parallel state initialised.

    results = run(fn, tp=2, pp=2, args=(spec,))   # [fn(*args) on rank 0, on rank 1, ...]
    results = run(fn, tp=2, ep=2, args=(spec,))   # a mixture of experts over 2 expert-parallel ranks

``fn`` must be importable (a module-level function). Arguments and results travel as plain pickles
(not torch's shared-memory tensors), so a rank may exit as soon as it has answered.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any


class RankFailed(RuntimeError):
    """A rank raised (or died); the message carries its traceback."""


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(fn: Callable, tp: int, pp: int, ep: int, rank: int, port: int, payload: bytes, results: mp.Queue) -> None:
    answer: tuple[int, bool, bytes | str]
    try:
        import torch

        torch.set_num_threads(1)
        from .cpu import init_parallel

        init_parallel(tp, pp, rank, tp * pp * ep, port, ep=ep)
        args, kwargs = pickle.loads(payload)
        answer = (rank, True, pickle.dumps(fn(*args, **kwargs)))
    except BaseException:  # noqa: BLE001 - everything a rank raises goes back to the caller
        answer = (rank, False, traceback.format_exc())
    results.put(answer)


def run(
    fn: Callable[..., Any],
    tp: int = 1,
    pp: int = 1,
    args: tuple = (),
    kwargs: dict | None = None,
    timeout_s: float = 600.0,
    ep: int = 1,
) -> list[Any]:
    """``fn(*args, **kwargs)`` on every rank of a tp x pp x ep gloo world; results in global-rank order.

    Global rank r has tp_rank = r % tp, ep_rank = (r // tp) % ep and pp_rank = r // (tp * ep) (megatron's default
    order "tp-cp-ep-dp-pp"; dp = ep, so each ep rank is also a data-parallel rank of the layers outside the experts).
    Raises :class:`RankFailed` with the failing rank's traceback as soon as one rank fails, after
    stopping the others (which would otherwise wait forever in a collective).
    """
    payload = pickle.dumps((args, kwargs or {}))
    for _ in range(2):
        try:
            return _run_once(fn, tp, pp, ep, payload, free_port(), timeout_s)
        except RankFailed as e:
            # The free port can be taken by another program before rank 0 binds it: try another.
            if "address already in use" not in str(e).lower():
                raise
    return _run_once(fn, tp, pp, ep, payload, free_port(), timeout_s)


def _run_once(fn: Callable, tp: int, pp: int, ep: int, payload: bytes, port: int, timeout_s: float) -> list[Any]:
    world = tp * pp * ep
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(fn, tp, pp, ep, rank, port, payload, results), daemon=True)
        for rank in range(world)
    ]
    for p in procs:
        p.start()
    answers: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(answers) < world:
            try:
                rank, ok, data = results.get(timeout=0.5)
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in answers]
                if dead:
                    raise RankFailed(
                        f"rank {dead[0]} of {world} died with exit code {procs[dead[0]].exitcode} before answering"
                    ) from None
                if time.monotonic() > deadline:
                    raise RankFailed(
                        f"no answer from ranks {sorted(set(range(world)) - set(answers))} "
                        f"of {world} after {timeout_s:.0f} s"
                    ) from None
                continue
            if not ok:
                raise RankFailed(f"rank {rank} of {world} (tp={tp}, pp={pp}, ep={ep}) failed:\n{data}")
            answers[rank] = pickle.loads(data)
    finally:
        for p in procs:
            p.join(timeout=5 if len(answers) == world else 0)
            if p.is_alive():
                p.terminate()
                p.join()
    return [answers[r] for r in range(world)]
