"""Benchmark Cloud Optimized GeoTIFF outputs: the extra time of the COG step, and peak memory.

    python benchmarks/cog_output.py                       # 4096^2 timing; 1024^2, 8192^2 memory
    python benchmarks/cog_output.py --size 2048 --memory-sizes 1024 2048

Scenes are the mosaics of `remove_pipeline.py` (the real sample, mirrored). Timing, in one
process: `remove` (bundled model, raw prediction, as in that benchmark) and `mask`, each after a
warm-up run, written with --no-cog and then with the default COG output (validated with
rio-cogeo); the extra time is the difference, as a share of the --no-cog command (small outputs
such as masks are streamed uncompressed when a COG follows, so the whole command compares).
Memory: peak RSS of `remove` with the default COG output, each size in a fresh process, and of
the COG step alone (`cloudfree.output.cog.make_cog` on a 13-band mosaic of that size, in GDAL's
bounded scene cache as `remove` runs it), each size in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from remove_pipeline import (
    make_scene,
    peak_memory,
    peak_rss_mb,
    print_memory_table,
    run_once,
)


def timed(step, *args) -> float:
    start = time.perf_counter()
    step(*args)
    return time.perf_counter() - start


def extra_time(folder: Path, args) -> list[dict]:
    """remove and mask at ``args.size``, each with --no-cog and then with its COG output."""
    from rio_cogeo.cogeo import cog_validate

    from cloudfree.pipeline.mask import mask_scene

    s2, s1 = make_scene(folder, args.size)
    out, mask = folder / "remove.tif", folder / "mask.tif"
    rows = []
    for name, run, path in (
            ("remove", lambda cog: run_once(s2, s1, out, args, cog=cog), out),
            ("mask", lambda cog: mask_scene(s2, mask, cog=cog, overwrite=True, quiet=True),
             mask)):
        run(False)  # warm-up: model load, first-call costs
        plain = timed(run, False)
        with_cog = timed(run, True)
        rows.append({"command": name, "seconds": round(plain, 1), "cog_s": round(with_cog, 1),
                     "share": with_cog / plain - 1,
                     "valid": cog_validate(str(path), quiet=True)[0],
                     "mb": round(path.stat().st_size / 2**20)})
    for path in (s2, s1):
        path.unlink()
    return rows


def cog_memory(folder: Path, size: int) -> dict:
    """Peak RSS of the COG step alone on a size x size 13-band scene, in a fresh process."""
    from cloudfree.io.sentinel2 import BANDS

    scene = make_scene(folder, size)[0]
    out = subprocess.run([sys.executable, __file__, "--cog-child", str(scene)], check=True,
                         capture_output=True, text=True).stdout
    for path in folder.glob(f"s[12]_{size}.tif"):
        path.unlink()
    return {"size": size, "bands": len(BANDS), **json.loads(out)}


def cog_child(path: Path) -> None:
    from cloudfree.io.rasters import scene_io_env
    from cloudfree.output.cog import AVERAGE, make_cog
    from cloudfree.output.geotiff import geotiff_profile

    with rasterio.open(path) as src:
        grid = {k: src.profile[k] for k in ("width", "height", "crs", "transform", "count",
                                             "dtype", "nodata")}
    with scene_io_env():
        seconds = timed(lambda: make_cog(path, AVERAGE, geotiff_profile(**grid)))
    print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[1024, 8192])
    parser.add_argument("--model", default="cloudfree-fillnet")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cog-memory-sizes", type=int, nargs="*", default=[1024, 8192])
    parser.add_argument("--cog-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cog_child:
        cog_child(args.cog_child)
        return
    args.tile, args.checkpoint, args.precision = None, None, "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = extra_time(folder, args)
        print(f"\n{args.size}^2, 13 bands: the command with --no-cog, then with COG output")
        print("| command | --no-cog (s) | COG output (s) | extra | output (MB) | valid COG |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['command']} | {r['seconds']} | {r['cog_s']} | {r['share']:.1%} | "
                  f"{r['mb']} | {r['valid']} |")
        memory = [peak_memory(folder, size, args) for size in args.memory_sizes]
        cog_rows = [cog_memory(folder, size) for size in args.cog_memory_sizes]
    if memory:
        print_memory_table(memory, "peak RSS of remove with COG output (fresh process per size)")
    if cog_rows:
        print_memory_table(cog_rows, "peak RSS of the COG step alone (fresh process per size)")

if __name__ == "__main__":
    main()
