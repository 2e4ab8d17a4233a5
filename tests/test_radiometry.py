"""The per-band lines of one date to another (``radiometry.py``) on dates shared on few pixels.

The target is the clear winter SEN12MS-CR patch; the references are the hazy winter image of
the same place (another date: haze lowers its contrast, so its gains are well above 1) and the
clear image itself moved by 4 px (a poorly registered date: its residual is much larger).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import WINTER_CLEAR, WINTER_S2

from cloudfree.radiometry import CellFits, cell_sums
from cloudfree.sentinel2 import open_sentinel2

PRIOR = np.full(13, 1e-4)


def reflectance(path):
    with open_sentinel2(path) as s2:
        return s2.read()[0]


@pytest.fixture(scope="module")
def dates():
    target = reflectance(WINTER_CLEAR)
    return target, {"hazy": reflectance(WINTER_S2), "shifted": np.roll(target, (4, 4), (1, 2))}


def field(target, reference, rows, cols):
    """The scene-wide fit (one 256 px cell) on the pixels rows x cols only."""
    fits = CellFits(13, 1, 1, cell=256)
    x = reference[:, rows, cols].reshape(13, -1)
    fits.add(0, 0, *cell_sums(x, target[:, rows, cols].reshape(13, -1)))
    return fits.field(PRIOR)


def test_a_date_shared_on_few_pixels_keeps_a_line_and_its_own_residual(dates):
    target, references = dates
    few = {}
    for name, reference in references.items():
        everywhere = field(target, reference, slice(None), slice(None))
        # 100 pixels clear in both (a target almost all cloud)
        corner = field(target, reference, slice(100, 110), slice(100, 110))
        few[name] = corner.variance.mean()
        if name == "hazy":  # gains 2.1 to 3.1 from B03 to B8A on every pixel
            gain = everywhere.gain[2:10, 0, 0]
            # the few pixels' line still lifts them (a shift alone, or nearly, gave 1.18)
            assert gain.min() > 2 and 1.35 < corner.gain[2:10, 0, 0].mean() < gain.mean()
    # the poorly registered date still weighs far less: its residual is its own, not the prior
    # (with the prior in its place, 1.35 times the hazy date's)
    assert few["shifted"] > 3 * few["hazy"], few
