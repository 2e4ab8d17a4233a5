"""CPU of the S1 co-registration's shift estimates, this checkout against another git revision.

    python benchmarks/coregister_speed.py                  # 2048^2, 3 rounds, against main
    python benchmarks/coregister_speed.py --ref HEAD~3 --size 4096 --rounds 5

Two scenes of ``--size`` px: the mirrored mosaic of the bundled sample that `remove_speed.py`
times (13 bands, S1 on the same grid; its windows find no reliable shift), and the mosaic of
real pairs whose S1 carries a known smooth deformation (`coregister_field.py`'s, S2 bands B02,
B03, B04, B08; every window reliable). Each round estimates every window of both scenes
(``coregister.estimate_window``, as `remove` and `coregister` do, one window after the other on
one thread) with this checkout and with revision REF (its ``cloudfree/`` unpacked, as
`remove_equality.py` does), each in a fresh process, one after the other. Printed per round:
the windows' CPU seconds (the thread's time, which the load of a shared machine disturbs less
than the seconds on the clock) and their ratio; then the largest difference between the two
revisions' estimates (shift, significance, halves), which a change made for speed must keep
far below the estimator's own error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from remove_pipeline import make_scene, unpack  # noqa: E402

from cloudfree.cli.launch import OPENBLAS_THREADS  # noqa: E402

os.environ.setdefault("OPENBLAS_NUM_THREADS", OPENBLAS_THREADS)  # as the command runs


def estimates(s2_path: Path, s1_path: Path) -> dict:
    """Every window's estimate and the windows' CPU seconds on this thread."""
    from cloudfree.coregister.s1_to_s2 import (
        Grid,
        choose_resampling,
        estimate_window,
        estimation_windows,
    )
    from cloudfree.io.rasters import scene_io_env
    from cloudfree.io.sentinel1 import open_sentinel1
    from cloudfree.io.sentinel2 import open_sentinel2

    rows, cpu = [], 0.0
    with scene_io_env(), open_sentinel2(s2_path) as s2, open_sentinel1(s1_path) as s1:
        grid = Grid.of(s2)
        resampling = choose_resampling(s1, grid)
        for window in estimation_windows(grid.width, grid.height):
            start = time.thread_time()
            e = estimate_window(s1, s2, window, 10.0, resampling, 1)
            cpu += time.thread_time() - start
            halves = e.evidence.halves if e.evidence and e.evidence.halves else {}
            rows.append([e.dx, e.dy, e.significance, *(v for h in halves.values() for v in h)])
    return {"cpu": cpu, "windows": len(rows), "estimates": rows}


def child(package: Path, scenes: list[tuple[Path, Path]]) -> list[dict]:
    """``estimates`` of each scene in a fresh process importing ``package``."""
    done = subprocess.run([sys.executable, __file__, "--child",
                           json.dumps([[str(p) for p in pair] for pair in scenes])],
                          env={**os.environ, "PYTHONPATH": str(package)}, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def largest_difference(a: list[dict], b: list[dict]) -> dict[str, float]:
    """Largest absolute difference of shift (px), significance and halves (px) over windows."""
    out = {"shift px": 0.0, "significance": 0.0, "halves px": 0.0}
    for scene_a, scene_b in zip(a, b, strict=True):
        for x, y in zip(scene_a["estimates"], scene_b["estimates"], strict=True):
            out["shift px"] = max(out["shift px"], abs(x[0] - y[0]), abs(x[1] - y[1]))
            out["significance"] = max(out["significance"], abs(x[2] - y[2]))
            if len(x) == len(y) > 3:
                out["halves px"] = max(out["halves px"],
                                       *(abs(u - v) for u, v in zip(x[3:], y[3:], strict=True)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps([estimates(Path(s2), Path(s1)) for s2, s1 in json.loads(args.child)]))
        return
    from deformed_mosaic import write_mosaic

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        deformed = folder / "deformed"
        deformed.mkdir()
        s1_deformed, s2_deformed = write_mosaic(deformed, args.size)
        scenes = [make_scene(folder, args.size), (s2_deformed, s1_deformed)]
        other = unpack(args.ref, folder / "ref")
        print(f"shift estimates on {args.size}^2 (the sample's mosaic, then the deformed pairs'): "
              f"CPU seconds of the windows on one thread\n\n| round | this checkout | {args.ref} "
              f"| ratio |\n|---|---|---|---|")
        ratios = []
        for i in range(1, args.rounds + 1):
            mine, theirs = child(ROOT, scenes), child(other, scenes)
            cpu = [sum(s["cpu"] for s in run) for run in (mine, theirs)]
            ratios.append(cpu[0] / cpu[1])
            print(f"| {i} | {cpu[0]:.2f} | {cpu[1]:.2f} | {ratios[-1]:.2f} |")
        windows = sum(s["windows"] for s in mine)
        print(f"| median | | | **{statistics.median(ratios):.2f}** |\n\n{windows} windows; "
              f"largest difference of the estimates: " + ", ".join(
                  f"{k} {v:.2g}" for k, v in largest_difference(mine, theirs).items()))


if __name__ == "__main__":
    main()
