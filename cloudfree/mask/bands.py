"""The bands each test of the cloud mask reads, and those bands taken from a reflectance array
by name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloudfree.core.errors import UsageError

#: Bands of the cloud score and the snow test.
SCORE_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B10", "B11")
#: Score bands it cannot run without; the others' terms are left out when they are missing.
REQUIRED_BANDS: tuple[str, ...] = ("B02", "B03", "B04")
#: Bands of the bright-land test (``bright_land``): the parallax index and short-wave infrared.
LAND_BANDS: tuple[str, ...] = ("B07", "B08", "B8A", "B11")
#: Bands of the water vapour above a cloud (``vapour_land``): read where the input has them;
#: the test runs at top-of-atmosphere levels alone (with B10, as L1C gives them), where it was
#: measured: an atmospheric correction retrieves the water vapour from B09 and may leave it
#: otherwise over land than over cloud.
VAPOUR_BANDS: tuple[str, ...] = ("B8A", "B09")
#: Bands of the shadow test (CSI and blue).
SHADOW_BANDS: tuple[str, ...] = ("B02", "B08", "B11")
#: Bands of the parallax index.
PARALLAX_BANDS: tuple[str, ...] = ("B07", "B08", "B8A")
#: Bands of the colour of a cloud (``ground_colour``): at top-of-atmosphere levels only (with
#: B10, as L1C gives them).
COLOUR_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B10")
#: Bands of the colour of the ground without B10 (``ground_colour``; L2A products).
SOIL_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B8A", "B11")


def pick(reflectance: np.ndarray, bands: Sequence[str],
         needed: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``needed`` bands of ``reflectance`` (whose bands are ``bands``) by name, float32."""
    index = {b: i for i, b in enumerate(bands)}
    missing = [b for b in needed if b not in index]
    if missing:
        raise UsageError(f"the cloud mask needs bands {', '.join(missing)}")
    return {b: reflectance[index[b]].astype(np.float32, copy=False) for b in needed}
