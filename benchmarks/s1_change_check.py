"""The S1 change check of `remove --reference --reference-s1` on a real two-date S1/S2 place.

    python scripts/extract_coregister_pairs.py -o PAIRS --rico-hdl CLONE_OF_kai-tub_rico-hdl
    python benchmarks/s1_change_check.py --pairs PAIRS

The pool's SSL4EO-S12 place (``../shared/docs/DATA.md``): the target is the L1C of 4 June 2020
with the S1 of 7 June (descending), the reference the L1C of 23 August with the S1 of
3 September (ascending). Both S1 go onto the target's grid as ``remove`` puts them
(``coregister``), and the check of ``references.py`` runs on them as ``remove`` runs it, bias
(the scene-wide median difference) included. Reported: the share of the place it flags as is
(real change between June and September, plus what the two passes' geometries leave), and the
share of a 60 x 60 px square it flags when the reference's S1 there is changed by a known amount
(a flood lowers backscatter by 10 dB or more, a harvest changes it by a few dB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cloudfree.coregister.s1_to_s2 import open_s1_on_grid
from cloudfree.dates.references import (
    CHANGE_BOX,
    box_db,
    change_threshold_db,
    changed,
    difference_histogram,
    histogram_median,
)
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import open_sentinel2

TARGET, REFERENCE = "ssl4eo_0000200_20200607", "ssl4eo_0000200_20200903"
SQUARE = (100, 100, 60)  # row, column, size
CHANGES_DB = (-10.0, -6.0, -3.0, 3.0, 6.0)


def on_grid(s1_path: Path, s2) -> np.ndarray:
    s1, _, _ = open_s1_on_grid(s1_path, s2, InputOptions(), quiet=True)
    try:
        return s1.read()
    finally:
        s1.close()


def ndvi(s2) -> np.ndarray:
    refl, _ = s2.read(bands=("B04", "B08"))
    return (refl[1] - refl[0]) / np.maximum(refl[1] + refl[0], 1e-6)


def ndvi_of(path: Path, grid) -> np.ndarray:
    """NDVI of the reference date (its S2 is on the same SSL4EO grid as the target's)."""
    with open_sentinel2(path) as s2:
        assert (s2.width, s2.height, s2.transform) == (grid.width, grid.height, grid.transform)
        return ndvi(s2)


def flagged(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    bias = histogram_median(difference_histogram(box_db(reference) - box_db(target)))
    return changed(target, reference, bias, change_threshold_db())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, required=True)
    args = parser.parse_args()
    with open_sentinel2(args.pairs / TARGET / "s2.tif") as s2:
        target = on_grid(args.pairs / TARGET / "s1.tif", s2)
        reference = on_grid(args.pairs / REFERENCE / "s1.tif", s2)
        ndvi_change = np.abs(ndvi(s2) - ndvi_of(args.pairs / REFERENCE / "s2.tif", s2))
    inner = (slice(CHANGE_BOX, -CHANGE_BOX), slice(CHANGE_BOX, -CHANGE_BOX))
    as_is = flagged(target, reference)
    print(f"threshold {change_threshold_db():.2f} dB (boxcar {CHANGE_BOX} px)\n")
    print("| reference S1 | flagged: whole place | flagged: the square |")
    print("|---|---|---|")
    r, c, n = SQUARE
    square = np.zeros(as_is.shape, bool)
    square[r : r + n, c : c + n] = True
    print(f"| as acquired (3 Sep vs 7 Jun) | {as_is[inner].mean():.1%} | "
          f"{as_is[square].mean():.1%} |")
    for change in CHANGES_DB:
        moved = reference.copy()
        moved[:, square] += change
        result = flagged(target, moved)
        print(f"| square {change:+.0f} dB | {result[inner].mean():.1%} | "
              f"{result[square].mean():.1%} |")
    pixels = np.zeros(as_is.shape, bool)
    pixels[inner] = True
    print(f"\nAs acquired, the mean |NDVI change| from 4 June to 23 August is "
          f"{ndvi_change[pixels & as_is].mean():.3f} where flagged and "
          f"{ndvi_change[pixels & ~as_is].mean():.3f} elsewhere.")


if __name__ == "__main__":
    main()
