"""Where the chunks of `cloudfree remove --reference` wait for each other.

    python benchmarks/reference_waits.py                # 2048^2, mirrored
    python benchmarks/reference_waits.py --size 1024 --repeated

One `remove` runs in this process on ``reference_speed.py``'s scene (the bundled series, target
2018-07-05, the four other dates as references, no S1, every other default), with its threads
as the command runs them (the similar pixels' search on every core). The chunks' loads, their
turns at the dates' stages (``SceneRemoval._dates_turn``: the time from asking to being let
through) and their fill from the other dates are timed on the wall clock; printed: the chunk
phase (from the first chunk's load to the last one's end) in wall and process CPU seconds and
the cores it kept busy, the waits for a turn summed over the loaders, and the fills' wall
seconds summed (more than the phase's where they overlap). Run each version of the code in
turn (``PYTHONPATH``) to compare them; the machine's load matters, as the cores the phase gets
are shared with every other job.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from reference_speed import make_scenes

from cloudfree.dates.fill import ReferenceFill
from cloudfree.pipeline import remove
from cloudfree.pipeline.options import OutputOptions, ReferenceOptions


def cpu() -> float:
    """The process's CPU seconds (user and system, every thread)."""
    times = os.times()
    return times.user + times.system


class Spans:
    """Wall spans (start, end) and the process CPU at each, per kind, over every thread."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.spans: dict[str, list[tuple[float, float, float, float]]] = {}
        self._lock = threading.Lock()

    def note(self, kind: str, start: float, start_cpu: float) -> None:
        with self._lock:
            self.spans.setdefault(kind, []).append(
                (start - self.start, time.perf_counter() - self.start, start_cpu, cpu()))

    def timed(self, kind: str, fn):
        def wrapped(*args, **kwargs):
            start, start_cpu = time.perf_counter(), cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                self.note(kind, start, start_cpu)
        return wrapped


def run(size: int, mirror: bool) -> dict:
    """The chunk phase's figures of one `remove --reference` x4."""
    spans = Spans()
    turn = remove.SceneRemoval._dates_turn

    @contextmanager
    def waited(self, turns, chunk):
        start, start_cpu = time.perf_counter(), cpu()
        with turn(self, turns, chunk):
            spans.note("wait", start, start_cpu)
            yield

    # the fill as the pipeline calls it: planned then filled, or (older code) estimated
    fill = "fill" if hasattr(ReferenceFill, "plan") else "estimate"
    patched = [(remove.SceneRemoval, "load"), (remove.SceneRemoval, "_dates_turn"),
               (ReferenceFill, fill)]
    saved = [getattr(owner, name) for owner, name in patched]
    remove.SceneRemoval.load = spans.timed("load", remove.SceneRemoval.load)
    remove.SceneRemoval._dates_turn = waited
    setattr(ReferenceFill, fill, spans.timed("fill", getattr(ReferenceFill, fill)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            target, refs = make_scenes(Path(tmp), size, mirror)
            spans.start, start_cpu = time.perf_counter(), cpu()
            remove.remove_scene(target, None, Path(tmp) / "out.tif",
                                dates=ReferenceOptions(references=refs),
                                outputs=OutputOptions(overwrite=True), quiet=True)
            wall, run_cpu = time.perf_counter() - spans.start, cpu() - start_cpu
    finally:
        for (owner, name), original in zip(patched, saved, strict=True):
            setattr(owner, name, original)
    loads = spans.spans["load"]
    first, last = min(loads), max(loads, key=lambda s: s[1])
    phase, phase_cpu = last[1] - first[0], last[3] - first[2]
    return {"wall": wall, "cpu": run_cpu, "phase": phase, "phase_cpu": phase_cpu,
            "cores": phase_cpu / phase, "chunks": len(loads),
            "waits": sum(e - s for s, e, _, _ in spans.spans.get("wait", [])),
            "fills": sum(e - s for s, e, _, _ in spans.spans.get("fill", [])),
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeated", action="store_true",
                        help="the series repeated, not mirrored: its clouds cast shadows")
    args = parser.parse_args()
    r = run(args.size, not args.repeated)
    print(f"`remove --reference` x4, {args.size}^2: {r['wall']:.2f} s wall, "
          f"{r['cpu']:.2f} CPU s; chunk phase ({r['chunks']} chunks) {r['phase']:.2f} s wall, "
          f"{r['phase_cpu']:.2f} CPU s, {r['cores']:.2f} cores; waiting for a turn "
          f"{r['waits']:.2f} s; the fills {r['fills']:.2f} s wall summed; load average at the "
          f"end {r['load']:.2f}")


if __name__ == "__main__":
    main()
