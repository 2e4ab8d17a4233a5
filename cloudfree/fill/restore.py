"""One date: what the land under thin cloud, haze and shadow still shows is restored, and only
the rest is filled.

Given the local fill of a window's masked region (``expected``, ``local_fill.py``), shadows are
relit (``shadow.py``) and thin cloud and haze taken off (``haze.py``); the restored land is
blended with the fill by the haze step's weight, so restoring hands over smoothly to filling
where the cloud turns opaque. The restored land is first held within what the scene's clear land
makes plausible (``LandBounds``): no thicker veil is taken off than leaves each band no darker
than the clear land's darkest and B02 / B04 no bluer than its bluest (``thickest``), the fill
taking over where the veil reads thicker; a pixel already out of bounds as seen is raised to
them band by band (``hold``, which holds a fill network's output too). ``remove`` counts the
clear land of the whole scene in its first pass (``LandHistogram``), so that a pixel's bounds
do not depend on the chunk it is restored in; on an array alone they come from its own clear
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudfree.fill.median import BINS, STEP, window_counts
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.haze import (
    BLUE_PERCENTILE,
    CLOUD,
    DARK_PERCENTILE,
    LAND_BANDS,
    HazeParams,
    dehaze,
    smoothstep_down,
    unveil,
)
from cloudfree.mask.shadow import relight

#: Step and bins of the histogram of the clear land's B02 / B04: 0 to 20 in steps of 0.001.
RATIO_STEP = 1e-3
RATIO_BINS = 20001
#: Rows of the thin cloud's box restored at once (all bands): bounds the temporaries.
ROWS = 64
#: Opacity by which HOT's may exceed the thickest veil a pixel can hold (``thickest``) before the
#: fill takes the pixel over entirely (half the hand-over's span, ``t_restore`` to ``t_fill``).
SLACK = 0.1


@dataclass(frozen=True)
class LandBounds:
    """What restored land is held to: the darkest plausible land per band (0: unbounded) and
    the bluest B02 / B04 (inf: unbounded)."""

    darkest: tuple[float, ...]
    bluest: float


def percentile_bin(counts: np.ndarray, q: float) -> int:
    """The bin of a histogram's ``q`` th percentile (the lower of the two around it)."""
    return int(np.searchsorted(np.cumsum(counts), q / 100 * (counts.sum() - 1), side="right"))


class LandHistogram:
    """Histograms of the clear land: its ``LAND_BANDS`` in steps of one DN (``median.STEP``)
    and its B02 / B04 in ``RATIO_STEP``, filled window by window, in memory that does not grow
    with the scene."""

    def __init__(self, bands: tuple[str, ...]) -> None:
        self.bands = bands
        self.counts = np.zeros((len(bands), BINS), np.int64)
        self.ratios = np.zeros(RATIO_BINS, np.int64)

    def add(self, reflectance: np.ndarray, clear: np.ndarray) -> None:
        """Count the ``clear`` pixels [h, w] of a window's ``reflectance`` [C, h, w]."""
        self.merge(*self.window(reflectance, clear, self.bands))

    def merge(self, counts: np.ndarray, ratios: np.ndarray) -> None:
        """Add the counts of a window (from ``window``)."""
        self.counts += counts
        self.ratios += ratios

    @staticmethod
    def window(reflectance: np.ndarray, clear: np.ndarray, bands: tuple[str, ...]
               ) -> tuple[np.ndarray, np.ndarray]:
        """The counts of the ``clear`` pixels of a window, per band [C, BINS] (0 off
        ``LAND_BANDS``) and of their B02 / B04 [RATIO_BINS] (safe to run in threads)."""
        counts = np.zeros((len(bands), BINS), np.int64)
        ratios = np.zeros(RATIO_BINS, np.int64)
        if not clear.any():
            return counts, ratios
        for band, name in enumerate(bands):
            if name in LAND_BANDS:
                counts[band] = window_counts(reflectance[band:band + 1], clear)[0]
        if {"B02", "B04"} <= set(bands):
            blue = reflectance[bands.index("B02")][clear]
            red = reflectance[bands.index("B04")][clear]
            ratio = blue[red > 0] / red[red > 0] / RATIO_STEP
            np.clip(np.rint(ratio, out=ratio), 0, RATIO_BINS - 1, out=ratio)
            ratios = np.bincount(ratio.astype(np.intp), minlength=RATIO_BINS)
        return counts, ratios

    def bounds(self) -> LandBounds:
        """Each land band's ``DARK_PERCENTILE`` and the ``BLUE_PERCENTILE`` of B02 / B04 of the
        land counted (unbounded where none was)."""
        darkest = tuple(percentile_bin(c, DARK_PERCENTILE) * STEP if c.any() else 0.0
                        for c in self.counts)
        bluest = (percentile_bin(self.ratios, BLUE_PERCENTILE) * RATIO_STEP
                  if self.ratios.any() else np.inf)
        return LandBounds(darkest, bluest)


def land_bounds(reflectance: np.ndarray, clear: np.ndarray, bands: tuple[str, ...]
                ) -> LandBounds:
    """The bounds of the ``clear`` pixels [H, W] of ``reflectance`` [C, H, W] alone."""
    histogram = LandHistogram(bands)
    histogram.add(reflectance, clear)
    return histogram.bounds()


