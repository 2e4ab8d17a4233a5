"""The per-band lines of one date to another (``radiometry.py``) on dates shared on few pixels.

The target is the clear winter SEN12MS-CR patch; the references are the hazy winter image of
the same place (another date: haze lowers its contrast, so its gains are well above 1) and the
clear image itself moved by 4 px (a poorly registered date: its residual is much larger).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import WINTER_CLEAR, WINTER_S2

from cloudfree.dates.radiometry import (
    CELL,
    MIN_PIXELS,
    REJECT,
    VARIANCE_FLOOR,
    VARIANCE_SHRINK,
    CellFits,
    LineSums,
    cell_sums,
)
from cloudfree.dates.statistics import _cell_sums
from cloudfree.io.sentinel2 import open_sentinel2

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
        # its residual is its own: the error of the line it keeps on those 100 pixels (the
        # lifted line still errs on the hazy date's dark and bright pixels), mostly, not the
        # prior (1e-4)
        x = reference[:, 100:110, 100:110].reshape(13, -1)
        y = target[:, 100:110, 100:110].reshape(13, -1)
        error = np.mean((corner.gain[:, :1, 0] * x + corner.offset[:, :1, 0] - y) ** 2, axis=1)
        share = 100 / (100 + VARIANCE_SHRINK)
        assert np.allclose(corner.variance[:, 0, 0],
                           share * (error + VARIANCE_FLOOR) + (1 - share) * PRIOR, rtol=1e-4)
        assert not np.allclose(corner.variance[:, 0, 0], PRIOR, rtol=0.5)
    assert few["shifted"] != pytest.approx(few["hazy"], rel=0.2), few



def test_a_date_whose_land_changed_in_part_weighs_by_its_error_there_too(dates):
    """Land that changed on a quarter of the pixels clear in both (fields of another part of
    the hazy date moved in) is mostly left out of the line, but not of the date's residual:
    under a cloud the date is taken everywhere, on changed land too."""
    target, references = dates
    steady = references["hazy"]
    changed = steady.copy()
    changed[:, 40:100] = np.roll(steady, 128, axis=2)[:, 40:100]
    fits = {name: field(target, reference, slice(None), slice(None))
            for name, reference in {"steady": steady, "changed": changed}.items()}
    for name, reference in {"steady": steady, "changed": changed}.items():
        fit = fits[name]
        error = np.mean((fit.gain[:, :1, 0] * reference.reshape(13, -1) + fit.offset[:, :1, 0]
                         - target.reshape(13, -1)) ** 2, axis=1)
        # every pixel's error, the outliers the trimmed line left out included
        assert np.allclose(fit.variance[:, 0, 0], error, rtol=2e-3, atol=1e-7)
    # the changed date's error is well above the steady one's in the near infrared, where the
    # moved fields differ most (the trimmed fit's own residual: 2.3 to 2.5 times)
    ratio = fits["changed"].variance[5:9, 0, 0] / fits["steady"].variance[5:9, 0, 0]
    assert (ratio > 3.5).all(), ratio


def trimmed(x: np.ndarray, y: np.ndarray, fitted: bool) -> LineSums:
    """The sums of x, y [bands, n] over the pixels within REJECT x 1.4826 x the median absolute
    residual to each band's line of all (``fitted``), or over all of them."""
    every = LineSums.of(x, y, np.ones(x.shape, bool))
    keep = np.ones(x.shape, bool)
    if fitted:
        gain, offset, _ = every.line()
        residual = np.abs(y - gain[:, None] * x - offset[:, None])
        keep = residual <= REJECT * (1.4826 * np.median(residual, 1, keepdims=True) + 1e-4)
    return LineSums.of(x, y, keep, every.every)


def test_a_windows_cells_summed_at_once_are_each_cells_trimmed_sums(dates):
    """The statistics pass sums all the cells of a window at once; each cell's sums are still
    its trimmed least-squares line's: each band's line over the cell's pixels clear in both,
    the pixels beyond REJECT x 1.4826 x their median absolute residual left out, the sums
    over the rest; a cell of fewer than MIN_PIXELS keeps the sums of all."""
    target, references = dates
    hazy = references["hazy"]
    both = hazy[1] < np.quantile(hazy[1], 0.6)  # the darker part of the hazy date: uneven
    both[:, 150:] &= np.arange(both.shape[0])[:, None] % 7 == 0  # cells with few pixels
    both[:64, 192:] = False  # and none
    window = (slice(0, 200), slice(0, 256))  # partial cells along the bottom
    hazy, target, both = hazy[:, window[0], window[1]], target[:, window[0], window[1]], \
        both[window]
    cells = _cell_sums(hazy, target, both, 128, 64)  # the window's place in the scene
    assert len(cells) == 4 * 4
    flags = set()
    for row, col, sums, fitted in cells:
        r0, c0 = (row - 2) * CELL, (col - 1) * CELL
        part = both[r0 : r0 + CELL, c0 : c0 + CELL]
        x = hazy[:, r0 : r0 + CELL, c0 : c0 + CELL][:, part]
        y = target[:, r0 : r0 + CELL, c0 : c0 + CELL][:, part]
        expected = trimmed(x, y, x.shape[1] >= MIN_PIXELS)
        flags.add((fitted, bool((expected.count < x.shape[1]).any()), x.shape[1] > 0))
        assert fitted == (x.shape[1] >= MIN_PIXELS)
        np.testing.assert_array_equal(sums.count, expected.count)
        np.testing.assert_allclose(sums.sums, expected.sums, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sums.every, expected.every, rtol=1e-9, atol=1e-12)
    # fitted cells with outliers left out, cells of too few pixels, and empty ones
    assert {(True, True, True), (False, False, True), (False, False, False)} <= flags


