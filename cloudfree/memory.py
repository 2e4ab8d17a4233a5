"""Give freed heap memory back to the operating system between chunks of a long run.

NumPy and torch free their large arrays, but glibc keeps freed blocks in its per-thread arenas,
and with a reader thread, GDAL's threads and torch's threads each holding some, a process's
resident memory creeps up chunk after chunk. ``malloc_trim(0)`` hands those pages back
(dask.distributed trims its workers the same way). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


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
