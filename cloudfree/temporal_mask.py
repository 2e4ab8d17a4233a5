"""Clouds, haze and shadows of a target found by comparing it with its reference dates.

With other dates of the place, a pixel is judged against what those dates say it should look
like, not by its own brightness alone (the idea of MAJA's multi-temporal cloud test, CNES, and of
Tmask, Zhu and Woodcock 2014):

1. background: every reference clear at the pixel (its own single-date mask) is mapped onto the
   target's radiometry by its fitted lines (``radiometry.py``); the median of the ``SLOTS``
   nearest in date is the pixel's background. References are read one at a time and only
   ``SLOTS`` predictions are kept per pixel, so memory does not grow with their number.
2. noise: the residual target - background over the pixels the single-date mask finds clear
   gives each band's noise, 1.4826 x its median absolute deviation (a scene-wide histogram,
   ``TemporalMask.calibrate``). Residuals are measured in these units (z).
3. target: brightening in blue and aerosol (the smaller of their z above ``SIGMAS``) marks cloud
   and haze; brightening in B10 alone marks cirrus; darkening in both NIR and SWIR marks shadow.
   The detection grows by up to ``GROW`` pixels into neighbours brightened by half as much
   (hysteresis); a pixel in the single-date mask's buffer needs only that half, and one the
   single-date score itself calls cloud stays cloud. Where no reference is clear, the
   single-date classes stand; single-date snow stays snow.
4. references: the same test on every reference's fitted prediction against the background
   (``TemporalMask.agreement``): its weight at a pixel falls as a Gaussian of its brightening
   in blue and aerosol and its darkening in NIR and SWIR (in noise units), and is 0 beyond
   ``SIGMAS`` or where any band is off by more than ``2 x SIGMAS``. The weights are per pixel,
   so a reference hazy all over drops out by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cloudfree.masking import CLEAR, CLOUD, NODATA, SHADOW, SNOW
from cloudfree.radiometry import FitField
from cloudfree.rasterio_io import block_windows, progress
from cloudfree.references import Reference
from cloudfree.threads import ordered_map, usable_cores

#: Bands compared between dates: aerosol and blue brighten under cloud and haze, NIR and SWIR
#: darken in shadow, B10 (cirrus) brightens under high thin cloud.
DETECT: tuple[str, ...] = ("B01", "B02", "B08", "B11", "B10")
BRIGHT, DARK, CIRRUS = ("B01", "B02"), ("B08", "B11"), ("B10",)
#: Predictions kept per pixel for the background (the references nearest in date).
SLOTS = 5
#: Threshold in noise units (z) of the residuals. Not tuned: set once, and the odd half of the
#: pool's series reported held out (``benchmarks/reference_fill.py --half odd``); the first even
#: cases were looked at while building the test.
SIGMAS = 4.0
#: Pixels a detection grows into neighbours brightened by at least half the threshold.
GROW = 3
#: Fewest clear references for the background to judge a reference (a median of fewer is one
#: of them).
MIN_JUDGES = 3
#: Residual histogram for the noise: range and step (reflectance).
RESIDUAL_RANGE, RESIDUAL_STEP = 0.5, 1e-4
#: Smallest noise (reflectance): one DN of L1C.
NOISE_FLOOR = 1e-4


@dataclass
class Background:
    """The median of the nearest clear references' predictions [detect bands, h, w] (NaN where
    none is clear) and how many entered it [h, w]."""

    values: np.ndarray
    count: np.ndarray

    def crop(self, rows: slice, cols: slice) -> Background:
        return Background(self.values[:, rows, cols], self.count[rows, cols])


def nan_median(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=0)`` of a few values per element, equal to it (the mean of
    the two middle ones when even), NaN where all are NaN: sorted by an odd-even transposition
    network on whole arrays, not element by element as numpy sorts a masked array, and without
    its warning, which ``warnings.catch_warnings`` cannot silence safely on several threads."""
    missing = np.isnan(values)
    ordered = np.where(missing, np.inf, values)  # NaN last
    for step in range(len(ordered)):
        for i in range(step % 2, len(ordered) - 1, 2):
            smaller = np.minimum(ordered[i], ordered[i + 1])
            np.maximum(ordered[i], ordered[i + 1], out=ordered[i + 1])
            ordered[i] = smaller
    count = len(values) - np.count_nonzero(missing, axis=0)
    high = count // 2
    low = np.where(count % 2 == 1, high, high - 1)
    median, high_value = np.zeros_like(ordered[0]), np.zeros_like(ordered[0])
    for i, row in enumerate(ordered):  # the low and high middle values
        np.copyto(median, row, where=low == i)
        np.copyto(high_value, row, where=high == i)
    median += high_value
    median /= 2
    median[count == 0] = np.nan
    return median


