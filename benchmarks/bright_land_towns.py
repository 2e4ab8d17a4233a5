"""The bright-land test on towns of real products and on real clouds: what its rule for the
texture of roofs, whatever their parallax, takes.

    python benchmarks/bright_land_towns.py --towns DIR PAIRS... [--half tuning|held-out]

DIR holds cloud-free L1C GeoTIFFs of towns with a SPLIT.tsv (``scripts/extract_oscd_scenes.py``:
the Onera Satellite Change Detection towns); PAIRS are folders of real cloudy / cloud-free pairs
(``scripts/extract_mask_pairs.py``), whose cloud is where the cloudy date is brighter than its
twin (``mask_quality.py``'s truth). On both, for the pixels the score calls cloud (on the
pairs, those of the truth): the mean over them of the parallax index of their square's cloud
(``bright_land.bright_land``'s), and the share of what the test keeps as cloud without its rule
for roofs' texture (``ROOF_*``) that it leaves clear with it. ``--half`` takes one half of each
by-scene split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from unittest import mock

import numpy as np
import rasterio
from mask_quality import halves, load_pairs

from cloudfree.core.boxes import box_mean
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask import bright_land as land
from cloudfree.mask import classify as module


def scored(reflectance: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The bands by name, the score and the pixels it calls cloud, as ``classify`` has them
    before the bright-land test."""
    b = {n: reflectance[i] for i, n in enumerate(BANDS)}
    score = module.raw_score(b)
    score[~module.hot_positive(b)] = 0
    score[module._ndsi(b["B03"], b["B11"]) >= module.MaskParams().ndsi_threshold] = 0
    return b, score, score > module.MaskParams().threshold


def measure(reflectance: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """[pixels, kept as cloud without the rule, left clear by it, parallax] summed over the
    pixels the score calls cloud (and ``where``)."""
    b, score, cloud = scored(reflectance)
    valid = np.ones_like(cloud)
    with mock.patch.object(land, "ROOF_TEXTURE", np.inf):
        before = land.bright_land(b, cloud, score, valid)
    after = land.bright_land(b, cloud, score, valid)
    parallax = box_mean(land.parallax_index(b), cloud, land.LAND_BOX)
    inside = cloud if where is None else cloud & where
    kept = inside & ~before
    return np.array([inside.sum(), kept.sum(), (kept & after).sum(), parallax[inside].sum()])


def report(label: str, totals: np.ndarray) -> None:
    pixels, kept, cleared, parallax = totals
    print(f"{label}: {int(pixels)} px scored as cloud, mean parallax index "
          f"{parallax / max(pixels, 1):.2f}; kept as cloud without the rule {int(kept)} px, "
          f"left clear by it {100 * cleared / max(kept, 1):.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towns", type=Path, required=True)
    parser.add_argument("pairs", type=Path, nargs="+")
    parser.add_argument("--half", choices=("tuning", "held-out"))
    args = parser.parse_args()
    split = dict(line.split("\t") for line in
                 (args.towns / "SPLIT.tsv").read_text().splitlines()[1:] if line)
    towns = np.zeros(4)
    for name, half in sorted(split.items()):
        if args.half and half != args.half:
            continue
        with rasterio.open(args.towns / f"{name}.tif") as src:
            found = measure(src.read().astype(np.float32) / 10000)
        report(name, found)
        towns += found
    pairs = load_pairs(args.pairs)
    if args.half:
        pairs = halves(pairs)[args.half == "held-out"]
    clouds = sum((measure(p.cloudy, p.truth) for p in pairs), np.zeros(4))
    print()
    report(f"towns of {args.towns}", towns)
    report(f"cloud of the {len(pairs)} pairs", clouds)


if __name__ == "__main__":
    main()
