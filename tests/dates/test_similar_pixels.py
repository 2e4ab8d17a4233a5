"""The target predicted from its clear pixels alike in the other dates (similar_pixels.py)."""

from __future__ import annotations

import numpy as np
from helpers import WINTER_CLEAR, WINTER_S2

from cloudfree.dates import similar_pixels
from cloudfree.dates.radiometry import MIN_PIXELS
from cloudfree.dates.similar_pixels import SimilarPixels, sample_grid, sample_stride
from cloudfree.io.sentinel2 import open_sentinel2


def test_the_clear_winter_patch_from_its_look_alikes_on_another_date():
    # the clear winter patch predicted from the hazy winter date of the same place, fitted on
    # the scene's sample grid (every 2nd row and column of a 256 px patch) and scored on the
    # pixels off it: far nearer the truth than the other date taken as it is, and than a
    # line per band fitted on the same sample
    with open_sentinel2(WINTER_CLEAR) as s2:
        truth = s2.read()[0]
    with open_sentinel2(WINTER_S2) as s2:
        other = s2.read()[0]
    height, width = truth.shape[1:]
    assert sample_stride(height, width) == 2
    grid = sample_grid(0, 0, height, width, 2)
    assert grid.sum() == 128 * 128 and grid[0, 0] and not grid[1, 1]
    similar = SimilarPixels.fit((1,), other[:, grid].T, truth[:, grid].T)
    predicted = similar.predict([other], ~grid)
    assert predicted.shape == (13, (~grid).sum())
    error = np.mean((predicted - truth[:, ~grid]) ** 2)
    lines = np.stack([np.polyval(np.polyfit(o[grid], t[grid], 1), o[~grid])
                      for o, t in zip(other, truth, strict=True)])
    assert error < 0.05 * np.mean((other[:, ~grid] - truth[:, ~grid]) ** 2)
    assert error < 0.8 * np.mean((lines - truth[:, ~grid]) ** 2)


def test_fewer_than_a_cells_worth_of_clear_pixels_fit_nothing():
    with open_sentinel2(WINTER_CLEAR) as s2:
        truth = s2.read()[0].reshape(13, -1).T
    with open_sentinel2(WINTER_S2) as s2:
        other = s2.read()[0].reshape(13, -1).T
    assert SimilarPixels.fit((1,), other[:MIN_PIXELS - 1], truth[:MIN_PIXELS - 1]) is None
    assert SimilarPixels.fit((1,), other[:MIN_PIXELS], truth[:MIN_PIXELS]) is not None


def test_the_approximate_search_predicts_nearly_as_well_as_the_exact_one(monkeypatch):
    # the search takes neighbours within (1 + APPROXIMATE) times the distance of the nearest
    # ones, for a fraction of an exact search's time: on the winter patch (as above) its
    # prediction's RMS error stays within 6 % of the exact search's (4.6 % more, measured)
    with open_sentinel2(WINTER_CLEAR) as s2:
        truth = s2.read()[0]
    with open_sentinel2(WINTER_S2) as s2:
        other = s2.read()[0]
    grid = sample_grid(0, 0, *truth.shape[1:], 2)
    similar = SimilarPixels.fit((1,), other[:, grid].T, truth[:, grid].T)
    approximate = similar.predict([other], ~grid)
    monkeypatch.setattr(similar_pixels, "APPROXIMATE", 0.0)
    exact = similar.predict([other], ~grid)
    assert not np.array_equal(approximate, exact)

    def error(predicted: np.ndarray) -> float:
        return float(np.sqrt(np.mean((predicted - truth[:, ~grid]) ** 2)))

    assert error(approximate) < 1.06 * error(exact)
