"""Sub-pixel translation between a SAR and an optical image of the same grid (array level, no I/O).

SAR and optical grey values are unrelated, but both images show the same boundaries (fields,
shores, roads), often with opposite contrast. Each image becomes a complex field of its gradient
orientation with doubled angle, z**2 / |z| for the gradient z = gx + i gy: magnitude |z|, angle
2 theta, so a boundary of either contrast polarity gives the same value (orientation correlation,
Fitch, Kadyrov, Christmas & Kittler 2002; doubled angles for polarity, Granlund 1978). The shift is
the peak of the real cross-correlation of the summed SAR fields (VV, VH) with the summed optical
fields (the sum of every band pair's correlation, from one transform of each sum) within the
search area, refined on a grid of 1/20 px around it by evaluating the correlation there directly
(matrix-multiply DFT; Guizar-Sicairos, Thurman & Fienup 2008). The real
part of the correlation of two complex fields is the sum of the correlations of their real parts
and of their imaginary parts, so each field is transformed as two real images (half spectra) and
each surface comes back by one real inverse transform, half the cost of a complex one.

Two pieces of evidence decide whether it is trusted (``RULE``, calibrated by
benchmarks/coregister_calibration.py on real pairs with known displacements, wrong partners,
featureless and cloudy pairs):

- significance: the fields are zero-padded and correlated circularly, so every lag of the surface
  is computed; the lags outside the search area (with at least half the window overlapping) are
  what the correlation of two unrelated images looks like for this very pair (same window size,
  texture energy, smoothness). The peak's height in their standard deviations is its significance.
- agreement of disjoint halves: the window is split into left and right halves, and into top and
  bottom halves, and each half is estimated on its own. On the right partner the halves of at
  least one split find the whole window's shift (one split is enough: a cloud or a lake may
  blank one half); on a wrong partner a chance peak does not repeat on independent content.

For reports (``evidence``), each optical band is also estimated against each polarisation on its
own; these estimates and their spread are reported, not used by the decision: on the pool's
weaker right pairs they spread by 1-2.6 px, and they can agree on a wrong partner (the visible
bands share their boundaries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

from cloudfree.core import separable

#: Gaussian smoothing (pixels) before the gradient: suppresses speckle.
SIGMA = 1.5
#: Sub-pixel steps per pixel of the final peak search (``_refine``).
UPSAMPLE = 20


@dataclass(frozen=True)
class Rule:
    """An estimate is trusted when its peak is significant and the halves of the window agree."""

    significance: float  # least significance of the whole window's peak
    disagreement: float  # px: largest distance of a half's estimate from the whole window's


#: The decision, calibrated for --max-shift 5, 10 and 20 (benchmarks/coregister_calibration.py,
#: docs/benchmarks/coregister.md): no wrong partner of 836 passes at any of them, and 94.2-95.2 %
#: of the displaced pool pairs with structure are corrected within 0.5 px (the misses: one
#: snow-covered patch with too few clear pixels), against 93.5-94.5 % for significance >= 7
#: alone, which let a wrong partner through at 20 px.
RULE = Rule(significance=6.5, disagreement=3.0)


#: Off-search-area lags needed for the test (a window of 2 x (radius + 3) px gives about 100).
MIN_NULL_LAGS = 100
#: Lags searched beyond --max-shift, so that a peak at the limit is still a local maximum.
SEARCH_MARGIN = 6


@dataclass(frozen=True)
class BandEstimate:
    """The correlation peak of one optical band against one polarisation."""

    optical: str
    sar: str
    dx: float
    dy: float
    significance: float

    def as_dict(self) -> dict:
        return {"optical": self.optical, "sar": self.sar, "dx": round(self.dx, 3),
                "dy": round(self.dy, 3), "significance": round(self.significance, 2)}


@dataclass(frozen=True)
class ShiftEstimate:
    """Displacement (dx right, dy down, pixels) of the SAR content relative to the optical one."""

    dx: float
    dy: float
    significance: float  # peak height in standard deviations of the off-search-area lags
    reliable: bool
    reason: str = ""  # why it is not reliable; empty when it is
    bands: tuple[BandEstimate, ...] = ()  # every optical band against every polarisation
    spread: float | None = None  # median distance (px) of the band estimates from their median
    # (None: the bands were not estimated)
    halves: Mapping[str, tuple[float, float]] | None = None  # left, right, top, bottom: dx, dy
    disagreement: float | None = None  # px, of the halves from the whole (the better split)


def orientation_field(image: np.ndarray, valid: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    """Doubled-angle gradient field z**2/|z| of the smoothed image; zero near invalid pixels."""
    return orientation_fields(image[None], valid, sigma)[0]


def orientation_fields(images: np.ndarray, valid: np.ndarray, sigma: float = SIGMA
                       ) -> list[np.ndarray]:
    """``orientation_field`` of each of ``images`` [B, H, W] sharing one ``valid`` mask (its
    weights and erosion computed once)."""
    outer = ~eroded(valid, int(3 * sigma) + 2)
    smooth = gaussian(np.where(valid, images, 0), sigma)
    if not valid.all():  # normalised convolution: no edges at nodata borders
        smooth /= np.maximum(gaussian(valid, sigma), 1e-6)
    fields = []
    for image in smooth:
        gx, gy = sobel(image)
        # z**2 / |z| for z = gx + i gy, zero outside ``inner`` (where z = 0 it is 0 whatever
        # the scale), in place: a third of the time
        field = np.empty(image.shape, np.complex64)
        twice = np.multiply(gx, 2)
        twice *= gy
        gx *= gx
        gy *= gy
        scale = np.add(gx, gy)
        np.sqrt(scale, out=scale)
        np.divide(1, np.maximum(scale, 1e-12, out=scale), out=scale)
        scale[outer] = 0
        np.multiply(twice, scale, out=field.imag)
        gx -= gy
        np.multiply(gx, scale, out=field.real)
        fields.append(field)
    return fields


def gaussian(images: np.ndarray, sigma: float) -> np.ndarray:
    """``ndimage.gaussian_filter`` with ``sigma`` on the last two axes of ``images`` [..., H, W]
    (mirrored edges, kernel truncated at 4 sigma), as float32 matrix products (separable.py):
    half the time, the same values to float32 rounding."""
    return separable.gaussian(images, sigma, int(4 * sigma + 0.5), "reflect")


def sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ndimage.sobel`` along columns and along rows (mirrored edges), by array slicing: a
    third of the time of its four one-dimensional passes."""
    padded = np.pad(image, 1, mode="symmetric")  # ndimage's "reflect"
    across = padded[:-2] + 2 * padded[1:-1] + padded[2:]  # smoothed down the rows
    down = padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]  # and along them
    return across[:, 2:] - across[:, :-2], down[2:] - down[:-2]


