"""Cloud shadows: relight the land, don't replace it.

A cloud shadow keeps the diffuse skylight, so the land under it is still seen, darker by a
factor per band (bluer light: the visible bands lose less than NIR and SWIR). Each shadow gets a
smooth per-band gain: the ratio of what clear land of the same S1 kind around it looks like
(``expected``, the local fill, ``local_fill.py``) to what the shadow shows, both smoothed over
the shadow (normalised Gaussian of ``sigma`` px). The relit pixel is the observed one times that
gain, so its texture is kept; gains are bounded to [1, ``MAX_GAIN``] (a shadow only darkens).

The mask's shadow test is relative to the scene (the darkest part of it), so it also flags dark
land. A flagged pixel is relit only where it looks like a shadow cast by a cloud
(``shadow_weight``):

- within ``NEAR`` px of a cloud (a shadow lies beside its cloud, the sun's elevation and the
  cloud's height setting how far; farther shadows are left as they are);
- much darker in NIR and SWIR (B08 and B11, the mask's shadow bands) than the clear land around
  it (Gaussian of ``LAND_SIGMA`` px): real shadows on the pool keep about 0.6 of B08 and 0.35
  of B11, dark land flagged beside them about 0.85 of both. The mean of the two ratios runs
  from ``DARK[1]`` (not a shadow) to ``DARK[0]`` (a shadow); where no clear land is around, the
  flagged pixels around stand in for it, so nothing there is darker than its surroundings;
- not water (NDWI = (B03 - B08) / (B03 + B08) above ``WATER_NDWI``, McFeeters 1996): dark
  water is flagged as shadow, and shadowed land keeps its NDWI near or below 0 (B03 loses
  less than B08 in a shadow, so a little above).

Elsewhere the pixel is clear land, not a shadow (``tied_shadows``): kept as it is, and a source
of the fill like any clear pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLEAR, CLOUD, SHADOW
from cloudfree.mask.haze import around, reach, smooth_within, smoothstep_down, where_density

#: Bound on a shadow's gain: real shadows on the pool darken by a factor of about 2 to 4 (the
#: ``SHADOW_RATIOS`` of benchmarks/one_date_quality.py); more is a dark surface, not a shadow.
MAX_GAIN = 5.0
#: Gaussian (px) of the gain field.
SIGMA = 8.0
#: Shadows farther than this (px) from a cloud are left as they are.
NEAR = 50
#: Gaussians (px) of the shadow's own level and of the clear land it is compared with.
SEEN_SIGMA = 4.0
LAND_SIGMA = 32.0
#: Mean ratio of B08 and B11 (the shadow over the clear land around) up to which a pixel is a
#: shadow, and from which it is land.
DARK = (0.55, 0.75)
#: NDWI above which a flagged pixel is water, not a shadow.
WATER_NDWI = 0.2
#: Weight of a flagged pixel in the land around, against 1 for a clear one.
FLAGGED_WEIGHT = 0.05


def shadow_weight(reflectance: np.ndarray, shadow: np.ndarray, cloud: np.ndarray,
                  clear: np.ndarray, bands: tuple[str, ...] = BANDS) -> np.ndarray:
    """How much [H, W] (0 to 1) each ``shadow`` pixel looks like the shadow of a ``cloud``
    pixel, against the ``clear`` land; 0 off the shadow."""
    weight = np.zeros(shadow.shape, np.float32)
    if not ({"B03", "B08", "B11"} <= set(bands) and cloud.any()):
        return weight
    green, nir = reflectance[bands.index("B03")], reflectance[bands.index("B08")]
    water = green - nir > WATER_NDWI * (green + nir)
    near = shadow & ~water & (ndimage.distance_transform_edt(~cloud) <= NEAR)
    if not near.any():
        return weight
    picked = reflectance[[bands.index("B08"), bands.index("B11")]].astype(np.float32)
    seen = smooth_within(picked, shadow, SEEN_SIGMA)
    land = clear + FLAGGED_WEIGHT * shadow  # normalised Gaussian, weighted
    density = ndimage.gaussian_filter(land.astype(np.float32), LAND_SIGMA, mode="nearest")
    around = np.stack([ndimage.gaussian_filter(band * land, LAND_SIGMA, mode="nearest")
                       for band in picked]) / np.maximum(density, 1e-6)
    ratio = (seen / np.maximum(around, 1e-4)).mean(0)
    return np.where(near, smoothstep_down(ratio, *DARK), 0).astype(np.float32)


def tied_shadows(reflectance: np.ndarray, classes: np.ndarray,
                 bands: tuple[str, ...] = BANDS) -> np.ndarray:
    """``classes`` [H, W] with the shadow pixels that do not look like a cloud's shadow (weight
    below a half, ``shadow_weight``) made clear."""
    shadow = classes == SHADOW
    if not shadow.any():
        return classes
    weight = shadow_weight(reflectance, shadow, classes == CLOUD, classes == CLEAR, bands)
    untied = shadow & (weight < 0.5)
    return np.where(untied, CLEAR, classes).astype(classes.dtype)


def relight(reflectance: np.ndarray, expected: np.ndarray, shadow: np.ndarray,
            sigma: float = SIGMA) -> np.ndarray:
    """``reflectance`` [C, H, W] with the ``shadow`` [H, W] pixels relit to the level of
    ``expected`` [C, H, W] (clear land of their kind), texture kept."""
    out = reflectance.astype(np.float32, copy=True)
    if not shadow.any():
        return out
    # within reach of the shadow, which gives the same values on it as the whole array does
    rows, cols = around(shadow, reach(sigma))
    where, seen = shadow[rows, cols], reflectance[:, rows, cols]
    density = where_density(where, sigma)
    gain = smooth_within(expected[:, rows, cols], where, sigma, density)
    gain /= np.maximum(smooth_within(seen, where, sigma, density), 1e-4)
    np.clip(gain, 1, MAX_GAIN, out=gain)
    np.copyto(out[:, rows, cols], seen * gain, where=where)
    return out
