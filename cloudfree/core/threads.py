"""Thread-pool helpers: the default thread count, an ordered map with bounded look-ahead, and a
turnstile that lets numbered work through in its order."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from threadpoolctl import threadpool_limits

#: Threads a caller may give a command's pool (``threads``), and GDAL's warp (``coregister``).
THREADS_RANGE = (1, 1024)
WARP_THREADS_RANGE = (1, 256)
#: Numbers the pools, so that each one's threads have names of their own.
_POOLS = itertools.count()
T = TypeVar("T")
R = TypeVar("R")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def one_blas_thread() -> threadpool_limits:
    """NumPy's BLAS on one thread until the returned context is left, then as it was. Our own
    pools already run a thread per core; OpenBLAS's threads beside them spin on the same cores.
    ``remove`` called from Python on a 2048^2 scene took 2.5x the CPU with OpenBLAS's default
    threads (the local fill's and the shift refinement's matrix products), same output; the
    command's launcher sets ``OPENBLAS_NUM_THREADS`` before NumPy loads instead."""
    return threadpool_limits(limits=1, user_api="blas")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int,
                pending_max: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` on ``threads`` threads, in order; at most ``pending_max`` (default
    2 x threads) results pending.

    The bound keeps memory flat however many items there are and however slowly the caller
    consumes them. Work still queued is cancelled if the caller stops early or ``fn`` raises.
    """
    if threads <= 1:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    with thread_pool(threads) as pool:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= (pending_max or 2 * threads):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Turnstile:
    """Lets work numbered 0, 1, 2, ... through one at a time in the order of its numbers,
    whatever the threads' timing: number i goes through once every number before it has gone
    (``through``) or has said that it does not come (``past``). Every number must do one or the
    other, also work that fails, or the numbers after it wait for ever: :meth:`past` in a
    ``finally`` is safe after :meth:`through`."""

    def __init__(self) -> None:
        self._next = 0  # every number before it has gone
        self._gone: set[int] = set()  # numbers at or after ``_next`` that have gone
        self._moved = threading.Condition()

    @contextmanager
    def through(self, number: int) -> Iterator[None]:
        """Wait for ``number``'s turn, hold it over the block, then let the next one go."""
        with self._moved:
            self._moved.wait_for(lambda: self._next >= number)
        try:
            yield
        finally:
            self.past(number)

    def past(self, number: int) -> None:
        """``number`` has gone, or does not come (without waiting for its turn)."""
        with self._moved:
            if number >= self._next:
                self._gone.add(number)
            while self._next in self._gone:
                self._gone.remove(self._next)
                self._next += 1
            self._moved.notify_all()


@contextmanager
def thread_pool(threads: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose every thread has ended when the block is left (see ``shutdown``)."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix=f"cloudfree-{next(_POOLS)}")
    try:
        yield pool
    finally:
        shutdown(pool)


def shutdown(pool: ThreadPoolExecutor) -> None:
    """Cancel the queued work and wait for every thread of the pool, even through a stop signal
    that arrives meanwhile (it is raised afterwards): they may be inside GDAL, reading datasets
    that the caller closes next.

    The threads are found by name as well: a signal raised inside ``submit`` can leave a thread
    started but not yet in the pool's own list, which ``shutdown(wait=True)`` would not join, or
    one whose ``start`` it interrupted before the new thread ran (``join_started``).
    """
    stopped: BaseException | None = None
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            prefix = pool._thread_name_prefix + "_"
            for thread in threading.enumerate():
                if thread.name.startswith(prefix):
                    join_started(thread)
            break
        except (KeyboardInterrupt, SystemExit) as exc:
            stopped = exc
    if stopped is not None:
        raise stopped


def join_started(thread: threading.Thread, patience: float = 5.0) -> None:
    """Join a thread, waiting up to ``patience`` seconds for one still starting: a signal can
    interrupt ``start`` after the system thread was created but before it ran, and ``join``
    then refuses it (seen once as a traceback on SIGHUP during ``mask``)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            thread.join()
            return
        except RuntimeError:  # "cannot join thread before it is started"
            if time.monotonic() > deadline:
                return  # it never ran: nothing to wait for
            time.sleep(0.001)
