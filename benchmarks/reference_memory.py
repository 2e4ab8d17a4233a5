"""Peak memory of `remove --reference` against the scene size and the number of references.

    python benchmarks/reference_memory.py --series SERIES [--sizes 1024 2048]
        [--counts 2 16] [--temporal]

Mosaics (``remove_pipeline.mosaic``) of the pool's SEN12MS-CR-TS series: the target is the
clear date of 24 August 2018 with the cumulus of 6 January pasted (as in
``benchmarks/reference_fill.py``), the references the first clear dates of the series. Each
run is ``remove --reference ... --model median-fill`` (no S1) in a fresh process; its peak
resident memory is Linux's VmHWM (``remove_pipeline.peak_rss_mb``), its CPU seconds the
user and system time of all its threads (steadier than the wall clock on a shared machine).
Seconds per reference are the growth from the smallest count given to each larger one, divided
by the references added. 0 references is plain ``remove --model median-fill``, the baseline the
references add to.
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
import rasterio
from reference_fill import CLOUD, MaskParams, classes, read
from reference_fill import series as reference_fill_series
from remove_pipeline import mosaic, peak_rss_mb

from cloudfree.pipeline.options import EngineOptions, OutputOptions, ReferenceOptions

TARGET, DONOR = 19, 0  # ImgNo of the series
#: The references, nearest first in this order (the dates of the series other than the target
#: and the donor; the first eight are clear).
REFERENCES = (3, 9, 12, 13, 14, 16, 17, 18, 20, 22, 23, 24, 1, 4, 5, 6)


def child(target: str, output: str, temporal: bool, references: list[str]) -> None:
    from cloudfree.pipeline.remove import remove_scene

    remove_scene(target, None, output,
                 engine=EngineOptions(model=None if references else "median-fill"),
                 dates=ReferenceOptions(references=references,
                                        temporal_mask=temporal and bool(references)),
                 outputs=OutputOptions(overwrite=True), quiet=True)
    cpu = os.times()
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "cpu_seconds": cpu.user + cpu.system}))


def run(target: Path, refs: list[Path], out: Path, temporal: bool) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--child", str(target), str(out),
                             str(int(temporal)), *map(str, refs)], check=True,
                            capture_output=True, text=True)
    child = json.loads(result.stdout)
    return {"seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(child["cpu_seconds"], 1),
            "peak_rss_mb": round(child["peak_rss_mb"], 1)}


def scenes(series: Path, folder: Path, size: int, count: int) -> tuple[Path, list[Path]]:
    """The target and its first ``count`` references, size x size mosaics written in
    ``folder``."""
    dates = reference_fill_series(series)
    _, truth_dn, profile = read(dates[TARGET])
    donor_refl, donor_dn, _ = read(dates[DONOR])
    cloudy = folder / "cloudy.tif"
    with rasterio.open(cloudy, "w", **profile) as dst:
        dst.write(np.where(classes(donor_refl, MaskParams()) == CLOUD, donor_dn, truth_dn))
    target = mosaic(cloudy, folder / f"t{size}.tif", size)
    return target, [mosaic(dates[i], folder / f"r{i}_{size}.tif", size)
                    for i in REFERENCES[:count]]


def per_reference(row: dict, first: dict, key: str) -> str:
    """The growth of ``key`` from the ``first`` row per reference added ('-' for none)."""
    added = row["count"] - first["count"]
    return f"{(row[key] - first[key]) / added:.1f}" if added else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 1, 2, 8])
    parser.add_argument("--temporal", action="store_true",
                        help="remove --reference --temporal-mask (the dates judge the clouds)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "1", args.child[3:])
        return
    if args.series is None:
        parser.error("the following arguments are required: --series")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("| scene | references | seconds | seconds per reference | CPU seconds | "
              "CPU seconds per reference | peak RSS (MB) |\n|---|---|---|---|---|---|---|")
        for size in args.sizes:
            target, refs = scenes(args.series, tmp, size, max(args.counts))
            first = None
            for count in args.counts:
                r = {"count": count, **run(target, refs[:count], tmp / "out.tif", args.temporal)}
                first = first or r
                print(f"| {size}^2 | {count} | {r['seconds']} | "
                      f"{per_reference(r, first, 'seconds')} | {r['cpu_seconds']} | "
                      f"{per_reference(r, first, 'cpu_seconds')} | {r['peak_rss_mb']} |",
                      flush=True)
            for path in (target, *refs):
                path.unlink()


if __name__ == "__main__":
    main()
