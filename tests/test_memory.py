"""Freed heap memory goes back to the operating system when `remove` asks between chunks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cloudfree import memory
from cloudfree.memory import PeriodicRelease, _glibc, release_free_memory

STATUS = Path("/proc/self/status")


def resident_mb() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not STATUS.exists() or _glibc("malloc_trim") is None,
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


#: 20 arrays of 48 MB (above glibc's largest default threshold for mapping blocks anew), each
#: freed before the next; prints the page faults they took.
CYCLES = """
import resource, sys
import numpy as np
from cloudfree.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(6 * 2**20)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(_glibc("mallopt") is None, reason="needs glibc's mallopt")
def test_reused_memory_takes_no_fresh_pages():
    faults = {mode: int(subprocess.run([sys.executable, "-c", CYCLES, mode], check=True,
                                       capture_output=True, text=True).stdout)
              for mode in ("default", "reuse")}
    # the first array's pages only, against every array's
    assert faults["reuse"] * 5 < faults["default"], faults
