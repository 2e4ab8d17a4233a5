"""List the pool's cloud-free images of bright bare land (sand, bare soil, dense roofs) that tune.

    python scripts/bright_scenes.py [--data DATA] [--pairs PAIRS] [--dsen2 DSEN2] [--oscd OSCD]
        [--share 0.2] [--tsv out.tsv]

Every cloud-free L1C image of the pool outside a held-out half is scanned: the tuning half of
the training set ``DATA`` (``scripts/build_training_set.py``; the split of
``benchmarks/clear_scenes.py``), the cloud-free twins of the tuning pairs under ``PAIRS``
(``scripts/extract_mask_pairs.py``; the split of ``benchmarks/mask_quality.py``), the crops of
``scripts/extract_dsen2_scenes.py`` (no split: they tune) and the tuning towns of
``scripts/extract_oscd_scenes.py``. A pixel is bright bare land where B02 exceeds 0.12 (bright
at 490 nm, as a cloud), NDVI = (B08 - B04) / (B08 + B04) is under 0.15 (little vegetation) and
B11 exceeds 0.1 (not water, which is dark at 1610 nm). The images where such land covers
``--share`` or more of the valid pixels are listed, with the share and the mean B02 of that
land, first to stdout and with ``--tsv`` to a file (source, image, share, mean B02).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from clear_scenes import held_out, scenes  # noqa: E402
from mask_quality import HELD_OUT, scene  # noqa: E402

from cloudfree.io.sentinel2 import BANDS  # noqa: E402

#: Bright bare land: B02 above, NDVI under, B11 above (reflectance).
BLUE, NDVI, SWIR = 0.12, 0.15, 0.1


def bare_share(reflectance: np.ndarray, bands: list[str]) -> tuple[float, float]:
    """Share of the valid pixels of ``reflectance`` [C, H, W] (bands ``bands``) that are bright
    bare land, and the mean B02 there (NaN where there is none)."""
    b = {name: reflectance[i] for i, name in enumerate(bands)}
    valid = np.isfinite(reflectance).all(axis=0) & (reflectance > 0).all(axis=0)
    ndvi = (b["B08"] - b["B04"]) / np.maximum(b["B08"] + b["B04"], 1e-4)
    bare = valid & (b["B02"] > BLUE) & (ndvi < NDVI) & (b["B11"] > SWIR)
    share = float(bare.sum() / max(valid.sum(), 1))
    return share, float(b["B02"][bare].mean()) if bare.any() else float("nan")


def read(path: Path) -> tuple[np.ndarray, list[str]]:
    """A GeoTIFF's reflectance and band names (the 13 L1C bands where it names none)."""
    with rasterio.open(path) as src:
        names = list(src.descriptions) if all(src.descriptions) else list(BANDS)
        return src.read().astype(np.float32) / 10000, names


def images(args: argparse.Namespace) -> Iterator[tuple[str, str, np.ndarray, list[str]]]:
    """(source, image, reflectance, bands) of every cloud-free image outside a held-out half."""
    if args.data:
        for name, record in scenes(args.data):
            if not held_out(record):
                with np.load(args.data / f"{record['id']}.npz") as z:
                    yield "trainset", name, z["s2_clear"].astype(np.float32) / 10000, list(BANDS)
    if args.pairs:
        for twin in sorted(args.pairs.glob("*/s2/*.tif")):
            if scene(twin.stem.replace("_s2_", "_s2_cloudy_")) not in HELD_OUT:
                yield "pair twin", f"{twin.parts[-3]}/{twin.stem}", *read(twin)
    if args.dsen2:
        for path in sorted(args.dsen2.glob("*.tif")):
            yield "dsen2", path.stem, *read(path)
    if args.oscd:
        split = dict(line.split("\t") for line in
                     (args.oscd / "SPLIT.tsv").read_text().splitlines()[1:] if line)
        for path in sorted(args.oscd.glob("*.tif")):
            if split.get(path.stem) == "tuning":
                yield "oscd", path.stem, *read(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--pairs", type=Path)
    parser.add_argument("--dsen2", type=Path)
    parser.add_argument("--oscd", type=Path)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--tsv", type=Path)
    args = parser.parse_args()
    rows, scanned = [], 0
    for source, name, reflectance, bands in images(args):
        scanned += 1
        share, blue = bare_share(reflectance, bands)
        if share >= args.share:
            rows.append((source, name, share, blue))
            print(f"{source:10s} {name:48s} bright bare land {100 * share:5.1f} %, B02 {blue:.3f}",
                  flush=True)
    print(f"{len(rows)} of {scanned} images with {100 * args.share:.0f} % or more bright bare land")
    if args.tsv:
        args.tsv.write_text("source\timage\tshare\tb02\n" + "".join(
            f"{s}\t{n}\t{share:.4f}\t{blue:.4f}\n" for s, n, share, blue in rows))


if __name__ == "__main__":
    main()
