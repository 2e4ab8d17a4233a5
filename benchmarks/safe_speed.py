"""`cloudfree remove` and `cloudfree mask` on Sentinel-2 products as they ship (`.SAFE`,
JPEG2000), against the same commands at another git revision: CPU, wall, peak memory, and
whether the outputs are the same.

    python benchmarks/safe_speed.py                    # remove, L1C and L2A, 2048^2, against main
    python benchmarks/safe_speed.py --commands mask --shadow     # mask, and mask --shadow
    python benchmarks/safe_speed.py --commands reference --levels L1C --rounds 1
    python benchmarks/safe_speed.py --levels L1C --rounds 5 --shadow --ref HEAD~2
    python benchmarks/safe_speed.py --commands mask reference --decodes   # decodes, not time

The scene is `remove_speed.py`'s mosaic of the bundled sample (13 bands, S1 beside it, about
44 % cloud), written as a `.SAFE` folder of lossless JPEG2000 by `scripts/make_safe_mosaic.py`
(L1C, and L2A with its SCL). Commands (``--commands``, each also with ``--shadow`` when given):

- ``remove``: `cloudfree remove --s2 SAFE --s1 S1 -o OUT` with every other default;
- ``mask``: `cloudfree mask SAFE -o OUT --score SCORE`;
- ``reference``: `cloudfree remove --s2 TARGET --reference REFERENCE -o OUT`, on two dates of
  the bundled series (`examples/data/series`: 5 July 2018, with cumulus, filled from 25 June
  2018), each mosaicked to the size and written as a `.SAFE` named by its date (no S1: the
  series has none).

Each round runs the command first with this checkout's `cloudfree`, then with REV's (its
``cloudfree/`` unpacked, as `remove_equality.py` does), in fresh processes, after one untimed
round that warms the page cache. Printed per level and command: the medians and every round
of the CPU seconds (user and system of the command and every thread and child it waited for;
a loaded machine changes them less than the wall seconds), the wall seconds and the peak RSS,
and the largest difference between the two outputs (DN; for `mask`, the mask's classes and
the score's values, NaN equal to NaN) over every round (0: identical).

With ``--decodes``, each command runs once per version under `count_decodes.py` instead, and
the table gives, per input, its reads and how many times over each band read was read.
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
from remove_pipeline import ROOT, SAMPLE, make_scene, mosaic, unpack

#: The reference case's target and reference dates, in `examples/data/series`.
SERIES_TARGET, SERIES_REFERENCE = "2018-07-05", "2018-06-25"


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


def largest_difference(a: Path, b: Path) -> float:
    """The largest difference between two rasters (NaN equal to NaN, NaN against a number
    infinite), read block by block (so that this process stays small: a child's peak RSS
    counts its parent's at the fork)."""
    worst = 0.0
    with rasterio.open(a) as x, rasterio.open(b) as y:
        for _, window in x.block_windows(1):
            a_, b_ = (d.read(window=window).astype(np.float64) for d in (x, y))
            same = (a_ == b_) | (np.isnan(a_) & np.isnan(b_))
            diff = np.where(same, 0.0, np.nan_to_num(np.abs(a_ - b_), nan=np.inf))
            worst = max(worst, float(diff.max()))
    return worst


def decodes(cmd: list[str], package: Path) -> list[str]:
    """`count_decodes.py`'s lines for one command run with the ``cloudfree`` of ``package``."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "count_decodes.py"), *cmd],
                          cwd=package, env={**os.environ, "PYTHONPATH": str(package)},
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    return [line.removeprefix("decodes ") for line in proc.stderr.splitlines()
            if line.startswith("decodes ")]


def make_safe(stack: Path, safe: Path, level: str) -> Path:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_safe_mosaic.py"), str(stack),
                    str(safe), "--level", level], check=True)
    return safe


def commands(name: str, level: str, folder: Path, size: int, stack: Path, s1: Path
             ) -> tuple[list[str], int]:
    """The command line of ``name`` on its products of ``level`` (made here), writing into
    OUT_STEM; and how many outputs it writes (OUT_STEM.tif, OUT_STEM_score.tif)."""
    safe = folder / f"S2_{level}_{size}.SAFE"
    if name != "reference" and not safe.exists():
        make_safe(stack, safe, level)
    if name == "remove":
        return ["remove", "--s2", str(safe), "--s1", str(s1), "-o", "OUT_STEM.tif"], 1
    if name == "mask":
        return ["mask", str(safe), "-o", "OUT_STEM.tif", "--score", "OUT_STEM_score.tif"], 2
    dates = []
    for day in (SERIES_TARGET, SERIES_REFERENCE):
        stamp = day.replace("-", "") + "T103021"
        tif = folder / f"series_{day}_{size}.tif"
        if not tif.exists():
            mosaic(SAMPLE / "series" / f"s2_{day}.tif", tif, size)
        dated = folder / f"S2A_MSI{level}_{stamp}_N0209_R108_T31PCR_{stamp}.SAFE"
        dates.append(dated if dated.exists() else make_safe(tif, dated, level))
    return ["remove", "--s2", str(dates[0]), "--reference", str(dates[1]), "-o",
            "OUT_STEM.tif"], 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--size", type=int, default=2048, help="mosaic size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", nargs="+", choices=("L1C", "L2A"), default=["L1C", "L2A"])
    parser.add_argument("--commands", nargs="+", choices=("remove", "mask", "reference"),
                        default=["remove"], help="what to time (see above)")
    parser.add_argument("--shadow", action="store_true", help="also time each with --shadow")
    parser.add_argument("--decodes", action="store_true",
                        help="count each input's decoding instead of timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stack, s1 = make_scene(folder, args.size)
        trees = {"this checkout": ROOT, args.ref: unpack(args.ref, folder / "ref")}
        print("| product | command | cloudfree | input: reads, times over |\n|---|---|---|---|"
              if args.decodes else
              "| product | command | cloudfree | CPU s (median) | CPU s (rounds) | wall s "
              "(median) | wall s (rounds) | peak RSS MB (median) | largest difference |\n"
              "|---|---|---|---|---|---|---|---|---|")
        for level in args.levels:
            for name in args.commands:
                line, count = commands(name, level, folder, args.size, stack, s1)
                for extra in [[], ["--shadow"]][:1 + args.shadow]:
                    shown = " ".join([line[0], *extra] + (["--reference"] if name == "reference"
                                                          else []))
                    if args.decodes:
                        for tree, package in trees.items():
                            cmd = [a.replace("OUT_STEM", str(folder / "out")) for a in line]
                            counts = decodes([*cmd, *extra, "--quiet", "--overwrite"], package)
                            print(f"| {level} `.SAFE` {args.size}^2 | `{shown}` | {tree} | "
                                  f"{'; '.join(counts)} |", flush=True)
                        continue
                    figures: dict[str, list[tuple[float, float, float]]] = {t: [] for t in trees}
                    worst = [0.0] * count
                    for i in range(args.rounds + 1):
                        stems = []
                        for tree, package in trees.items():
                            stem = str(folder / f"out_{len(stems)}")
                            cmd = [a.replace("OUT_STEM", stem) for a in line]
                            timing = run([sys.executable, "-m", "cloudfree", *cmd, *extra,
                                          "--quiet", "--overwrite"], package)
                            if i:  # the first round warms the page cache
                                figures[tree].append(timing)
                            stems.append(stem)
                        for k, suffix in enumerate([".tif", "_score.tif"][:count]):
                            worst[k] = max(worst[k], largest_difference(
                                *(Path(s + suffix) for s in stems)))
                    for tree, rows in figures.items():
                        wall, cpu, rss = zip(*rows, strict=True)
                        print(f"| {level} `.SAFE` {args.size}^2 | `{shown}` | {tree} | "
                              f"{statistics.median(cpu):.1f} | "
                              f"{', '.join(f'{c:.1f}' for c in cpu)} | "
                              f"{statistics.median(wall):.1f} | "
                              f"{', '.join(f'{w:.1f}' for w in wall)} | "
                              f"{statistics.median(rss):.0f} | "
                              f"{', '.join(f'{w:g}' for w in worst)} |", flush=True)


if __name__ == "__main__":
    main()
