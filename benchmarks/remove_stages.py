"""Where `cloudfree remove` spends its CPU, stage by stage (used by `remove_speed.py`).

    python benchmarks/remove_stages.py S2 S1 OUT [--model NAME]     # prints one JSON line

Runs one `remove` in this process (every default, COG output) with the functions of each stage
wrapped by a clock that reads the calling thread's CPU time (``time.thread_time``) and its wall
time. Stages nest; each gets its exclusive time, the time inside its wrapped functions minus
that of the stages called from them; the stages of a first pass (on any thread) are named
after it ("shadow offset > read S2"; they run beside the co-registration, the work each
submits to a pool counted under it). CPU seconds add up over every thread (loaders,
the writer, the main thread). So that the network's and the local fill's CPU is counted where
it is spent, torch (and so onnxruntime, which takes torch's thread count) runs on the calling
threads (``torch.set_num_threads(1)``); the COG rewrite, which runs alone after the last
chunk, is timed by the process's CPU, so that its deflate on GDAL's own threads counts with it
(and the overviews, where GDAL makes them; those of `remove`'s outputs are made from the
blocks as they are written, "overviews (from the blocks)"). What no Python stage holds (GDAL's
other threads, the interpreter outside the stages; not the imports, done before the clock
starts) is the rest of the process's CPU ("other"). NumPy's OpenBLAS runs the threads the
command's launcher gives it (``launch.OPENBLAS_THREADS``), set here before NumPy loads (and
glibc's heap arenas as the launcher limits them, ``memory.limit_heap_arenas``): with
OpenBLAS's default, a thread per core spinning beside the stages' threads, "other" and the
shift estimates of `remove_speed.py`'s 2048^2 scene took 3.0 s more CPU than the command spends
on them.
``--cprofile FILE`` also writes the main thread's cProfile. The timeline under the table gives
when each phase ran (its first start to its last end), how many cores the process used
meanwhile (on 2 cores, a phase at 1 core is a serial one) and the process's largest resident
memory then (VmRSS, read with the CPU time; the phases of a first pass overlap). This process
loads PyTorch, even for the default model, which the command does not: add that much to every
peak (about 180 MB at 1024^2), and take the command's own peak from `remove_speed.py`.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

from cloudfree.cli.launch import OPENBLAS_THREADS
from cloudfree.core.memory import limit_heap_arenas, status_bytes
from cloudfree.pipeline.options import EngineOptions, OutputOptions

os.environ.setdefault("OPENBLAS_NUM_THREADS", OPENBLAS_THREADS)  # before NumPy loads
limit_heap_arenas()  # the command's heap, as its launcher sets it

#: (module, attribute path, stage): the functions each stage is made of.
STAGES = (
    ("cloudfree.io.sentinel2", "Sentinel2.read_dn", "read S2"),
    ("cloudfree.io.sentinel2", "Sentinel2.reflectance", "read S2"),
    ("cloudfree.io.decoded_scene", "DecodedScene.read", "read S2 (decoded copy)"),
    ("cloudfree.io.decoded_scene", "DecodedScene.store", "keep decoded S2"),
    ("cloudfree.coregister.s1_to_s2", "CoregisterResult.read", "read S1 (warp)"),
    ("cloudfree.coregister.s1_to_s2", "AlignedS1.read", "read S1"),
    ("cloudfree.pipeline.remove", "open_s1_on_grid", "S1 co-registration"),
    ("cloudfree.coregister.s1_to_s2", "estimate_window", "shift estimates"),
    ("cloudfree.pipeline.scene_passes", "scene_fill_spectrum", "clear-sky statistics"),
    ("cloudfree.pipeline.scene_passes", "scene_shadow_thresholds", "shadow thresholds"),
    ("cloudfree.pipeline.scene_passes", "scene_shadow_offset", "shadow offset"),
    ("cloudfree.pipeline.scene_passes", "offset_counts", "shadow offset"),
    ("cloudfree.pipeline.scene_passes", "shadow_like", "shadow test"),
    ("cloudfree.mask.shadow", "shadow_like", "shadow test"),
    ("cloudfree.pipeline.scene_passes", "tied_shadows", "shadows tied"),
    ("cloudfree.pipeline.remove", "tied_shadows", "shadows tied"),
    ("cloudfree.fill.local", "unshaded", "shadow test"),
    ("cloudfree.mask.scene_input", "classify", "mask"),
    ("cloudfree.pipeline.remove", "haze_region", "mask"),
    ("cloudfree.pipeline.remove", "composite_alpha", "mask"),
    ("cloudfree.pipeline.remove", "source_weight", "local fill"),
    ("cloudfree.pipeline.remove", "local_fill", "local fill"),
    ("cloudfree.pipeline.remove", "restore", "restore (haze, shadows)"),
    ("cloudfree.pipeline.remove", "SceneRemoval.load", "load (rest)"),
    ("cloudfree.pipeline.remove", "SceneRemoval._run", "network"),
    ("cloudfree.pipeline.remove", "Blender.add", "blend"),
    ("cloudfree.pipeline.remove", "SceneRemoval.finish", "composite"),
    ("rasterio.io", "DatasetWriter.write", "write blocks"),
    ("cloudfree.output.overviews", "StreamedOverviews.add", "overviews (from the blocks)"),
    ("rasterio.io", "DatasetWriter.close", "close (flush)"),
    ("cloudfree.output.atomic", "make_cog", "COG rewrite"),
    ("cloudfree.output.atomic", "verify_raster", "verify"),
)
#: The first-pass stages, under which nested reads and masks are reported.
FIRST_PASSES = ("S1 co-registration", "shadow offset", "clear-sky statistics")
#: Stages that run alone in the process, timed by the process's CPU: the COG rewrite after the
#: last chunk, whose deflate runs on GDAL's own threads (most of its CPU, otherwise "other").
ALONE = ("COG rewrite",)


class StageClock:
    """Exclusive CPU and wall seconds per stage path, over every thread."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()
        self._lock = threading.Lock()
        #: stage -> [first start, last end] in seconds since the clock began
        self.spans: dict[str, list[float]] = {}
        self.start = time.perf_counter()

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            stack = self._local.__dict__.setdefault("stack", [])
            parent = stack[-1][0] if stack else ""
            if parent.split(" > ")[-1] == stage:  # a stage calling itself: one stage
                return fn(*args, **kwargs)
            phase = self.phase()
            path = f"{phase} > {stage}" if phase else stage
            if stage in FIRST_PASSES:
                self._local.phase, path = stage, stage
            frame = [path, 0.0, 0.0]  # children's cpu, wall
            stack.append(frame)
            clock = time.process_time if stage in ALONE else time.thread_time
            cpu, wall = clock(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu, wall = clock() - cpu, time.perf_counter() - wall
                stack.pop()
                if stage in FIRST_PASSES:
                    self._local.phase = phase
                if stack:
                    stack[-1][1] += cpu
                    stack[-1][2] += wall
                with self._lock:
                    end = time.perf_counter() - self.start
                    span = self.spans.setdefault(stage, [end - wall, end])
                    span[0], span[1] = min(span[0], end - wall), max(span[1], end)
                    self.cpu[path] += cpu - frame[1]
                    self.wall[path] += wall - frame[2]
                    self.calls[path] += 1
        return timed

    def phase(self) -> str:
        """The first pass the calling thread works for ("" outside them)."""
        return getattr(self._local, "phase", "")

    def inherited(self, submit):
        """``ThreadPoolExecutor.submit`` whose work runs in the submitting thread's phase: the
        first passes run at once, on threads of their own (S1 co-registration beside the
        clear-sky statistics)."""
        def submitted(pool, fn, *args, **kwargs):
            phase = self.phase()

            def run(*args, **kwargs):
                outer, self._local.phase = self.phase(), phase
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._local.phase = outer
            return submit(pool, run, *args, **kwargs)
        return submitted

    @contextmanager
    def installed(self):
        """Every stage of ``STAGES`` wrapped for the duration of the block."""
        submit = ThreadPoolExecutor.submit
        ThreadPoolExecutor.submit = self.inherited(submit)
        undo = [(ThreadPoolExecutor, "submit", submit)]
        for module, name, stage in STAGES:
            owner = importlib.import_module(module)
            *parents, attr = name.split(".")
            for part in parents:
                owner = getattr(owner, part)
            real = owner.__dict__[attr] if attr in owner.__dict__ else getattr(owner, attr)
            if isinstance(real, classmethod):
                setattr(owner, attr, classmethod(self.wrap(stage, real.__func__)))
            else:
                setattr(owner, attr, self.wrap(stage, real))
            undo.append((owner, attr, real))
        try:
            yield self
        finally:
            for owner, attr, real in reversed(undo):
                setattr(owner, attr, real)


#: The stages whose span (first start to last end) the timeline shows, in the order they run.
TIMELINE = ("S1 co-registration", "shadow offset", "clear-sky statistics", "load (rest)",
            "composite", "close (flush)", "COG rewrite", "verify")
#: Seconds between two readings of the process's CPU time and memory for the timeline.
SAMPLE_S = 0.02


def resident_mb() -> float:
    """The process's resident memory (VmRSS) in MB; NaN where /proc does not say (not Linux)."""
    rss = status_bytes("VmRSS")
    return float("nan") if rss is None else rss / 2**20


@contextmanager
def cpu_samples(start: float) -> Iterator[list[tuple[float, float, float]]]:
    """(seconds since ``start``, process CPU seconds, resident MB), read every ``SAMPLE_S`` in
    the block."""
    samples: list[tuple[float, float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            times = os.times()
            samples.append((time.perf_counter() - start, times.user + times.system,
                            resident_mb()))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        done.set()
        sampler.join()


def cores_used(samples: list[tuple[float, float, float]], begin: float, end: float) -> float:
    """Process CPU seconds per wall second between ``begin`` and ``end`` (from the samples)."""
    inside = [s for s in samples if begin <= s[0] <= end]
    if len(inside) < 2:
        return float("nan")
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def peak_resident(samples: list[tuple[float, float, float]], begin: float, end: float) -> float:
    """The largest resident memory (MB) sampled between ``begin`` and ``end``, or by the
    samples on either side of a phase shorter than their interval."""
    return max((s[2] for s in samples if begin - SAMPLE_S <= s[0] <= end + SAMPLE_S),
               default=float("nan"))


def timeline(clock: StageClock, samples: list[tuple[float, float, float]], wall: float
             ) -> list[dict]:
    """Start, end, cores used and peak resident memory of each ``TIMELINE`` stage, and of the
    gaps where none of them runs (the imports before the clock are not in it)."""
    rows = [{"stage": name, "start": clock.spans[name][0], "end": clock.spans[name][1]}
            for name in TIMELINE if name in clock.spans]
    covered = 0.0
    for row in sorted(rows, key=lambda r: r["start"]):
        if row["start"] - covered > 0.05:
            rows.append({"stage": "(none of these)", "start": covered, "end": row["start"]})
        covered = max(covered, row["end"])
    if wall - covered > 0.05:
        rows.append({"stage": "(none of these)", "start": covered, "end": wall})
    return [{**r, "start": round(r["start"], 2), "end": round(r["end"], 2),
             "cores": round(cores_used(samples, r["start"], r["end"]), 2),
             "peak_mb": round(peak_resident(samples, r["start"], r["end"]), 1)}
            for r in sorted(rows, key=lambda r: r["start"])]


def profile_remove(s2: Path, s1: Path, out: Path, model: str, cprofile: Path | None = None
                   ) -> dict:
    """Stage table of one `remove` (every default, COG output) in this process."""
    import torch

    from cloudfree.pipeline.remove import remove_scene

    torch.set_num_threads(1)
    clock = StageClock()
    times, wall = os.times(), time.perf_counter()
    with ExitStack() as stack:
        samples = stack.enter_context(cpu_samples(clock.start))
        stack.enter_context(clock.installed())
        profiler = None
        if cprofile is not None:
            profiler = stack.enter_context(cProfile.Profile())
        summary = remove_scene(s2, s1, out, engine=EngineOptions(model=model),
                               outputs=OutputOptions(overwrite=True), quiet=True)
        if profiler is not None:
            profiler.dump_stats(cprofile)
    after = os.times()
    wall = time.perf_counter() - wall
    process_cpu = after.user + after.system - times.user - times.system
    stages = {k: {"cpu": round(v, 2), "wall": round(clock.wall[k], 2), "calls": clock.calls[k]}
              for k, v in sorted(clock.cpu.items(), key=lambda kv: -kv[1])}
    return {"wall": round(wall, 2), "process_cpu": round(process_cpu, 2), "stages": stages,
            "other_cpu": round(process_cpu - sum(clock.cpu.values()), 2),
            "tiles_run": summary["tiles_run"],
            "timeline": timeline(clock, samples, time.perf_counter() - clock.start)}


def print_stages(result: dict, title: str) -> None:
    """The stage table of ``profile_remove``'s result, as markdown."""
    total = result["process_cpu"]
    print(f"\n{title}: {result['wall']} s wall, {total} s CPU (all threads)\n"
          "| stage | CPU s | share of CPU | wall s (summed over threads) | calls |\n"
          "|---|---|---|---|---|")
    for name, s in result["stages"].items():
        print(f"| {name} | {s['cpu']:.2f} | {s['cpu'] / total:.0%} | {s['wall']:.2f} | "
              f"{s['calls']} |")
    print(f"| other (GDAL threads, interpreter) | {result['other_cpu']:.2f} | "
          f"{result['other_cpu'] / total:.0%} | | |")
    print("\nTimeline (seconds from the start of `remove_scene`; cores: process CPU per wall "
          "second, all threads; peak: the largest resident memory sampled)\n"
          "| stage | from | to | cores used | peak RSS (MB) |\n|---|---|---|---|---|")
    for row in result.get("timeline", []):
        print(f"| {row['stage']} | {row['start']:.2f} | {row['end']:.2f} | {row['cores']:.2f} | "
              f"{row.get('peak_mb', float('nan')):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("s2", type=Path)
    parser.add_argument("s1", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="cloudfree-fillnet")
    parser.add_argument("--cprofile", type=Path, help="also write the main thread's cProfile")
    parser.add_argument("--table", action="store_true", help="print the table, not JSON")
    args = parser.parse_args()
    result = profile_remove(args.s2, args.s1, args.out, args.model, args.cprofile)
    if args.table:
        print_stages(result, f"`remove --model {args.model}`")
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
