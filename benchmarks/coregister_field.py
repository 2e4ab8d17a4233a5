"""Shift field on mosaics of real pairs with a known smooth S1 deformation: accuracy and memory.

For each size, tests/deformed_mosaic.py writes a mosaic of the real Sen1Floods11 and SEN12MS-CR
winter pairs whose S1 is displaced by a known quadratic field (up to about 4 px); ``coregister``
runs in a fresh process, and the fitted field is compared with the applied one on a 25 x 25
grid over the whole scene (corners included, where the fit extrapolates beyond the outermost
window centres). GDAL's block cache is capped at ``--gdal-cache-mb`` (64 MB) in the child, so
that its peak memory (VmHWM) shows the tool's own use: with the default cap (256 MB,
io.rasters.GDAL_CACHE_MB) the cache adds up to that much on any scene whose files exceed it.

    python benchmarks/coregister_field.py [--sizes 1536 4608 7680]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from deformed_mosaic import field_error, write_mosaic  # noqa: E402
from remove_pipeline import peak_rss_mb  # noqa: E402

from cloudfree.coregister.s1_to_s2 import coregister_file  # noqa: E402


def run(folder: Path, size: int, cache_mb: int) -> dict:
    s1, s2 = write_mosaic(folder, size)
    out = folder / "out.tif"
    start = time.perf_counter()
    child = subprocess.run([sys.executable, __file__, "--child", str(s1), str(s2), str(out)],
                           check=True, capture_output=True, text=True,
                           env=os.environ | {"GDAL_CACHEMAX": str(cache_mb * 2**20)}).stdout
    seconds = time.perf_counter() - start
    report = json.loads(child)
    error = field_error(out, size)
    for path in (s1, s2, out):
        path.unlink()
    return {"size": size, "windows": report["windows"], "inliers": report["inlier_windows"],
            "degree": report["field"]["degree"], "rmse": float(np.sqrt(np.mean(error ** 2))),
            "max": float(error.max()), "seconds": seconds, "peak_rss_mb": report["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1536, 4608, 7680])
    parser.add_argument("--gdal-cache-mb", type=int, default=64)
    parser.add_argument("--child", nargs=3, type=Path, metavar=("S1", "S2", "OUT"))
    args = parser.parse_args()
    if args.child:
        s1, s2, out = args.child
        report = coregister_file(s1, s2, out, quiet=True)
        report["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(report))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            rows.append(run(Path(folder), size, args.gdal_cache_mb))
    print(f"GDAL block cache {args.gdal_cache_mb} MB\n")
    print("| scene px | windows (inliers) | degree | field RMSE px | field max px | "
          "coregister s | peak RSS MB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['windows']} ({r['inliers']}) | {r['degree']} | "
              f"{r['rmse']:.3f} | {r['max']:.3f} | {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    ratios = ", ".join(f"{r['size']} px {r['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x"
                       for r in rows[1:])
    print(f"\npeak RSS relative to {rows[0]['size']} px: {ratios}")


if __name__ == "__main__":
    main()
