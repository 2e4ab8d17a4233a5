"""Cloud shadows: relight the land, don't replace it.

A cloud shadow keeps the diffuse skylight, so the land under it is still seen, darker by a
factor per band (bluer light: the visible bands lose less than NIR and SWIR). Each shadow gets a
smooth per-band gain: the ratio of what clear land of the same S1 kind around it looks like
(``expected``, the local fill, ``local_fill.py``) to what the shadow shows, both smoothed over
the shadow (normalised Gaussian of ``sigma`` px). The relit pixel is the observed one times that
gain, so its texture is kept; gains are bounded to [1, ``MAX_GAIN``] (a shadow only darkens).

The mask's shadow test is relative to the scene (the darkest part of it), so it also flags dark
land: forest, wet fields, water. A flagged pixel is relit only where it looks like a shadow cast
by a cloud (``shadow_weight``):

- where the scene's clouds cast their shadows: the sun sets one direction for the whole scene,
  so every cloud's shadow is its own outline displaced the same way, by a distance that grows
  with the cloud's height. That offset is found from the scene itself (``offset_counts``,
  ``scene_offset``): the displacement, up to ``OFFSET_REACH`` px, at which the clouds' outlines
  fall most on shadow-like pixels (``shadow_like``). Where that share is not ``MATCH`` above
  the share of the opposite displacement (dark land lies on every side of the clouds, a
  shadow on one), no cloud is taken to cast a shadow and nothing is relit. Otherwise a
  pixel can be a shadow within ``TOLERANCE`` px of a cloud displaced by ``SPREAD[0]`` to
  ``SPREAD[1]`` times that offset (clouds of other heights; ``footprint``), as Fmask matches
  the clouds' projections along the sun's direction with its dark pixels (Zhu and Woodcock
  2012); dark land on the other sides of the clouds is left as it is;
- much darker in NIR and SWIR (B08 and B11, the mask's shadow bands) than the clear land around
  it (Gaussian of ``LAND_SIGMA`` px): real shadows on the pool keep about 0.6 of B08 and 0.35
  of B11, dark land flagged beside them about 0.85 of both. The mean of the two ratios runs
  from ``DARK[1]`` (not a shadow) to ``DARK[0]`` (a shadow); where no clear land is around, the
  flagged pixels around stand in for it, so nothing there is darker than its surroundings.
  Both levels vary over 4 px and more, so they are compared on a grid ``SHADE_STEP`` px coarser,
  laid from the scene's corner whatever window is read (``corner``), and the result read back
  bilinearly (``shade``; the local fill's sources, ``local.py``, are weighed by the same
  measure);
- not water (NDWI = (B03 - B08) / (B03 + B08) above ``WATER_NDWI``, McFeeters 1996): dark
  water is flagged as shadow, and shadowed land keeps its NDWI near or below 0 (B03 loses
  less than B08 in a shadow, so a little above).

Elsewhere the pixel is clear land, not a shadow (``tied_shadows``): kept as it is, and a source
of the fill like any clear pixel.
"""

from __future__ import annotations

import numpy as np
from scipy import fft, ndimage

from cloudfree.core.separable import block_sums, separable, upsample_taps
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLEAR, CLOUD, SHADOW
from cloudfree.mask.haze import (
    around,
    gaussian,
    reach,
    smoothstep_down,
)

#: Bound on a shadow's gain: real shadows on the pool darken by a factor of about 2 to 4 (the
#: ``SHADOW_RATIOS`` of benchmarks/one_date_quality.py); more is a dark surface, not a shadow.
MAX_GAIN = 5.0
#: Gaussian (px) of the gain field.
SIGMA = 8.0
#: Largest offset (px) from the clouds to their shadows sought, and the spread of the clouds'
#: heights around the scene's offset; ``TOLERANCE`` px around the displaced clouds for their
#: edges. The real shadows of benchmarks/one_date_quality.py's donors lie 30-40 px from their
#: clouds. (0.5, 1.25) and 4 px were set first; (0.3, 1.5) and 7 px gain 0.03 dB more on its
#: tuning half's shadowed scenes (+0.22 to -0.13 dB per scene, the loss where more dark land
#: beside the clouds is relit) and were not taken.
OFFSET_REACH = 40
SPREAD = (0.5, 1.25)
TOLERANCE = 4
#: How far (px) from a cloud a relit shadow can lie: context a window needs around it.
NEAR = int(OFFSET_REACH * SPREAD[1]) + TOLERANCE
#: How much more of the clouds' outlines, displaced by the scene's offset, must lie on
#: shadow-like pixels than displaced the opposite way (towards the sun, where no shadow falls;
#: dark land lies on both sides alike). Chosen on the tuning half of
#: benchmarks/one_date_quality.py, midway: 0.29-0.42 where the clouds' real shadows are in the
#: image (but for two of seven: 0.17, faint shadows, and 0.23, over dark wet fields), at most
#: 0.22 where they are not (those wet fields); the bundled sample's real shadows give 0.29.
MATCH = 0.25
#: Fewest cloud pixels whose displaced outline must lie on the scene (not on the clouds
#: themselves, nor outside it) for an offset to count, and at least a tenth of the clouds: set a
#: priori, not tuned.
MIN_OUTLINE = 50
#: Gaussians (px) of the shadow's own level and of the clear land it is compared with.
SEEN_SIGMA = 4.0
LAND_SIGMA = 32.0
#: Grid step (px) on which ``shade`` compares a pixel's level with the clear land's: its
#: Gaussians are 4 px and wider, so a 16th of the work gives nearly the same map (the shadows
#: of tests/fill/test_restore.py's darkened disks are the same pixels, 99 % of them) for a
#: 25th of the CPU of the full-resolution Gaussians (0.02 against 0.52 s on a 1024^2 mosaic).
SHADE_STEP = 4
#: Mean ratio of B08 and B11 (the shadow over the clear land around) up to which a pixel is a
#: shadow, and from which it is land.
DARK = (0.55, 0.75)
#: NDWI above which a flagged pixel is water, not a shadow.
WATER_NDWI = 0.2
#: Weight of a flagged pixel in the land around, against 1 for a clear one.
FLAGGED_WEIGHT = 0.05


