"""Benchmark `cloudfree remove --reference` on CPU against the cost of reading and writing.

    python benchmarks/reference_speed.py                 # 2048^2, 3 rounds, size series 1024 2048
    python benchmarks/reference_speed.py --size 1024 --rounds 1 --series-sizes 512 1024
    python benchmarks/reference_speed.py --compare main  # the same rounds with main's remove too
    python benchmarks/reference_speed.py --size 1024 --series-sizes --compare A B C  # bisecting
    python benchmarks/reference_speed.py --size 1024 --series-sizes --mask --compare main

The scenes are the bundled five-date series (``examples/data/series/``, 256 px, 13 bands)
mirrored into size x size tiled GeoTIFFs (``remove_pipeline.mosaic``; ``--repeated``: repeated
as they are, so that the target's clouds cast their shadows, which mirrored they do not). The
target is the cloudy 2018-07-05, the references the four other dates, no S1. Each round runs,
one after the other in fresh processes:
- the floor: the four references read with rasterio, every band, window by window (one
  process), then `rio cogeo create TARGET OUT --cog-profile deflate`, the floor of
  ``remove_speed.py`` (read, decode, write a deflate COG with overviews);
- `cloudfree remove --s2 TARGET --reference R1 ... --reference R4 -o OUT` with every other
  default (the network-free fill, COG output), as users run it;
- with ``--compare REV [REV ...]``: the same `remove` as each git revision REV has it (its
  ``cloudfree/`` unpacked, as ``remove_equality.py`` does), in the order given.
With ``--mask``, `cloudfree mask TARGET --reference R1 ... --reference R4 -o OUT` instead of
`remove` (its output the mask alone), against the same floor.
The first round is an untimed warm-up (page cache, imports). The tables give each round, the
median of the rounds and the median ratio remove / floor, in wall seconds and in CPU seconds
(user and system of every thread; steadier on a shared machine); and the peak resident memory of
each `remove` (the child's ru_maxrss: `remove` runs in a fresh interpreter, so the parent's
memory at the fork is not counted beyond the interpreter's start).

Estimate for a 10980 x 10980 tile: `remove` with 2 and 4 references at each of
``--series-sizes`` (one run each, CPU seconds and wall seconds), fitted by least squares as
seconds = a + pixels x (b + c x references), then evaluated at 10980^2 with 4 and 8 references
(the series has four other dates; the eighth reference is the per-reference slope carried on).
The floor is extrapolated the same way (a + b x pixels x references read, at each size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from remove_pipeline import ROOT, mosaic, unpack

SERIES = ROOT / "examples" / "data" / "series"
TARGET = "s2_2018-07-05"
TILE = 10980
#: A small wrapper that runs a command and prints its CPU seconds and peak RSS (MB): small, so
#: that the memory the command's ru_maxrss carries from its parent's fork is only the
#: interpreter's.
MEASURE = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
           "stdout=subprocess.DEVNULL); u = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print(u.ru_utime + u.ru_stime, u.ru_maxrss / 1024)")


def timed(cmd: list[str], package: Path | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one command, which must succeed;
    ``package``: the folder holding the ``cloudfree`` it imports (default: this checkout's).
    Run through ``MEASURE``, so that ru_maxrss names this command's peak alone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(package or ROOT), os.environ.get("PYTHONPATH")]))}
    wrapped = [sys.executable, "-c", MEASURE, *cmd]
    start = time.perf_counter()
    done = subprocess.run(wrapped, check=True, capture_output=True, text=True, env=env,
                          cwd=package or ROOT)
    seconds = time.perf_counter() - start
    cpu, peak = map(float, done.stdout.split()[-2:])
    return seconds, cpu, peak


def read_all(paths: list[str]) -> None:
    """Read every band of every file, block row by block row (the floor's reading)."""
    import rasterio

    total = 0.0
    for path in paths:
        with rasterio.open(path) as ds:
            for _, window in ds.block_windows(1):
                total += float(ds.read(window=window)[:, 0, 0].sum())
    print(total)


def make_scenes(folder: Path, size: int, mirror: bool = True) -> tuple[Path, list[Path]]:
    """The target and the four references, mirrored to size x size (``mirror=False``:
    repeated, so that the target's clouds cast their shadows, ``remove_pipeline.mosaic``)."""
    dates = sorted(SERIES.glob("s2_*.tif"))
    scenes = {p.stem: mosaic(p, folder / f"{p.stem}_{size}.tif", size, mirror=mirror)
              for p in dates}
    target = scenes.pop(TARGET)
    return target, list(scenes.values())


def remove_command(target: Path, refs: list[Path], out: Path, mask: bool = False) -> list[str]:
    """`cloudfree remove` of the target with the references (``mask``: `cloudfree mask`)."""
    scene = [str(target)] if mask else ["--s2", str(target)]
    return [sys.executable, "-m", "cloudfree", "mask" if mask else "remove", *scene,
            *(a for r in refs for a in ("--reference", str(r))), "-o", str(out), "--quiet",
            "--overwrite"]


def floor(target: Path, refs: list[Path], out: Path) -> tuple[float, float, float]:
    """Wall and CPU seconds and peak RSS of reading the references (if any) and writing the
    target as a COG."""
    rio = shutil.which("rio")
    if rio is None:
        sys.exit("rio is not on PATH: pip install rio-cogeo")
    out.unlink(missing_ok=True)
    reading = timed([sys.executable, __file__, "--read", *map(str, refs)]) if refs else (0, 0, 0)
    writing = timed([rio, "cogeo", "create", str(target), str(out), "--cog-profile",
                     "deflate", "--quiet"])
    return reading[0] + writing[0], reading[1] + writing[1], max(reading[2], writing[2])


def rounds(folder: Path, size: int, n: int, compare: list[Path], mask: bool = False,
           mirror: bool = True) -> list[list[tuple]]:
    """[floor, remove, (remove at each REV)] (wall, CPU, peak) per round, after a warm-up
    (``mask``: `mask` instead of `remove`; ``mirror``: as ``make_scenes``)."""
    target, refs = make_scenes(folder, size, mirror)
    results = []
    for i in range(n + 1):
        row = [floor(target, refs, folder / "floor.tif"),
               timed(remove_command(target, refs, folder / "out.tif", mask))]
        row += [timed(remove_command(target, refs, folder / "out.tif", mask), package)
                for package in compare]
        if i:
            results.append(row)
        print(f"  round {i or 'warm-up'}: " + ", ".join(f"{w:.1f} s ({c:.1f} CPU s)"
                                                      for w, c, _ in row),
              file=sys.stderr, flush=True)
    return results


def size_series(folder: Path, sizes: list[int], mask: bool = False, mirror: bool = True
                ) -> list[dict]:
    """One floor and one `remove` (``mask``: `mask`) with 2 and 4 references at each size."""
    rows = []
    for size in sizes:
        target, refs = make_scenes(folder, size, mirror)
        fl = floor(target, refs, folder / "floor.tif")
        for count in (2, 4):
            wall, cpu, peak = timed(remove_command(target, refs[:count], folder / "out.tif",
                                                   mask))
            rows.append({"size": size, "references": count, "wall": wall, "cpu": cpu,
                         "peak": peak, "floor": fl[0], "floor_cpu": fl[1]})
            print(f"  {size}^2, {count} references: {wall:.1f} s", file=sys.stderr, flush=True)
        for path in (target, *refs):
            path.unlink()
    return rows


def extrapolate(rows: list[dict], key: str, references: int) -> float:
    """``key`` seconds at 10980^2 with ``references``, from seconds = a + px (b + c refs)."""
    px = np.array([r["size"] ** 2 for r in rows], float)
    k = np.array([r["references"] for r in rows], float)
    design = np.stack([np.ones_like(px), px, px * k], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.array([r[key] for r in rows]), rcond=None)
    return float(coef @ [1, TILE**2, TILE**2 * references])


def floor_estimate(rows: list[dict], key: str, references: int) -> float:
    """The floor at 10980^2: a + b x pixels x (references + 1) (files read or written)."""
    seen = {r["size"]: r[key] for r in rows}
    px = np.array([s**2 * 5 for s in seen], float)
    coef = np.polyfit(px, np.array(list(seen.values())), 1)
    if coef[0] <= 0:  # sizes too small to tell the reading from the start: in proportion
        largest = max(seen)
        return seen[largest] * TILE**2 * (references + 1) / (largest**2 * 5)
    return float(np.polyval(coef, TILE**2 * (references + 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--series-sizes", type=int, nargs="*", default=[1024, 2048],
                        help="sizes of the 10980^2 estimate (none: skip it)")
    parser.add_argument("--compare", metavar="REV", nargs="+", default=[],
                        help="also time remove as each git revision REV has it")
    parser.add_argument("--mask", action="store_true",
                        help="time `mask --reference` instead of `remove --reference`")
    parser.add_argument("--repeated", action="store_true",
                        help="the series repeated, not mirrored: its clouds cast shadows")
    parser.add_argument("--read", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        read_all(args.read)
        return
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        compare = [unpack(rev, folder / f"compare{i}") for i, rev in enumerate(args.compare)]
        mirror = not args.repeated
        timings = rounds(folder, args.size, args.rounds, compare, args.mask, mirror)
        series = size_series(folder, args.series_sizes, args.mask, mirror) \
            if args.series_sizes else []
    command = "mask" if args.mask else "remove"
    names = ["floor", f"{command} --reference x4"] + [f"{command} at {rev}"
                                                      for rev in args.compare]
    laid = "repeated" if args.repeated else "mirrored"
    print(f"{args.size}^2 x 13 bands, the bundled series {laid}: target {TARGET}, four "
          "references, no S1; floor = rasterio read of the references + rio cogeo create of "
          f"the target; {usable_cpus()} CPU cores")
    for unit, k in (("wall seconds", 0), ("CPU seconds", 1)):
        print(f"\n{unit}\n| round | {' | '.join(names)} | "
              f"{' | '.join(f'{n} / floor' for n in names[1:])} |\n"
              f"|{'---|' * (2 * len(names))}")
        for i, row in enumerate(timings, 1):
            print(f"| {i} | {' | '.join(f'{t[k]:.2f}' for t in row)} | "
                  f"{' | '.join(f'{t[k] / row[0][k]:.2f}x' for t in row[1:])} |")
        median = [statistics.median(r[j][k] for r in timings) for j in range(len(names))]
        ratio = [statistics.median(r[j][k] / r[0][k] for r in timings)
                 for j in range(1, len(names))]
        print(f"| median | {' | '.join(f'{t:.2f}' for t in median)} | "
              f"{' | '.join(f'**{r:.2f}x**' for r in ratio)} |")
    peaks = [statistics.median(r[j][2] for r in timings) for j in range(1, len(names))]
    cells = ", ".join(f"{n} {p:.0f}" for n, p in zip(names[1:], peaks, strict=True))
    print(f"\npeak RSS (MB, median): {cells}")
    if series:
        print("\nsize series (one run each)\n| scene | references | seconds | CPU seconds | "
              "peak RSS (MB) | floor (s) |\n|---|---|---|---|---|---|")
        for r in series:
            print(f"| {r['size']}^2 | {r['references']} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                  f"{r['peak']:.0f} | {r['floor']:.1f} |")
        print(f"\nestimate for {TILE} x {TILE} (seconds = a + pixels x (b + c x references), "
              f"least squares over the series)\n| references | {command} (s) | {command} CPU (s) | "
              "floor (s) | ratio |\n|---|---|---|---|---|")
        for count in (4, 8):
            wall = extrapolate(series, "wall", count)
            fl = floor_estimate(series, "floor", count)
            print(f"| {count} | {wall:.0f} | {extrapolate(series, 'cpu', count):.0f} | "
                  f"{fl:.0f} | {wall / fl:.1f}x |")


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main()
