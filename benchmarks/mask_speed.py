"""Benchmark `cloudfree mask` throughput against s2cloudless, in one run on the same machine.

    python benchmarks/mask_speed.py                  # 4096^2 scene
    python benchmarks/mask_speed.py --size 8192 --threads 1 4

The scene is a mosaic of the real SEN12MS-CR summer patch (mirrored, about a third cumulus),
written as a 13-band uint16 tiled deflate GeoTIFF (pixel interleaved). `cloudfree mask` runs on
the whole scene with default options for each ``--threads`` count (default: 1 and all usable
cores; best of ``--repeats``, wall time and the process's CPU time); s2cloudless (its README's
settings: threshold 0.4, average_over 4, dilation_size 2, all 13 bands) runs once on a
``--s2cloudless-size`` crop of the same scene, reading included, since it is about a hundred
times slower. All in Mpx/s, in one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from remove_pipeline import SAMPLE, mosaic


def time_mask(scene: Path, out: Path, threads: int, repeats: int) -> tuple[float, float]:
    """Best wall time of `mask_scene` with default options, and the CPU time of that run."""
    from cloudfree.mask_scene import mask_scene

    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        mask_scene(scene, out, overwrite=True, quiet=True, threads=threads)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def time_s2cloudless(scene: Path, size: int) -> float:
    """Wall time of s2cloudless on the top-left ``size`` x ``size`` crop, reading included."""
    from s2cloudless import S2PixelCloudDetector

    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2,
                                    all_bands=True)
    start = time.perf_counter()
    with rasterio.open(scene) as ds:
        dn = ds.read(window=Window(0, 0, size, size))
    refl = np.moveaxis(dn, 0, -1)[None].astype(np.float32) / 10000
    detector.get_cloud_masks(refl)
    return time.perf_counter() - start


def main() -> None:
    from cloudfree.threads import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--s2cloudless-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, usable_cores()}))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = mosaic(SAMPLE / "s2.tif", Path(tmp) / "scene.tif", args.size)
        ours = {n: time_mask(scene, Path(tmp) / "mask.tif", n, args.repeats)
                for n in args.threads}
        theirs = time_s2cloudless(scene, args.s2cloudless_size)
    theirs_rate = args.s2cloudless_size**2 / theirs / 1e6
    print(f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    print("| | pixels | wall s | CPU s | Mpx/s | vs s2cloudless |\n|---|---|---|---|---|---|")
    for n, (wall, cpu) in ours.items():
        rate = args.size**2 / wall / 1e6
        print(f"| cloudfree mask --threads {n} | {args.size}^2 | {wall:.2f} | {cpu:.2f} | "
              f"{rate:.2f} | {rate / theirs_rate:.0f}x |")
    print(f"| s2cloudless | {args.s2cloudless_size}^2 | {theirs:.2f} | - | {theirs_rate:.3f} | "
          "1x |")


if __name__ == "__main__":
    main()
