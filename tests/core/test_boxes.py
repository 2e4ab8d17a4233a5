"""Shares of booleans in squares and whether any is set in them, against scipy's uniform and
maximum filters on a real chip's clouds."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SUMMER_S2
from scipy import ndimage

from cloudfree.core.boxes import box_any, box_share
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLOUD, classify


@pytest.fixture(scope="module")
def masks() -> dict[str, np.ndarray]:
    """The summer sample's cloud (about 40 % of it) and what scores above 0.05, cropped to a
    side no square divides."""
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    classes, score = classify(refl, valid)
    crop = (slice(3, 250), slice(0, 229))
    return {"cloud": classes[crop] == CLOUD, "hazy": score[crop] > 0.05}


@pytest.mark.parametrize("mode", ["reflect", "constant"])
@pytest.mark.parametrize("size", [3, 5, 7, 15, 31])
def test_the_shares_are_scipys_bit_for_bit(masks, size, mode):
    for where in masks.values():
        expected = ndimage.uniform_filter(where, size, output=np.float32, mode=mode)
        assert 0 < expected.mean() < 1
        assert np.array_equal(box_share(where, size, mode), expected)
        rows = np.array([0, 1, 17, 120, 246])  # few rows: from their squares alone
        assert np.array_equal(box_share(where, size, mode, rows), expected[rows])
        rows = np.arange(0, 247, 2)  # half of them or more: every row, then these
        assert np.array_equal(box_share(where, size, mode, rows), expected[rows])


def test_squares_wider_than_the_array_mirror_it_as_scipy_does(masks):
    strip = masks["cloud"][100:103, :40]
    for mode in ("reflect", "constant"):
        expected = ndimage.uniform_filter(strip, 31, output=np.float32, mode=mode)
        assert np.array_equal(box_share(strip, 31, mode), expected)


@pytest.mark.parametrize("mode", ["reflect", "constant"])
@pytest.mark.parametrize("size", [2, 3, 15, 101])
def test_any_in_the_square_is_scipys_maximum(masks, size, mode):
    confident = masks["cloud"] & ~ndimage.binary_erosion(masks["cloud"], iterations=3)
    for where in (confident, masks["hazy"], masks["cloud"][100:103, :40]):
        expected = ndimage.maximum_filter(where, size, mode=mode)
        assert np.array_equal(box_any(where, size, mode), expected)
    assert 0 < ndimage.maximum_filter(confident, size, mode=mode).mean() < 1


def test_only_booleans_are_taken():
    for box in (box_share, box_any):
        with pytest.raises(TypeError, match="booleans"):
            box(np.ones((4, 4), np.float32), 3)