def cell_phase(corner: tuple[int, int]) -> tuple[int, int]:
    """How far (rows, columns) into its cell of the grid of ``SHADE_STEP`` px laid from the
    scene's corner lies a window's first pixel, at scene coordinates ``corner`` (which may be
    negative: a margin mirrored beyond the scene)."""
    return corner[0] % SHADE_STEP, corner[1] % SHADE_STEP


def shade(reflectance: np.ndarray, seen: np.ndarray, land: np.ndarray,
          bands: tuple[str, ...] = BANDS, corner: tuple[int, int] = (0, 0)) -> np.ndarray:
    """How much [h, w] (0 to 1, on the grid of ``SHADE_STEP`` px) the ``seen`` pixels are
    darkened as a shadow darkens land (``darkening``): 1 at ``DARK[0]`` and below, 0 from
    ``DARK[1]`` and where either has no weight. Needs B08 and B11."""
    return smoothstep_down(darkening(reflectance, seen, land, bands, corner), *DARK)


def darkening(reflectance: np.ndarray, seen: np.ndarray, land: np.ndarray,
              bands: tuple[str, ...] = BANDS, corner: tuple[int, int] = (0, 0)
              ) -> np.ndarray:
    """The mean [h, w] (on the grid of ``SHADE_STEP`` px laid from the scene's corner, the
    window's first pixel at scene coordinates ``corner``, ``cell_phase``) of the ratios of B08
    and of B11 of the ``seen`` pixels (weights [H, W], Gaussian of ``SEEN_SIGMA`` px) to those
    of the ``land`` pixels (weights, Gaussian of ``LAND_SIGMA`` px); 1 where either has no
    weight. Needs B08 and B11."""
    nir, swir = (reflectance[bands.index(b)] for b in ("B08", "B11"))
    phase = cell_phase(corner)

    def cells(weight: np.ndarray) -> np.ndarray:  # the weights and both bands, per cell
        weight = weight.astype(np.float32, copy=False)
        return np.stack([block_sums(x, SHADE_STEP, phase)
                         for x in (weight, nir * weight, swir * weight)])

    seen_cells = cells(seen)
    near = gaussian(seen_cells, on_grid(SEEN_SIGMA))
    far = gaussian(seen_cells if land is seen else cells(land), on_grid(LAND_SIGMA))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num((near[1:] * far[:1]) / (near[:1] * far[1:]), nan=1).mean(0)


def on_grid(sigma: float) -> float:
    """The Gaussian (cells) on the grid of ``SHADE_STEP`` px which, with the cells' sums and
    the bilinear read-back, spreads a pixel as one of ``sigma`` px does: those two add
    (step^2 - 1) / 12 and step^2 / 6 px^2 of variance along each axis."""
    step = SHADE_STEP
    return float(np.sqrt(sigma * sigma - (step * step - 1) / 12 - step * step / 6)) / step


#: Context the shadows' tie to their clouds needs (``tied_shadows``): a pixel reads its own cell
#: of the grid of ``SHADE_STEP`` px and the next ones (the bilinear read-back), and each of
#: those reads the cells the wider Gaussian (``LAND_SIGMA``) reaches, all of them whole; that
#: reaches farther than the clouds whose shadows it may be (``NEAR``).
TIE_REACH = max(SHADE_STEP * (reach(on_grid(LAND_SIGMA)) + 2), NEAR)


