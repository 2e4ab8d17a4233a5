"""What a network's `cloudfree remove` runs before its first chunk, this checkout against another
git revision.

    python benchmarks/network_start.py --compare main               # 4096^2, GLF-CR small
    python benchmarks/network_start.py --compare main --size 1024 --rounds 4

Each run is `remove` on the mirrored mosaic of the bundled sample (``remove_pipeline.py``'s,
S1 taken as aligned, the output as users get it) with an untrained network (seeded weights) on
the CPU, in a fresh process on each revision's package (``git archive``), the two alternating
round by round, PyTorch loaded before the clock starts. Each stops when the main thread is
given its first loaded chunk, before the network runs on it. Printed per run: the wall
seconds from the call of ``remove_scene`` to then ("start to first chunk", as
``remove_pipeline.py`` reports it), the process's CPU seconds meanwhile, and the wall seconds
of the first passes' parts (the shadow thresholds, the shadow offset, the clear-sky statistics
where the model takes them); then the medians of each. The CPU seconds are the steadier figure
on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remove_pipeline import ROOT, make_scene, unpack, untrained_checkpoint

#: The first passes' parts timed, by their names in ``cloudfree.pipeline.remove``.
PARTS = ("scene_shadow_thresholds", "scene_shadow_offset", "scene_fill_spectrum")


class FirstChunk(Exception):
    """Raised where the network would run on the first chunk: the run ends there."""


def child(s2: str, s1: str, out: str, checkpoint: str) -> None:
    """One `remove` in this process, stopped at its first chunk; prints its figures as JSON."""
    from cloudfree.pipeline.options import split_options

    importlib.import_module("torch")  # loaded before the clock starts, as in a real run's
    removal = importlib.import_module("cloudfree.pipeline.remove")
    seconds: dict[str, float] = {}

    def timed(name: str):
        fn = getattr(removal, name)

        def run(*args, **kwargs):
            begun = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - begun
        return run

    for name in PARTS:
        setattr(removal, name, timed(name))

    def first(self, loaded):
        seconds["start to first chunk"] = time.perf_counter() - started
        seconds["CPU s"] = time.process_time() - cpu
        raise FirstChunk

    removal.SceneRemoval.predict = first
    options = split_options({"s1_aligned": True, "overwrite": True, "device": "cpu",
                             "checkpoint": checkpoint})
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.suppress(FirstChunk):
        removal.remove_scene(s2, s1, out, quiet=True, **options)
    print(json.dumps(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default="main", metavar="REV",
                        help="git revision to run against, alternating (default: main)")
    parser.add_argument("--size", type=int, default=4096, help="mosaic size")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--untrained", default="glfcr:small", metavar="ARCH:PRESET")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s2, s1 = make_scene(folder, args.size)
        checkpoint = untrained_checkpoint(folder, *args.untrained.split(":"))
        packages = {"this checkout": ROOT, args.compare: unpack(args.compare, folder / "ref")}
        runs: dict[str, list[dict]] = {name: [] for name in packages}
        print(f"| round | code | start to first chunk (s) | CPU s | "
              f"{' | '.join(PARTS)} |\n|---|---|---|---|{'---|' * len(PARTS)}")
        for round_ in range(1, args.rounds + 1):
            for name, package in packages.items():
                env = {**os.environ, "PYTHONPATH": str(package)}
                line = subprocess.run(
                    [sys.executable, __file__, "--child", str(s2), str(s1),
                     str(folder / "out.tif"), str(checkpoint)], check=True, env=env,
                    cwd=folder, capture_output=True, text=True).stdout.splitlines()[-1]
                run = json.loads(line)
                runs[name].append(run)
                parts = " | ".join(f"{run[p]:.2f}" if p in run else "-" for p in PARTS)
                print(f"| {round_} | {name} | {run['start to first chunk']:.2f} | "
                      f"{run['CPU s']:.2f} | {parts} |", flush=True)
    print(f"\nmedians over {args.rounds} rounds, {args.size}^2, untrained {args.untrained}:")
    for name, done in runs.items():
        print(f"{name}: start to first chunk "
              f"{statistics.median(r['start to first chunk'] for r in done):.2f} s, "
              f"{statistics.median(r['CPU s'] for r in done):.2f} CPU s")


if __name__ == "__main__":
    main()
