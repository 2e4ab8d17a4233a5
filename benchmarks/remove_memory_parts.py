"""What `remove` with the default model holds in memory while its chunks run, by scene size.

    python benchmarks/remove_memory_parts.py [--sizes 1024 4096] [--runs 1]

The scenes are `remove_pipeline.py`'s mosaics of the bundled sample (13 bands, S1 beside it).
Each run is the command in a fresh process through its launcher, as users run it (one heap
arena), with a thread that samples every 10 ms: resident memory (Linux), glibc's heap in use
(``mallinfo2``, which counts GDAL's block cache too), and GDAL's block cache in use. The chunk
phase runs from the first chunk's load to the last one's. Printed per run: the peak (VmHWM),
and over the chunk phase the median and 90th percentile of resident memory, heap in use, the
block cache and the rest (resident but not in use: free heap not yet handed back, libraries,
the interpreter), and those parts at the highest resident sample. The sampler is a Python
thread: while other threads hold the interpreter it waits, so a sample can come late.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from remove_pipeline import launch_then, make_scene, peak_rss_mb

from cloudfree.core.memory import resident_bytes

MIB = 2**20


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


class Sampler:
    """Samples (seconds, resident MB, heap in use MB, GDAL cache MB)."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None)
        self.libc.mallinfo2.restype = MallInfo2
        self.gdal = None
        self.first = self.last = None  # the chunk phase
        self.samples: list[tuple[float, float, float, float]] = []
        self.stop = threading.Event()

    def gdal_cache(self) -> float:
        if self.gdal is None:
            with open("/proc/self/maps") as f:
                found = [w for w in f.read().split() if "libgdal" in w]
            if not found:
                return 0.0
            self.gdal = ctypes.CDLL(found[0])
            self.gdal.GDALGetCacheUsed64.restype = ctypes.c_int64
        return self.gdal.GDALGetCacheUsed64() / MIB

    def watch(self) -> None:
        patched = False
        while not self.stop.wait(0.01):
            if not patched:  # once the module has run its class statement
                module = sys.modules.get("cloudfree.pipeline.remove")
                scene_removal = getattr(module, "SceneRemoval", None)
                if scene_removal is not None and hasattr(scene_removal, "finish"):
                    self.patch(scene_removal)
                    patched = True
            self.samples.append((time.perf_counter(), resident_bytes() / MIB,
                                 self.libc.mallinfo2().uordblks / MIB, self.gdal_cache()))

    def patch(self, scene_removal) -> None:
        """Note when the chunks' loads run."""
        load = scene_removal.load

        def timed(pipe, chunk):
            now = time.perf_counter()
            self.first = now if self.first is None else self.first
            try:
                return load(pipe, chunk)
            finally:
                self.last = time.perf_counter()

        scene_removal.load = timed

    def summary(self) -> dict:
        phase = [s for s in self.samples if self.first <= s[0] <= self.last]
        top = max(phase, key=lambda s: s[1])
        parts = {"resident": [s[1] for s in phase], "heap_in_use": [s[2] for s in phase],
                 "gdal_cache": [s[3] for s in phase],
                 "not_in_use": [s[1] - s[2] for s in phase]}
        return {"peak": peak_rss_mb(), "samples": len(phase),
                **{k: (statistics.median(v), statistics.quantiles(v, n=10)[-1])
                   for k, v in parts.items()},
                "at_top": {"resident": top[1], "heap_in_use": top[2], "gdal_cache": top[3]}}


def child(s2: str, s1: str, out: str) -> None:
    """`cloudfree remove` through its launcher, sampled; prints the summary as JSON."""
    from cloudfree.core.memory import limit_heap_arenas

    limit_heap_arenas()  # as the launcher does, before the sampling thread starts
    sampler = Sampler()
    thread = threading.Thread(target=sampler.watch, daemon=True)
    thread.start()
    sys.argv = ["cloudfree", "remove", "--s2", s2, "--s1", s1, "-o", out, "--model",
                "median-fill", "--quiet", "--overwrite"]
    launch_then(lambda: (sampler.stop.set(), thread.join(),
                         print(json.dumps(sampler.summary()))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--runs", type=int, default=1, help="runs of each size, alternating")
    parser.add_argument("--child", nargs=3, metavar=("S2", "S1", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print("| scene | peak (MB) | resident p50 / p90 | heap in use p50 / p90 | GDAL cache p50 / "
          "p90 | resident not in use p50 / p90 | at the top sample: resident, in use, cache |\n"
          "|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(args.runs):
            for size in args.sizes:
                s2, s1 = make_scene(folder, size)
                done = subprocess.run([sys.executable, __file__, "--child", str(s2), str(s1),
                                       str(folder / "out.tif")], check=True,
                                      capture_output=True, text=True)
                r = json.loads(done.stdout.splitlines()[-1])
                pair = " | ".join(f"{r[k][0]:.0f} / {r[k][1]:.0f}" for k in (
                    "resident", "heap_in_use", "gdal_cache", "not_in_use"))
                top = r["at_top"]
                print(f"| {size}^2 | {r['peak']:.0f} | {pair} | {top['resident']:.0f}, "
                      f"{top['heap_in_use']:.0f}, {top['gdal_cache']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
