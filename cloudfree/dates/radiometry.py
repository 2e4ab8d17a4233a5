"""Radiometric adjustment of one date to another: robust per-band lines, local and smooth.

For every band the target is predicted from the reference by a line, target = gain x reference
+ offset, fitted on the pixels clear in both. The fit is robust and local:

- robust: least squares, then the pixels whose residual exceeds ``REJECT`` robust standard
  deviations (1.4826 x the median absolute residual, the normal-consistent MAD) are dropped and
  the line fitted again on the rest (a one-step trimmed least squares). Clouds and shadows the
  masks missed, and real changes, are such outliers;
- local: one fit per cell of ``CELL`` x ``CELL`` pixels (phenology and illumination vary across a
  tile), shrunk towards the scene-wide fit by n / (n + ``SHRINK``) so that cells with few common
  pixels stay near it; cells with fewer than ``MIN_PIXELS`` common pixels take the scene-wide
  fit, pooled from every cell's inliers (sums of x, y, x^2, xy, y^2). The gain, offset and residual
  variance are then interpolated bilinearly between cell centres, so the adjustment is a smooth
  field with no steps at cell borders.

The residual variance is how well the reference predicts the target there: the mean squared
error of the line finally used (shrunk as above) over every pixel clear in both, the outliers
included, since under the cloud the date is taken everywhere, on land that changed too; it
weighs the references against each other where several are clear (``fill.py``).
Measured with the outliers left out instead (the trimmed fit's own residual), a date whose
fields changed in part weighs as much as one that did not: on the L2A benchmark's targets at odd
places in time order (benchmarks/records/l2a.md) that gave 30.23 dB against 30.41, the closest case
+2.36 dB over median fill against +2.66 (both with ``weights.WEIGHT_POWER`` 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloudfree.core.separable import Taps

#: Cell size in pixels of the local fits.
CELL = 64
#: Fewest pixels clear in both for a cell's own fit.
MIN_PIXELS = 256
#: Pixels at which a cell's fit and the scene-wide one weigh equally.
SHRINK = 256
#: Residuals beyond this many robust standard deviations are outliers.
REJECT = 3.0
#: Fewest clear pixels of a reference for it to be used at all; and pixels clear in both below
#: which the target's clear pixels are counted without the cloud buffer for the fits
#: (``statistics.py``).
MIN_COMMON = 1000
#: Pixels clear in both at which the scene-wide line and a shift alone weigh equally
#: (``CellFits.field``). With ``VARIANCE_SHRINK`` and ``statistics.FIT_BUFFER``, chosen on
#: the L2A benchmark's targets at odd places in time order (35 cases; 100 and 300 here, 50
#: and 200 there), and scored on the even ones, held out (benchmarks/records/l2a.md).
LINE_SHRINK = 300
#: Pixels clear in both at which the shift counts half (a few pixels, often hazy ones at cloud
#: gaps, must not set the level of a whole fill).
SHIFT_SHRINK = 64
#: Pixels clear in both at which a date's own scene-wide residual variance and the prior weigh
#: equally.
VARIANCE_SHRINK = 50
#: Floor of the residual variance (reflectance^2): one DN of noise.
VARIANCE_FLOOR = 1e-8


@dataclass
class LineSums:
    """Sums of x, y, x^2, xy, y^2 and the count, per band [5, bands] and [bands]: a line's fit;
    and the same sums and count over every point, the outliers included (``every``, [6, bands]),
    on which a line's error is measured (``error``)."""

    sums: np.ndarray
    count: np.ndarray
    every: np.ndarray

    @classmethod
    def zeros(cls, bands: int) -> LineSums:
        return cls(np.zeros((5, bands)), np.zeros(bands), np.zeros((6, bands)))

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, keep: np.ndarray,
           every: np.ndarray | None = None) -> LineSums:
        """Sums over the points ``keep`` [bands, n] of x, y [bands, n] (``every``: the sums of
        all of them, when already known)."""
        xk, yk = np.where(keep, x, 0).astype(np.float64), np.where(keep, y, 0).astype(np.float64)
        sums = np.stack([xk.sum(1), yk.sum(1), (xk * xk).sum(1), (xk * yk).sum(1),
                         (yk * yk).sum(1)])
        count = keep.sum(1).astype(np.float64)
        if every is None:
            every = np.concatenate([sums, count[None]]) if keep.all() else \
                LineSums.of(x, y, np.ones(x.shape, bool)).every
        return cls(sums, count, every)

    def __iadd__(self, other: LineSums) -> LineSums:
        self.sums += other.sums
        self.count += other.count
        self.every += other.every
        return self

    def line(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Least-squares gain, offset and residual variance per band (gain 0 for flat x)."""
        n = np.maximum(self.count, 1)
        sx, sy, sxx, sxy, syy = self.sums / n
        var_x, cov, var_y = sxx - sx * sx, sxy - sx * sy, syy - sy * sy
        gain = np.where(var_x > VARIANCE_FLOOR, cov / np.maximum(var_x, VARIANCE_FLOOR), 0.0)
        offset = sy - gain * sx
        residual = np.maximum(var_y - gain * cov, 0.0) + VARIANCE_FLOOR
        return gain, offset, residual

    def error(self, gain: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Mean squared error per band of the line (gain, offset) over every point, the
        outliers the fit left out included: what the date costs where it is taken."""
        sx, sy, sxx, sxy, syy = self.every[:5] / np.maximum(self.every[5], 1)
        mse = syy - 2 * gain * sxy - 2 * offset * sy + gain * gain * sxx + \
            2 * gain * offset * sx + offset * offset
        return np.maximum(mse, 0.0) + VARIANCE_FLOOR


def cell_sums(x: np.ndarray, y: np.ndarray) -> tuple[LineSums, bool]:
    """A cell's robust sums and True, or the plain sums of too few pixels and False (those only
    join the scene-wide pool); x (reference), y (target) [bands, n]."""
    return grouped_sums(x, y, np.array([x.shape[1]]))[0]


def grouped_sums(x: np.ndarray, y: np.ndarray, pixels: np.ndarray, weight: int = 1
                 ) -> list[tuple[LineSums, bool]]:
    """``cell_sums`` of several cells at once: x, y [bands, n] of their pixels, one cell after
    another, ``pixels`` [cells] how many each has; each pixel stands for ``weight`` pixels (a
    sample of every other row and column: 4), its sums and count multiplied by it. A cell of at
    least ``MIN_PIXELS`` pixels gets its inliers' sums (a trimmed least-squares line per band:
    the pixels whose residual to the line of all exceeds ``REJECT`` robust standard deviations,
    1.4826 x the median absolute residual, are left out), every cell the sums of all its pixels
    (``LineSums.every``). Band by band, so that the temporaries are a few vectors of n; each
    cell's median by a partial sort of its own residuals (not all of them sorted, padded to one
    length) around both middle places at once."""
    count = len(pixels)
    fitted, filled = pixels * weight >= MIN_PIXELS, pixels > 0
    ends = np.cumsum(pixels)
    starts = (ends - pixels)[filled]
    cell = np.repeat(np.arange(count), pixels)
    # each fitted cell's pixels (start, end) and the places of its two middle residuals, sorted
    spans = [(int(e - n), int(e), int(n - 1) // 2, int(n) // 2)
             for e, n in zip(ends[fitted], pixels[fitted], strict=True)]
    middle = np.empty(len(spans))
    every = np.zeros((6, len(x), count))  # x, y, xx, xy, yy and the count, per band and cell
    every[5] = pixels
    kept = every.copy()
    # each band's x and y in float64 and their products, in the same three vectors; the
    # residuals only set which pixels are left out: in float32, as x and y are given
    xb, yb, product = (np.empty(x.shape[1]) for _ in range(3))
    residual = np.empty(x.shape[1], np.float32)
    for band in range(len(x) if filled.any() else 0):
        np.copyto(xb, x[band])
        np.copyto(yb, y[band])
        for i, (a, b) in enumerate(((xb, None), (yb, None), (xb, xb), (xb, yb), (yb, yb))):
            every[i, band, filled] = np.add.reduceat(
                a if b is None else np.multiply(a, b, out=product), starts)
        if not fitted.any():
            continue
        gain, offset, _ = LineSums(every[:5, band], every[5, band], every[:, band]).line()
        np.multiply(np.repeat(gain.astype(np.float32), pixels), x[band], out=residual)
        np.subtract(y[band], residual, out=residual)
        residual -= np.repeat(offset.astype(np.float32), pixels)
        np.abs(residual, out=residual)
        for k, (start, end, low, high) in enumerate(spans):  # each cell's median residual
            part = np.partition(residual[start:end], high if low == high else (low, high))
            middle[k] = (part[low] + part[high]) / 2
        scale = 1.4826 * middle + 1e-4
        limit = np.full(count, np.inf, np.float32)
        limit[fitted] = REJECT * scale
        out = np.flatnonzero(residual > np.repeat(limit, pixels))  # left out of ``kept``
        at, xo, yo = cell[out], xb[out], yb[out]
        for i, w in enumerate((xo, yo, xo * xo, xo * yo, yo * yo)):
            kept[i, band] = every[i, band] - np.bincount(at, w, count)
        kept[5, band] = pixels - np.bincount(at, minlength=count)
    if weight != 1:
        every *= weight
        kept *= weight
    return [(LineSums(kept[:5, :, k], kept[5, :, k], every[:, :, k]), True) if fitted[k] else
            (LineSums(every[:5, :, k], every[5, :, k], every[:, :, k]), False)
            for k in range(count)]


@dataclass(frozen=True)
class FitField:
    """Gain, offset and residual variance per band on the cell grid [bands, rows, cols]."""

    gain: np.ndarray
    offset: np.ndarray
    variance: np.ndarray
    cell: int
    #: The scene-wide line (gain, offset per band) the cells are shrunk towards.
    scene: tuple[np.ndarray, np.ndarray] | None = None

    def at(self, top: int, left: int, height: int, width: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three fields [bands, height, width] on a block of scene pixels (bilinear between
        cell centres, constant beyond the outer ones; the block may reach outside the scene)."""
        return self._interpolated((self.gain, self.offset, self.variance), top, left, height,
                                  width)

    def line_at(self, top: int, left: int, height: int, width: int, bands: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray]:
        """The gain and offset of ``bands`` (indices) only, as :meth:`at` gives them."""
        return self._interpolated((self.gain[bands], self.offset[bands]), top, left, height,
                                  width)

    def _interpolated(self, fields: Sequence[np.ndarray], top: int, left: int, height: int,
                      width: int) -> tuple[np.ndarray, ...]:
        return cells_on_block(fields, self.cell, top, left, height, width)


def cells_on_block(fields: Sequence[np.ndarray], cell: int, top: int, left: int, height: int,
                   width: int) -> tuple[np.ndarray, ...]:
    """Each of ``fields`` [bands, rows, cols] (values per ``cell`` px cell) on a block of scene
    pixels, in float32, bilinear between cell centres and constant beyond the outer ones: the
    two 1-D interpolations as matrix products over the cells the block reaches (one per axis
    and band; four to five times faster than gathering the cells pixel by pixel, the same to
    float32 rounding)."""
    grid_rows, grid_cols = fields[0].shape[1:]
    (rows, down), (cols, across) = (
        _axis(np.arange(top, top + height), cell, grid_rows).block(slice(None)),
        _axis(np.arange(left, left + width), cell, grid_cols).block(slice(None)))
    return tuple(down @ f[:, rows, cols].astype(np.float32) @ across.T for f in fields)


def _axis(coords: np.ndarray, cell: int, count: int) -> Taps:
    """The bilinear weights of the cells [count] at pixel coordinates: between the two nearest
    cell centres, the outer cells' values beyond them."""
    u = np.clip((coords + 0.5) / cell - 0.5, 0, count - 1)
    low = np.floor(u).astype(np.int64)
    upper = u - low
    return Taps(np.stack([low, np.minimum(low + 1, count - 1)], axis=1),
                np.stack([1 - upper, upper], axis=1))


class CellFits:
    """Each cell's robust sums, and the scene-wide pool of their inliers."""

    def __init__(self, bands: int, rows: int, cols: int, cell: int = CELL) -> None:
        self.cell, self.bands = cell, bands
        self.cells: dict[tuple[int, int], LineSums] = {}
        self.shape = (rows, cols)
        self.pooled = LineSums.zeros(bands)

    def add(self, row: int, col: int, sums: LineSums, fitted: bool) -> None:
        """The sums of cell (row, col) (from :func:`cell_sums`): its own fit when ``fitted``;
        the scene-wide pool takes them either way."""
        if fitted:
            self.cells[row, col] = sums
        self.pooled += sums

    @property
    def common(self) -> int:
        """Pixels clear in both over the scene (inliers of fitted cells, all of the others)."""
        return int(self.pooled.count.max()) if self.bands else 0

    @property
    def scene_variance(self) -> np.ndarray:
        """Residual variance per band of the scene-wide fit (``LineSums.error``)."""
        return self.pooled.error(*self.pooled.line()[:2])

    def field(self, prior_variance: np.ndarray) -> FitField:
        """The smooth field of fits. With n pixels clear in both, the scene-wide line is
        blended with a shift alone (gain 1, offset the mean difference times
        n / (n + ``SHIFT_SHRINK``)) in the proportion n / (n + ``LINE_SHRINK``), and the error
        of the line so blended (``LineSums.error``) with ``prior_variance`` [bands] in the
        proportion
        n / (n + ``VARIANCE_SHRINK``): a date shared on a few pixels (a target almost all
        cloud) keeps a line and its own residual, so it is still weighed by how well it
        predicts the target, only leaning towards the date taken as it is."""
        gain0, offset0, _ = self.pooled.line()
        n = self.pooled.count
        sx, sy = self.pooled.sums[:2] / np.maximum(n, 1)
        shift = (sy - sx) * n / (n + SHIFT_SHRINK)
        w = n / (n + LINE_SHRINK)
        gain0, offset0 = w * gain0 + (1 - w), w * offset0 + (1 - w) * shift
        var0 = self.pooled.error(gain0, offset0)
        w = n / (n + VARIANCE_SHRINK)
        var0 = w * var0 + (1 - w) * prior_variance
        shape = (self.bands, *self.shape)
        gain = np.broadcast_to(gain0[:, None, None], shape).copy()
        offset = np.broadcast_to(offset0[:, None, None], shape).copy()
        variance = np.broadcast_to(var0[:, None, None], shape).copy()
        for (r, c), sums in self.cells.items():
            g, o, _ = sums.line()
            w = sums.count / (sums.count + SHRINK)
            gain[:, r, c] = w * g + (1 - w) * gain0
            offset[:, r, c] = w * o + (1 - w) * offset0
            variance[:, r, c] = w * sums.error(gain[:, r, c], offset[:, r, c]) + (1 - w) * var0
        return FitField(gain, offset, variance, self.cell, (gain0, offset0))