def tie_reach(offset: tuple[int, int] | None) -> int:
    """Context (px) ``tied_shadows`` reads around the pixels it decides, with the scene's
    ``offset``: ``TIE_REACH``, or none where the clouds cast no shadow (``scene_offset`` None),
    as every flagged shadow is then clear, pixel by pixel."""
    return 0 if offset is None else TIE_REACH


def full_grid(coarse: np.ndarray, shape: tuple[int, int], corner: tuple[int, int] = (0, 0)
              ) -> np.ndarray:
    """A map [..., h, w] on the grid of ``SHADE_STEP`` px (``shade``, its window's first pixel
    at scene coordinates ``corner``) read back bilinearly at every pixel of ``shape``, from the
    cells' centres (the edge cells held beyond them)."""
    (h, w), (top, left) = coarse.shape[-2:], cell_phase(corner)
    return separable(coarse, upsample_taps(h, SHADE_STEP, slice(top, top + shape[0])),
                     upsample_taps(w, SHADE_STEP, slice(left, left + shape[1])))


def water(reflectance: np.ndarray, bands: tuple[str, ...] = BANDS) -> np.ndarray:
    """Where [H, W] a pixel is water, not a shadow: NDWI above ``WATER_NDWI``."""
    green, nir = reflectance[bands.index("B03")], reflectance[bands.index("B08")]
    return green - nir > WATER_NDWI * (green + nir)


def shadow_like(reflectance: np.ndarray, shadow: np.ndarray, clear: np.ndarray,
                bands: tuple[str, ...] = BANDS, corner: tuple[int, int] = (0, 0)) -> np.ndarray:
    """How much [H, W] (0 to 1) each ``shadow`` pixel is darkened as a shadow darkens land,
    against the ``clear`` land around (``shade``; the window's first pixel at scene coordinates
    ``corner``), wherever the clouds are; 0 off the shadow and on water (and everywhere without
    B03, B08 and B11)."""
    if not ({"B03", "B08", "B11"} <= set(bands) and shadow.any()):
        return np.zeros(shadow.shape, np.float32)
    flagged = shadow & ~water(reflectance, bands)
    land = clear + np.float32(FLAGGED_WEIGHT) * shadow  # the flagged pixels stand in, weakly
    dark = full_grid(shade(reflectance, shadow, land, bands, corner), shadow.shape, corner)
    return np.where(flagged, dark, 0).astype(np.float32)


def offset_counts(like: np.ndarray, cloud: np.ndarray, inner: tuple[slice, slice],
                  inside: np.ndarray) -> np.ndarray:
    """Per displacement (dy, dx) within ``OFFSET_REACH`` px: how many ``cloud`` pixels of the
    ``inner`` part [h, w] of a window land, displaced so, on ``like`` (shadow-like) pixels and
    on pixels ``inside`` the scene and off the clouds at all, and (every value of the third
    plane) the cloud pixels; [3, 2R+1, 2R+1] sums to add over the scene's windows
    (``scene_offset``). The window holds ``OFFSET_REACH`` px around ``inner``."""
    r = OFFSET_REACH
    rows, cols = inner
    around_rows = slice(rows.start - r, rows.stop + r)
    around_cols = slice(cols.start - r, cols.stop + r)
    source = cloud[rows, cols].astype(np.float32)
    target = (inside & ~cloud)[around_rows, around_cols].astype(np.float32)
    out = np.zeros((3, 2 * r + 1, 2 * r + 1))
    if source.any():
        out[:2] = valid_correlation(np.stack([target * like[around_rows, around_cols], target]),
                                    source)
        out[2] = source.sum()
    return out


