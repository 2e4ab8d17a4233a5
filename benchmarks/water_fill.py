"""An opaque real cloud over water: how far ``remove``'s default fill of the water under it is
from the true water, per band.

    python benchmarks/water_fill.py [--data DATA] [--json out.json]

The cloud is the brightest pixel of the bundled summer sample (``classify``'s highest cloud
score), pasted as a disk over the water of clear scenes with their S1:

- the bundled Sen1Floods11 chip, centred on its labelled water's deepest pixel, radius 14, 25,
  40 and 60 px (the larger ones cover the river's banks and the land around);
- with ``--data`` (a set of ``scripts/build_training_set.py``), every clear image with S1 whose
  water (smoothed VV below ``WATER_VV`` dB, B08 and B11 dark, opened by 2 px) holds a disk of
  6 px or more: the disk at its deepest pixel, radius 1.5 times that depth (10-40 px).

Each case runs the real ``remove_scene`` with every default on GeoTIFFs (S1 aligned); the
score per band is the relative error of the median of the output over the water pixels under
the cloud against the median of the clear scene there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]
from helpers import FLOODS, FLOODS_S1, FLOODS_S2, SUMMER_S2  # noqa: E402
from train_default import load_set, reflectance  # noqa: E402

from cloudfree.fill.local import smooth_s1  # noqa: E402
from cloudfree.io.sentinel2 import BANDS, open_sentinel2  # noqa: E402
from cloudfree.mask.classify import classify  # noqa: E402
from cloudfree.pipeline.options import split_options  # noqa: E402
from cloudfree.pipeline.remove import remove_scene  # noqa: E402

#: Bands reported.
SHOWN = ("B02", "B04", "B08", "B11", "B12")
#: Water in a pool scene: smoothed VV below this (dB), B08 and B11 below these (reflectance).
WATER_VV, WATER_B08, WATER_B11 = -17.0, 0.08, 0.06
CHIP_RADII = (14, 25, 40, 60)


def opaque_cloud() -> np.ndarray:
    """The summer sample's pixel of highest cloud score, DN [13]."""
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    score = classify(refl, valid)[1]
    return np.rint(refl[:, *np.unravel_index(np.nanargmax(score), score.shape)] * 10000)


def disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    y, x = np.ogrid[:shape[0], :shape[1]]
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius ** 2


def relative_error(folder: Path, s2: np.ndarray, s2_profile: dict, s1: np.ndarray,
                   s1_profile: dict, cloud: np.ndarray, under: np.ndarray,
                   water: np.ndarray) -> np.ndarray:
    """``remove`` on ``s2`` (DN) with ``cloud`` pasted over ``under``: the relative error [13]
    of the median over the ``water`` pixels under it."""
    paths = folder / "s2.tif", folder / "s1.tif", folder / "out.tif"
    cloudy = np.where(under[None], cloud[:, None, None], s2).astype(s2_profile["dtype"])
    with rasterio.open(paths[0], "w", **s2_profile) as ds:
        ds.write(cloudy)
    with rasterio.open(paths[1], "w", **s1_profile) as ds:
        ds.write(s1)
    remove_scene(paths[0], paths[1], paths[2], quiet=True, **split_options(
        {"s1_aligned": True, "device": "cpu", "overwrite": True}))
    with rasterio.open(paths[2]) as ds:
        out = ds.read()
    where = under & water
    want = np.median(s2[:, where].astype(np.float64), axis=1)
    return np.median(out[:, where].astype(np.float64), axis=1) / want - 1


def chip_cases() -> list[tuple[str, dict]]:
    """The Sen1Floods11 chip's cases: (name, arguments of ``relative_error``)."""
    with rasterio.open(FLOODS_S2) as ds:
        s2, s2_profile = ds.read(), ds.profile
    with rasterio.open(FLOODS_S1) as ds:
        s1, s1_profile = ds.read(), ds.profile
    with rasterio.open(FLOODS / "Spain_7370579_LabelHand.tif") as ds:
        water = ds.read(1) == 1
    depth = ndimage.distance_transform_edt(water)
    centre = np.unravel_index(depth.argmax(), depth.shape)
    return [(f"chip, r={r}", {"s2": s2, "s2_profile": s2_profile, "s1": s1,
                              "s1_profile": s1_profile, "under": disk(water.shape, centre, r),
                              "water": water}) for r in CHIP_RADII]


def pool_cases(data: Path) -> list[tuple[str, dict]]:
    """A case per clear pool image with S1 and enough water (see the module docstring)."""
    out = []
    for record in load_set(data, "train") + load_set(data, "val"):
        if record["kind"] not in ("pair", "triplet") or record["bands_missing"] \
                or not np.isfinite(record["s1"]).all():
            continue
        clear, valid = reflectance(record["s2_clear"])
        vv = smooth_s1(record["s1"])[0]
        water = ndimage.binary_opening(valid & (vv < WATER_VV) & (clear[7] < WATER_B08)
                                       & (clear[11] < WATER_B11), iterations=2)
        depth = ndimage.distance_transform_edt(water)
        if depth.max() < 6:
            continue
        centre = np.unravel_index(depth.argmax(), depth.shape)
        radius = int(np.clip(1.5 * depth.max(), 10, 40))
        h, w = water.shape
        grid = {"driver": "GTiff", "width": w, "height": h, "crs": "EPSG:32631",
                "transform": from_origin(500000, 5000000, 10, 10)}
        s2 = np.where(valid[None], np.clip(np.rint(clear * 10000), 1, 65535), 0)
        out.append((f"{record['id']}, r={radius}", {
            "s2": s2.astype("uint16"), "s1": record["s1"].astype("float32"),
            "s2_profile": {**grid, "count": 13, "dtype": "uint16", "nodata": 0},
            "s1_profile": {**grid, "count": 2, "dtype": "float32"},
            "under": disk(water.shape, centre, radius), "water": water}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="also the pool's clear scenes with water")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cloud, shown = opaque_cloud(), [BANDS.index(b) for b in SHOWN]
    cases = chip_cases() + (pool_cases(args.data) if args.data else [])
    results = {}
    print("| case | " + " | ".join(SHOWN) + " |\n|---|" + "---|" * len(SHOWN))
    with tempfile.TemporaryDirectory() as folder:
        for name, case in cases:
            error = relative_error(Path(folder), cloud=cloud, **case)
            results[name] = dict(zip(BANDS, error.tolist(), strict=True))
            print(f"| {name} | " + " | ".join(f"{error[b]:+.0%}" for b in shown) + " |",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
