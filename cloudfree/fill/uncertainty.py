"""The expected error of every filled pixel: ``remove --uncertainty-out``.

Each filled pixel and band gets ``sigma``, the standard deviation of its error (reflectance;
``remove`` writes it in DN), from terms the fill computes anyway:

- every filled pixel: the spread of the clear land around it (``dispersion``: the standard
  deviation of the clear pixels within about ``SPREAD_SIGMA`` px, per band: the fill averages
  them, so the more they differ, the less any one guess is worth) and its distance to the
  nearest clear pixel;
- one date (``local_fill.py``): the fill's ``support``, the summed weight of the clear land of
  the pixel's Sentinel-1 kind in reach (0 where nothing clear of its kind is near, so that the
  S1 classes do not tell it apart from what is), and the share of the pixel that is filled
  rather than restored (``restore.py``: land seen through thin cloud or relit shadow errs less);
- other dates (``dates/fill.py``): the weighted spread of the references' predictions there,
  the weighted mean residual variance of their fits, and the days to the date that weighs
  most; and whether the fits rest on under ``FEW_CLEAR`` of the scene (``few_clear``: the
  largest share clear in both the target and one reference, ``DateStatistics.clear_share``):
  so few clear pixels, often at cloud edges, tell little of the land under the cloud, and
  their residual reads smaller than the fill errs there. Where one date alone is taken, its
  spread is unknown and the clear land's spread stands in for it. The calibration's cases give
  1, 2, 4, 8 and 29 dates (on the L2A-style series 1, 2, 4, 8 and 9), some of them cloudy, so
  that this is fitted too; the references' effective number at the pixel, tried as a further
  term, took a coefficient near 0 and changed no coverage by more than 0.01. A lone reference
  (``lone_reference``: the run was given one date) may err otherwise than several: nothing
  else checks its clouds or its fit, so a thin veil it or the target keeps passes into the
  fill; its sigma gets a factor of its own (see below).

The map from terms to sigma is log-linear, ``log sigma_b = a_b + sum_k c_k f_k`` (the features
``f_k`` below, an intercept per band), one for single-date fills and one for fills from other
dates, fitted by least squares on log |error| against same-date truth (real clouds over clear
real images: L1C scenes and a series of L1C dates, and for the fills from other dates an
L2A-style series of monthly composites too; sigma kept from narrowing with the distance to
clear land), then scaled so that the shares of errors within 1
and 2 sigma come closest to the fit's targets together (``TARGETS`` of
``benchmarks/uncertainty.py``); the fills from a lone reference are scaled to those targets on
their own, and that factor is the coefficient of ``lone_reference``. The errors are
heavier-tailed than a Gaussian, so no one scale gives a Gaussian's 68 % and 95 % at once (held
out, per number of dates: ``docs/benchmarks/uncertainty.md``). The shipped coefficients are
``models/uncertainty.json``, written by ``benchmarks/uncertainty.py --write-calibration``
(its note says on what). Calibration measures follow UnCRtainTS (Ebel et al. 2023), per pixel:
UCE (Laves et al. 2020) and AUCE (Gustafsson et al. 2020).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import erfinv

#: The calibration shipped with the package.
CALIBRATION = Path(__file__).resolve().parents[1] / "models" / "uncertainty.json"
#: The uncertainty output's tag saying what its values are.
SIGMA_MEANING = ("standard deviation of the expected error of each filled pixel, in the image's "
                 "DN; 0 where the pixel is kept as observed")
#: Kinds of output pixel in an uncertainty block.
KEPT, SINGLE_DATE_FILL, FROM_DATES, UNCERTAINTY_NODATA = 0, 1, 2, 255
#: Gaussian (px) of the clear land's local spread, the coarser grid it is measured on, and the
#: wider Gaussian (in steps of that grid) that takes over where no clear land is that near.
SPREAD_SIGMA, SPREAD_STEP, WIDE = 16.0, 4, 4.0
#: Floors (reflectance, px, support, days) that keep the logarithms finite.
FLOOR, DISTANCE_UNIT, SUPPORT_FLOOR, DAYS_UNIT = 2e-3, 4.0, 0.01, 10.0
#: Share of the scene clear in both the target and a reference below which the dates' fits
#: rest on too little of the land to tell of the rest (``few_clear``).
FEW_CLEAR = 0.1
#: Days to a reference taken when it (or the target) has no date.
UNDATED_DAYS = 60.0
#: The features of each kind, in the order of the calibration's coefficients.
FEATURES = {
    "single_date": ("log_dispersion", "log_distance", "log_support", "filled"),
    "reference": ("log_dispersion", "log_distance", "log_spread", "log_residual", "log_days",
                  "lone_reference", "few_clear"),
}


@dataclass
class PixelTerms:
    """What every filled pixel's sigma starts from, on a block: the clear land's local spread
    [C, h, w] (reflectance) and distance to it [h, w] (px); the local fill's support and the
    filled share (1: filled, 0: restored) [h, w]."""

    dispersion: np.ndarray
    distance: np.ndarray
    support: np.ndarray
    filled: np.ndarray

    def crop(self, rows: slice, cols: slice) -> PixelTerms:
        return PixelTerms(self.dispersion[:, rows, cols], self.distance[rows, cols],
                          self.support[rows, cols], self.filled[rows, cols])


@dataclass
class DateTerms:
    """The references' terms on a block: the weighted spread of their predictions and the
    weighted mean residual variance of their fits [C, h, w] (reflectance, and squared)."""

    spread: np.ndarray
    residual: np.ndarray

    def crop(self, rows: slice, cols: slice) -> DateTerms:
        return DateTerms(self.spread[:, rows, cols], self.residual[:, rows, cols])


def local_spread(reflectance: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Standard deviation [C, H, W] of the clear pixels around each pixel (Gaussian weights of
    ``SPREAD_SIGMA`` px, on a grid ``SPREAD_STEP`` times coarser; where none is that near, of
    ``WIDE`` times that; where none is in the block, that of the block's clear pixels, or 0.05
    when it has none)."""
    c, h, w = reflectance.shape
    s = SPREAD_STEP
    ph, pw = -h % s, -w % s

    def coarse(a: np.ndarray) -> np.ndarray:
        a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], mode="edge")
        return a.reshape(*a.shape[:-2], a.shape[-2] // s, s, a.shape[-1] // s, s).mean((-3, -1))

    weight = coarse(clear.astype(np.float32))
    values = np.where(clear, reflectance, 0).astype(np.float32)
    first, second = coarse(values), coarse(values * values)
    fallback = reflectance[:, clear].std(axis=1) if clear.any() else np.full(c, 0.05)
    out = np.empty((c, *weight.shape), np.float32)
    for scale in (SPREAD_SIGMA / s * WIDE, SPREAD_SIGMA / s):
        total = ndimage.gaussian_filter(weight, scale, mode="nearest")
        known = total > 1e-3
        for band in range(c):
            mean = ndimage.gaussian_filter(first[band], scale, mode="nearest") / np.maximum(
                total, 1e-6)
            square = ndimage.gaussian_filter(second[band], scale, mode="nearest") / np.maximum(
                total, 1e-6)
            std = np.sqrt(np.maximum(square - mean * mean, 0))
            base = fallback[band] if scale == SPREAD_SIGMA / s * WIDE else out[band]
            out[band] = np.where(known, std, base)
    full = ndimage.zoom(out, (1, s, s), order=1, mode="nearest", grid_mode=True)
    return full[:, :h, :w].astype(np.float32)


def pixel_terms(reflectance: np.ndarray, clear: np.ndarray, support: np.ndarray | None = None,
                filled: np.ndarray | None = None) -> PixelTerms:
    """The terms of a padded block [C, H, W] with its clear pixels [H, W]; ``support`` and
    ``filled`` from the local fill and the restoration (None: 0 support, all filled)."""
    shape = clear.shape
    distance = (ndimage.distance_transform_edt(~clear) if clear.any()
                else np.full(shape, float(max(shape)))).astype(np.float32)
    return PixelTerms(local_spread(reflectance, clear), distance,
                      np.zeros(shape, np.float32) if support is None else support,
                      np.ones(shape, np.float32) if filled is None else filled)


@dataclass(frozen=True)
class Fit:
    """``log sigma_b = intercept[b] + coefficients . features`` for one kind of fill."""

    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: dict[str, float]

    def log_sigma(self, band: str, features: np.ndarray) -> np.ndarray:
        """log sigma of ``band`` from features [K, ...]."""
        default = float(np.mean(list(self.intercept.values())))
        out = np.full(features.shape[1:], self.intercept.get(band, default), np.float32)
        for c, f in zip(self.coefficients, features, strict=True):
            out += np.float32(c) * f
        return out


def features(kind: str, band: int, pixel: PixelTerms, dates: DateTerms | None = None,
             days: np.ndarray | None = None, references: int = 0, clear_share: float = 1.0
             ) -> np.ndarray:
    """The features [K, h, w] of band ``band`` for a kind of fill (``FEATURES``), the fill from
    other dates having been given ``references`` dates, of which the one sharing most clear
    pixels with the target shares ``clear_share`` of the scene."""
    values = {
        "log_dispersion": lambda: np.log(pixel.dispersion[band] + FLOOR),
        "log_distance": lambda: np.log1p(pixel.distance / DISTANCE_UNIT),
        "log_support": lambda: np.log(pixel.support + SUPPORT_FLOOR),
        "filled": lambda: pixel.filled,
        # one date alone has no spread: it may then differ as much as the land around varies
        "log_spread": lambda: np.log(np.where(dates.spread[band] > 0, dates.spread[band],
                                              pixel.dispersion[band]) + FLOOR),
        "log_residual": lambda: np.log(np.sqrt(np.maximum(dates.residual[band], 0)) + FLOOR),
        "log_days": lambda: np.log1p(days / DAYS_UNIT),
        "lone_reference": lambda: np.full(pixel.distance.shape, float(references == 1)),
        "few_clear": lambda: np.full(pixel.distance.shape, float(clear_share < FEW_CLEAR)),
    }
    return np.stack([values[name]() for name in FEATURES[kind]]).astype(np.float32)


@dataclass
class UncertaintyBlock:
    """One written block: where it is, what each pixel is [h, w] (``KEPT``,
    ``SINGLE_DATE_FILL``, ``FROM_DATES``, ``UNCERTAINTY_NODATA``), and its terms; ``days``
    [h, w] to the date of each pixel's source; the number of ``references`` (other dates) the
    fill had and the largest share of the scene clear in both the target and one of them
    (``DateStatistics.clear_share``)."""

    row: int
    col: int
    bands: tuple[str, ...]
    kind: np.ndarray
    pixel: PixelTerms
    dates: DateTerms | None = None
    days: np.ndarray | None = None
    references: int = 0
    clear_share: float = 1.0


@dataclass(frozen=True)
class SigmaModel:
    """The fitted map from terms to sigma, one fit per kind of fill."""

    single_date: Fit
    reference: Fit

    @classmethod
    def load(cls, path: Path | str = CALIBRATION) -> SigmaModel:
        return _load(str(path))

    def sigma(self, block: UncertaintyBlock) -> np.ndarray:
        """sigma [C, h, w] (reflectance): 0 on kept pixels, NaN at nodata."""
        out = np.zeros((len(block.bands), *block.kind.shape), np.float32)
        out[:, block.kind == UNCERTAINTY_NODATA] = np.nan
        for kind, fit in ((SINGLE_DATE_FILL, self.single_date), (FROM_DATES, self.reference)):
            where = block.kind == kind
            if not where.any():
                continue
            name = "single_date" if kind == SINGLE_DATE_FILL else "reference"
            pixel = block.pixel.crop(*_bounds(where))
            dates = None if block.dates is None else block.dates.crop(*_bounds(where))
            days = None if block.days is None else block.days[_bounds(where)]
            part = where[_bounds(where)]
            for b, band in enumerate(block.bands):
                log_sigma = fit.log_sigma(band, features(name, b, pixel, dates, days,
                                                         block.references, block.clear_share))
                out[b][_bounds(where)] = np.where(part, np.exp(log_sigma),
                                                  out[b][_bounds(where)])
        return out


def _bounds(where: np.ndarray) -> tuple[slice, slice]:
    """The smallest rows and columns holding every True of ``where``."""
    rows, cols = np.nonzero(where.any(1))[0], np.nonzero(where.any(0))[0]
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


@cache
def _load(path: str) -> SigmaModel:
    data = json.loads(Path(path).read_text())
    fits = {}
    for kind in ("single_date", "reference"):
        part = data[kind]
        if tuple(part["features"]) != FEATURES[kind]:
            raise ValueError(f"{path}: {kind} features {part['features']} are not "
                             f"{FEATURES[kind]}")
        fits[kind] = Fit(tuple(part["features"]), tuple(part["coefficients"]),
                         dict(part["intercept"]))
    return SigmaModel(**fits)


def days_to(table: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Days [h, w] from the target to each pixel's source date (``dates.report.days_table``),
    ``UNDATED_DAYS`` where unknown."""
    days = np.abs(table.astype(np.float32))[source]
    return np.where(table[source] == np.iinfo(np.int16).min, UNDATED_DAYS, days)


# calibration measures -----------------------------------------------------------------------


def coverage(error: np.ndarray, sigma: np.ndarray, k: float) -> float:
    """Share of |error| within ``k`` sigma."""
    return float((np.abs(error) <= k * sigma).mean())


def uce(error: np.ndarray, sigma: np.ndarray, bins: int = 20) -> float:
    """Uncertainty calibration error (Laves et al. 2020): over ``bins`` equal-count bins of
    predicted variance, the pixel-weighted mean of |mean squared error - mean variance|; in the
    units of the variance."""
    order = np.argsort(sigma)
    total = 0.0
    for part in np.array_split(order, bins):
        if len(part):
            total += len(part) * abs(float(np.mean(error[part] ** 2))
                                     - float(np.mean(sigma[part] ** 2)))
    return total / len(error)


def auce(error: np.ndarray, sigma: np.ndarray, levels: int = 99) -> float:
    """Area under the calibration error curve (Gustafsson et al. 2020): the mean over
    confidence levels p of |share of errors inside the Gaussian p-interval - p|."""
    z = np.abs(error) / np.maximum(sigma, 1e-12)
    ps = np.arange(1, levels + 1) / (levels + 1)
    # the Gaussian's two-sided p-interval is +- erfinv(p) sqrt(2) sigma
    inside = [(z <= erfinv(p) * math.sqrt(2)).mean() for p in ps]
    return float(np.mean(np.abs(np.array(inside) - ps)))


def discard_curve(error: np.ndarray, sigma: np.ndarray,
                  kept: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9, 1.0)) -> dict[float, float]:
    """RMS error of the most certain share of pixels, for each share in ``kept``."""
    order = np.argsort(sigma, kind="stable")
    return {share: float(np.sqrt(np.mean(error[order[:max(1, int(share * len(order)))]] ** 2)))
            for share in kept}
