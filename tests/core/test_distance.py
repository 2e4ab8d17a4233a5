"""Squared distances to a mask's pixels against scipy's distance transform, on a real cloud
mask."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SUMMER_S2
from scipy import ndimage

from cloudfree.core.distance import NEAR_REACH, squared_distance
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLOUD, classify


@pytest.mark.parametrize("reach", [1, 2, 11, 15, 16, NEAR_REACH, NEAR_REACH + 1])
def test_squared_distances_within_reach_are_those_of_the_distance_transform(reach):
    """On a real cloud mask, its edges and a slice with no cloud at all: every squared distance
    below the reach exact, the reach squared beyond."""
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    cloud = classify(refl, valid)[0] == CLOUD
    for seeds in (cloud, cloud[:3], cloud[:, :1], np.zeros((5, 7), bool)):
        got = squared_distance(seeds, reach)
        assert got.dtype.kind == "u"
        expected = np.full(seeds.shape, reach * reach)
        if seeds.any():
            distance = ndimage.distance_transform_edt(~seeds)
            expected = np.minimum(np.rint(distance ** 2), reach * reach)
        np.testing.assert_array_equal(got, expected)
    assert 0 < (squared_distance(cloud, reach) < reach * reach).mean() < 1
