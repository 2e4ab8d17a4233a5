"""Benchmark `cloudfree mask` throughput against s2cloudless, in one run on the same machine.

    python benchmarks/mask_speed.py                  # 4096^2 scene, all cores
    python benchmarks/mask_speed.py --size 8192 --threads 1

The scene is a mosaic of the real SEN12MS-CR summer patch (mirrored, about a third cumulus),
written as a 13-band uint16 tiled deflate GeoTIFF. `cloudfree mask` runs on the whole scene
(default options, best of ``--repeats``); s2cloudless (its README's settings: threshold 0.4,
average_over 4, dilation_size 2, all 13 bands) runs on a ``--s2cloudless-size`` crop of the same
scene, since it is about a hundred times slower; both are reported in Mpx/s.
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


def time_mask(scene: Path, out: Path, threads: int, repeats: int) -> float:
    """Best wall time of `mask_scene` with default options."""
    from cloudfree.mask_scene import mask_scene

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mask_scene(scene, out, overwrite=True, quiet=True, threads=threads)
        times.append(time.perf_counter() - start)
    return min(times)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--s2cloudless-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scene = mosaic(SAMPLE / "s2.tif", Path(tmp) / "scene.tif", args.size)
        ours = time_mask(scene, Path(tmp) / "mask.tif", args.threads, args.repeats)
        theirs = time_s2cloudless(scene, args.s2cloudless_size)
    ours_rate = args.size**2 / ours / 1e6
    theirs_rate = args.s2cloudless_size**2 / theirs / 1e6
    print(f"{os.cpu_count()} cores, --threads {args.threads}")
    print("| | pixels | seconds | Mpx/s |\n|---|---|---|---|")
    print(f"| cloudfree mask | {args.size}^2 | {ours:.2f} | {ours_rate:.2f} |")
    print(f"| s2cloudless | {args.s2cloudless_size}^2 | {theirs:.2f} | {theirs_rate:.3f} |")
    print(f"cloudfree mask / s2cloudless: {ours_rate / theirs_rate:.0f}x")


if __name__ == "__main__":
    main()
