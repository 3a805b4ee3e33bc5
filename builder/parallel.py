"""Worker processes for bake and `bake check`: how many (one decision, read by both) and how they map."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
from collections import deque
from collections.abc import Callable, Generator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future


def default_jobs() -> int:
    """One worker per core this process may run on (a container's CPU set, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def jobs_arg(text: str) -> int:
    """argparse type of --jobs: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of processes")
    return value


# --------------------------------------------------------------------------------------------------
# An ordered map over forked worker processes


T = TypeVar("T")
R = TypeVar("R")
_END = object()
_UNSET = object()
_shared: Any = _UNSET  # what the forked workers read: set before the pool forks, never pickled


# descriptors a worker must not keep: the output tree's lock (flock is shared across fork, so a
# worker outliving a killed bake would hold the lock)
WORKER_CLOSES: set[int] = set()
_PR_SET_PDEATHSIG = 1


def _worker_start() -> None:
    """In each forked worker: die with the parent (a SIGKILLed bake leaves no workers behind) and
    drop the descriptors listed in WORKER_CLOSES."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: workers end when their queue closes
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
    for fd in WORKER_CLOSES:
        with contextlib.suppress(OSError):
            os.close(fd)


def _call(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_shared, item)


def ordered_map(
    fn: Callable[[Any, T], R], shared: Any, items: Sequence[T], jobs: int, window: int = 4
) -> Generator[R, None, None]:
    """fn(shared, item) for each item, in item order, over `jobs` forked processes.

    `shared` reaches the workers by fork, so it may hold what cannot be pickled (private keys, the
    plan); `fn` must be a module-level function and items and results picklable. At most `window`
    results per worker are in flight, so memory does not grow with the number of items. With one job,
    one item, or no fork on this platform, it runs here, serially: the same results either way.
    The process machinery is imported here: a bake that renders no node starts none.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if jobs <= 1 or len(items) <= 1 or "fork" not in mp.get_all_start_methods():
        for item in items:
            yield fn(shared, item)
        return
    global _shared
    if _shared is not _UNSET:  # a map inside a worker of another map: no nested pools
        for item in items:
            yield fn(shared, item)
        return
    _shared = shared
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(items)), mp_context=mp.get_context("fork"), initializer=_worker_start
    )
    try:
        ahead = iter(items)
        pending: deque[Future[R]] = deque(
            pool.submit(_call, fn, item) for item in islice(ahead, window * jobs)
        )
        while pending:
            result = pending.popleft().result()
            nxt = next(ahead, _END)
            if nxt is not _END:
                pending.append(pool.submit(_call, fn, nxt))
            yield result
    finally:
        _shared = _UNSET
        pool.shutdown(wait=True, cancel_futures=True)
