"""Cloud shadows: relight the land, don't replace it.

A cloud shadow keeps the diffuse skylight, so the land under it is still seen, darker by a
factor per band (bluer light: the visible bands lose less than NIR and SWIR). Each shadow gets a
smooth per-band gain: the ratio of what clear land of the same S1 kind around it looks like
(``expected``, the local fill, ``local_fill.py``) to what the shadow shows, both smoothed over
the shadow (normalised Gaussian of ``sigma`` px). The relit pixel is the observed one times that
gain, so its texture is kept; gains are bounded to [1, ``MAX_GAIN``] (a shadow only darkens).
"""

from __future__ import annotations

import numpy as np

from cloudfree.haze import smooth_within

#: Bound on a shadow's gain: real shadows on the pool darken by a factor of about 2 to 4 (the
#: ``SHADOW_RATIOS`` of benchmarks/one_date_quality.py); more is a dark surface, not a shadow.
MAX_GAIN = 5.0
#: Gaussian (px) of the gain field.
SIGMA = 8.0


def relight(reflectance: np.ndarray, expected: np.ndarray, shadow: np.ndarray,
            sigma: float = SIGMA) -> np.ndarray:
    """``reflectance`` [C, H, W] with the ``shadow`` [H, W] pixels relit to the level of
    ``expected`` [C, H, W] (clear land of their kind), texture kept."""
    out = reflectance.astype(np.float32, copy=True)
    if not shadow.any():
        return out
    seen = smooth_within(reflectance, shadow, sigma)
    wanted = smooth_within(expected, shadow, sigma)
    gain = np.clip(wanted / np.maximum(seen, 1e-4), 1, MAX_GAIN)
    out[:, shadow] = (reflectance * gain)[:, shadow]
    return out
