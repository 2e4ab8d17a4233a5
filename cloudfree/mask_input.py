"""How the mask reads a scene: its bands, valid pixels and, where it has one and the options
take it, its scene classification."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from rasterio.windows import Window

from cloudfree.masking import MaskParams
from cloudfree.sentinel2 import Sentinel2


def mask_reader(s2: Sentinel2, bands: Sequence[str], params: MaskParams
                ) -> Callable[[Window], tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """read(window) -> the reflectance of ``bands``, the valid pixels and the scene
    classification the mask takes (None: the score decides)."""
    use_scl = params.scl and s2.has_scl

    def read(window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        refl, valid = s2.read(window, bands)
        return refl, valid, s2.read_scl(window) if use_scl else None

    return read
