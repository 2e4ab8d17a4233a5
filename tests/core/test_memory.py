"""Freed heap memory goes back to the operating system when `remove` asks between chunks, and
as resident memory grows."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cloudfree.core.memory import _libc_function, release_free_memory, releasing_as_it_grows
from cloudfree.pipeline.options import OutputOptions

STATUS = Path("/proc/self/status")


def in_a_fresh_process(test: Callable[[], None]) -> Callable[[], None]:
    """Run ``test`` alone in a new interpreter: it measures the process's heap, whose holes and
    peak depend on every test run before it in this one."""
    @functools.wraps(test)
    def run() -> None:
        done = subprocess.run([sys.executable, "-c", f"import {Path(__file__).stem} as t; "
                               f"t.{test.__name__}.__wrapped__()"],
                              cwd=Path(__file__).parent, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return run


def resident_mb() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not STATUS.exists() or _libc_function("malloc_trim") is None,
                    reason="needs Linux with glibc's malloc_trim")
@in_a_fresh_process
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


def _pinned_holes() -> tuple[list[np.ndarray], float]:
    """192 MB of 64 kB blocks, each pinned by 8 kB after it, freed on return (holes the heap
    cannot shrink past); the pins and the resident MB while the blocks were held."""
    blocks, pins = [], []
    for _ in range(3000):
        blocks.append(np.ones(8000))
        pins.append(np.ones(1000))
    return pins, resident_mb()


@pytest.mark.skipif(not STATUS.exists() or _libc_function("malloc_trim") is None,
                    reason="needs Linux with glibc's malloc_trim")
@in_a_fresh_process
def test_freed_pages_are_released_while_resident_memory_grows():
    """Blocks that cannot reuse the holes freed earlier grow the heap; the holes go back to the
    system meanwhile, not only at the next release asked for."""
    with releasing_as_it_grows(margin=32 * 2**20, every=0.002):
        pins, held = _pinned_holes()
        grown = [np.ones(16000) for _ in range(1500)]  # 128 kB blocks (192 MB): not in a hole
        time.sleep(0.2)
        assert resident_mb() < held + 100  # without the releases: held + 192 MB
    assert sum(p.sum() for p in pins) + sum(g.sum() for g in grown) == 3000 * 1000 + 1500 * 16000


@pytest.mark.skipif(not STATUS.exists() or _libc_function("malloc_trim") is None,
                    reason="needs Linux with glibc's malloc_trim")
@in_a_fresh_process
def test_freed_pages_below_the_peak_held_stay_until_memory_grows_past_it():
    """Once the run's peak is held (before the chunks), neither the release after a chunk nor
    the watcher hands back pages below it; growth past it is released as before."""
    # the holes made before the watcher starts: made under it, a watcher slowed by the load
    # would see the growth only once they are freed, and hand them back before the hold
    pins, held = _pinned_holes()
    with releasing_as_it_grows(margin=32 * 2**20, every=0.002) as releases:
        releases.hold_below_peak()
        assert not releases.release()
        small = [np.ones(4000) for _ in range(1500)]  # 32 kB blocks (48 MB): in the holes
        time.sleep(0.2)
        assert resident_mb() > held - 50  # the holes kept: nothing above the peak
        grown = [np.ones(32000) for _ in range(1500)]  # 256 kB blocks (384 MB): not in a hole
        time.sleep(0.2)
        assert resident_mb() < held + 300  # past the peak, the holes go back (else held + 384)
    assert sum(p.sum() for p in pins) + sum(s.sum() for s in small) \
        + sum(g.sum() for g in grown) == 3000 * 1000 + 1500 * 4000 + 1500 * 32000


def test_the_block_cache_holds_two_rows_of_output_blocks_within_its_bounds(monkeypatch):
    import rasterio.env

    from cloudfree.io.rasters import scene_io_env

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    mb = 2**20
    # a 13-band uint16 output 10980 px wide: 2 rows of 256 px blocks, 139 MB
    for row_bytes, block, cache in ((None, 256, 256 * mb), (1024 * 26, 256, 32 * mb),
                                    (0, 256, 32 * mb),
                                    (10980 * 26, 256, 2 * 256 * 10980 * 26),
                                    (10980 * 26, 512, 256 * mb)):
        with scene_io_env(row_bytes, block):
            assert rasterio.env.getenv()["GDAL_CACHEMAX"] == cache
    monkeypatch.setenv("GDAL_CACHEMAX", "16")  # the user's wins
    with scene_io_env(10980 * 26):
        assert "GDAL_CACHEMAX" not in rasterio.env.getenv()


HEAPS_AFTER_THREADS = """
import ctypes, sys, tempfile, threading
from cloudfree.core.memory import limit_heap_arenas
print(limit_heap_arenas())
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.fopen.restype = ctypes.c_void_p
libc.fclose.argtypes = (ctypes.c_void_p,)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
together = threading.Barrier(4)
def allocate():  # each of 4 threads allocates while the others hold theirs
    libc.malloc(4096)
    together.wait()
threads = [threading.Thread(target=allocate) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    out = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(open(f.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(_libc_function("malloc_info") is None or _libc_function("mallopt") is None,
                    reason="needs glibc's malloc")
@pytest.mark.parametrize("env, limited, heaps", [({}, "True", 1),
                                                 ({"MALLOC_ARENA_MAX": "8"}, "False", 5)])
def test_threads_share_one_heap_arena_unless_the_user_sets_their_number(env, limited, heaps):
    run_env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", HEAPS_AFTER_THREADS], env={**run_env, **env},
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == [limited, str(heaps)]


@pytest.mark.parametrize(("cog", "rows_kept"), [
    (True, False),  # a raw scratch file: partly written blocks cost no compression
    (False, True),  # written compressed as it streams
])
def test_remove_keeps_output_blocks_in_the_cache_only_when_it_streams_them_compressed(
        tmp_path, monkeypatch, cog, rows_kept):
    import importlib

    from helpers import SUMMER_S1, SUMMER_S2

    from cloudfree.io.rasters import scene_io_env

    removal = importlib.import_module("cloudfree.pipeline.remove")

    asked = []

    def spy(row_bytes=None, block=256):
        asked.append(row_bytes)
        return scene_io_env(row_bytes, block)

    monkeypatch.setattr(removal, "scene_io_env", spy)
    removal.remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "out.tif", outputs=OutputOptions(cog=cog),
                         quiet=True)
    assert asked == [256 * 13 * 2 if rows_kept else 0]
