"""Carry the target's own departure from the other dates' prediction into the fill beside it.

The references' fill (``fill.py``) predicts the target through lines fitted over cells
of ``radiometry.CELL`` px; what the target differs by at a finer scale (a field sown or cut since
the dates nearest it, a patch the cell's line misses) shows on its clear pixels next to the
cloud. Their residual, target - prediction, is spread over the filled pixels by normalized
convolution (Knutsson and Westin, CVPR 1993): a Gaussian of ``SIGMA`` px over the residuals of
the clear pixels, divided by the same Gaussian of where they are plus ``SHRINK``. Near clear
pixels the fill takes their residual nearly in full; a few pixels into a cloud the shrink
dominates and the prediction stands alone. The clear pixels in a cloud's penumbra lend nothing,
and what is carried in takes no pixel below what the dates allow there (``PENUMBRA``,
``FLOOR``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cloudfree.dates.target_mask import THIN_SCORE
from cloudfree.io.sentinel2 import RESOLUTION
from cloudfree.mask.haze import around

#: The Gaussian's sigma (px) and the shrink added to its density of clear pixels (a density of
#: 1 is a neighbourhood all clear). Chosen on the L2A benchmark's targets at odd places in time
#: order (``benchmarks/l2a_residual.py``, benchmarks/records/l2a.md): sigma 1, 2 and 3 px with a
#: shrink of 0.02 gave +0.10, +0.16 and +0.16 dB on average over the fill without it (at most
#: +0.45, +0.75 and +0.89); shrinks of 0.005 and 0.05 at 2 px +0.16 and +0.14. At 2 px and
#: 0.02 no case loses.
SIGMA = 2.0
SHRINK = 0.02
#: How far the Gaussian reaches, in sigmas (``REACH``: 5 px): the clear pixels that near a
#: filled one lend it their residual, and the dates fill them for it. scipy's default, 4 sigmas
#: (8 px), also took those 6 to 8 px away, each weighing under 1.1 % of a pixel beside: on the
#: mirrored 2048^2 series of ``benchmarks/reference_speed.py`` 1.38 million lenders against 0.95
#: (of 2.88 and 2.45 million pixels the dates fill). With 2.5 (and ``similar_pixels``'s looser
#: search) ``remove --reference`` x4 there took 11 % less CPU, for -0.03 and -0.04 dB on the
#: other dates' and the L2A benchmarks (docs/benchmarks/speed.md).
TRUNCATE = 2.5
REACH = int(TRUNCATE * SIGMA + 0.5)
#: A clear pixel brighter in blue than the prediction by more than this (reflectance) lends no
#: residual: cloud or haze the mask missed beside a cloud, not the land. It costs the tuning half
#: above 0.01 dB without the margins below and nothing with them.
HAZE = 0.02
#: Where the dates do not weigh the references (no aerosol or cirrus band: L2A, or no temporal
#: test), a clear pixel whose single-date score exceeds this share of the mask's threshold lends
#: no residual either: thin cloud the mask missed, too faint in blue for ``HAZE``. On the
#: bundled ten-band case (tests/dates/test_temporal_mask.py) such pixels were 2,755 of the
#: 3,568 cloudy ones lending the residual and 116 of the 10,073 clear ones; the fill's blue
#: bias there fell from +138 to +116 DN (a tenth: the same; ``target_mask.THIN_SCORE``'s half:
#: +131). The L2A benchmarks' tuning halves did not lose (benchmarks/records/l2a.md).
LEND_SCORE = 0.25
#: Pixels of a band sampled at 20 or 60 m repeat one value over 2 or 6 px of the 10 m grid, so
#: one beside a cloud may hold some of it: in such a band, a clear pixel within (its sampling /
#: 10 m - 1) px of a masked one lends no residual.
MARGIN = {band: RESOLUTION[band] // 10 - 1 for band in RESOLUTION}
#: A clear pixel darker than the dates' fill in NIR (B08) and in SWIR (B11) by more than this
#: many times the fill's error in each (the spread of the references' predictions and their
#: fits' residual, ``DateTerms``), and not so much darker in blue, lends no residual: the
#: penumbra of the cloud beside it, short of the shadow test. On the bundled series' 5 July
#: the filled pixels darker in NIR than all four references by 0.03 (after the date's own
#: level) fell from 905 to 624 with it; the time series' tuning half did not lose (every kind
#: 36.79 dB either way, shadowed 34.56, L2A 31.85 -> 31.84; benchmarks/records/other-dates.md).
PENUMBRA = 1.0
#: The bands whose fill's error ``PENUMBRA`` reads: NIR, SWIR and blue.
PENUMBRA_BANDS = ("B08", "B11", "B02")
#: The residual carried in takes no pixel's fill below the lowest of the references'
#: predictions there less this many times their fits' residual (RMS) in the band, nor below
#: the fill itself: the dates' lower bound of the land. On the bundled series the pixels above
#: fell from 624 to 336 with it (905 to 430 alone); on the tuning half every kind 36.79 ->
#: 36.81 dB, shadowed 34.56 -> 34.59 (with ``PENUMBRA``). Without the widening a case under
#: thin cloud lost 0.18 dB; a bound above as well (the highest prediction) cost another 0.21.
FLOOR = 0.5
#: Pixels of context a block needs around the pixels filled for them to come out exact.
CONTEXT = REACH + max(MARGIN.values())


@dataclass
class Limits:
    """What the residual's rules read of the dates' fill on a block: its error [P, h, w] in
    the ``penumbra_bands`` (``PENUMBRA``) and the lowest it may take [C, h, w] (``FLOOR``;
    +inf where no date predicts)."""

    error: np.ndarray
    floor: np.ndarray

    @classmethod
    def empty(cls, bands: Sequence[str], height: int, width: int) -> Limits:
        """Limits that hold nothing back: no error, no floor."""
        return cls(np.zeros((len(penumbra_bands(bands)), height, width), np.float32),
                   np.full((len(bands), height, width), np.inf, np.float32))

    @classmethod
    def of(cls, spread: np.ndarray, residual: np.ndarray, lowest: np.ndarray,
           bands: Sequence[str]) -> Limits:
        """The limits from the fill's terms (``DateTerms``): the weighted spread of the
        references' predictions in the ``penumbra_bands`` [P, ...], their fits' weighted mean
        residual variance and their lowest prediction [C, ...]; ``residual`` is used up."""
        root = np.sqrt(residual, out=residual)
        return cls(np.hypot(spread, root[penumbra_bands(bands)]), lowest - FLOOR * root)

    def crop(self, rows: slice, cols: slice) -> Limits:
        return Limits(self.error[:, rows, cols], self.floor[:, rows, cols])


def penumbra_bands(bands: Sequence[str]) -> list[int]:
    """Where ``PENUMBRA_BANDS`` lie among ``bands``; none unless all of them do."""
    return [bands.index(name) for name in PENUMBRA_BANDS] if set(PENUMBRA_BANDS) <= set(
        bands) else []


def lenders(clear: np.ndarray, score: np.ndarray, threshold: float, dates_weigh: bool,
            cloud: np.ndarray, fringe: int) -> np.ndarray:
    """The ``clear`` pixels that may lend their residual: where the dates do not weigh the
    references, not those whose single-date cloud ``score`` is above ``LEND_SCORE`` of the
    mask's ``threshold``, nor, where the fits leave out the hazy fringe of the clouds
    (``target_mask.FRINGE``), those within ``fringe`` px of a ``cloud`` pixel that the fits
    leave out (its score above ``target_mask.THIN_SCORE`` of the threshold)."""
    if dates_weigh:
        return clear
    clear = clear & (score <= LEND_SCORE * threshold)
    if fringe:
        cloud = cloud & (score > THIN_SCORE * threshold)
        clear &= ndimage.distance_transform_edt(~cloud) > fringe
    return clear


def sources_near(need: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """The ``clear`` pixels within ``REACH`` of a ``need`` one: where the residual is read."""
    near = ndimage.maximum_filter(need, size=2 * REACH + 1, mode="constant")
    return clear & near & ~need


def carry_residual(values: np.ndarray, observed: np.ndarray, clear: np.ndarray,
                   masked: np.ndarray, need: np.ndarray, bands: Sequence[str],
                   limits: Limits | None = None) -> None:
    """Add to ``values`` [C, h, w] of ``bands`` at the ``need`` pixels the residual
    ``observed - values`` of the ``clear`` pixels, spread by normalized convolution; in place.
    A clear pixel brighter in blue by more than ``HAZE`` lends nothing, nor, in a band of
    ``MARGIN`` px, one that lies near a ``masked`` pixel; with the fill's ``limits``, nor one in
    a cloud's penumbra (``PENUMBRA``), and no pixel is taken below ``FLOOR``. Exact on a block
    whose ``need`` pixels lie at least ``CONTEXT`` px inside it."""
    if not need.any() or not clear.any():
        return
    box = around(need, CONTEXT)
    clear, masked, need = clear[box], masked[box], need[box]
    if "B02" in bands:
        blue = bands.index("B02")
        clear = clear & ~(observed[blue][box] - values[blue][box] > HAZE)
    if limits is not None and len(limits.error):
        nir, swir, blue = (
            observed[i][box] - values[i][box] < -PENUMBRA * error[box]
            for i, error in zip(penumbra_bands(bands), limits.error, strict=True))
        clear = clear & ~(nir & swir & ~blue)
    scales = {}
    for i, (band, seen, name) in enumerate(zip(values, observed, bands, strict=True)):
        margin = MARGIN.get(name, 0)
        if margin not in scales:
            lending = clear if not margin else clear & ~ndimage.maximum_filter(
                masked, size=2 * margin + 1, mode="nearest")
            density = ndimage.gaussian_filter(lending.astype(np.float32), SIGMA,
                                              mode="constant", truncate=TRUNCATE)
            scales[margin] = lending, np.where(need, 1 / (density + np.float32(SHRINK)),
                                               0).astype(np.float32)
        lending, scale = scales[margin]
        residual = np.where(lending, seen[box] - band[box], np.float32(0))
        spread = ndimage.gaussian_filter(residual, SIGMA, mode="constant", truncate=TRUNCATE)
        spread *= scale
        if limits is not None:
            fill = band[box]
            np.maximum(spread, np.minimum(limits.floor[i][box], fill) - fill, out=spread)
        band[box] += spread
