"""`cloudfree remove` on Sentinel-2 products as they ship (`.SAFE`, JPEG2000), against the same
command at another git revision: CPU, wall, peak memory, and whether the outputs are the same.

    python benchmarks/safe_speed.py                    # L1C and L2A, 2048^2, against main, 3 rounds
    python benchmarks/safe_speed.py --levels L1C --rounds 5 --shadow --ref HEAD~2

The scene is `remove_speed.py`'s mosaic of the bundled sample (13 bands, S1 beside it, about
44 % cloud), written as a `.SAFE` folder of lossless JPEG2000 by `scripts/make_safe_mosaic.py`
(L1C, and L2A with its SCL). Each round runs `cloudfree remove --s2 SAFE --s1 S1 -o OUT` with
every other default (with ``--shadow``, also `remove --shadow`), first with this checkout's
`cloudfree`, then with REV's (its ``cloudfree/`` unpacked, as `remove_equality.py` does), in
fresh processes, after one untimed round that warms the page cache. Printed per level and
command: the medians and every round of the CPU seconds (user and system, all threads; a
loaded machine changes them less than the wall seconds), the wall seconds and the peak RSS,
and the largest difference in DN between the two outputs over every round (0: identical).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from remove_pipeline import ROOT, make_scene, unpack


def run(cmd: list[str], package: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one command, which must succeed, run
    with the ``cloudfree`` of ``package`` (from there: ``python -m`` looks there first)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=package, env={**os.environ, "PYTHONPATH": str(package)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, use = os.wait4(proc.pid, 0)  # this child's own CPU and peak memory
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read().decode()}")
    proc.stderr.close()
    return wall, use.ru_utime + use.ru_stime, use.ru_maxrss / 1024


def largest_difference(a: Path, b: Path) -> int:
    """The largest difference in DN between two rasters, read block by block (so that this
    process stays small: a child's peak RSS counts its parent's at the fork)."""
    worst = 0
    with rasterio.open(a) as x, rasterio.open(b) as y:
        for _, window in x.block_windows(1):
            diff = x.read(window=window).astype(np.int32) - y.read(window=window)
            worst = max(worst, int(np.abs(diff).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--size", type=int, default=2048, help="mosaic size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", nargs="+", choices=("L1C", "L2A"), default=["L1C", "L2A"])
    parser.add_argument("--shadow", action="store_true", help="also time `remove --shadow`")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stack, s1 = make_scene(folder, args.size)
        trees = {"this checkout": ROOT, args.ref: unpack(args.ref, folder / "ref")}
        print("| product | command | cloudfree | CPU s (median) | CPU s (rounds) | wall s "
              "(median) | wall s (rounds) | peak RSS MB (median) | largest difference (DN) |\n"
              "|---|---|---|---|---|---|---|---|---|")
        for level in args.levels:
            safe = folder / f"S2_{level}_{args.size}.SAFE"
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_safe_mosaic.py"),
                            str(stack), str(safe), "--level", level], check=True)
            for extra in [[], ["--shadow"]][:1 + args.shadow]:
                figures: dict[str, list[tuple[float, float, float]]] = {t: [] for t in trees}
                worst = 0
                for i in range(args.rounds + 1):
                    outputs = []
                    for name, package in trees.items():
                        out = folder / f"out_{len(outputs)}.tif"
                        timing = run([sys.executable, "-m", "cloudfree", "remove", "--s2",
                                      str(safe), "--s1", str(s1), "-o", str(out), *extra,
                                      "--quiet", "--overwrite"], package)
                        if i:  # the first round warms the page cache
                            figures[name].append(timing)
                        outputs.append(out)
                    worst = max(worst, largest_difference(*outputs))
                command = " ".join(["remove", *extra])
                for name, rows in figures.items():
                    wall, cpu, rss = zip(*rows, strict=True)
                    print(f"| {level} `.SAFE` {args.size}^2 | `{command}` | {name} | "
                          f"{statistics.median(cpu):.1f} | {', '.join(f'{c:.1f}' for c in cpu)} | "
                          f"{statistics.median(wall):.1f} | "
                          f"{', '.join(f'{w:.1f}' for w in wall)} | "
                          f"{statistics.median(rss):.0f} | {worst} |")


if __name__ == "__main__":
    main()
