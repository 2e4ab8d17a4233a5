"""What a user sees on the bundled sample: each bundled model's filled patches and relit shadows
against the forest around them.

    python benchmarks/sample_look.py [--models median-fill cloudfree-fillnet ...]

Runs the real ``remove_scene`` with every default on ``examples/data`` (the model aside) and
writes the mask it used. Patches: the pixels of the mask's cloud class (the cloud with its
buffer) more than ``INSIDE`` px inside it, where the fill replaces the land. Land: the pixels
the mask leaves clear, ``LAND`` px or more from any cloud. Prints, in DN, each band's mean over
the patches and the land (and the patches' excess in %), their texture (the mean absolute
difference between neighbouring pixels of the same set, B04 and B08), the NIR (B08) of the
relit shadows (the mask's shadow class) in the input and the output, the pixels as dark as
shadow in the input (CSI, (B08 + B11) / 2 as the shadow test has it, under ``DARK`` times the
scene's median) and the share of them the output brings up to that level, and the haze of the
feather: the outer ``FEATHER`` px of the region the output changed (the relit shadows aside),
by HOT (B02 - B04 / 2, ``mask.haze.hot``), against the pixels it kept as seen (the share above
their 95th percentile, and the medians' difference). The figures the docs quote of the sample's
look come from this one command.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLEAR, CLOUD, SHADOW
from cloudfree.mask.haze import hot
from cloudfree.pipeline.options import split_options
from cloudfree.pipeline.remove import remove_scene

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "data"
#: Patches: cloud pixels more than this many px inside the mask's cloud class.
INSIDE = 5
#: Land: clear pixels this many px or more from any cloud.
LAND = 20
#: The feather: the changed region's pixels within this many px of its edge (``remove``'s
#: default ``--feather`` 2, the pixel centres 0.5 px inside).
FEATHER = 2.5
#: As dark as shadow: CSI under this share of the input's median CSI.
DARK = 0.7
SHOWN = ("B02", "B03", "B04", "B08", "B11")
TEXTURE = ("B04", "B08")


def texture(band: np.ndarray, where: np.ndarray) -> float:
    """Mean absolute difference (DN) between neighbouring pixels both ``where``."""
    diffs = [np.abs(np.diff(band, axis=a))[(where[1:] & where[:-1]) if a == 0
                                            else (where[:, 1:] & where[:, :-1])]
             for a in (0, 1)]
    return float(np.concatenate(diffs).mean())


def look(model: str, folder: Path) -> None:
    """``remove`` the sample with ``model``; print its patches and shadows against the land."""
    out, mask_out = folder / f"{model}.tif", folder / f"{model}_mask.tif"
    remove_scene(SAMPLE / "s2.tif", SAMPLE / "s1.tif", out, quiet=True, **split_options(
        {"model": model, "overwrite": True, "mask_out": mask_out}))
    with rasterio.open(out) as ds:
        output = ds.read().astype(np.float64)
    with rasterio.open(SAMPLE / "s2.tif") as ds:
        seen = ds.read().astype(np.float64)
    with rasterio.open(mask_out) as ds:
        classes = ds.read(1)
    cloud = classes == CLOUD
    patches = ndimage.distance_transform_edt(cloud) > INSIDE
    land = (classes == CLEAR) & (ndimage.distance_transform_edt(~cloud) >= LAND)
    print(f"{model}: {patches.sum()} px of patches, {land.sum()} px of land")
    for name in SHOWN:
        b = BANDS.index(name)
        inside, around = output[b][patches].mean(), output[b][land].mean()
        print(f"  {name}: patches {inside:.0f}, land {around:.0f} "
              f"({100 * (inside / around - 1):+.1f} %)")
    for name in TEXTURE:
        b = BANDS.index(name)
        print(f"  texture {name}: patches {texture(output[b], patches):.0f}, "
              f"land {texture(output[b], land):.0f} DN")
    shadow, b08 = classes == SHADOW, BANDS.index("B08")
    print(f"  relit shadows ({shadow.mean():.1%}): B08 {seen[b08][shadow].mean():.0f} -> "
          f"{output[b08][shadow].mean():.0f}, land {output[b08][land].mean():.0f}")
    csi_seen, csi_out = ((a[b08] + a[BANDS.index("B11")]) / 2 for a in (seen, output))
    level = DARK * np.median(csi_seen)
    dark = csi_seen < level
    print(f"  as dark as shadow ({dark.mean():.1%}): {np.mean(csi_out[dark] >= level):.0%} "
          f"brought up to {DARK} of the scene's median CSI")
    changed = (output != seen).any(axis=0)
    feather = changed & (ndimage.distance_transform_edt(changed) < FEATHER) & ~shadow
    edge, kept = hot(output, BANDS)[feather], hot(seen, BANDS)[~changed]
    print(f"  feather ({feather.sum()} px): {np.mean(edge > np.percentile(kept, 95)):.0%} hazier "
          f"than the kept pixels' 95th percentile (HOT), median "
          f"{np.median(edge) - np.median(kept):+.0f} DN")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["median-fill", "cloudfree-fillnet",
                                                        "cloudfree-fillnet-fast"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            look(model, Path(tmp))


if __name__ == "__main__":
    main()
