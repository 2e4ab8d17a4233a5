"""One date: what the land under thin cloud, haze and shadow still shows is restored, and only
the rest is filled.

Given the local fill of a window's masked region (``expected``, ``local_fill.py``), shadows are
relit (``shadow.py``) and thin cloud and haze taken off (``haze.py``); the restored land is
blended with the fill by the haze step's weight, so restoring hands over smoothly to filling
where the cloud turns opaque. The restored land is first held within what the clear land around
makes plausible (``land_bounds``): each band no darker than the clear land's darkest, B04 no
lower than makes it bluer than the clear land's bluest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.haze import HazeParams, dehaze, land_bounds, unveil
from cloudfree.mask.shadow import relight


@dataclass(frozen=True)
class RestoreParams:
    """Which of the two restorations run (None / False: that part is filled)."""

    haze: HazeParams | None = HazeParams()
    shadows: bool = True


def restore(reflectance: np.ndarray, expected: np.ndarray, region: np.ndarray,
            shadow: np.ndarray, clear: np.ndarray, params: RestoreParams = RestoreParams(),
            bands: tuple[str, ...] = BANDS) -> tuple[np.ndarray, np.ndarray]:
    """The base of the ``region`` [H, W] pixels: restored land where it shows, ``expected``
    elsewhere, written over ``expected`` (float32) on the region and returned; and the share
    [H, W] of each that is filled (1: all fill; 0 off the region). Off the region ``expected``
    is left as it is: the local fill's output holds the observed pixels there.
    ``shadow``: the region's shadow pixels; ``clear``: the clear land. Haze needs B02 and B04
    (HOT) among ``bands``; without them, thin cloud is filled.
    Shadows are relit as they are given: ``shadow.tied_shadows`` tells which are."""
    out = expected
    filled = region.astype(np.float32)
    cloud = region
    if params.shadows and shadow.any():
        # the haze step below reads ``expected`` on the cloud pixels only, not on the shadow's
        out[:, shadow] = relight(reflectance, expected, shadow)[:, shadow]
        filled[shadow] = 0
        cloud = region & ~shadow
    hazy = params.haze is not None and {"B02", "B04"} <= set(bands)
    veil = dehaze(reflectance, expected, cloud, clear, params.haze, bands) if hazy else None
    if veil is not None:  # over the box of the thin cloud, its pixels
        (rows, cols), t, weight = veil
        where = cloud[rows, cols]
        keep = 1 - weight
        seen = reflectance[:, rows, cols]
        darkest, bluest = land_bounds(reflectance, clear, bands)
        # B04 no lower than B02 / the bluest ratio: the red a white veil's unmixing took too much
        # of is what made the land bluer than any clear land
        blue = bands.index("B02")
        reddest = np.maximum(unveil(seen[blue, None], t, ("B02",))[0], darkest[blue]) / bluest
        for band, fill in enumerate(out[:, rows, cols]):  # a band at a time: small temporaries
            restored = unveil(seen[band:band + 1], t, bands[band:band + 1])[0]
            np.maximum(restored, darkest[band], out=restored)
            if bands[band] == "B04":
                np.maximum(restored, reddest, out=restored)
            restored *= weight  # the blend weight * land + (1 - weight) * expected, in place
            restored += keep * fill
            np.copyto(fill, restored, where=where)
        filled[rows, cols] = np.where(where, keep, filled[rows, cols])
    return out, filled
