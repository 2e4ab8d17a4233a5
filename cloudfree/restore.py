"""One date: what the land under thin cloud, haze and shadow still shows is restored, and only
the rest is filled.

Given the local fill of a window's masked region (``expected``, ``local_fill.py``), shadows are
relit (``shadow.py``) and thin cloud and haze taken off (``haze.py``); the restored land is
blended with the fill by the haze step's weight, so restoring hands over smoothly to filling
where the cloud turns opaque.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudfree.haze import HazeParams, dehaze
from cloudfree.sentinel2 import BANDS
from cloudfree.shadow import relight


@dataclass(frozen=True)
class RestoreParams:
    """Which of the two restorations run (None / False: that part is filled)."""

    haze: HazeParams | None = HazeParams()
    shadows: bool = True


def restore(reflectance: np.ndarray, expected: np.ndarray, region: np.ndarray,
            shadow: np.ndarray, clear: np.ndarray, params: RestoreParams = RestoreParams(),
            bands: tuple[str, ...] = BANDS) -> tuple[np.ndarray, np.ndarray]:
    """The base of the ``region`` [H, W] pixels: restored land where it shows, ``expected``
    elsewhere; and the share [H, W] of each that is filled (1: all fill; 0 off the region).
    ``shadow``: the region's shadow pixels; ``clear``: the clear land. Haze needs B02 and B04
    (HOT) among ``bands``; without them, thin cloud is filled.
    Shadows are relit as they are given: ``shadow.tied_shadows`` tells which are."""
    out = np.where(region[None], expected, reflectance).astype(np.float32, copy=False)
    filled = region.astype(np.float32)
    cloud = region
    if params.shadows and shadow.any():
        out[:, shadow] = relight(reflectance, expected, shadow)[:, shadow]
        filled[shadow] = 0
        cloud = region & ~shadow
    hazy = params.haze is not None and {"B02", "B04"} <= set(bands)
    veil = dehaze(reflectance, expected, cloud, clear, params.haze, bands) if hazy else None
    if veil is not None:  # over the box of the thin cloud, its pixels
        (rows, cols), land, weight = veil
        where = cloud[rows, cols]
        land *= weight  # the blend weight * land + (1 - weight) * expected, in place
        land += (1 - weight) * expected[:, rows, cols]
        np.copyto(out[:, rows, cols], land, where=where)
        filled[rows, cols] = np.where(where, 1 - weight, filled[rows, cols])
    return out, filled