def thickest(seen: np.ndarray, bounds: LandBounds, bands: tuple[str, ...]) -> np.ndarray:
    """The thickest veil [h, w] the pixels ``seen`` [C, h, w] can hold: under a thicker one
    (``haze.unveil``) a land band would come out darker than ``bounds`` allow, or B02 / B04
    bluer; at least 0."""
    cap = np.full(seen.shape[1:], np.inf, np.float32)
    for band, (name, dark) in enumerate(zip(bands, bounds.darkest, strict=True)):
        if dark > 0 and CLOUD[name] > dark:
            np.minimum(cap, (seen[band] - np.float32(dark)) / np.float32(CLOUD[name] - dark),
                       out=cap)
    blue, red = CLOUD["B02"], CLOUD["B04"]
    if np.isfinite(bounds.bluest) and bounds.bluest * red > blue:
        ratio = np.float32(bounds.bluest)
        np.minimum(cap, (ratio * seen[bands.index("B04")] - seen[bands.index("B02")])
                   / np.float32(ratio * red - blue), out=cap)
    return np.maximum(cap, 0, out=cap)


def hold(values: np.ndarray, bounds: LandBounds, bands: tuple[str, ...],
         where: np.ndarray | bool = True) -> None:
    """Raise ``values`` [C, ...] (of ``bands``) to ``bounds`` in place, on ``where`` [...]:
    each land band to its darkest, then B04 to B02 / the bluest ratio (a pixel bluer than any
    clear land lacks red)."""
    for band, dark in enumerate(bounds.darkest):
        if dark > 0:
            np.maximum(values[band], np.float32(dark), out=values[band], where=where)
    if np.isfinite(bounds.bluest) and {"B02", "B04"} <= set(bands):
        red = values[bands.index("B04")]
        np.maximum(red, values[bands.index("B02")] / np.float32(bounds.bluest), out=red,
                   where=where)


@dataclass(frozen=True)
class RestoreParams:
    """Which of the two restorations run (None / False: that part is filled)."""

    haze: HazeParams | None = HazeParams()
    shadows: bool = True


def restore(reflectance: np.ndarray, expected: np.ndarray, region: np.ndarray,
            shadow: np.ndarray, clear: np.ndarray, params: RestoreParams = RestoreParams(),
            bands: tuple[str, ...] = BANDS, bounds: LandBounds | None = None,
            feather: np.ndarray | None = None, error: np.ndarray | None = None,
            corner: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """The base of the ``region`` [H, W] pixels: restored land where it shows, ``expected``
    elsewhere, written over ``expected`` (float32) on the region and returned; and the share
    [H, W] of each that is filled (1: all fill; 0 off the region). Off the region ``expected``
    is left as it is: the local fill's output holds the observed pixels there.
    ``shadow``: the region's shadow pixels; ``clear``: the clear land. Haze needs B02 and B04
    (HOT) among ``bands``; without them, thin cloud is filled.
    Shadows are relit as they are given: ``shadow.tied_shadows`` tells which are. ``bounds``:
    those of the scene's clear land (``LandHistogram``); None: those of ``clear``.
    ``feather``: the composite's share [H, W] of the base against the pixel as seen (the
    feather, ``composite_alpha``), or None. On the pixels whose veil is taken off, the rest of
    that share goes to their restored land instead, and ``feather`` is set to 1 there (in
    place): easing the fill in against the veiled pixel as seen gave the veil back.
    ``error``: the RMS over bands [H, W] by which ``expected`` may be wrong, where it is known
    (``haze.dehaze`` trusts no restored land much further from it). ``corner``: the scene
    coordinates of the array's first pixel, where the shadows' gain is measured on the scene's
    grid (``shadow.relight``)."""
    out = expected
    filled = region.astype(np.float32)
    cloud = region
    if params.shadows and shadow.any():
        # the haze step below reads ``expected`` on the cloud pixels only, not on the shadow's
        out[:, shadow] = relight(reflectance, expected, shadow, corner=corner)[:, shadow]
        filled[shadow] = 0
        cloud = region & ~shadow
    hazy = params.haze is not None and {"B02", "B04"} <= set(bands)
    veil = dehaze(reflectance, expected, cloud, clear, params.haze, bands,
                  error) if hazy else None
    if veil is not None:  # over the box of the thin cloud, its pixels
        (rows, cols), t, weight = veil
        where = cloud[rows, cols]
        seen = reflectance[:, rows, cols]
        held = bounds or land_bounds(reflectance, clear, bands)
        # HOT reads a bluish veil as thicker than it is: taken off as the white cloud, it left
        # the land darker than any clear land (dark specks along the bright cores). No more is
        # taken off than the pixel can hold, and where HOT reads more, the fill takes over
        cap = thickest(seen, held, bands)
        weight = weight * smoothstep_down(t - cap, 0, SLACK)
        if feather is not None:  # the fill eased in against the land, not the veil seen
            eased = feather[rows, cols]
            weight = np.where(where, 1 - (1 - weight) * eased, weight)
            eased[where] = 1
        keep = 1 - weight
        # B04 no lower than B02 / the bluest ratio: the red a white veil's unmixing took too much
        # of is what made the land bluer than any clear land
        t = np.minimum(t, cap)
        box = out[:, rows, cols]
        for top in range(0, len(t), ROWS):  # a strip at a time: small temporaries
            strip = slice(top, top + ROWS)
            land = unveil(seen[:, strip], t[strip], bands)
            hold(land, held, bands)
            for restored, fill in zip(land, box[:, strip], strict=True):
                restored *= weight[strip]  # the blend weight * land + (1 - weight) * expected
                restored += keep[strip] * fill
                np.copyto(fill, restored, where=where[strip])
        filled[rows, cols] = np.where(where, keep, filled[rows, cols])
    return out, filled