def eroded(valid: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_erosion(valid, iterations=...)`` (cross element, outside the array
    invalid): the pixels farther than ``iterations`` in city-block distance from any invalid
    one, by one distance transform instead of an erosion per iteration (by slicing when only
    the outside is invalid)."""
    if valid.all():
        inner = np.zeros(valid.shape, bool)
        inner[iterations:valid.shape[0] - iterations, iterations:valid.shape[1] - iterations] = True
        return inner
    padded = np.pad(valid, 1)
    return ndimage.distance_transform_cdt(padded, metric="taxicab")[1:-1, 1:-1] > iterations


def _parabola(left: float, centre: float, right: float) -> float:
    """Sub-sample offset of the vertex of the parabola through three equally spaced values."""
    curvature = left - 2 * centre + right
    return 0.0 if curvature >= 0 else 0.5 * (left - right) / curvature


def _spectrum(field: np.ndarray, shape: tuple[int, int], conjugate: bool = False
              ) -> np.ndarray:
    """Half spectra [2, H', W' // 2 + 1] of the real and the imaginary part of a complex field
    [H, W] zero-padded to ``shape`` (H', W'), or their complex conjugates."""
    planes = np.moveaxis(field.view(field.real.dtype).reshape(*field.shape, 2), -1, 0)
    spectrum = fft.rfft2(planes, shape)
    return np.conj(spectrum, out=spectrum) if conjugate else spectrum


def _cross(sar: np.ndarray, optical: np.ndarray) -> np.ndarray:
    """The half spectrum of the real part of the correlation of a SAR ``_spectrum`` with a
    conjugated optical one."""
    cross = sar[0] * optical[0]
    cross += sar[1] * optical[1]
    return cross


def _surface(cross: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The correlation surface of a ``_cross`` (zero lag at [0, 0], negative lags wrapped to the
    end: not shifted to the centre, which would copy it twice)."""
    return fft.irfft2(cross, shape)


def _refine(cross: np.ndarray, shape: tuple[int, int], dx: float, dy: float
            ) -> tuple[float, float]:
    """The highest lag within 1 px of (dx, dy), on a grid of 1/UPSAMPLE px, of the correlation
    whose half spectrum is ``cross``: the band-limited surface evaluated directly by a
    matrix-multiply DFT (Guizar-Sicairos, Thurman & Fienup 2008), free of the bias of a
    parabola through integer lags. The columns of the half spectrum but the first (and the
    last, for an even width) stand for their conjugate twins too: they count twice."""
    steps = np.arange(-UPSAMPLE, UPSAMPLE + 1) / UPSAMPLE
    ys, xs = dy + steps, dx + steps
    twice = np.full(cross.shape[1], 2.0)
    twice[0] = 1.0
    if shape[1] % 2 == 0:
        twice[-1] = 1.0
    rows = np.exp(2j * np.pi * np.outer(ys, np.fft.fftfreq(shape[0])))
    cols = np.exp(2j * np.pi * np.outer(np.fft.rfftfreq(shape[1]), xs)) * twice[:, None]
    surface = (rows @ cross @ cols).real
    iy, ix = np.unravel_index(np.argmax(surface), surface.shape)
    return float(xs[ix]), float(ys[iy])


def _null_lags(shape: tuple[int, int], window: tuple[int, int], radius: int) -> np.ndarray:
    """Lags outside the search area where at least half of the window overlaps (laid out as
    ``_surface``'s)."""
    rows = np.abs(np.arange(shape[0]) - shape[0] // 2)[:, None]
    cols = np.abs(np.arange(shape[1]) - shape[1] // 2)[None, :]
    half = (rows <= window[0] // 2) & (cols <= window[1] // 2)
    return np.fft.ifftshift(half & ((rows > radius) | (cols > radius)))


def _search_area(surface: np.ndarray, radius: int) -> np.ndarray:
    """The lags -radius..radius on both axes of a ``_surface`` [2 radius + 1, 2 radius + 1]."""
    lag = np.arange(-radius, radius + 1)
    return surface[np.ix_(lag % surface.shape[0], lag % surface.shape[1])]


def _half_search_area(cross: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """``_search_area`` of the ``_surface`` of ``cross`` without the rest of it: the inverse
    transform down the columns, then along the rows of the search area only."""
    lag = np.arange(-radius, radius + 1)
    rows = fft.ifft(cross, axis=0)[lag % shape[0]]
    return fft.irfft(rows, shape[1], axis=1)[:, lag % shape[1]]


def _peak(lags: np.ndarray) -> tuple[float, float, float]:
    """Sub-pixel position (dx, dy) of the highest lag of a ``_search_area``, and its value."""
    radius = lags.shape[0] // 2
    iy, ix = np.unravel_index(np.argmax(lags), lags.shape)
    peak = lags[iy, ix]
    dy = iy - radius + _parabola(lags[iy - 1, ix], peak, lags[iy + 1, ix]) if 0 < iy < 2 * radius \
        else float(iy - radius)
    dx = ix - radius + _parabola(lags[iy, ix - 1], peak, lags[iy, ix + 1]) if 0 < ix < 2 * radius \
        else float(ix - radius)
    return float(dx), float(dy), float(peak)


def _significant_peak(surface: np.ndarray, radius: int, null: np.ndarray
                      ) -> tuple[float, float, float]:
    """``_peak`` of a ``_surface``'s search area, with its significance instead of its value."""
    dx, dy, peak = _peak(_search_area(surface, radius))
    values = surface[null]
    spread = values.std()
    return dx, dy, float((peak - values.mean()) / spread) if spread > 0 else 0.0


def band_spread(bands: Sequence[BandEstimate]) -> float:
    """Median distance (px) of the band estimates from their coordinate-wise median."""
    if not bands:
        return 0.0
    points = np.array([(b.dx, b.dy) for b in bands])
    return float(np.median(np.hypot(*(points - np.median(points, axis=0)).T)))


def _halves(shape: tuple[int, int]) -> dict[str, tuple[slice, slice]]:
    h, w = shape
    return {"left": (slice(None), slice(0, w // 2)), "right": (slice(None), slice(w // 2, None)),
            "top": (slice(0, h // 2), slice(None)), "bottom": (slice(h // 2, None), slice(None))}


def _total(arrays) -> np.ndarray:
    """The sum of arrays of one shape (a new array)."""
    arrays = iter(arrays)
    total = next(arrays).copy()
    for array in arrays:
        total += array
    return total


def halves_disagreement(whole: tuple[float, float], halves: Mapping[str, tuple[float, float]]
                        ) -> float:
    """Over the two splits, the smaller of the larger distance (px) of a half from the whole."""
    def far(*names: str) -> float:
        return max(float(np.hypot(halves[n][0] - whole[0], halves[n][1] - whole[1]))
                   for n in names)
    return min(far("left", "right"), far("top", "bottom"))


def estimate_shift(sar: Mapping[str, np.ndarray], optical: Mapping[str, np.ndarray],
                   max_shift: float, evidence: bool = False) -> ShiftEstimate:
    """Shift of the SAR fields relative to the optical ones (orientation_field, keyed by name).

    The halves are estimated only where the peak is significant (below that, the decision does
    not look at them), and the bands not at all, unless ``evidence`` asks for both (reports)."""
    if not (any(np.any(f) for f in sar.values()) and any(np.any(f) for f in optical.values())):
        return ShiftEstimate(0.0, 0.0, 0.0, False, "no edges in the overlap")
    window = next(iter(optical.values())).shape
    radius = int(np.ceil(max_shift)) + SEARCH_MARGIN
    shape = (window[0] + 2 * radius, window[1] + 2 * radius)
    null = _null_lags(shape, window, radius)
    if null.sum() < MIN_NULL_LAGS:
        return ShiftEstimate(0.0, 0.0, 0.0, False,
                             f"window of {window[1]}x{window[0]} px too small to test a search "
                             f"of +-{radius} px")
    # the whole window's correlation is that of the summed fields: two transforms, not one per
    # field
    sar_sum, optical_sum = _total(sar.values()), _total(optical.values())
    sar_whole = _spectrum(sar_sum, shape)
    optical_whole = _spectrum(optical_sum, shape, conjugate=True)
    cross = _cross(sar_whole, optical_whole)
    dx, dy, significance = _significant_peak(_surface(cross, shape), radius, null)
    dx, dy = _refine(cross, shape, dx, dy)
    bands = ()
    if evidence:
        sar_spectra = {name: _spectrum(f, shape) for name, f in sar.items()}
        optical_spectra = {name: _spectrum(f, shape, conjugate=True)
                           for name, f in optical.items()}
        bands = tuple(BandEstimate(o, s, *_significant_peak(
                          _surface(_cross(sar_spectra[s], optical_spectra[o]), shape), radius,
                          null))
                      for o in optical_spectra for s in sar_spectra)
    spread = band_spread(bands) if evidence else None
    weak = weak_peak(significance)
    if weak and not evidence:
        return ShiftEstimate(dx, dy, significance, False, weak)
    halves = {}
    for first, second in (("left", "right"), ("top", "bottom")):
        # the first half at the origin (a correlation does not change when both images move by
        # the same amount); the other half's spectra: the whole's less the first's
        part = _halves(window)[first]
        spectra = (_spectrum(sar_sum[part], shape),
                   _spectrum(optical_sum[part], shape, conjugate=True))
        halves[first] = _peak(_half_search_area(_cross(*spectra), shape, radius))[:2]
        halves[second] = _peak(_half_search_area(
            _cross(sar_whole - spectra[0], optical_whole - spectra[1]), shape, radius))[:2]
    disagreement = halves_disagreement((dx, dy), halves)
    reason = decide(significance, disagreement, dx, dy, max_shift)
    return ShiftEstimate(dx, dy, significance, not reason, reason, bands, spread, halves,
                         disagreement)


def weak_peak(significance: float, rule: Rule = RULE) -> str:
    """Why a peak of this significance is not to be trusted whatever else; empty if it may be."""
    if significance < rule.significance:
        return (f"no significant correlation peak (significance {significance:.1f}, "
                f"{rule.significance:g} needed): Sentinel-1 and Sentinel-2 have too few edges "
                "in common to measure a shift (usual over water, cloud or flat land)")
    return ""


def decide(significance: float, disagreement: float, dx: float, dy: float, max_shift: float,
           rule: Rule = RULE) -> str:
    """Why an estimate is not to be trusted; empty when it is."""
    weak = weak_peak(significance, rule)
    if weak:
        return weak
    if disagreement > rule.disagreement:
        return (f"the halves of the window disagree (by {disagreement:.1f} px > "
                f"{rule.disagreement:g}): a chance peak (wrong partner?) or too little structure")
    if max(abs(dx), abs(dy)) > max_shift:
        return f"shift ({dx:.1f}, {dy:.1f}) px beyond the maximum of {max_shift:g} px"
    return ""


def evidence_dict(estimate: ShiftEstimate) -> dict:
    """The evidence behind an estimate, for reports: halves, their disagreement, every band
    (those estimated)."""
    out = {}
    if estimate.halves is not None:
        out["halves_disagreement"] = round(estimate.disagreement, 3)
        out["halves"] = {k: {"dx": round(v[0], 3), "dy": round(v[1], 3)}
                         for k, v in estimate.halves.items()}
    if estimate.spread is not None:
        out["band_spread"] = round(estimate.spread, 3)
        out["band_estimates"] = [b.as_dict() for b in estimate.bands]
    return out
