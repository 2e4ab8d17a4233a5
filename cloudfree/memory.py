"""Give freed heap memory back to the operating system between chunks of a long run.

NumPy and torch free their large arrays, but glibc keeps freed blocks in its per-thread arenas,
and with a reader thread, GDAL's threads and torch's threads each holding some, a process's
resident memory creeps up chunk after chunk. ``malloc_trim(0)`` hands those pages back
(dask.distributed trims its workers the same way). Elsewhere than glibc this does nothing.
Pages handed back cost a page fault each when reused, so long loops release every few seconds,
not every iteration.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time

#: Seconds between releases in a long loop: slow creep, and a few page faults per release.
RELEASE_INTERVAL_S = 5.0


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return freed heap pages to the operating system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class PeriodicRelease:
    """Call in a loop: releases freed memory at most once every ``interval`` seconds."""

    def __init__(self, interval: float = RELEASE_INTERVAL_S) -> None:
        self.interval = interval
        self.last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            release_free_memory()
            self.last = now
