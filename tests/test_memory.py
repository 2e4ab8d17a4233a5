"""Freed heap memory goes back to the operating system when `remove` asks between chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudfree import memory
from cloudfree.memory import PeriodicRelease, _malloc_trim, release_free_memory

STATUS = Path("/proc/self/status")


def resident_mb() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not STATUS.exists() or _malloc_trim() is None,
                    reason="needs Linux with glibc's malloc_trim")
def test_freed_arrays_leave_resident_memory_only_after_the_release():
    blocks, pins = [], []
    for _ in range(3000):  # 64 kB blocks (heap, not mmap: 192 MB), each pinned by 8 kB after it
        blocks.append(np.ones(8000))
        pins.append(np.ones(1000))
    held = resident_mb()
    del blocks
    assert resident_mb() > held - 50  # the heap cannot shrink past the pins: glibc keeps it all
    assert release_free_memory()
    assert resident_mb() < held - 150
    assert sum(p.sum() for p in pins) == 3000 * 1000


def test_periodic_release_waits_its_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(True))
    hourly, always = PeriodicRelease(3600), PeriodicRelease(0)
    for _ in range(3):
        hourly()
        always()
    assert len(calls) == 3
