"""The classical fill: every masked pixel replaced, band by band, by the scene's clear-sky median.

It is the network-free model (``--model median-fill``, the default) and the starting point of
the fill network, which predicts a correction on top of it (``networks/fillnet.py``): the
network never sees the values under the mask, so it cannot do worse there than by keeping the
fill.

The median of each band over the scene's clear valid pixels is exact and streams: a first pass
adds every clear pixel to a histogram of reflectance in steps of 1e-4 (one L1C digital number),
so memory does not depend on the scene size.

A scene with fewer than ``MIN_CLEAR_FRACTION`` of its valid pixels clear has no trustworthy
median (what the mask leaves is mostly cloud edge and haze). It is filled with
``PRIOR_REFLECTANCE`` instead: the per-band median of the clear Sentinel-2 L1C images of the
training pool's train split (``scripts/build_training_set.py``; printed by
``scripts/train_default.py``). The fraction was chosen on that split, not on held-out data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloudfree.io.sentinel2 import BANDS

#: Bases of the fill models in ``remove``: the local fill (``local_fill.py``), or the scene
#: median alone (this module).
FILL_METHODS = ("local", "median")
#: Default bound on a fill model's network correction of its base (share of the base, per band):
#: the network, trained on little land and almost no water, otherwise darkens water to a third
#: (benchmarks/records/fill-quality.md, "Water"). On the local base it shrinks with the fill's
#: support (``local_fill.correction_bound``).
MAX_CORRECTION: float | None = 0.25
#: L1C band medians (reflectance, B01..B12 with B8A ninth) of the clear images of the training
#: pool's train split; see the module docstring.
PRIOR_REFLECTANCE: tuple[float, ...] = (
    0.1335, 0.1079, 0.0932, 0.0774, 0.1020, 0.1659, 0.1866,
    0.1846, 0.2068, 0.0781, 0.0015, 0.1540, 0.0904,
)
#: Below this share of clear pixels among the valid ones, the prior replaces the scene median.
MIN_CLEAR_FRACTION = 0.01
#: Below this share, ``remove`` warns that the fill comes from little: the few clear pixels of
#: a mostly cloudy scene lie in a few patches between clouds, often hazy, and their median need
#: not be the land under the clouds. 5 %, a judgement: on the pool's real cloudy/clear pairs
#: with the clear part shrunk to the pixels farthest from cloud, the median fill's error under
#: the mask fell from 0.011 (median over 27-28 pairs) at 1-3 % clear to 0.007 at 5 % and 0.004
#: at 20 % in one half of the scenes; the other half, hazier, showed no trend (0.035-0.041).
FEW_CLEAR_FRACTION = 0.05
#: Histogram step (reflectance) and range: one DN, reflectance 0 to 2.
STEP = 1e-4
BINS = 20001


@dataclass(frozen=True)
class FillSpectrum:
    """The values a fill writes under the mask, and where they come from."""

    values: tuple[float, ...]  # reflectance per band
    source: str  # "scene" (clear-sky median) or "prior" (too few clear pixels)
    clear_fraction: float

    def describe(self) -> str:
        """What the fill of masked pixels starts from, for logs."""
        return ("the scene's clear-sky median" if self.source == "scene" else
                f"the prior spectrum (only {self.clear_fraction:.2%} of the scene is clear)")


class ClearHistogram:
    """Per-band histograms of clear pixels, filled window by window."""

    def __init__(self, bands: int) -> None:
        self.counts = np.zeros((bands, BINS), np.int64)
        self.valid = 0

    def add(self, reflectance: np.ndarray, clear: np.ndarray, valid: np.ndarray) -> None:
        """Count the clear pixels of a window ([C, h, w] reflectance, [h, w] masks)."""
        self.merge(window_counts(reflectance, clear), int(valid.sum()))

    def merge(self, counts: np.ndarray, valid: int) -> None:
        """Add the counts of a window (from ``window_counts``) and its number of valid pixels."""
        self.counts += counts
        self.valid += valid

    def spectrum(self, min_clear_fraction: float = MIN_CLEAR_FRACTION,
                 bands: Sequence[str] = BANDS) -> FillSpectrum:
        """The clear-sky median of every band, or the prior of ``bands`` (the histogram's, in
        order) when too little is clear."""
        clear = int(self.counts[0].sum())
        fraction = clear / self.valid if self.valid else 0.0
        if clear == 0 or fraction < min_clear_fraction:
            prior = dict(zip(BANDS, PRIOR_REFLECTANCE, strict=True))
            return FillSpectrum(tuple(prior[b] for b in bands), "prior", fraction)
        cumulative = np.cumsum(self.counts, axis=1)
        # lower and upper median bins, averaged as numpy's median does for even counts
        low = np.argmax(cumulative >= (clear + 1) // 2, axis=1)
        high = np.argmax(cumulative >= clear // 2 + 1, axis=1)
        values = (low + high) / 2 * STEP
        return FillSpectrum(tuple(float(v) for v in values), "scene", fraction)


def window_counts(reflectance: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Per-band histogram [C, BINS] of the clear pixels of a window (safe to run in threads)."""
    counts = np.zeros((len(reflectance), BINS), np.int64)
    if clear.any():
        for band, image in enumerate(reflectance):  # a band at a time: small temporaries
            bins = image[clear] / STEP
            np.clip(np.rint(bins, out=bins), 0, BINS - 1, out=bins)
            counts[band] = np.bincount(bins.astype(np.intp), minlength=BINS)
    return counts


def fill_masked(reflectance: np.ndarray, mask: np.ndarray, spectrum: FillSpectrum) -> np.ndarray:
    """``reflectance`` [C, H, W] with the pixels of ``mask`` [H, W] set to the fill spectrum."""
    values = np.asarray(spectrum.values, np.float32)[:, None, None]
    return np.where(mask[None], values, reflectance).astype(np.float32)


def fill_image(reflectance: np.ndarray, mask: np.ndarray,
               valid: np.ndarray) -> tuple[np.ndarray, FillSpectrum]:
    """A whole image in memory filled as ``remove`` fills a scene: (filled image, spectrum)."""
    histogram = ClearHistogram(len(reflectance))
    histogram.add(reflectance, valid & ~mask, valid)
    spectrum = histogram.spectrum()
    return fill_masked(reflectance, mask, spectrum), spectrum
