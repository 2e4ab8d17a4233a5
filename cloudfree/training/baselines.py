"""Reference reconstructions every model is compared with in ``cloudfree evaluate``."""

from __future__ import annotations

import numpy as np


def median_fill(cloudy: np.ndarray, cloud: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cloud pixels replaced, band by band, with the median of the clear valid pixels.

    ``cloudy`` [C, H, W]; ``cloud`` and ``valid`` [H, W]. With no clear pixel at all the median
    of every valid pixel is used (the cloud itself: nothing better is known).
    """
    cloud = cloud.astype(bool)
    source = valid & ~cloud
    if not source.any():
        source = valid
    medians = np.median(cloudy[:, source], axis=1) if source.any() else np.zeros(len(cloudy))
    return np.where(cloud[None], medians[:, None, None], cloudy).astype(np.float32)