class TemporalMask:
    """The temporal test of one target against its fitted references."""

    def __init__(self, height: int, width: int, references: Sequence[Reference],
                 fields: dict[int, FitField], bands: Sequence[str]) -> None:
        self.height, self.width = height, width
        self.references = list(references)  # nearest date first
        self.fields = fields
        self.detect = tuple(b for b in DETECT if b in bands)  # those the scenes have
        self.index = [list(bands).index(b) for b in self.detect]  # in the scenes' bands
        self.noise = np.full(len(self.detect), np.inf)  # until calibrated: nothing is detected

    def _extreme(self, z: np.ndarray, names: Sequence[str], largest: bool) -> np.ndarray:
        """The largest (or smallest) z [h, w] over the ``names`` the scenes have; -inf (or
        inf) when they have none."""
        rows = [self.detect.index(b) for b in names if b in self.detect]
        if not rows:
            return np.full(z.shape[1:], -np.inf if largest else np.inf, np.float32)
        return (np.max if largest else np.min)(z[rows], axis=0)

    @property
    def calibrated(self) -> bool:
        return bool(np.isfinite(self.noise).any())

    def background(self, top: int, left: int, height: int, width: int,
                   halo: int = 0) -> Background:
        """The background of a block of the target grid with ``halo`` pixels of context (the
        block may reach beyond the scene: mirrored, as the target is)."""
        shape = (height + 2 * halo, width + 2 * halo)
        slots = np.full((SLOTS, len(self.detect), *shape), np.nan, np.float32)
        count = np.zeros(shape, np.int64)
        for ref in self.references:
            if (count >= SLOTS).all():
                break
            refl, _, clear = ref.clear(top, left, height, width, with_shadow=False, halo=halo)
            prediction = self.predict(ref, refl, top - halo, left - halo)
            rows, cols = np.nonzero(clear & (count < SLOTS))
            slots[count[rows, cols], :, rows, cols] = prediction[:, rows, cols].T
            count[rows, cols] += 1
        return Background(nan_median(slots), np.minimum(count, SLOTS))

    def predict(self, ref: Reference, refl: np.ndarray, top: int, left: int) -> np.ndarray:
        """A reference's fitted prediction of the target in the compared bands."""
        gain, offset = self.fields[ref.index].line_at(top, left, *refl.shape[1:], self.index)
        return gain * refl[self.index] + offset

    def z(self, values: np.ndarray, background: Background) -> np.ndarray:
        """Residuals [detect bands, h, w] in noise units (NaN without background)."""
        return (values - background.values) / self.noise.astype(np.float32)[:, None, None]

    def calibrate(self, target_clear, quiet: bool) -> None:
        """Each compared band's noise from the residuals on the single-date clear pixels;
        ``target_clear(top, left, h, w)`` gives the target's reflectance, clear mask and the
        block's background when it computed one (else None)."""
        bins = int(2 * RESIDUAL_RANGE / RESIDUAL_STEP) + 1
        counts = np.zeros((len(self.detect), bins), np.int64)

        def one(window):
            top, left = int(window.row_off), int(window.col_off)
            h, w = int(window.height), int(window.width)
            refl, clear, bg = target_clear(top, left, h, w)
            if bg is None:
                bg = self.background(top, left, h, w)
            use = clear & (bg.count > 0)
            out = np.zeros_like(counts)
            for i, band in enumerate(self.index):
                r = refl[band][use] - bg.values[i][use]
                index = np.clip(np.rint((r + RESIDUAL_RANGE) / RESIDUAL_STEP), 0, bins - 1)
                out[i] = np.bincount(index.astype(np.int64), minlength=bins)
            return out

        windows = block_windows(self.width, self.height)
        with closing(ordered_map(one, windows, usable_cores())) as results:
            for part in progress(results, len(windows), "temporal noise", quiet):
                counts += part
        noise = self.noise.copy()  # kept where no pixel is clear now
        centres = np.arange(bins) * RESIDUAL_STEP - RESIDUAL_RANGE
        for i in range(len(self.detect)):
            total = counts[i].sum()
            if total:
                median = centres[np.argmax(np.cumsum(counts[i]) >= (total + 1) / 2)]
                deviation = np.abs(centres - median)
                order = np.argsort(deviation, kind="stable")
                mad = deviation[order][np.argmax(np.cumsum(counts[i][order]) >= (total + 1) / 2)]
                noise[i] = max(1.4826 * mad, NOISE_FLOOR)
        self.noise = noise

    def classify(self, refl: np.ndarray, bands: Sequence[str], classes: np.ndarray,
                 core: np.ndarray, background: Background) -> np.ndarray:
        """The target's classes [h, w] from its reflectance (``bands``), its single-date
        ``classes``, the single-date cloud before any buffer (``core``) and the background of
        the same block (module docstring); the single-date classes until the noise is
        known."""
        if not self.calibrated:
            return classes
        z = self.z(refl[[list(bands).index(b) for b in self.detect]], background)
        judged = background.count > 0
        with np.errstate(invalid="ignore"):
            bright = self._extreme(z, BRIGHT, largest=False)
            cirrus = self._extreme(z, CIRRUS, largest=True)
            dark = self._extreme(z, DARK, largest=True)
            strong = (bright > SIGMAS) | (cirrus > SIGMAS)
            weak = (bright > SIGMAS / 2) | (cirrus > SIGMAS / 2)
            shadow = dark < -SIGMAS
        strong |= core | (weak & (classes == CLOUD))
        cloud = ndimage.binary_dilation(strong, iterations=GROW, mask=weak) | strong
        out = classes.copy()
        here = judged & (classes != NODATA) & (classes != SNOW)
        out[here] = CLEAR
        out[here & shadow] = SHADOW
        out[here & cloud] = CLOUD
        return out

    def agreement(self, prediction: np.ndarray, background: Background) -> np.ndarray:
        """A reference's weight factor [h, w] in 0..1 from its fitted prediction [detect bands,
        h, w] against the background: exp(-(b^2 + d^2) / 2) for its brightening b in blue and
        aerosol and its darkening d in NIR and SWIR (z, 0 when of the other sign), 0 where any
        band is off by more than ``2 x SIGMAS`` or b or d exceeds ``SIGMAS``; 1 where fewer
        than ``MIN_JUDGES`` references judge it."""
        z = self.z(prediction, background)
        with np.errstate(invalid="ignore"):
            bright = np.maximum(self._extreme(z, BRIGHT, largest=False), 0)
            dark = np.maximum(-self._extreme(z, DARK, largest=True), 0)
            off = (bright > SIGMAS) | (dark > SIGMAS) | (np.abs(z) > 2 * SIGMAS).any(axis=0)
            weight = np.exp(-0.5 * (bright**2 + dark**2))
        weight = np.where(off, 0, np.nan_to_num(weight, nan=1.0)).astype(np.float32)
        return np.where(background.count < MIN_JUDGES, np.float32(1), weight)
