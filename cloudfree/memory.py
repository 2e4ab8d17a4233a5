"""Memory: refuse a batch of tiles that cannot fit, and give freed heap memory back to the
operating system between chunks of a long run.

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
import os
import time

from cloudfree.errors import UsageError
from cloudfree.tiling import TileGrid

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


def total_memory() -> int | None:
    """The machine's physical memory in bytes; None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch_memory(grid: TileGrid, batch_size: int, bands: int) -> None:
    """Refuse, before any work, a batch of tiles whose inputs and outputs alone (the network's
    own activations come on top) exceed the machine's memory. A batch never holds more tiles
    than a row of the grid (``tiling.chunks``)."""
    total = total_memory()
    tiles = min(batch_size, grid.cols)
    planes = bands + 2 + 1 + bands  # float32: S2 input, S1 input, fill mask, network output
    need = tiles * grid.tile**2 * planes * 4
    if total is not None and need > total:
        raise UsageError(f"tile={grid.tile} with batch_size={batch_size} needs at least "
                         f"{need / 2**30:.0f} GiB for the network's inputs and outputs alone; "
                         f"this machine has {total / 2**30:.0f} GiB: give a smaller tile=SIZE or "
                         "batch_size=N", "tile", "batch_size")
