"""Separable filters as blocked matrix products, against scipy on a real image."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SUMMER_S2
from scipy import ndimage

from cloudfree.core.separable import along, block_sums, gaussian_taps, separable, upsample_taps
from cloudfree.io.sentinel2 import open_sentinel2


@pytest.fixture(scope="module")
def image():
    """Three bands of the summer sample, cropped to sizes no block divides (reflectance)."""
    with open_sentinel2(SUMMER_S2) as ds:
        refl, _ = ds.read()
    return np.ascontiguousarray(refl[[1, 3, 7], :203, :246])


@pytest.mark.parametrize(("edge", "mode", "truncate"), [("constant", "constant", 3.0),
                                                        ("nearest", "nearest", 4.0),
                                                        ("reflect", "reflect", 4.0)])
def test_the_gaussian_is_scipys_on_every_axis_and_over_any_window(image, edge, mode, truncate):
    sigma = 4.0
    radius = int(truncate * sigma + 0.5)
    height, width = image.shape[1:]
    rows, cols = slice(17, 190), slice(0, 131)
    got = separable(image, gaussian_taps(height, sigma, radius, rows, edge),
                    gaussian_taps(width, sigma, radius, cols, edge))
    expected = ndimage.gaussian_filter(image.astype(np.float64), (0, sigma, sigma), mode=mode,
                                       truncate=truncate)[:, rows, cols]
    assert got.dtype == np.float32 and got.shape == (3, 173, 131)
    assert np.abs(got - expected).max() < 1e-6 * np.abs(expected).max()


def test_bilinear_upsampling_reads_half_pixel_centres_and_holds_the_edges(image):
    small = image[:, :40, :50]
    rows, cols = slice(3, 150), slice(0, 200)
    got = separable(small, upsample_taps(40, 4, rows), upsample_taps(50, 4, cols))
    y = np.clip((np.arange(160)[rows] + 0.5) / 4 - 0.5, 0, 39)
    x = np.clip((np.arange(200)[cols] + 0.5) / 4 - 0.5, 0, 49)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    expected = np.stack([ndimage.map_coordinates(band.astype(np.float64), [yy, xx], order=1)
                         for band in small])
    assert np.abs(got - expected).max() < 1e-6
    # the first and last outputs hold the edge values
    assert np.allclose(got[:, :, 0], got[:, :, 1]) and np.allclose(got[:, :, -1], got[:, :, -2])


def test_a_filter_along_the_rows_is_its_matrix_times_every_channel(image):
    taps = gaussian_taps(image.shape[1], 2.0, 6, slice(5, 120), edge="nearest")
    span, matrix = taps.block(slice(None))  # the whole filter as one matrix
    assert span == slice(0, 126) and matrix.shape == (115, 126)
    expected = np.einsum("ij,cjw->ciw", matrix, image[:, span])
    assert np.abs(along(image, taps, -2) - expected).max() < 1e-6
    transposed = np.ascontiguousarray(image.transpose(0, 2, 1))
    assert np.abs(along(transposed, taps, -1).transpose(0, 2, 1) - expected).max() < 1e-6


def test_block_sums_hold_the_partial_blocks_of_the_far_edges(image):
    got = block_sums(image, 4)
    padded = np.pad(image.astype(np.float64), [(0, 0), (0, 1), (0, 2)])
    expected = padded.reshape(3, 51, 4, 62, 4).sum((2, 4))
    assert got.shape == (3, 51, 62)
    assert np.abs(got - expected).max() < 1e-5
    assert np.isclose(got[:, -1, -1], image[:, 200:, 244:].sum((1, 2))).all()


def test_block_sums_lay_their_blocks_from_a_corner_before_the_array(image):
    got = block_sums(image, 4, (1, 3))
    padded = np.pad(image.astype(np.float64), [(0, 0), (1, 0), (3, 0)])
    assert got.shape == block_sums(padded, 4).shape == (3, 51, 63)
    assert np.abs(got - block_sums(padded, 4)).max() < 1e-5
    assert np.isclose(got[:, 0, 0], image[:, :3, :1].sum((1, 2))).all()
