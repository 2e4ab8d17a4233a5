"""Peak memory of `remove --reference` against the scene size and the number of references.

    python benchmarks/reference_memory.py --series /work/data/21/ts [--sizes 1024 2048]
        [--counts 2 16] [--temporal]

Mosaics (``remove_pipeline.mosaic``) of the pool's SEN12MS-CR-TS series: the target is the
clear date of 24 August 2018 with the cumulus of 6 January pasted (as in
``benchmarks/reference_fill.py``), the references the first clear dates of the series. Each
run is ``remove --reference ... --model median-fill`` (no S1) in a fresh process; its peak
resident memory is Linux's VmHWM (``remove_pipeline.peak_rss_mb``). 0 references is plain
``remove --model median-fill``, the baseline the references add to.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_fill import CLOUD, MaskParams, classes, read, series  # noqa: E402
from remove_pipeline import mosaic, peak_rss_mb  # noqa: E402

TARGET, DONOR = 19, 0  # ImgNo of the series
#: The references, nearest first in this order (the dates of the series other than the target
#: and the donor; the first eight are clear).
REFERENCES = (3, 9, 12, 13, 14, 16, 17, 18, 20, 22, 23, 24, 1, 4, 5, 6)


def child(target: str, output: str, temporal: bool, references: list[str]) -> None:
    from cloudfree.remove_scene import remove_scene

    remove_scene(target, None, output, references=references, quiet=True, overwrite=True,
                 model=None if references else "median-fill",
                 temporal_mask=temporal and bool(references))
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def run(target: Path, refs: list[Path], out: Path, temporal: bool) -> dict:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--child", str(target), str(out),
                             str(int(temporal)), *map(str, refs)], check=True,
                            capture_output=True, text=True)
    return {"seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(json.loads(result.stdout)["peak_rss_mb"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, default=Path("/work/data/21/ts"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 1, 2, 8])
    parser.add_argument("--temporal", action="store_true",
                        help="remove --reference --temporal-mask (the dates judge the clouds)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "1", args.child[3:])
        return
    dates = series(args.series)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _, truth_dn, profile = read(dates[TARGET])
        donor_refl, donor_dn, _ = read(dates[DONOR])
        cloudy = tmp / "cloudy.tif"
        with rasterio.open(cloudy, "w", **profile) as dst:
            dst.write(np.where(classes(donor_refl, MaskParams()) == CLOUD, donor_dn, truth_dn))
        print("| scene | references | seconds | seconds per reference | peak RSS (MB) |\n"
              "|---|---|---|---|---|")
        for size in args.sizes:
            target = mosaic(cloudy, tmp / f"t{size}.tif", size)
            refs = [mosaic(dates[i], tmp / f"r{i}_{size}.tif", size)
                    for i in REFERENCES[: max(args.counts)]]
            base = None
            for count in args.counts:
                r = run(target, refs[:count], tmp / "out.tif", args.temporal)
                base = r["seconds"] if base is None else base
                per = "-" if not count or count == args.counts[0] else \
                    f"{(r['seconds'] - base) / (count - args.counts[0]):.1f}"
                print(f"| {size}^2 | {count} | {r['seconds']} | {per} | {r['peak_rss_mb']} |",
                      flush=True)
            for path in (target, *refs):
                path.unlink()


if __name__ == "__main__":
    main()