def test_cells_whose_pixels_are_the_same_take_the_sums_already_made(dates):
    """A later count of a window (the temporal test's mask, another cloud buffer) takes the
    sums of the cells whose pixels clear in both are those of a count already made, and sums
    the others again: the same, bit for bit, as summing every cell again."""
    target, references = dates
    hazy = references["hazy"]
    first = hazy[1] < np.quantile(hazy[1], 0.6)
    later = first.copy()
    later[70:90, 50:80] = False  # pixels left out in cells (1, 0) and (1, 1) only
    assert (first & ~later)[64:128, :64].any() and (first & ~later)[64:128, 64:128].any()
    made = _cell_sums(hazy, target, first, 0, 0)
    cells = _cell_sums(hazy, target, later, 0, 0, (first, made))
    again = _cell_sums(hazy, target, later, 0, 0)
    summed = [(row, col) for cell, was in zip(cells, made, strict=True) if cell is not was
              for row, col in [cell[:2]]]
    assert summed == [(1, 0), (1, 1)]
    for (row, col, sums, fitted), (row2, col2, sums2, fitted2) in zip(cells, again,
                                                                      strict=True):
        assert (row, col, fitted) == (row2, col2, fitted2)
        for a, b in ((sums.sums, sums2.sums), (sums.count, sums2.count),
                     (sums.every, sums2.every)):
            np.testing.assert_array_equal(a, b)
    assert all(cells[k][2].count.max() < made[k][2].count.max() for k in (4, 5))


def test_cells_summed_on_every_other_row_and_column_count_each_pixel_four_times(dates):
    """With a stride of 2 (``statistics.CELL_STRIDE``) a cell's trimmed line is fitted on its
    pixels clear in both in every other row and column alone, each counted for the four
    around it: the sums and counts are four times the sample's, a cell is fitted from
    MIN_PIXELS / 4 of them, and the field differs from the one of every pixel by about a
    hundredth in gain."""
    target, references = dates
    hazy = references["hazy"]
    both = hazy[1] < np.quantile(hazy[1], 0.6)
    both[:64, :64] &= np.arange(256)[None, :64] % 5 == 0  # 1 in 5 columns: few pixels
    sampled = _cell_sums(hazy, target, both, 0, 0, stride=2)
    flags = set()
    for row, col, sums, fitted in sampled:
        cell = (slice(row * CELL, (row + 1) * CELL, 2), slice(col * CELL, (col + 1) * CELL, 2))
        part = both[cell]
        x, y = hazy[:, cell[0], cell[1]][:, part], target[:, cell[0], cell[1]][:, part]
        expected = trimmed(x, y, 4 * x.shape[1] >= MIN_PIXELS)
        flags.add((fitted, x.shape[1] < MIN_PIXELS))
        assert fitted == (4 * x.shape[1] >= MIN_PIXELS)
        np.testing.assert_array_equal(sums.count, 4 * expected.count)
        np.testing.assert_allclose(sums.sums, 4 * expected.sums, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sums.every, 4 * expected.every, rtol=1e-9, atol=1e-12)
    assert (True, True) in flags  # a cell fitted from fewer than MIN_PIXELS samples
    fields = []
    for stride in (1, 2):
        fits = CellFits(13, 4, 4)
        for row, col, sums, fitted in _cell_sums(hazy, target, both, 0, 0, stride=stride):
            fits.add(row, col, sums, fitted)
        fields.append(fits.field(PRIOR))
    gain = np.abs(fields[1].gain / fields[0].gain - 1)
    variance = np.abs(fields[1].variance / fields[0].variance - 1)
    assert np.median(gain) < 0.02 and np.median(variance) < 0.1, (np.median(gain),
                                                                   np.median(variance))


def test_a_window_cut_from_a_larger_block_gives_the_sums_of_its_own_copy(dates):
    """The statistics pass's windows are slices of a block read with its margin: the cells'
    sums gather the window's sampled pixels from the slice and give the sums, bit for bit,
    of the same window copied on its own."""
    target, references = dates
    x, y = references["shifted"], target
    both = x[1] < np.quantile(x[1], 0.7)
    margin = (slice(20, 20 + 128), slice(30, 30 + 192))  # a 128 x 192 window in the block
    window = x[:, margin[0], margin[1]], y[:, margin[0], margin[1]]
    assert not window[0].flags.c_contiguous
    inside = _cell_sums(*window, both[margin], 0, 0, stride=2)
    alone = _cell_sums(*(np.ascontiguousarray(a) for a in window), both[margin], 0, 0, stride=2)
    assert len(inside) == 2 * 3 and any(fitted for *_, fitted in inside)
    for (*place, sums, fitted), (*place2, sums2, fitted2) in zip(inside, alone, strict=True):
        assert (place, fitted) == (place2, fitted2)
        for a, b in ((sums.sums, sums2.sums), (sums.count, sums2.count),
                     (sums.every, sums2.every)):
            np.testing.assert_array_equal(a, b)