def valid_correlation(fields: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The correlation of each of ``fields`` [K, H + 2R, W + 2R] with ``kernel`` [H, W] at
    every shift that keeps the kernel inside the field: [K, 2R + 1, 2R + 1], by FFT (with
    zeros past the field's end, no shift up to 2R wraps around)."""
    shape = [fft.next_fast_len(n, real=True) for n in fields.shape[1:]]
    spectra = fft.rfft2(fields.astype(np.float64), shape) * np.conj(
        fft.rfft2(kernel.astype(np.float64), shape))
    rows, cols = (f - k + 1 for f, k in zip(fields.shape[1:], kernel.shape, strict=True))
    return fft.irfft2(spectra, shape)[:, :rows, :cols]


def scene_offset(counts: np.ndarray) -> tuple[int, int] | None:
    """The scene's offset (rows, columns) from its clouds to their shadows, from the sums of
    ``offset_counts``: the displacement laying the largest share of the clouds' outlines on
    shadow-like pixels, where that share is at least ``MATCH`` above the opposite
    displacement's; None elsewhere."""
    r = OFFSET_REACH
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    counted = (counts[1] >= max(MIN_OUTLINE, 0.1 * counts[2, r, r])) \
        & (dy * dy + dx * dx <= r * r)
    share = np.where(counted, counts[0] / np.maximum(counts[1], 1), -1)
    best = np.unravel_index(np.argmax(share), share.shape)
    opposite = max(share[2 * r - best[0], 2 * r - best[1]], 0)
    if share[best] - opposite < MATCH:
        return None
    return int(dy[best]), int(dx[best])


def footprint(cloud: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Where [H, W] the ``cloud`` pixels' shadows can fall: the clouds displaced by
    ``SPREAD[0]`` to ``SPREAD[1]`` times ``offset`` (one step a pixel), grown by
    ``TOLERANCE`` px, off the clouds."""
    h, w = cloud.shape
    steps = max(abs(offset[0]), abs(offset[1]), 1)
    out = np.zeros_like(cloud)
    for t in np.linspace(*SPREAD, int(steps * (SPREAD[1] - SPREAD[0])) + 1):
        dy, dx = round(t * offset[0]), round(t * offset[1])
        if abs(dy) >= h or abs(dx) >= w:
            continue
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] |= \
            cloud[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return ndimage.binary_dilation(out, iterations=TOLERANCE) & ~cloud


def shadow_weight(reflectance: np.ndarray, shadow: np.ndarray, cloud: np.ndarray,
                  clear: np.ndarray, offset: tuple[int, int] | None,
                  bands: tuple[str, ...] = BANDS, corner: tuple[int, int] = (0, 0)
                  ) -> np.ndarray:
    """How much [H, W] (0 to 1) each ``shadow`` pixel looks like the shadow of a ``cloud``
    pixel cast by the scene's ``offset`` (``scene_offset``), against the ``clear`` land
    (``shadow_like``, the window's first pixel at scene coordinates ``corner``); 0 off the
    shadow, and everywhere without an offset."""
    if offset is None or not cloud.any():
        return np.zeros(shadow.shape, np.float32)
    cast = footprint(cloud, offset)
    if not (shadow & cast).any():
        return np.zeros(shadow.shape, np.float32)
    return shadow_like(reflectance, shadow, clear, bands, corner) * cast


def tied_shadows(reflectance: np.ndarray, classes: np.ndarray,
                 offset: tuple[int, int] | None, bands: tuple[str, ...] = BANDS,
                 corner: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``classes`` [H, W] with the shadow pixels that do not look like a cloud's shadow cast by
    the scene's ``offset`` (weight below a half, ``shadow_weight``; the window's first pixel at
    scene coordinates ``corner``) made clear."""
    shadow = classes == SHADOW
    if not shadow.any():
        return classes
    weight = shadow_weight(reflectance, shadow, classes == CLOUD, classes == CLEAR, offset, bands,
                           corner)
    untied = shadow & (weight < 0.5)
    return np.where(untied, CLEAR, classes).astype(classes.dtype)


def relight(reflectance: np.ndarray, expected: np.ndarray, shadow: np.ndarray,
            sigma: float = SIGMA, corner: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``reflectance`` [C, H, W] with the ``shadow`` [H, W] pixels relit to the level of
    ``expected`` [C, H, W] (clear land of their kind), texture kept.

    The gain varies over ``sigma`` px, so it is measured on the grid of ``SHADE_STEP`` px laid
    from the scene's corner (the window's first pixel at scene coordinates ``corner``,
    ``cell_phase``): the shadow's sums per cell, smoothed by ``on_grid(sigma)`` and read back
    bilinearly (``full_grid``), which spreads a pixel as the Gaussian of ``sigma`` px does."""
    out = reflectance.astype(np.float32, copy=True)
    if not shadow.any():
        return out
    # two cells around the shadow: the edge cells hold none of it, and those beyond them (held
    # as the edge cells) none either, as on the whole window
    rows, cols = around(shadow, 2 * SHADE_STEP)
    where, seen = shadow[rows, cols], reflectance[:, rows, cols]
    at = (corner[0] + rows.start, corner[1] + cols.start)
    weight = where.astype(np.float32)
    cells = np.concatenate([block_sums(x, SHADE_STEP, cell_phase(at)) for x in (
        expected[:, rows, cols] * weight, seen * weight, weight[None])])
    cells = gaussian(cells, on_grid(sigma))
    bands = len(seen)
    # the means over the shadow (``smooth_within``'s, its density at least 1e-6 of a cell)
    density = np.maximum(cells[2 * bands:], np.float32(1e-6 * SHADE_STEP ** 2))
    level = np.maximum(cells[bands:2 * bands] / density, np.float32(1e-4))
    gain = full_grid(cells[:bands] / density / level, where.shape, at)
    np.clip(gain, 1, MAX_GAIN, out=gain)
    np.copyto(out[:, rows, cols], seen * gain, where=where)
    return out
