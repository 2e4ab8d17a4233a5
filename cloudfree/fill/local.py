"""The local fill: each masked pixel from the clear pixels near it that look like it in S1.

A masked pixel p takes the weighted mean of the clear pixels q around it, with weights

    G(|p - q|; sigma) * sum_k m_k(p) m_k(q),   m_k(x) = exp(-|s1(x) - c_k|^2 / (2 s1_sigma^2))

where G is a Gaussian of the distance and s1 the (5x5 mean) VV and VH in dB. The S1 term is the
product of soft memberships in a few S1 classes c_k (the cells, of a grid of step
``CLASS_STEP * s1_sigma`` dB, that the masked pixels fall in), which stands in for a Gaussian of
the S1 difference: the "bilateral grid" idea (Paris and Durand, 2006), with the spatial sums done
as normalised convolutions (Knutsson and Westin, 1993) of every class on a grid ``factor`` times
coarser (sources summed per cell, each cell's S1 its mean), read back bilinearly at the masked
pixels, whose own S1 sets their memberships. So clear water fills water, clear forest fills
forest, and a river or field edge seen by S1 under the cloud carries through. In the classes of
open water (VV below ``WATER_VV``) the sources that look like water in S2 (``water_like``) count
up to ``1 / LAND_IN_WATER`` times more than the others, so a coarse cell on a river bank or the
bright land beside a narrow river does not lift the water's NIR and SWIR.

Thin cloud just outside the mask (a cloud score above ``ring_score`` within ``ring`` pixels of
it) joins the filled region, so the composite does not keep a ring of haze; clear pixels farther
from clouds are never touched. Clear pixels count as sources with a weight that ramps from 0 at
the filled region to 1 at ``source_ramp`` pixels from it, as the edge of a cloud is hazier than
the land beyond. A clear pixel near the fill that looks like a cloud's shadow (``unshaded``: much
darker in NIR and SWIR than the clear land around, as the shadow test of ``shadow.py`` measures
it, and not water) lends little: cumulus cast their shadows beside them, and a fill of their
land made partly of shadow came out darker in NIR and SWIR and bluer (the visible bands lose
less in a shadow) than the land around. Where the scene's clouds cast their shadows (``cast``,
their outlines displaced by the scene's shadow offset, ``shadow.footprint``), the penumbra
beside the shadows lends little too: a source there lends in proportion to how near its NIR and
SWIR are to the land's farther around, from nothing at the shadow test's upper margin.

Two spatial scales are summed, ``sigma`` and ``4 sigma`` (the larger weighted ``COARSE_WEIGHT``),
so a pixel far inside a cloud still finds land of its S1 class; where nothing clear of its kind
is in reach, a small weight on the mean of the clear pixels of its kind anywhere in the window
takes over (on the scene's clear-sky median, ``median.py``, where the window has none). Everything
works on one window with a halo (``reach`` pixels of real context read around it), so memory
does not depend on the scene size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cloudfree.core.distance import squared_distance
from cloudfree.core.separable import block_sums, gaussian_taps, separable, upsample_taps
from cloudfree.fill.median import fill_image, fill_masked
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask import shadow
from cloudfree.mask.bright_land import cloud_parallax, grow_in_proportion, seed_reach
from cloudfree.mask.classify import classify
from cloudfree.mask.haze import smoothstep_down

#: Weight of the 4x wider spatial scale against the first.
COARSE_WEIGHT = 0.05
#: Grid step of the S1 classes, in units of ``s1_sigma``.
CLASS_STEP = 1.5
#: Membership below which a masked pixel ignores an S1 class.
MIN_MEMBERSHIP = 1e-3
#: Weight of the fallback (the window's clear pixels of the masked pixel's S1 kind, or the
#: scene median), against normalised densities of clear pixels in [0, 1].
FALLBACK_WEIGHT = 1e-4
#: Sources (summed weight times S1 membership) of a masked pixel's kind in the window below
#: which the scene median is its fallback rather than their mean: one coarse cell's worth.
KIN_SOURCES = 16.0
#: Pixels sharing one product in the read-back: those between four coarse cells (factor 4).
SLOTS = 16
#: Values (pixels, quads x corners or coarse cells, x classes x bands) the blurs and the
#: read-back hold at once: bounds their memory (8 MB in float32).
READ_BACK_VALUES = 2**21
#: S1 classes whose VV centre lies below this (dB) are open water: a common threshold for it in
#: VV backscatter (calm water scatters little back; land mostly -5 to -12 dB).
WATER_VV = -15.0
#: Weight, in the water classes, of a clear source that does not look like water in S2, against
#: 1 for one that does: the land of a river bank or a coarse cell half water adds its bright
#: NIR and SWIR only where no clear water is in reach.
LAND_IN_WATER = 0.01
#: Water index (``water_like``) from which a source counts fully as water in the open-water
#: classes (pixels of water and land mixed lie between 0 and it).
WATER_NDWI = 0.3
#: Support at which the bound on a fill network's correction is halved:
#: :func:`correction_bound`.
SUPPORT_SCALE = 0.1


@dataclass(frozen=True)
class LocalFillParams:
    """How far and how selectively the local fill looks."""

    sigma: float = 12.0  # px, the spatial Gaussian (the second scale is 4x)
    s1_sigma: float = 1.5  # dB, the S1 similarity
    reach: int = 64  # px of context read around a window
    factor: int = 4  # coarse grid of the normalised convolutions
    ring: int = 10  # px outside the mask where haze joins the fill
    ring_score: float = 0.0  # cloud score above which a ring pixel is haze
    source_ramp: int = 15  # px over which clear pixels near the fill gain full weight as sources


def smooth_s1(s1_db: np.ndarray, size: int = 5) -> np.ndarray:
    """Mean of VV and VH dB over ``size`` x ``size`` (speckle), ignoring NaN; NaN where none."""
    finite = np.isfinite(s1_db)
    if finite.all():  # no gaps (the usual case): the plain mean, half the work
        return ndimage.uniform_filter(s1_db.astype(np.float32, copy=False), size=(1, size, size),
                                      mode="nearest")
    values = np.where(finite, s1_db, 0).astype(np.float32)
    counts = ndimage.uniform_filter(finite.astype(np.float32), size=(1, size, size), mode="nearest")
    sums = ndimage.uniform_filter(values, size=(1, size, size), mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 1e-6, sums / counts, np.nan).astype(np.float32)


def s1_classes(values: np.ndarray, step: float) -> np.ndarray:
    """Centres [K, 2] (dB) of the grid cells of step ``step`` that the S1 values [2, n] fall in
    (the unknown ones ignored)."""
    known = np.isfinite(values[0]) & np.isfinite(values[1])
    if not known.all():
        values = values[:, known]
    if not values.shape[1]:
        return np.zeros((0, 2), np.float32)
    cells = np.floor(values / step).astype(np.int64)
    low = cells.min(axis=1, keepdims=True)
    span = int(cells[1].max() - low[1, 0]) + 1
    keys = np.flatnonzero(np.bincount((cells[0] - low[0]) * span + cells[1] - low[1]))
    cells = np.stack([keys // span + low[0, 0], keys % span + low[1, 0]], axis=1)
    return ((cells + 0.5) * step).astype(np.float32)


def membership(s1: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """Soft membership [...] of S1 values [2, ...] in the class ``centre`` ([2], or [2, ...]
    broadcasting against them: several classes at once); 1 where unknown."""
    if centre.ndim == 1:
        centre = centre.reshape(2, *[1] * (s1.ndim - 1))
    d2 = np.square(s1[0] - centre[0])
    d2 += np.square(s1[1] - centre[1])
    unknown = ~np.isfinite(d2)
    np.exp(np.divide(d2, -2 * sigma * sigma, out=d2), out=d2)
    d2[unknown] = 1
    return d2.astype(np.float32, copy=False)


class CoarseGrid:
    """Block sums onto a grid ``factor`` times coarser, and bilinear reads back at pixels.

    The read-back takes every S1 class at once: a pixel's value is the sum, over the four
    coarse cells around it and the classes, of its bilinear weight times its membership times
    the cell's blurred sums. The pixels are grouped by the four cells they lie between (``factor``
    squared of them share each), in parts of ``SLOTS`` slots (empty slots weigh 0), so that this
    is one small matrix product per part; per-pixel values are kept in that slot layout, one row
    per quantity ([K, slots]: the products of the read-back run along whole rows).
    """

    def __init__(self, shape: tuple[int, int], factor: int, rows: np.ndarray,
                 cols: np.ndarray) -> None:
        self.factor = factor
        self.coarse = (-(-shape[0] // factor), -(-shape[1] // factor))
        h, w = self.coarse
        (x0, fx), (y0, fy) = self._axis(cols, w), self._axis(rows, h)
        quad = y0 * w + x0
        # pixels sorted by their quad of cells, in parts of at most SLOTS pixels per quad
        order = np.argsort(quad, kind="stable")
        self.rows, self.cols, quad = rows[order], cols[order], quad[order]
        # the quads held, where each one's pixels start, and how many (``quad`` is sorted)
        first = np.flatnonzero(np.concatenate([[True], quad[1:] != quad[:-1]]))
        quads, count = quad[first], np.diff(np.append(first, len(quad)))
        rank = np.arange(len(quad)) - np.repeat(first, count)
        parts = -(-count // SLOTS)
        self.part_quad = np.repeat(np.arange(len(quads)), parts)
        # each pixel's (of ``rows``, ``cols``) slot in the parts laid end to end, [n]
        self.slot = (np.repeat(np.cumsum(parts) - parts, count) + rank // SLOTS) * SLOTS \
            + rank % SLOTS
        qy, qx = quads // w, quads % w
        qy1, qx1 = np.minimum(qy + 1, h - 1), np.minimum(qx + 1, w - 1)
        # the coarse cells read back: the blurs are needed there only
        self.window = (slice(int(qy.min()), int(qy1.max()) + 1),
                       slice(int(qx.min()), int(qx1.max()) + 1))
        qy, qy1, qx, qx1 = qy - qy.min(), qy1 - qy.min(), qx - qx.min(), qx1 - qx.min()
        w = int(qx1.max()) + 1
        self.corners = np.stack([qy * w + qx, qy * w + qx1, qy1 * w + qx, qy1 * w + qx1],
                                axis=1).ravel()
        self.quads = len(quads)
        #: whether each quad is one part (at most ``SLOTS`` pixels in each, as with factor 4):
        #: the parts' corners are then the quads' own, in order, and need no gather
        self.one_part_each = len(self.part_quad) == self.quads
        fx, fy = fx[order], fy[order]
        self.corner_weight = self.to_slots(np.stack(
            [(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]))  # [4, slots]

    def _axis(self, pos: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The lower coarse cell of each pixel along an axis and the pixel's fraction towards
        the next: coarse cell i is centred on full-resolution coordinate
        i * factor + (factor - 1) / 2; pixels beyond the outer centres take the edge cell."""
        x = np.clip((pos - (self.factor - 1) / 2) / self.factor, 0, size - 1)
        low = np.minimum(np.floor(x).astype(np.int64), max(size - 2, 0))
        return low, (x - low).astype(np.float32)

    def to_slots(self, values: np.ndarray) -> np.ndarray:
        """Per-pixel values [K, n] (pixels as ``rows``, ``cols``) -> [K, slots], 0 in the empty
        slots."""
        out = np.zeros((len(values), len(self.part_quad) * SLOTS), np.float32)
        out[:, self.slot] = values
        return out

    def sums(self, a: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """[K, H, W] -> block sums [K, h, w] (the partial cells of the far edges summing what
        they hold); with ``weight`` [H, W], of ``a`` times it (0 where it is 0 or less, also
        where ``a`` is NaN)."""
        if weight is None:
            return block_sums(a, self.factor)
        unused = weight <= 0
        out = np.empty((len(a), *self.coarse), np.float32)
        weighted = np.empty(weight.shape, np.float32)  # one channel at a time: small
        for channel, values in enumerate(a):
            np.multiply(values, weight, out=weighted)
            np.copyto(weighted, 0, where=unused)
            out[channel] = block_sums(weighted, self.factor)
        return out

    def corner_values(self, a: np.ndarray) -> np.ndarray:
        """The values of a coarse array over ``window`` [C, h', w'] at the four cells of every
        quad: [q, 4, C]."""
        # the cells' values laid out in rows first: each corner a contiguous row
        rows = np.ascontiguousarray(a.reshape(len(a), -1).T)
        return np.take(rows, self.corners, axis=0).reshape(self.quads, 4, len(a))

    def read_back(self, corners: np.ndarray, membership: np.ndarray, out: np.ndarray) -> None:
        """Add to ``out`` [slots, C] the sum over classes k of ``membership`` [K, slots] times
        the bilinear values of the classes' coarse arrays, given at the quads' corners
        ``corners`` [q, 4, K, C]."""
        (_, _, k, c), parts = corners.shape, len(self.part_quad)
        step = max(1, READ_BACK_VALUES // (SLOTS * 4 * k * c))  # parts at once
        for first in range(0, parts, step):
            slots = slice(first * SLOTS, (first + step) * SLOTS)
            here = min(step, parts - first)
            packed = self.corner_weight[:, None, slots] * membership[None, :, slots]
            held = (corners[first:first + here] if self.one_part_each
                    else corners[self.part_quad[first:first + here]])
            values = np.matmul(packed.reshape(4 * k, here, SLOTS).transpose(1, 2, 0),
                               held.reshape(here, 4 * k, c))
            out[slots] += values.reshape(-1, c)


def blurred(coarse: np.ndarray, sigma: float,
            window: tuple[slice, slice] = (slice(None), slice(None))) -> np.ndarray:
    """Gaussian of ``sigma`` (coarse pixels, truncated at 3 sigma, zeros outside) over
    [K, h, w], plus ``COARSE_WEIGHT`` times one of ``4 sigma`` done on a grid 4 times coarser
    still (4 x 4 means, zeros past the far edges) and interpolated back bilinearly; only over
    ``window`` (slices with steps of 1)."""
    (h, w), radius = coarse.shape[1:], int(3 * sigma + 0.5)
    near = separable(coarse, gaussian_taps(h, sigma, radius, window[0]),
                     gaussian_taps(w, sigma, radius, window[1]))
    small = block_sums(coarse, 4) / 16
    (hs, ws) = small.shape[1:]
    small = separable(small, gaussian_taps(hs, sigma, radius), gaussian_taps(ws, sigma, radius))
    near += COARSE_WEIGHT * separable(small, upsample_taps(hs, 4, window[0]),
                                      upsample_taps(ws, 4, window[1]))
    return near


def local_fill(reflectance: np.ndarray, fill: np.ndarray, source: np.ndarray,
               s1_db: np.ndarray, fallback: tuple[float, ...] | np.ndarray,
               params: LocalFillParams = LocalFillParams(),
               bands: tuple[str, ...] = BANDS) -> tuple[np.ndarray, np.ndarray]:
    """``reflectance`` [C, H, W] with the ``fill`` pixels replaced by the local fill, and the
    fill's support [H, W]: the summed weight of the clear sources behind each filled pixel (0
    where nothing clear of its S1 kind is in reach, growing with the clear land of that kind
    around it; 0 off the fill).

    ``source`` [H, W]: how much each pixel counts as a source (0 to 1; 0 off the clear pixels);
    ``s1_db`` [2, H, W] (NaN where unknown); ``fallback``: per-band values where nothing clear
    is in reach, not even of its S1 kind anywhere in the window (the scene median);
    ``bands``: those of ``reflectance``, in order.
    """
    support = np.zeros(fill.shape, np.float32)
    if not fill.any():
        return reflectance.astype(np.float32, copy=True), support
    grid = CoarseGrid(fill.shape, params.factor, *np.nonzero(fill))
    flat = grid.rows * fill.shape[1] + grid.cols  # the masked pixels in ``grid``'s order
    # the masked pixels' slots alone, a row per quantity [C + 1, n]: each band's sums read
    # contiguously (the coarse sources freed first)
    sums, kin = (np.take(a, grid.slot, axis=0).T.copy() for a in pixel_sums(
        grid, *coarse_sources(grid, reflectance, source, s1_db, flat, bands), params))
    total = sums[-1]
    support.reshape(-1)[flat] = total
    total += FALLBACK_WEIGHT
    # the fallback: the window's clear sources of the pixel's kind, or the scene median
    kin_total = kin[-1]
    has_kin = kin_total >= KIN_SOURCES
    kin_total[~has_kin] = 1
    out = reflectance.astype(np.float32, copy=True)
    fallback = np.asarray(fallback, np.float32)
    for band, values in enumerate(out.reshape(len(out), -1)):  # a band at a time: small
        filled = np.where(has_kin, kin[band] / kin_total, fallback[band])
        filled *= FALLBACK_WEIGHT
        filled += sums[band]
        filled /= total
        values[flat] = filled
    return out, support


def pixel_sums(grid: CoarseGrid, here: np.ndarray, stack: np.ndarray, cell_s1: np.ndarray,
               water_sources: Callable[[], np.ndarray | None], params: LocalFillParams
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per masked pixel (slot of ``grid``), the sums of the sources ``stack`` [C + 1, h, w]
    weighted by distance and by S1 class, [slots, C + 1], and the same without the distance
    (every source of the window); ``here`` [2, n]: the masked pixels' smoothed S1,
    ``cell_s1`` [2, h, w]: the coarse cells'; ``water_sources()``: the sources of the
    open-water classes (None: the same as the others'), asked only where there is one."""
    centres = s1_classes(here, CLASS_STEP * params.s1_sigma)
    unknown = ~(np.isfinite(here[0]) & np.isfinite(here[1]))
    if unknown.any() or not len(centres):  # no S1 under some masked pixels: distance alone
        # a NaN centre: membership 1 in every cell, and the pixels with no S1 are its own
        centres = np.concatenate([centres, np.full((1, 2), np.nan, np.float32)])
    # every class's membership of every masked pixel [K, n]; a class adds nothing where it is
    # negligible (nearly every pixel has one above it for most classes, so all pixels are read
    # back rather than a subset)
    mine = membership(here[:, None], centres.T[:, :, None], params.s1_sigma)
    if unknown.any():
        mine[:, unknown] = 0
    mine[np.isnan(centres).any(1)] = unknown
    np.copyto(mine, 0, where=mine <= MIN_MEMBERSHIP)
    used = mine.any(axis=1)
    if not used.all():
        centres, mine = centres[used], mine[used]
    mine = grid.to_slots(mine)
    # per masked pixel (slot): the weighted sums of every band and of the weights, [slots, C + 1]
    sums = np.zeros((mine.shape[1], len(stack)), np.float32)
    # the classes in groups whose blurred sums (on the coarse grid, and at the quads' corners)
    # take at most READ_BACK_VALUES values
    quads, (h, w) = grid.quads, stack.shape[1:]
    group = max(1, READ_BACK_VALUES // (max(quads * 4, h * w) * len(stack)))
    water = centres[:, 0] < WATER_VV
    water_stack = water_sources() if water.any() else None
    if water_stack is None:
        water[:] = False
    # every class's sources over the whole window [K, C + 1]
    window = np.zeros((len(centres), len(stack)), np.float32)
    for kind, sources in ((~water, stack), (water, water_stack)):
        for start in range(0, int(kind.sum()), group):
            part = np.flatnonzero(kind)[start:start + group]
            cells = membership(cell_s1, centres[part].T[:, :, None, None],
                               params.s1_sigma)  # [K, h, w]
            # every class's sources at once, [K, C + 1, h, w], blurred channel by channel
            weighted = cells[:, None] * sources
            window[part] = weighted.sum(axis=(2, 3))
            corners = grid.corner_values(blurred(weighted.reshape(-1, h, w),
                                                 params.sigma / params.factor, grid.window))
            grid.read_back(corners.reshape(quads, 4, len(part), len(sources)), mine[part], sums)
    return sums, mine.T @ window


def coarse_sources(grid: CoarseGrid, reflectance: np.ndarray, source: np.ndarray,
                   s1_db: np.ndarray, flat: np.ndarray, bands: tuple[str, ...] = BANDS
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                              Callable[[], np.ndarray | None]]:
    """The smoothed S1 [2, n] of the masked pixels (``flat``, indices into [H, W]), the
    sources [C + 1, h, w] (every band times the ``source`` weight, then the weight) summed
    over ``grid``'s coarse cells, each cell's mean smoothed S1 [2, h, w], and what gives the
    sources of the open-water classes (the weight lowered off the pixels that look like
    water; None without the bands to tell), summed only when asked: most windows have no
    such class."""
    s1 = smooth_s1(s1_db)
    here = s1.reshape(2, -1)[:, flat]
    weight = source.astype(np.float32)

    def summed(weight: np.ndarray) -> np.ndarray:
        return np.concatenate([grid.sums(reflectance, weight), grid.sums(weight[None])])

    def water_sources() -> np.ndarray | None:
        water = water_like(reflectance, bands)
        return None if water is None else summed(weight * water)

    stack = summed(weight)
    known = np.isfinite(s1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_s1 = grid.sums(np.where(known, s1, 0)) / grid.sums(known.astype(np.float32))
    return here, stack, cell_s1, water_sources


def water_like(reflectance: np.ndarray, bands: tuple[str, ...]) -> np.ndarray | None:
    """How much each pixel [H, W] looks like open water in S2, from ``LAND_IN_WATER`` to 1: the
    smaller of NDWI (McFeeters 1996, green against NIR) and MNDWI (Xu 2006, green against SWIR),
    over ``WATER_NDWI``; None without B03, B08 and B11."""
    if not {"B03", "B08", "B11"} <= set(bands):
        return None
    green, nir, swir = (reflectance[bands.index(b)] for b in ("B03", "B08", "B11"))
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.nan_to_num(np.minimum((green - nir) / (green + nir),
                                         (green - swir) / (green + swir)))
    return np.clip(index / WATER_NDWI, LAND_IN_WATER, 1).astype(np.float32)


def correction_bound(support: np.ndarray, max_correction: float) -> np.ndarray:
    """Per-pixel bound on a fill network's correction, as a share of the local fill: the full
    ``max_correction`` where no clear land of the pixel's kind is in reach, shrinking as the
    fill's ``support`` grows. The networks learned to move a fill towards another date (their
    real truths), which moves it away from the same date's land around."""
    with np.errstate(over="ignore"):  # a share beyond float32 (1e40) is unbounded: inf
        return (max_correction / (1 + support / SUPPORT_SCALE)).astype(np.float32)


def haze_region(fill: np.ndarray, score: np.ndarray, valid: np.ndarray,
                params: LocalFillParams, parallax: np.ndarray | None = None) -> np.ndarray:
    """``fill`` [H, W] grown by the hazy pixels (score above ``ring_score``) around it, from
    the part of it that is confirmed cloud rather than bright land (``seed_reach``, with the
    clouds' ``parallax`` when given; exact with ``ring + SEED_REACH`` px of context)."""
    if not fill.any() or params.ring <= 0:
        return fill
    ring = grow_in_proportion(seed_reach(fill, score, valid, parallax), params.ring)
    return fill | (ring & valid & (np.nan_to_num(score) > params.ring_score))


def source_weight(reflectance: np.ndarray, region: np.ndarray, clear: np.ndarray,
                  params: LocalFillParams, bands: tuple[str, ...] = BANDS,
                  cast: np.ndarray | None = None, corner: tuple[int, int] = (0, 0)
                  ) -> np.ndarray:
    """Weight [H, W] of each clear pixel of ``reflectance`` [C, H, W] as a source, ramping up
    away from the region, little where it looks like a cloud's shadow or, where the clouds
    ``cast`` their shadows, its penumbra (``unshaded``; the window's first pixel at scene
    coordinates ``corner``)."""
    if not region.any():
        return clear.astype(np.float32)
    reach = max(params.source_ramp, 1)
    # the ramp at each squared distance (from 0 to ``reach`` squared, where it is 1)
    ramp = (np.sqrt(np.arange(reach * reach + 1)) / reach).astype(np.float32)
    weight = np.where(clear, ramp[squared_distance(region, reach)], np.float32(0))
    return weight * unshaded(reflectance, region, clear, bands, cast, corner)


def unshaded(reflectance: np.ndarray, region: np.ndarray, clear: np.ndarray,
             bands: tuple[str, ...] = BANDS, cast: np.ndarray | None = None,
             corner: tuple[int, int] = (0, 0)) -> np.ndarray:
    """How far [H, W] (0 to 1) each pixel near ``region`` is from looking like a cloud's shadow:
    1 less ``shadow.shade`` of the ``clear`` land around it against the clear land farther
    around; where ``cast`` [H, W] (the clouds' shadows can fall there, ``shadow.footprint``),
    from its penumbra: 0 at ``shadow.DARK[1]`` of the land farther around (where the shadow
    test's shadow ends) to 1 at its level; 1 on water (NDWI above ``shadow.WATER_NDWI``),
    without the bands and farther than ``shadow.NEAR`` px from the region (measured on the grid
    of ``shadow.SHADE_STEP`` px laid from the scene's corner, the window's first pixel at scene
    coordinates ``corner``)."""
    if not ({"B03", "B08", "B11"} <= set(bands) and region.any() and clear.any()):
        return np.ones(clear.shape, np.float32)
    ratio = shadow.darkening(reflectance, clear, clear, bands, corner)
    step, reach = shadow.SHADE_STEP, -(-shadow.NEAR // shadow.SHADE_STEP)
    far = squared_distance(block_sums(region, step, shadow.cell_phase(corner)) > 0,
                           reach) >= reach * reach
    lit = 1 - smoothstep_down(ratio, *shadow.DARK)
    lit[far] = 1
    lit = shadow.full_grid(lit, clear.shape, corner)
    if cast is not None and cast.any():
        penumbra = 1 - smoothstep_down(ratio, shadow.DARK[1], 1)
        penumbra[far] = 1
        lit = np.where(cast, shadow.full_grid(penumbra, clear.shape, corner), lit)
    lit[shadow.water(reflectance, bands)] = 1
    return lit


def fill_image_locally(reflectance: np.ndarray, cloud: np.ndarray, valid: np.ndarray,
                       s1_db: np.ndarray, params: LocalFillParams = LocalFillParams()
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A whole image in memory filled as ``remove`` fills it by default: (image, filled region).

    The scene median (or the prior) comes from the pixels outside ``cloud``, as in ``remove``.
    """
    filled, spectrum = fill_image(reflectance, cloud, valid)
    region = haze_region(cloud, classify(reflectance, valid)[1], valid, params,
                         cloud_parallax(reflectance, BANDS, cloud))
    if spectrum.source != "scene":
        return fill_masked(reflectance, region, spectrum), region
    weight = source_weight(reflectance, region, valid & ~cloud, params)
    return local_fill(reflectance, region, weight, s1_db, spectrum.values, params)[0], region
