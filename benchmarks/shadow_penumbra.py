"""What `mask --shadow --reference` adds as a shadow's penumbra: darkened land or dark land.

    python benchmarks/shadow_penumbra.py examples/data/series/s2_2018-07-05.tif \
        examples/data/series/s2_2018-06-10.tif ... [--png out.png]

Masks the target (the first date) with ``--shadow`` and the other dates as references twice:
as `mask` does (the shadows the dates find grow by ``temporal_mask.SHADOW_GROW`` px into
neighbours darkened by half the threshold) and with no growth. For the shadow both find, the
pixels only the first adds (its penumbra) and the clear land, prints the target's NIR (B08)
against the references' median NIR at the same pixel: land every date shows dark keeps a ratio
near 1, a shadow's penumbra is darker than the dates. ``--png``: the target's RGB beside it
with the shadow both find outlined in green and the added pixels in magenta, upscaled 3x.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from cloudfree.dates import temporal_mask
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLEAR, SHADOW, MaskParams
from cloudfree.pipeline.mask import mask_scene

#: Clear land counted "far" lies more than this many px from any flagged pixel.
FAR = 6


def nir(path: Path) -> np.ndarray:
    with open_sentinel2(path) as s2:
        refl, _ = s2.read(bands=["B08"])
    return refl[0]


def shadow_mask(target: Path, references: list[Path], grow: int, out: Path) -> np.ndarray:
    """The classes of `mask --shadow --reference` with the penumbra grown by ``grow`` px."""
    kept = temporal_mask.SHADOW_GROW
    temporal_mask.SHADOW_GROW = grow
    try:
        mask_scene(target, out, MaskParams(shadow=True), references=references, cog=False,
                   overwrite=True, quiet=True)
    finally:
        temporal_mask.SHADOW_GROW = kept
    with rasterio.open(out) as src:
        return src.read(1)


def write_png(path: Path, target: Path, core: np.ndarray, added: np.ndarray) -> None:
    with open_sentinel2(target) as s2:
        rgb, _ = s2.read(bands=["B04", "B03", "B02"])
    low, high = np.percentile(rgb, [2, 98])
    image = np.clip((rgb - low) / (high - low) * 255, 0, 255).astype(np.uint8)
    marked = image.copy()
    for where, colour in ((core & ~ndimage.binary_erosion(core), (0, 255, 0)),
                          (added, (255, 0, 255))):
        marked[:, where] = np.array(colour, np.uint8)[:, None]
    both = np.repeat(np.repeat(np.concatenate([image, marked], axis=2), 3, 1), 3, 2)
    with rasterio.open(path, "w", driver="PNG", width=both.shape[2], height=both.shape[1],
                       count=3, dtype="uint8") as dst:
        dst.write(both)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dates", type=Path, nargs="+", help="the target, then its references")
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    if len(args.dates) < 2:
        parser.error("give the target and at least one reference")
    target, references = args.dates[0], args.dates[1:]
    with tempfile.TemporaryDirectory() as tmp:
        grown = shadow_mask(target, references, temporal_mask.SHADOW_GROW, Path(tmp) / "g.tif")
        bare = shadow_mask(target, references, 0, Path(tmp) / "b.tif")
    ratio = nir(target) / np.maximum(np.median([nir(r) for r in references], axis=0), 1e-4)
    core, added = bare == SHADOW, (grown == SHADOW) & (bare != SHADOW)
    clear = grown == CLEAR
    far = clear & ~ndimage.binary_dilation(grown != CLEAR, iterations=FAR)
    print(f"{target.name}, {len(references)} references: shadow {core.mean():.1%} without the "
          f"penumbra, {(grown == SHADOW).mean():.1%} with it ({temporal_mask.SHADOW_GROW} px)")
    print("| pixels | share | NIR / references' median NIR: p10 / median / p90 |")
    print("|---|---|---|")
    for name, where in (("shadow without the penumbra", core), ("penumbra (added)", added),
                        (f"clear, over {FAR} px from any flag", far), ("clear", clear)):
        low, mid, high = np.percentile(ratio[where], [10, 50, 90])
        print(f"| {name} | {where.mean():.1%} | {low:.2f} / {mid:.2f} / {high:.2f} |")
    if args.png:
        write_png(args.png, target, core, added)


if __name__ == "__main__":
    main()
