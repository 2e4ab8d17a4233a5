"""How much each reference weighs in the fill (``fill.py``): its fit's residual variance and
its distance in time from the target.

A reference's weight at a pixel is (``VARIANCE_UNIT`` / residual variance of its fit there) **
``WEIGHT_POWER`` x its time factor, exp(-days apart / the time scale); the time scale is
``TIME_SCALE``, stretched where the used dates would lean on too few (``MIN_SPREAD``, at most
``MAX_STRETCH`` times). An undated reference counts as far as the farthest dated one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

import numpy as np

from cloudfree.dates.references import Reference

#: Weight of a reference at a pixel: (VARIANCE_UNIT / residual variance of its fit there) **
#: WEIGHT_POWER (the unit, a typical variance, keeps float32 in range). Measured on the pool's
#: series (benchmarks/records/other-dates.md): powers 1, 2, 3 gave +2.7, +4.5, +5.1 dB over the
#: median fill on average, taking the nearest date alone +0.9 dB. With the residual counting
#: every pixel clear in both (``radiometry.py``), on the L2A benchmark's targets at odd places
#: in time order (benchmarks/records/l2a.md) powers 2 to 6 gave 30.41, 30.41, 30.40, 30.39 and
#: 30.39 dB, the closest case +2.32, +2.66, +2.90, +3.07 and +3.18 dB over median fill and
#: +0.09, +0.19, +0.26, +0.31 and +0.36 over the naive mean; 4, the default, also lifts both
#: L1C series checks a little (34.32 to 34.35 dB with the ten L2A bands, 35.77 to 35.80 with
#: all 13).
WEIGHT_POWER = 4.0
VARIANCE_UNIT = 1e-4
#: Pixels (along the last axis) weighed at once by ``reference_weight``: the float64 powers of
#: 13 bands of them stay in a core's cache.
PIXELS = 8192
#: Days over which a reference's weight falls by e (None: dates do not weigh). On 12 of the
#: benchmark's cases 30 days gave +5.21 dB over the median fill, 90 days +5.18, none +5.06.
TIME_SCALE: float | None = 30.0
#: Fewest dates' worth the time factors f of the used references must spread over (their
#: effective number, (sum f)^2 / sum f^2; half the dated references when fewer than twice
#: this): for a target whose near dates all lie on one side (the end of a series) or are few,
#: TIME_SCALE is stretched until they do, so that one date's change under the cloud is not
#: taken alone (monthly dates on both sides spread over about 4, dates 12 days apart with
#: gaps over 6 to 9). Chosen on the L2A benchmark's targets at odd places in time order
#: (benchmarks/records/l2a.md):
#: None, 3, 4 and 5 gave 30.14, 30.20, 30.23 and 30.23 dB, at least the naive mean on 32, 34,
#: 34 and 35 of 35 cases (a TIME_SCALE of 60 days everywhere: 30.18, 34).
MIN_SPREAD: float | None = 5.0
#: The most TIME_SCALE is stretched by (to 90 days): a date days from the target still far
#: outweighs others half a year away, however few they are.
MAX_STRETCH = 3.0


def days_apart(ref: Reference, target_date: date | None) -> tuple[float, int]:
    """Days between the reference and the target (inf when either is undated), then its index:
    the references' order, nearest date first."""
    if ref.acquired is None or target_date is None:
        return math.inf, ref.index
    return abs((ref.acquired - target_date).days), ref.index


class TimeWeights:
    """The references' time factors, with the time scale stretched over the ``used`` ones."""

    def __init__(self, target_date: date | None, references: Sequence[Reference],
                 used: Sequence[Reference]) -> None:
        self.target_date = target_date
        dated = [d for d in (days_apart(r, target_date)[0] for r in references)
                 if not math.isinf(d)]
        #: the days an undated reference counts as (the farthest dated one's)
        self.farthest = max(dated, default=0.0)
        self.scale = spread_scale(np.array([d for d in (days_apart(r, target_date)[0]
                                                        for r in used) if not math.isinf(d)]))

    def factor(self, ref: Reference) -> float:
        """exp(-days / the time scale); 1 when dates do not weigh (``TIME_SCALE`` None)."""
        if self.scale is None:
            return 1.0
        days = days_apart(ref, self.target_date)[0]
        if math.isinf(days):
            days = self.farthest
        return math.exp(-days / self.scale)


def spread_scale(days: np.ndarray) -> float | None:
    """TIME_SCALE, stretched (geometrically, up to MAX_STRETCH times) until the time factors of
    dates ``days`` from the target spread over MIN_SPREAD dates' worth (half of them, when
    fewer than twice that)."""
    if TIME_SCALE is None or MIN_SPREAD is None:
        return TIME_SCALE
    want = min(MIN_SPREAD, len(days) / 2)
    scale = TIME_SCALE
    while days.size and scale < MAX_STRETCH * TIME_SCALE:
        f = np.exp(-(days - days.min()) / scale)
        if f.sum() ** 2 / (f * f).sum() >= want:
            break
        scale *= 1.05
    return min(scale, MAX_STRETCH * TIME_SCALE)


def reference_weight(variance: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """A reference's weight: ``factor`` (its time factor) x (variance / VARIANCE_UNIT) **
    -WEIGHT_POWER, from the residual variance of its fit."""
    weight = np.empty(variance.shape, np.float32)
    along = np.ndim(factor) > 0 and np.shape(factor)[-1] != 1  # one factor per pixel
    for start in range(0, variance.shape[-1], PIXELS):  # the float64 powers kept in the cache
        part = (..., slice(start, start + PIXELS))
        weight[part] = _inverse_power(variance[part] / VARIANCE_UNIT, WEIGHT_POWER)
        weight[part] *= factor[part] if along else factor
    return weight


def _inverse_power(x: np.ndarray, power: float) -> np.ndarray:
    """float32 ``x ** -power``; for a whole ``power``, by squaring in float64 (a few times
    faster than float32's ``pow``, and as exact once rounded)."""
    if power != int(power) or power < 1:
        return x ** np.float32(-power)
    base, out, n = x.astype(np.float64), None, int(power)
    while n:  # binary exponentiation, lowest bit first
        last = n == 1
        if n & 1:  # base itself when it is not squared again (no copy: a fresh array faults)
            out = (base if last else base.copy()) if out is None else \
                np.multiply(out, base, out=out)
        n >>= 1
        if n:
            base *= base
    return np.reciprocal(out, out=out).astype(np.float32)
