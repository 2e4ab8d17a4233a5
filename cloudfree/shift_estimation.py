"""Sub-pixel translation between a SAR and an optical image of the same grid (array level, no I/O).

SAR and optical grey values are unrelated, but both images show the same boundaries (fields,
shores, roads), often with opposite contrast. Each image becomes a complex field of its gradient
orientation with doubled angle, z**2 / |z| for the gradient z = gx + i gy: magnitude |z|, angle
2 theta, so a boundary of either contrast polarity gives the same value (orientation correlation,
Fitch, Kadyrov, Christmas & Kittler 2002; doubled angles for polarity, Granlund 1978). The shift is
the peak of the real cross-correlation of the two fields within the search area, refined by a
parabola through the peak and its neighbours.

Reliability is a significance test on the correlation surface. The fields are zero-padded and
correlated circularly, so every lag of the surface is computed; the lags outside the search area
(with at least half the window overlapping) are what the correlation of two unrelated images
looks like for this very pair: same window size, same texture energy, same smoothness. The peak
is trusted when it stands ``SIGNIFICANCE_MIN`` standard deviations above the mean of those lags.
The threshold comes from benchmarks/coregister_calibration.py (real pairs with known
displacements, and wrong partners).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

#: Gaussian smoothing (pixels) before the gradient: suppresses speckle.
SIGMA = 1.5
#: Standard deviations above the off-search-area lags from which a peak is trusted. The highest
#: of 596 wrong partners reached 6.2 (99 % at most 5.0); at 7, 96.4 % of the displaced real pairs
#: with structure are corrected within 0.5 px (benchmarks/coregister_calibration.py).
SIGNIFICANCE_MIN = 7.0
#: Off-search-area lags needed for the test (a window of 2 x (radius + 3) px gives about 100).
MIN_NULL_LAGS = 100
#: Lags searched beyond --max-shift, so that a peak at the limit is still a local maximum.
SEARCH_MARGIN = 6


@dataclass(frozen=True)
class ShiftEstimate:
    """Displacement (dx right, dy down, pixels) of the SAR content relative to the optical one."""

    dx: float
    dy: float
    significance: float  # peak height in standard deviations of the off-search-area lags
    reliable: bool
    reason: str = ""  # why it is not reliable; empty when it is


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


def correlation_surface(sar: np.ndarray, optical: np.ndarray, radius: int) -> np.ndarray:
    """Real correlation of two fields at every lag, zero lag in the centre (index h+r, w+r)."""
    shape = (optical.shape[0] + 2 * radius, optical.shape[1] + 2 * radius)
    spectrum = fft.fft2(sar, shape) * np.conj(fft.fft2(optical, shape))
    return np.fft.fftshift(fft.ifft2(spectrum).real)


def _null_lags(shape: tuple[int, int], window: tuple[int, int], radius: int) -> np.ndarray:
    """Lags outside the search area where at least half of the window overlaps."""
    rows = np.abs(np.arange(shape[0]) - shape[0] // 2)[:, None]
    cols = np.abs(np.arange(shape[1]) - shape[1] // 2)[None, :]
    half = (rows <= window[0] // 2) & (cols <= window[1] // 2)
    return half & ((rows > radius) | (cols > radius))


def estimate_shift(sar: np.ndarray, optical: np.ndarray, max_shift: float) -> ShiftEstimate:
    """Shift of the ``sar`` field relative to the ``optical`` one (both from orientation_field)."""
    if not (np.any(sar) and np.any(optical)):
        return ShiftEstimate(0.0, 0.0, 0.0, False, "no edges in the overlap")
    radius = int(np.ceil(max_shift)) + SEARCH_MARGIN
    surface = correlation_surface(sar, optical, radius)
    cy, cx = surface.shape[0] // 2, surface.shape[1] // 2
    lags = surface[cy - radius: cy + radius + 1, cx - radius: cx + radius + 1]
    iy, ix = np.unravel_index(np.argmax(lags), lags.shape)
    peak = lags[iy, ix]
    dy = iy - radius + _parabola(lags[iy - 1, ix], peak, lags[iy + 1, ix]) if 0 < iy < 2 * radius \
        else float(iy - radius)
    dx = ix - radius + _parabola(lags[iy, ix - 1], peak, lags[iy, ix + 1]) if 0 < ix < 2 * radius \
        else float(ix - radius)
    null = surface[_null_lags(surface.shape, optical.shape, radius)]
    if null.size < MIN_NULL_LAGS:
        return ShiftEstimate(float(dx), float(dy), 0.0, False,
                             f"window of {optical.shape[1]}x{optical.shape[0]} px too small to "
                             f"test a search of +-{radius} px")
    spread = null.std()
    significance = float((peak - null.mean()) / spread) if spread > 0 else 0.0
    reason = ""
    if significance < SIGNIFICANCE_MIN:
        reason = (f"no significant correlation peak ({significance:.1f} < "
                  f"{SIGNIFICANCE_MIN:g}): too little structure common to S1 and S2 (water, "
                  "cloud, flat land, or images of different places)")
    elif max(abs(dx), abs(dy)) > max_shift:
        reason = f"shift ({dx:.1f}, {dy:.1f}) px beyond the maximum of {max_shift:g} px"
    return ShiftEstimate(float(dx), float(dy), significance, not reason, reason)
