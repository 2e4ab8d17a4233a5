"""A batch of real S2/S1 patches (summer cumulus, winter haze) as numpy, in any input scaling."""

from __future__ import annotations

import numpy as np
import rasterio
from conftest import SUMMER_S1, SUMMER_S2, WINTER_S1, WINTER_S2

from cloudfree.scaling import Scaling

PAIRS = ((SUMMER_S2, SUMMER_S1), (WINTER_S2, WINTER_S1))


def _read(path, size: int) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(window=((64, 64 + size), (64, 64 + size))).astype(np.float32)


def real_batch(scaling: Scaling, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """S2 [2, 13, size, size] and S1 [2, 2, size, size], float32, scaled for a network."""
    s2 = np.stack([scaling.scale_s2(_read(s2_path, size) / 10000.0) for s2_path, _ in PAIRS])
    s1 = np.stack([scaling.scale_s1(_read(s1_path, size)) for _, s1_path in PAIRS])
    return s2, s1
