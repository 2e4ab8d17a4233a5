"""Thin cloud and haze: take the veil off where the land still shows, leave the rest to the fill.

A pixel under a cloud of opacity t is about (1 - t) * land + t * cloud, per band (the blend of
``benchmarks/one_date_quality.py``). Where t is small the land's texture is still there, and a
fill would throw it away. Here, over the masked region of a window:

- the opacity is read from the haze optimised transform HOT = B02 - 0.5 B04 (Zhang, Guindon
  and Cihlar 2002): haze and cloud raise blue more than red, bright land does not. t is the
  excess of HOT over that of the clear land expected there (``expected``: the local fill,
  ``local_fill.py``), as a share of an opaque cloud's excess, smoothed over the region but
  never above the pixel's own excess nor more than ``TEXTURE`` below it. Haze
  levels from HOT are how haze removal in atmospheric correction works (per-level dark-object
  subtraction, Zhang et al. 2002; Liang, Fang and Chen 2001);
- the land is unmixed: (observed - t * cloud) / (1 - t) per band, with the cloud spectrum
  ``CLOUD`` of the pool's opaque cores, so the land's level and texture come from the pixel;
- it is trusted where t is below ``t_restore`` and handed over smoothly to the fill up to
  ``t_fill``; and less where the restored land strays from the expected one by more than
  ``spread`` times the spread of the clear land around (then the "land" seen is the cloud's own
  structure): weight exp(-d^2 / (2 (spread * s)^2)), d the RMS over bands of the smoothed
  difference, s that of the clear land's local standard deviation;
- the restored land is bounded by the scene's clear land (``restore.LandHistogram``, applied by
  ``restore.py``): no darker in one of the land's bands than its ``DARK_PERCENTILE``, no bluer
  (B02 / B04) than its ``BLUE_PERCENTILE``. The veil at a cloud's edge is not the opaque core's
  ``CLOUD``: haze raises blue more than red, so HOT reads it as thicker than it is, and
  unmixing it with a white cloud took too much off every band: the land came out as dark
  blue-black specks along the bright cores. So no thicker veil is taken off than leaves the
  land within those bounds in every band at once (``restore.thickest``, a dark-object limit),
  and where HOT reads more, the pixel is handed over to the fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudfree.core.separable import block_sums, separable, upsample_taps
from cloudfree.core.separable import gaussian as separable_gaussian
from cloudfree.io.sentinel2 import BANDS

#: Reflectance of opaque cloud, B01..B12 (B8A ninth): per band, the median over the pool's
#: cloudy L1C images (34 with 500+ such pixels) of their median where the cloud score exceeds 0.5.
CLOUD: dict[str, float] = dict(zip(BANDS, (
    0.538, 0.525, 0.494, 0.524, 0.546, 0.590, 0.610, 0.598, 0.629, 0.318, 0.013, 0.463, 0.354,
), strict=True))
#: Gaussian (px) of the local spread of the clear land around, and the coarser grid it is
#: measured on.
SPREAD_SIGMA = 16.0
SPREAD_STEP = 4
#: Opacity by which a pixel's own HOT excess may exceed the smoothed one around it and still be
#: read as the land's texture rather than veil (set a priori, half the hand-over's start).
TEXTURE = 0.05
#: Channels smoothed at once (each needs two temporaries of its size).
CHANNELS = 1
#: Percentile of the scene's clear land (per band) that restored land is raised to where it
#: comes out darker: the 1st, so that the darkest clear land (shadowed slopes, water) still
#: bounds it and a few dark outliers (a single pixel of a cloud's shadow) do not. Set a priori,
#: not tuned (benchmarks/records/fill-quality.md).
DARK_PERCENTILE = 1.0
#: Percentile of the clear land's blue over red (B02 / B04) that restored land is held to (its
#: red raised) where it comes out bluer: the 99th, the same share at the other end.
BLUE_PERCENTILE = 99.0
#: Bands whose restored land is bounded by the clear land's: not B01, B09 and B10, which see the
#: atmosphere (aerosol, water vapour, cirrus) more than the land.
LAND_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


@dataclass(frozen=True)
class HazeParams:
    """Where the land is restored rather than filled, and how smooth the opacity is."""

    t_restore: float = 0.1  # opacity up to which the restored land is taken
    t_fill: float = 0.3  # opacity from which the fill is
    sigma: float = 4.0  # px, smoothness of the opacity
    spread: float = 0.75  # trust the restored land within this many spreads of the land around


def smooth_within(values: np.ndarray, where: np.ndarray, sigma: float,
                  density: np.ndarray | None = None) -> np.ndarray:
    """Normalised Gaussian of ``values`` [C, H, W] over the pixels ``where`` [H, W] (Knutsson
    and Westin 1993): each pixel's weighted mean of the ``where`` pixels around it.
    ``density``: the Gaussian of ``where`` itself (``where_density``), when already known."""
    if density is None:
        density = where_density(where, sigma)
    out = gaussian(values, sigma, where)
    out /= density
    return out


def where_density(where: np.ndarray, sigma: float) -> np.ndarray:
    """The Gaussian of ``where`` [H, W], at least 1e-6: the weight of ``smooth_within``'s
    means."""
    density = gaussian(where[None], sigma)[0]
    return np.maximum(density, np.float32(1e-6), out=density)


def gaussian(a: np.ndarray, sigma: float, where: np.ndarray | None = None) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` of [C, H, W] (only its ``where`` pixels, 0 elsewhere)
    over the last two axes, truncated at 4 sigma, the edge values held beyond the edges; in
    float32, ``CHANNELS`` at a time (small temporaries)."""
    parts = []
    for start in range(0, len(a), CHANNELS):
        part = a[start:start + CHANNELS].astype(np.float32, copy=False)
        if where is not None:
            part = np.where(where, part, np.float32(0))
        parts.append(separable_gaussian(part, sigma, reach(sigma), "nearest"))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def around(where: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The rows and columns of the ``where`` pixels [H, W] (at least one), ``margin`` pixels
    more on each side within the array."""
    rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, where.shape[0])),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, where.shape[1])))


def reach(sigma: float) -> int:
    """Pixels a ``smooth_within`` of ``sigma`` reads on each side (scipy's 4 sigma)."""
    return int(4 * sigma + 0.5)


def hot(reflectance: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """HOT = B02 - 0.5 B04 of [C, ...] reflectance."""
    return reflectance[bands.index("B02")] - 0.5 * reflectance[bands.index("B04")]


def opacity(reflectance: np.ndarray, expected: np.ndarray, region: np.ndarray, sigma: float,
            bands: tuple[str, ...] = BANDS, density: np.ndarray | None = None) -> np.ndarray:
    """Cloud opacity in [0, 1] over ``region`` [H, W] (0 off it), from HOT's excess over the
    expected land; ``density``: ``where_density(region, sigma)``, when already known."""
    cloud = np.array([CLOUD[b] for b in bands], np.float32)[:, None, None]
    excess = hot(reflectance, bands) - hot(expected, bands)
    room = np.maximum(hot(cloud, bands) - hot(expected, bands), 0.05)
    # smoothed, but never above the pixel's own excess: a dark shadow beside a bright core
    # would otherwise be unmixed to black; nor more than ``TEXTURE`` below it: a bright wisp
    # is veil, not the land's texture, and smoothed away it stayed on
    smooth = smooth_within(excess[None], region, sigma, density)[0]
    np.maximum(smooth, excess - TEXTURE * room, out=smooth)
    t = np.clip(np.minimum(smooth, excess) / room, 0, 1)
    return np.where(region, t, 0).astype(np.float32)


def smoothstep_down(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """1 up to ``low``, 0 from ``high``, a smooth step between."""
    x = np.clip((x - low) / max(high - low, 1e-6), 0, 1)
    return (1 - x * x * (3 - 2 * x)).astype(np.float32)


def land_spread(reflectance: np.ndarray, clear: np.ndarray,
                outputs: tuple[slice, slice] = (slice(None), slice(None))) -> np.ndarray:
    """RMS over bands of the local standard deviation [H, W] of the ``clear`` pixels around,
    over the rows and columns ``outputs`` (slices with steps of 1) alone.

    The spread varies over ``SPREAD_SIGMA`` pixels, so it is measured on a grid ``SPREAD_STEP``
    times coarser (sums of the clear pixels per cell, the Gaussian scaled to the grid) and
    interpolated back bilinearly: the same smooth map for a 60th of the work."""
    step, bands = SPREAD_STEP, len(reflectance)
    weight = clear.astype(np.float32)
    # the clear pixels, their values and their squares summed over the bands, per cell (the far
    # edges' partial cells summing what they hold): the variances are only wanted summed over
    # the bands, so the squares are too; a band at a time, in small temporaries
    seen, squares = np.empty_like(weight), np.zeros_like(weight)
    cells = [block_sums(weight, step)]
    for band in reflectance:
        np.multiply(band, weight, out=seen)
        cells.append(block_sums(seen, step))
        squares += np.square(seen, out=seen)
    cells = np.stack([*cells, block_sums(squares, step)])
    cells = gaussian(cells, SPREAD_SIGMA / step)
    count = np.maximum(cells[0], 1e-6)
    mean, square = cells[1:bands + 1] / count, cells[bands + 1] / count
    spread = np.sqrt(np.maximum(square - np.einsum("khw,khw->hw", mean, mean), 0) / bands)
    # bilinear, from the cells' centres, the edge cells held beyond them
    (h, w) = spread.shape
    return separable(spread[None], upsample_taps(h, step, outputs[0]),
                     upsample_taps(w, step, outputs[1]))[0]


def dehaze(reflectance: np.ndarray, expected: np.ndarray, region: np.ndarray,
           clear: np.ndarray, params: HazeParams = HazeParams(), bands: tuple[str, ...] = BANDS,
           error: np.ndarray | None = None
           ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """The veil taken off the ``region`` [H, W] pixels of ``reflectance`` [C, H, W], over the
    box of the region (and the reach of its smoothing) alone: (the box's rows and columns, the
    veil's opacity [h, w] as it is taken off, ``unveil`` giving the land under it, the weight
    [h, w] of that land against the fill, ``expected``, 0 off the region); ``clear``: the clear
    land. The restored land is trusted as far as it lies within ``params.spread`` of the land's
    own spread around of ``expected``, and, with ``error`` [H, W] (the RMS over bands by which
    ``expected`` may be wrong, reflectance), within that error where it is the smaller: land
    restored further from a prediction than the prediction can be off had a veil of another
    colour than the white one ``unveil`` assumes taken off. None when there is no region or no
    clear land."""
    if not region.any() or not clear.any():
        return None
    # the spread from the whole window (its coarse grid and edges as they are), read back over
    # the box; the rest within reach of the region, which gives the same values on it as the
    # whole window does
    box = around(region, reach(params.sigma))
    spread = land_spread(reflectance, clear, box)
    seen, fill, where = reflectance[:, box[0], box[1]], expected[:, box[0], box[1]], region[box]
    density = where_density(where, params.sigma)  # of both smoothings over the region
    t = opacity(seen, fill, where, params.sigma, bands, density)
    t_used = np.minimum(t, params.t_fill)
    d = np.zeros(where.shape, np.float32)  # the RMS over bands of the smoothed difference
    through = 1 - t_used
    for start in range(0, len(seen), CHANNELS):  # a few bands at a time: small temporaries
        part = slice(start, start + CHANNELS)
        # every pixel of the box: the smoothing reads the region's only
        off = smooth_within(unveil(seen[part], t_used, bands[part], through), where,
                            params.sigma, density)
        off -= fill[part]
        for band in np.square(off, out=off):
            d += band
    d = np.sqrt(d / len(seen))
    s = params.spread * spread
    if error is not None:
        np.minimum(s, error[box], out=s)
    np.maximum(s, 1e-4, out=s)
    trust = smoothstep_down(t, params.t_restore, params.t_fill) * np.exp(-0.5 * (d / s) ** 2)
    return box, t_used, np.where(where, trust, 0).astype(np.float32)


def unveil(seen: np.ndarray, t: np.ndarray, bands: tuple[str, ...],
           through: np.ndarray | None = None) -> np.ndarray:
    """The land [C, h, w] under a veil of opacity ``t`` [h, w] of the pixels ``seen``
    [C, h, w] (of ``bands``): (seen - t cloud) / (1 - t), at least 0. ``through``: 1 - t,
    where the caller has it (a band at a time, it is computed once)."""
    cloud = np.array([CLOUD[b] for b in bands], np.float32)[:, None, None]
    land = t * cloud  # in place from here
    np.subtract(seen, land, out=land)
    land /= 1 - t if through is None else through
    np.maximum(land, 0, out=land)
    return land
