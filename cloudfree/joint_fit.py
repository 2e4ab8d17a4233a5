"""Two reference dates at once: the target predicted from every band of both.

A single reference adjusted band by band (``radiometry.py``) cannot follow a surface that
changes between dates field by field, as fields green up or are harvested. Two dates, one on
each side in time or both near, together say much more: a regression of each target band on
all the bands of both dates (2 x 13 + 1 coefficients) learns, from the pixels clear in all
three, how each kind of surface changed. On the pool's SEN12MS-CR-TS series
(``benchmarks/reference_fill.py``, README), adding the pairs to the single dates raises all 105
cases, by 0.69 dB on average and up to 2.4 dB.

The fit is scene-wide, by ridge least squares on sums gathered window by window (every
``STRIDE``-th row and column: the sums of one pair are a 27 x 27 matrix, whatever the scene
size), and its residual variance per band weighs the pair against the single dates where
both are clear (``reference_fill.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudfree.radiometry import MIN_COMMON, VARIANCE_FLOOR

#: Pairs are formed among this many references nearest in date.
NEAREST = 8
#: Pairs used in the fill: those with the smallest mean residual variance.
KEPT = 6
#: Statistics from every STRIDE-th row and column.
STRIDE = 2
#: Ridge penalty per pixel on the coefficients of the bands (not the intercept).
RIDGE = 1e-4


@dataclass
class PairSums:
    """Normal equations of one pair: gram [f, f], cross [f, bands], squares [bands], count."""

    gram: np.ndarray
    cross: np.ndarray
    squares: np.ndarray
    count: int = 0

    @classmethod
    def zeros(cls, bands: int) -> PairSums:
        features = 2 * bands + 1
        return cls(np.zeros((features, features)), np.zeros((features, bands)),
                   np.zeros(bands))

    @classmethod
    def of(cls, first: np.ndarray, second: np.ndarray, target: np.ndarray) -> PairSums:
        """Sums over the pixels of ``first``, ``second`` and ``target`` [bands, n]."""
        a = design(first, second)
        y = target.T.astype(np.float64)
        return cls(a.T @ a, a.T @ y, (y * y).sum(0), len(y))

    def __iadd__(self, other: PairSums) -> PairSums:
        self.gram += other.gram
        self.cross += other.cross
        self.squares += other.squares
        self.count += other.count
        return self

    def solve(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Coefficients [f, bands] and residual variance [bands]; None with too few pixels."""
        if self.count * STRIDE**2 < MIN_COMMON:
            return None
        penalty = RIDGE * self.count * np.eye(len(self.gram))
        penalty[-1, -1] = 0
        coef = np.linalg.solve(self.gram + penalty, self.cross)
        rss = self.squares - 2 * (coef * self.cross).sum(0) + (coef * (self.gram @ coef)).sum(0)
        return coef, np.maximum(rss / self.count, VARIANCE_FLOOR)


def design(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The regression's design matrix [n, 2 bands + 1] of two dates' bands [bands, n]."""
    return np.concatenate([first.T, second.T, np.ones((first.shape[1], 1))], 1,
                          dtype=np.float64)


@dataclass
class PairFit:
    """A fitted pair: the references' indices, coefficients [f, bands], variance [bands]."""

    first: int
    second: int
    coef: np.ndarray
    variance: np.ndarray

    def predict(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """The target [bands, h, w] predicted from the two dates' reflectance [bands, h, w]."""
        bands = len(first)
        coef = self.coef.astype(np.float32)
        out = np.einsum("khw,kb->bhw", first, coef[:bands])
        out += np.einsum("khw,kb->bhw", second, coef[bands : 2 * bands])
        out += coef[-1][:, None, None]
        return out
