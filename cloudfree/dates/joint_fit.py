"""Two reference dates at once: the target predicted from every band of both.

A single reference adjusted band by band (``radiometry.py``) cannot follow a surface that
changes between dates field by field, as fields green up or are harvested. Two dates, one on
each side in time or both near, together say much more: a regression of each target band on
all the bands of both dates (2 x 13 + 1 coefficients) learns, from the pixels clear in all
three, how each kind of surface changed. On the pool's SEN12MS-CR-TS series
(``benchmarks/reference_fill.py``, benchmarks/records/other-dates.md), adding the pairs to the
single dates raises all 105 cases, by 0.69 dB on average and up to 2.4 dB.

The fit is scene-wide, by ridge least squares on sums gathered window by window (every
``STRIDE``-th row and column: the sums of one pair are a 27 x 27 matrix, whatever the scene
size), its coefficients shrunk towards the dates' plain mean (``RIDGE``), and its residual
variance per band weighs the pair against the single dates where all are clear
(``fill.py``). Groups of more than two dates (``SIZES``) work the same
way, and so does one group of the nearest dates that are mostly clear, all at once
(``WHOLE_CLEAR``): where the months around a target each changed differently, the target is
predicted better by all of them together than by any one or two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cloudfree.dates.radiometry import MIN_COMMON, VARIANCE_FLOOR

if TYPE_CHECKING:
    from cloudfree.dates.references import Reference

#: Groups of dates are formed among this many references nearest in date.
NEAREST = 8
#: Sizes of the groups (2: pairs).
SIZES: tuple[int, ...] = (2,)
#: One group more, of several dates at once: those of the ``NEAREST`` nearest whose own mask
#: finds at least this share clear where ``references.register`` samples them (None: no such
#: group). On the L2A benchmark's targets at odd places in time order (benchmarks/records/l2a.md)
#: it raised ``remove --reference`` from 30.40 to 30.72 dB (every group of four of the nearest
#: dates instead: 30.75, for about ten times the statistics); with ``FEW_PIXELS``, 30.96.
WHOLE_CLEAR: float | None = 0.5
#: Groups used in the fill: those with the smallest mean residual variance.
KEPT = 6
#: Statistics from every STRIDE-th row and column.
STRIDE = 2
#: Fewest pixels clear in the target and in all of a group's dates for its fit where the target
#: is almost all cloud (no date shares ``MIN_COMMON`` clear pixels with it: see
#: ``statistics.FIT_BUFFER``); the sums then count every pixel, not every ``STRIDE``-th,
#: at no cost, as the target has few clear ones. Elsewhere ``MIN_COMMON``. On the L2A
#: benchmark's targets at odd places in time order it moved the five with 94 % cloud by -0.02
#: to +3.08 dB (benchmarks/records/l2a.md).
FEW_PIXELS = 300
#: Pixels whose sums are taken at once (``JointSums.of``).
PIXELS = 8192
#: Ridge penalty per pixel on the bands' coefficients' departure from the dates' plain mean
#: (each target band 1 / dates on that band of every date, 0 on the others; the intercept is
#: free): where the pixels say little, a group predicts the target as the mean of its dates, as
#: the naive mean of other dates does, not as its intercept alone. On the L2A benchmark's
#: targets at odd places in time order (benchmarks/records/l2a.md) shrinking towards the mean
#: instead of towards 0 raised ``remove --reference`` from 31.14 to 31.19 dB (far dates 28.24
#: to 28.27, two clouds 30.79 to 30.84), and the L1C series cut to the L2A bands from 34.51 to
#: 34.57 dB.
RIDGE = 1e-4


@dataclass
class JointSums:
    """Normal equations of one group of dates: gram [f, f], cross [f, bands], squares
    [bands], count (f = dates x bands + 1)."""

    gram: np.ndarray
    cross: np.ndarray
    squares: np.ndarray
    count: int = 0

    @classmethod
    def zeros(cls, dates: int, bands: int) -> JointSums:
        features = dates * bands + 1
        return cls(np.zeros((features, features)), np.zeros((features, bands)),
                   np.zeros(bands))

    @classmethod
    def of(cls, dates: list[np.ndarray], target: np.ndarray) -> JointSums:
        """Sums over the pixels of the dates' and the target's reflectance [bands, n], taken
        ``PIXELS`` at a time (a group of eight 13-band dates has 105 float64 features)."""
        sums = cls.zeros(len(dates), len(target))
        for start in range(0, target.shape[1], PIXELS):
            part = slice(start, start + PIXELS)
            y = target[:, part].T.astype(np.float64)
            a = np.concatenate([d[:, part].T for d in dates] + [np.ones((len(y), 1))], 1,
                               dtype=np.float64)
            sums += cls(a.T @ a, a.T @ y, (y * y).sum(0), len(y))
        return sums

    def __iadd__(self, other: JointSums) -> JointSums:
        self.gram += other.gram
        self.cross += other.cross
        self.squares += other.squares
        self.count += other.count
        return self

    def plain_mean(self) -> np.ndarray:
        """The coefficients [f, bands] of the dates' plain mean: 1 / dates on each target
        band's own band of every date (the dates' bands are the target's, in its order)."""
        bands = self.cross.shape[1]
        dates = (len(self.gram) - 1) // bands
        return np.vstack([np.tile(np.eye(bands) / dates, (dates, 1)), np.zeros((1, bands))])

    def solve(self, stride: int = STRIDE, fewest: int = MIN_COMMON
              ) -> tuple[np.ndarray, np.ndarray] | None:
        """Coefficients [f, bands] and residual variance [bands]; None with fewer than
        ``fewest`` pixels (the sums counting every ``stride``-th row and column)."""
        if self.count * stride**2 < fewest:
            return None
        penalty = RIDGE * self.count * np.eye(len(self.gram))
        penalty[-1, -1] = 0
        coef = np.linalg.solve(self.gram + penalty, self.cross + penalty @ self.plain_mean())
        rss = self.squares - 2 * (coef * self.cross).sum(0) + (coef * (self.gram @ coef)).sum(0)
        return coef, np.maximum(rss / self.count, VARIANCE_FLOOR)


@dataclass
class JointFit:
    """A fitted group: the references' indices (nearest date first), coefficients [f, bands]
    and residual variance [bands]."""

    dates: tuple[int, ...]
    coef: np.ndarray
    variance: np.ndarray

    def predict(self, dates: list[np.ndarray]) -> np.ndarray:
        """The target [bands, h, w] predicted from the dates' reflectance [bands, h, w]."""
        bands, shape = len(dates[0]), dates[0].shape
        coef = self.coef.astype(np.float32)
        out = np.broadcast_to(coef[-1][:, None], (bands, shape[1] * shape[2])).copy()
        for i, date in enumerate(dates):  # [bands, pixels] = coef_i^T @ date, a BLAS product
            out += coef[i * bands : (i + 1) * bands].T @ date.reshape(bands, -1)
        return out.reshape(shape)


def whole_group(nearest: list[Reference]) -> tuple[int, ...]:
    """The indices of the ``WHOLE_CLEAR`` group's dates among the nearest references, nearest
    first (one that ``register`` did not sample counts as clear)."""
    if WHOLE_CLEAR is None:
        return ()
    return tuple(r.index for r in nearest
                 if r.sampled_clear is None or r.sampled_clear >= WHOLE_CLEAR)
