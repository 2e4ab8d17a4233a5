"""A smooth displacement field from per-window shift estimates: outliers out, low-order polynomial.

Each reliable window estimate is a displacement (dx, dy) at the window centre. Outliers are
rejected against a robust fit (residual beyond ``OUTLIER_MADS`` scaled median absolute deviations,
and at least ``OUTLIER_FLOOR`` px), then dx and dy are each fitted by a polynomial in the grid
position of degree 0 (a translation), 1 (affine) or 2 (quadratic); the degree is the one with the
lowest Bayesian information criterion (Schwarz 1978) among those the number of windows supports.
The field is applied in the single resampling: each output block gets the affine transform that
best matches the field over the block (least squares on a 5 x 5 sample), so memory does not grow
with the scene and the error of the linearisation is far below a pixel for smooth fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import rasterio
from rasterio.windows import Window

from cloudfree.coregister.shift_estimation import ShiftEstimate, evidence_dict

#: Residuals beyond this many scaled MADs (and OUTLIER_FLOOR px) mark a window as an outlier.
OUTLIER_MADS = 3.0
#: Residuals below this (px) are never outliers: the estimator's own spread on real pairs.
OUTLIER_FLOOR = 0.5
#: Polynomial degrees tried, and how many windows beyond the coefficients a degree needs.
DEGREES = (0, 1, 2)
SPARE_WINDOWS = 2
#: Rounds of fitting and re-testing the windows at most.
ITERATIONS = 5


@dataclass(frozen=True)
class WindowEstimate:
    """The shift measured on one window of the grid (centre in grid pixels)."""

    window: Window
    dx: float
    dy: float
    significance: float
    reliable: bool
    reason: str = ""
    inlier: bool = False
    evidence: ShiftEstimate | None = None  # the estimate with its per-band and half estimates

    @property
    def centre(self) -> tuple[float, float]:
        return (self.window.col_off + self.window.width / 2,
                self.window.row_off + self.window.height / 2)

    def as_dict(self) -> dict:
        return {"col_off": int(self.window.col_off), "row_off": int(self.window.row_off),
                "width": int(self.window.width), "height": int(self.window.height),
                "dx": round(self.dx, 3), "dy": round(self.dy, 3),
                "significance": round(self.significance, 2), "reliable": self.reliable,
                "inlier": self.inlier, **({"reason": self.reason} if self.reason else {}),
                **(evidence_dict(self.evidence) if self.evidence else {})}


def _terms(cols: np.ndarray, rows: np.ndarray, degree: int, size: tuple[int, int]) -> np.ndarray:
    """Monomials of total degree <= ``degree`` in positions scaled to [-1, 1]."""
    u = 2 * np.asarray(cols, float) / size[0] - 1
    v = 2 * np.asarray(rows, float) / size[1] - 1
    return np.stack([u ** i * v ** (d - i) for d in range(degree + 1) for i in range(d + 1)],
                    axis=-1)


@dataclass(frozen=True)
class ShiftField:
    """Displacement (dx, dy) in grid pixels as polynomials of the grid position."""

    coef_x: tuple[float, ...]
    coef_y: tuple[float, ...]
    degree: int
    size: tuple[int, int]  # grid width, height (positions are scaled by it)
    residual_rms: float = 0.0  # of the inlier windows about the fit, px

    @classmethod
    def constant(cls, dx: float, dy: float, size: tuple[int, int]) -> ShiftField:
        return cls((dx,), (dy,), 0, size)

    def at(self, cols, rows) -> tuple[np.ndarray, np.ndarray]:
        """dx, dy at grid positions (pixel coordinates, corners at integers)."""
        terms = _terms(cols, rows, self.degree, self.size)
        return terms @ np.array(self.coef_x), terms @ np.array(self.coef_y)

    def block_transform(self, window: Window) -> rasterio.Affine:
        """Affine from window pixels to the grid positions to sample there (grid pixels)."""
        i, j = np.meshgrid(np.linspace(0, window.width, 5), np.linspace(0, window.height, 5))
        cols, rows = window.col_off + i.ravel(), window.row_off + j.ravel()
        dx, dy = self.at(cols, rows)
        design = np.stack([i.ravel(), j.ravel(), np.ones(i.size)], axis=1)
        ax = np.linalg.lstsq(design, cols + dx, rcond=None)[0]
        ay = np.linalg.lstsq(design, rows + dy, rcond=None)[0]
        return rasterio.Affine(*ax, *ay)

    def summary(self, samples: int = 32) -> dict:
        """Mean, minimum and maximum of dx, dy over the grid, and the magnitude's maximum."""
        cols, rows = np.meshgrid(np.linspace(0, self.size[0], samples),
                                 np.linspace(0, self.size[1], samples))
        dx, dy = self.at(cols.ravel(), rows.ravel())
        stats = {f"{name}_{f}": round(float(getattr(np, f)(v)), 3)
                 for name, v in (("dx", dx), ("dy", dy)) for f in ("mean", "min", "max")}
        return {"degree": self.degree, **stats,
                "magnitude_max": round(float(np.hypot(dx, dy).max()), 3),
                "residual_rms": round(self.residual_rms, 3)}


