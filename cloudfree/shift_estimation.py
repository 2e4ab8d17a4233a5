"""Sub-pixel translation between a SAR and an optical image of the same grid (array level, no I/O).

SAR and optical grey values are unrelated, but both images show the same boundaries (fields,
shores, roads), often with opposite contrast. Each image becomes a complex field of its gradient
orientation with doubled angle, z**2 / |z| for the gradient z = gx + i gy: magnitude |z|, angle
2 theta, so a boundary of either contrast polarity gives the same value (orientation correlation,
Fitch, Kadyrov, Christmas & Kittler 2002; doubled angles for polarity, Granlund 1978). The shift is
the peak of the real cross-correlation of the two fields, refined by a parabola through the peak
and its neighbours; its reliability is the peak-to-sidelobe ratio (PSR, Bolme et al. 2010) over
the search area. Choice and parameters come from benchmarks/coregister_accuracy.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

#: Gaussian smoothing (pixels) before the gradient: suppresses speckle.
SIGMA = 1.5
#: Peak-to-sidelobe ratio from which an estimate is trusted (wrong partners give about 3-4).
PSR_MIN = 7.0
#: Half size of the square around the peak excluded from the sidelobe statistics.
PEAK_EXCLUSION = 4
#: Lags searched beyond --max-shift, for the sidelobe statistics.
SIDELOBE_MARGIN = 6
#: Estimates within this distance (pixels) of the median agree with it.
AGREEMENT = 1.0


@dataclass(frozen=True)
class ShiftEstimate:
    """Displacement (dx right, dy down, pixels) of the SAR content relative to the optical one."""

    dx: float
    dy: float
    psr: float
    reliable: bool


def orientation_field(image: np.ndarray, valid: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Doubled-angle gradient field z**2/|z| of the smoothed image; zero near invalid pixels."""
    weights = ndimage.gaussian_filter(valid.astype(np.float64), sigma)
    smooth = ndimage.gaussian_filter(np.where(valid, image, 0.0), sigma)
    smooth /= np.maximum(weights, 1e-6)  # normalised convolution: no edges at nodata borders
    z = ndimage.sobel(smooth, axis=1) + 1j * ndimage.sobel(smooth, axis=0)
    magnitude = np.abs(z)
    inner = ndimage.binary_erosion(valid, iterations=int(3 * sigma) + 2)
    return np.where(inner & (magnitude > 0), z * z / np.maximum(magnitude, 1e-12), 0)


def _parabola(left: float, centre: float, right: float) -> float:
    """Sub-sample offset of the vertex of the parabola through three equally spaced values."""
    curvature = left - 2 * centre + right
    return 0.0 if curvature >= 0 else 0.5 * (left - right) / curvature


def estimate_shift(sar: np.ndarray, optical: np.ndarray, max_shift: float) -> ShiftEstimate:
    """Shift of the ``sar`` field relative to the ``optical`` one (both from orientation_field)."""
    corr = signal.correlate(sar, optical, mode="full", method="fft").real
    zero = np.array(optical.shape) - 1
    radius = int(np.ceil(max_shift)) + SIDELOBE_MARGIN
    lags = corr[zero[0] - radius: zero[0] + radius + 1, zero[1] - radius: zero[1] + radius + 1]
    iy, ix = np.unravel_index(np.argmax(lags), lags.shape)
    peak = lags[iy, ix]
    dy = iy - radius + _parabola(lags[iy - 1, ix], peak, lags[iy + 1, ix]) if 0 < iy < 2 * radius \
        else float(iy - radius)
    dx = ix - radius + _parabola(lags[iy, ix - 1], peak, lags[iy, ix + 1]) if 0 < ix < 2 * radius \
        else float(ix - radius)
    side = np.ones(lags.shape, bool)
    side[max(0, iy - PEAK_EXCLUSION): iy + PEAK_EXCLUSION + 1,
         max(0, ix - PEAK_EXCLUSION): ix + PEAK_EXCLUSION + 1] = False
    sidelobes = lags[side]  # empty when the window is too small to search (a 1 px scene)
    spread = sidelobes.std() if sidelobes.size > 1 else 0.0
    psr = float((peak - sidelobes.mean()) / spread) if spread > 0 else 0.0
    inside = max(abs(dx), abs(dy)) <= max_shift
    return ShiftEstimate(float(dx), float(dy), psr, bool(psr >= PSR_MIN and inside))


@dataclass(frozen=True)
class CombinedShift:
    """Robust combination of per-window estimates: median of the reliable ones and agreement."""

    dx: float
    dy: float
    psr: float  # median PSR of the agreeing windows (best PSR when none is reliable)
    consistency: float  # fraction of reliable windows within AGREEMENT px of the median
    windows: int
    reliable_windows: int
    reliable: bool


def combine(estimates: list[ShiftEstimate]) -> CombinedShift:
    """Median shift of the reliable windows; reliable when most of them agree with it."""
    good = [e for e in estimates if e.reliable]
    if not good:
        best = max((e.psr for e in estimates), default=0.0)
        return CombinedShift(0.0, 0.0, best, 0.0, len(estimates), 0, False)
    dx = float(np.median([e.dx for e in good]))
    dy = float(np.median([e.dy for e in good]))
    agree = [e for e in good if np.hypot(e.dx - dx, e.dy - dy) <= AGREEMENT]
    consistency = len(agree) / len(good)
    psr = float(np.median([e.psr for e in agree])) if agree else 0.0
    return CombinedShift(dx, dy, psr, consistency, len(estimates), len(good), consistency > 0.5)
