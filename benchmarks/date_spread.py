"""How far a target's land is from each other date's, field by field: the spread one line per
band leaves.

    python benchmarks/date_spread.py --series SERIES --target 2018-02-25 [--size 128]

For every date of the pool's SEN12MS-CR-TS series (``reference_fill.py``, each cropped to its
central ``--size`` pixels): the share its single-date mask (score, no buffer) finds clear and
snow, its median blue, NIR, SWIR (B02, B08, B11), B10 (DN) and NDSI, and where it and the target
share at least ``MIN_SHARED`` clear pixels, the spread (1.4826 x the median absolute deviation)
of the target less one least-squares line of that date per band (B08, B11) over them: what
the temporal test's noise starts from before its local lines and the median of the nearest
dates narrow it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import reference_fill as bench

from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLEAR, SNOW, MaskParams, classify

#: Fewest pixels clear in both dates for a spread.
MIN_SHARED = 500
B02, B03, B08, B10, B11 = (BANDS.index(b) for b in ("B02", "B03", "B08", "B10", "B11"))


def spread(target: np.ndarray, other: np.ndarray) -> float:
    """1.4826 x the median absolute deviation of ``target`` less ``other``'s fitted line."""
    gain, offset = np.polyfit(other, target, 1)
    residual = target - (gain * other + offset)
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--target", required=True, help="the target's date")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dates = {bench.date_of(p.name): bench.read(bench.crop(p, args.size, Path(tmp)))[0]
                 for p in bench.series(args.series)}
    if args.target not in dates:
        parser.error(f"no date {args.target} in {args.series}")
    classes = {d: classify(x, None, MaskParams())[0] for d, x in dates.items()}
    target, target_clear = dates[args.target], classes[args.target] == CLEAR
    print(f"against {args.target}, {args.size} px\n")
    print("| date | clear | snow | B02 | B08 | B11 | B10, DN | NDSI | spread B08 | spread B11 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for day, x in dates.items():
        c = classes[day]
        ndsi = (x[B03] - x[B11]) / np.maximum(x[B03] + x[B11], 1e-6)
        both = (c == CLEAR) & target_clear
        spreads = (" | ".join(f"{spread(target[b][both], x[b][both]):.4f}" for b in (B08, B11))
                   if both.sum() >= MIN_SHARED and day != args.target else "- | -")
        print(f"| {day} | {np.mean(c == CLEAR):.2f} | {np.mean(c == SNOW):.2f} | "
              f"{np.median(x[B02]):.3f} | {np.median(x[B08]):.3f} | {np.median(x[B11]):.3f} | "
              f"{np.median(x[B10]) * 1e4:.0f} | {np.median(ndsi):.2f} | {spreads} |")


if __name__ == "__main__":
    main()