def _fit(points: list[WindowEstimate], degree: int, size: tuple[int, int]) -> ShiftField:
    """Least-squares polynomial of one degree through the window estimates."""
    cols, rows = np.array([p.centre for p in points]).T
    terms = _terms(cols, rows, degree, size)
    cx = np.linalg.lstsq(terms, [p.dx for p in points], rcond=None)[0]
    cy = np.linalg.lstsq(terms, [p.dy for p in points], rcond=None)[0]
    field = ShiftField(tuple(cx), tuple(cy), degree, size)
    rx, ry = _residuals(field, points)
    return replace(field, residual_rms=float(np.sqrt(np.mean(rx ** 2 + ry ** 2))))


def _residuals(field: ShiftField, points: list[WindowEstimate]) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.array([p.centre for p in points]).T
    dx, dy = field.at(cols, rows)
    return np.array([p.dx for p in points]) - dx, np.array([p.dy for p in points]) - dy


def _inliers(field: ShiftField, points: list[WindowEstimate]) -> np.ndarray:
    """Windows whose residual is within OUTLIER_MADS scaled MADs (and OUTLIER_FLOOR px)."""
    distance = np.hypot(*_residuals(field, points))
    mad = 1.4826 * np.median(np.abs(distance - np.median(distance)))
    return distance <= max(OUTLIER_FLOOR, np.median(distance) + OUTLIER_MADS * mad)


def _first_inliers(points: list[WindowEstimate], size: tuple[int, int]) -> np.ndarray:
    """A first outlier test that one bad window cannot hide from: each window against the
    affine fit of all the others (leave-one-out); the median shift when too few for that."""
    if len(points) - 1 < 3 + SPARE_WINDOWS:
        median = ShiftField.constant(float(np.median([e.dx for e in points])),
                                     float(np.median([e.dy for e in points])), size)
        return _inliers(median, points)
    distance = np.array([
        np.hypot(*_residuals(_fit(points[:i] + points[i + 1:], 1, size), [p]))[0]
        for i, p in enumerate(points)])
    mad = 1.4826 * np.median(np.abs(distance - np.median(distance)))
    return distance <= max(OUTLIER_FLOOR, np.median(distance) + OUTLIER_MADS * mad)


def _bic(field: ShiftField, n: int) -> float:
    """Bayesian information criterion of a fit to n windows (two coordinates each)."""
    k = 2 * len(field.coef_x)
    return 2 * n * np.log(max(field.residual_rms ** 2, 1e-6)) + k * np.log(2 * n)


def fit_field(estimates: list[WindowEstimate], size: tuple[int, int]
              ) -> tuple[ShiftField | None, list[WindowEstimate]]:
    """The field of the reliable estimates, and the estimates marked inlier or not."""
    reliable = [e for e in estimates if e.reliable]
    if not reliable:
        return None, estimates
    keep = _first_inliers(reliable, size)
    for _ in range(ITERATIONS):  # fit the inliers, re-test every reliable window, until stable
        points = [e for e, k in zip(reliable, keep, strict=True) if k]
        fits = [_fit(points, d, size) for d in DEGREES
                if len(points) >= (d + 1) * (d + 2) // 2 + SPARE_WINDOWS or d == 0]
        field = min(fits, key=lambda f: _bic(f, len(points)))
        again = _inliers(field, reliable)
        if np.array_equal(again, keep):
            break
        keep = again
    fitted = {id(e) for e in points}  # the windows the field was fitted to
    return field, [replace(e, inlier=id(e) in fitted) for e in estimates]
