"""Cloud, shadow and snow classification of Sentinel-2 reflectance (array level, no I/O).

The score is the Sen2Cor-style cloud score of the CARF paper (seed 002, eq. 13-16):
    score = min(1, r(B02, .1, .5), r(B01, .1, .3), r(B01+B10, .15, .2), r(B02+B03+B04, .2, .8))
with r(x, lo, hi) = clip((x - lo) / (hi - lo), 0, 1); cloud where score > 0.2, except snow where
NDSI = (B03 - B11) / (B03 + B11) >= 0.6. By default the score is also 0 where the haze optimised
transform HOT = B02 - 0.5 B04 - 0.08 is not positive (Zhang, Guindon and Cihlar 2002, with the
constants of Fmask's potential-cloud test, Zhu and Woodcock 2012): clouds and haze raise blue at
least as much as red, bright soil and roofs do not. On real cloudy / cloud-free pairs it removes
false alarms on bright ground and keeps nearly every cloud (benchmarks/mask_quality.py,
benchmarks/records/masks.md).
Ice cloud passes the snow test too. Where B10 is given, a pixel brighter there than
``SNOW_CIRRUS`` is not snow: water vapour absorbs at 1375 nm the light that would reach the
ground, so the band sees high cloud and not the snow beneath. And a patch of snow at most
``SNOW_CORE`` px across whose border is mostly cloud (``snow_cores``) is cloud: snow on the
ground shows land around it, or is larger. With the other dates, ``dates/temporal_mask.py``
judges the snow again.
Bright land that scores as cloud (roofs, greenhouses, roads, sand) is left clear, and only
confident clouds grow a buffer, by the tests of ``bright_land.py`` (``land=True``, the
default).
Built-up land (``built_up``; ``remove`` with Sentinel-1, on by default): what scores as cloud
with no confident cloud near and VV backscatter of built-up land under it (double bounce) is left
clear; S1 sees through cloud, so the test relies on the score to keep a cloud over a town.
The ``dsen2cr`` variant follows the public DSen2-CR detector (Meraner et al. 2020): NDSI enters
the score softly (ramp from 1 at NDSI 0.6 to 0 at 0.8), then a 5x5 grey closing and a 7x7 mean
filter before thresholding. Shadows use the cloud shadow index CSI = (B08 + B11) / 2 with
scene-wide thresholds min + 3/4 (mean - min) on CSI and min + 5/6 (mean - min) on B02, then a 5x5
majority (median) filter, as in that detector.

Band subsets: the score needs B02, B03 and B04; a ramp whose band is missing is left out (L2A
products have no B10: the score then runs without the B01 + B10 term, and the snow test
without its B10 rule; ``benchmarks/mask_quality.py --withheld`` measures what that costs), and
without B11 there is no snow test. Without B10 the clouds also grow into their veiled edges
(``veiled_edges``): L2A's surface reflectance is darker in blue than L1C's, and the score alone
misses the thin edges there (``benchmarks/mask_l2a.py``); not where the input is named L1C
(``MaskParams.for_bands``), whose blue the score's ramp is set for. Where an L2A
product's scene classification (SCL, Sen2Cor) comes with the bands, it gives the classes instead:
cloud of medium and high probability and thin cirrus are cloud, cloud shadow is shadow, snow is
snow, no data is nodata; water and everything else are clear. The score is still computed (the
local fill's haze ring reads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from cloudfree.core.arguments import check_kind, check_number, check_switch, check_whole
from cloudfree.core.boxes import box_any, box_mean, box_share
from cloudfree.core.distance import EIGHT, grow
from cloudfree.core.errors import UsageError
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.bands import (
    LAND_BANDS,
    PARALLAX_BANDS,
    REQUIRED_BANDS,
    SCORE_BANDS,
    SHADOW_BANDS,
    VAPOUR_BANDS,
    pick,
)
from cloudfree.mask.bright_land import (
    LAND_REACH,
    SEED_REACH,
    SHARE_BOX,
    SPECK_REACH,
    VAPOUR_REACH,
    ParallaxIndex,
    bright_land,
    confirmed_reach,
    grow_in_proportion,
    seed_reach,
    specks,
    vapour_land,
)

CLEAR, CLOUD, SHADOW, SNOW, NODATA = 0, 1, 2, 3, 255
#: Thin cloud, in the output of ``cloudfree mask`` only (``thin_cloud``): everything else takes
#: it as cloud.
THIN = 4
#: A cloud pixel whose score before the snow and HOT tests is under ``THIN_SCORE`` is thin cloud:
#: the land may show through.
#: Chosen on the tuning half of the pool's cloudy / clear pairs (by scene), against the pairs'
#: own split of their cloud: thick where the cloudy date is more than 0.15 brighter than its
#: clear twin in B02-B04, thin where 0.05 to 0.15 (the land still shows there): the best mean
#: of the thin and thick IoU of 0.3 to 0.7 (benchmarks/mask_quality.py --thin;
#: benchmarks/records/masks.md).
THIN_SCORE = 0.5
#: A pixel that passes the snow test is cloud where its B10 (1375 nm) reflectance exceeds this.
#: Water vapour absorbs nearly all the light at 1375 nm that reaches the ground, so the band
#: sees high cloud, ice cloud that the NDSI takes for snow included, and not the snow beneath
#: (Gao, Goetz and Wiscombe 1993, Geophysical Research Letters 20). Set from that, not tuned:
#: the pool holds no real snow in L1C, and its cloud classed snow is under 0.003 in B10 (the
#: cloud around it 0.002-0.015). 0.035 leaves room for snow under dry high-mountain air, which
#: lets more of its light through.
SNOW_CIRRUS = 0.035
#: Scene classification (SCL) values of cloud (medium, high probability, thin cirrus), cloud
#: shadow, snow and no data (ESA, Sentinel-2 L2A product specification, Sen2Cor).
SCL_CLOUD, SCL_SHADOW, SCL_SNOW, SCL_NODATA = (8, 9, 10), 3, 11, 0
#: The SCL value of thin cirrus, among ``SCL_CLOUD``.
SCL_THIN = 10
METHODS = ("score", "dsen2cr")
#: The largest cloud buffer, in pixels (3 km at 10 m). Windows are read with the buffer as context
#: around them, so memory grows with its square: `remove` on the bundled 256 px sample peaks at
#: 0.78 GB with 200 px, 1.0 GB with 500 and 2.6 GB with 1000 (benchmarks/buffer_memory.py).
MAX_BUFFER = 300
#: Colours of the classes in the mask's GeoTIFF palette and in previews (RGBA).
COLORMAP = {CLEAR: (0, 0, 0, 0), CLOUD: (255, 255, 255, 255), SHADOW: (90, 60, 140, 255),
            SNOW: (0, 200, 255, 255), THIN: (180, 180, 180, 255), NODATA: (0, 0, 0, 0)}
#: Names of the classes in the mask's tags and STAC items.
CLASS_NAMES = ((CLEAR, "clear"), (CLOUD, "cloud"), (SHADOW, "shadow"), (SNOW, "snow"),
               (THIN, "thin_cloud"), (NODATA, "nodata"))


@dataclass(frozen=True)
class MaskParams:
    """Options of the mask; ``context`` is how far a pixel's class depends on its neighbours."""

    method: str = "score"
    threshold: float = 0.2
    ndsi_threshold: float = 0.6
    buffer: int = 0
    #: cloud shadows flagged (class 2); None: the command's default (``mask``: off, ``remove``:
    #: on)
    shadow: bool | None = None
    hot: bool = True
    land: bool = True  # bright land (roofs, greenhouses) that scores as cloud left clear
    #: with Sentinel-1 (``remove --s1``): cloud on built-up backscatter, none confident, left
    #: clear (``built_up``); the mask alone has no Sentinel-1 and ignores it
    built_up: bool = True
    scl: bool = True  # classes from an L2A product's scene classification, when it has one
    #: the shadows that scene classification (or a mask given for the scene) marks; False: those
    #: the bands show, as without one (``remove`` with a given mask that marks none)
    scl_shadows: bool = True
    #: without B10, clouds grown into their veiled edges (``veiled_edges``); off where other
    #: dates judge the target's clouds, and on inputs named L1C (``for_bands``)
    edges: bool = True
    #: with ``land``, small patches dimmer at 945 nm than their land left clear
    #: (``vapour_land``); off on inputs without B09, B8A or B10 (``for_bands``), which then read
    #: no band and no context for it
    vapour: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise UsageError(f"unknown mask method {self.method!r} (use {' or '.join(METHODS)})")
        check_whole("buffer", self.buffer, 0, unit="pixels")
        if self.buffer > MAX_BUFFER:
            raise UsageError(
                f"buffer={self.buffer} is more than the {MAX_BUFFER} px allowed: every window is "
                "read with that much context around it, and memory grows with its square (2.6 GB "
                f"at 1000 px on a 256 px scene); give buffer={MAX_BUFFER} or less", "buffer")
        for name, low in (("threshold", 0), ("ndsi_threshold", -1)):
            check_number(name, getattr(self, name), low, 1)
        check_kind("shadow", self.shadow, bool | None, "True, False or None (the command's "
                   "default)")
        for name in ("hot", "land", "built_up", "scl", "scl_shadows", "edges", "vapour"):
            check_switch(name, getattr(self, name))

    @property
    def halo(self) -> int:
        """Pixels of context needed so windowed results equal whole-image results, but for the
        snow cores' (``SNOW_REACH``, which ``context`` adds)."""
        smoothing = 7 if self.method == "dsen2cr" else 0  # closing radius 4 + mean radius 3
        seeds = SEED_REACH if self.buffer else 0  # whether a cloud pixel seeds the buffer
        # the bright-land test's neighbourhood, and the specks' square around it
        land = (LAND_REACH + SPECK_REACH + (VAPOUR_REACH if self.vapour else 0)
                if self.land else 0)
        edges = EDGE_REACH if self.edges else 0  # the veiled edges grown without B10
        return smoothing + land + edges + (2 if self.shadow else 0) + seeds + self.buffer

    @property
    def context(self) -> int:
        """Pixels of context needed so windowed classes equal whole-image ones: ``halo`` and
        the snow cores'. Windowed readers (``scene_input.read_classified``) read the snow
        cores' around the halo a caller asks for, which then sets the caller's context."""
        return self.halo + SNOW_REACH

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands these options read from a full L1C product, in L1C order."""
        needed = (SCORE_BANDS + (LAND_BANDS + (VAPOUR_BANDS if self.vapour else ())
                                 if self.land else ())
                  + (SHADOW_BANDS if self.shadow else ()))
        return tuple(b for b in BANDS if b in needed)

    @property
    def required(self) -> tuple[str, ...]:
        """The bands these options cannot run without."""
        return tuple(b for b in self.bands if b in REQUIRED_BANDS
                     or (self.shadow and b in SHADOW_BANDS))

    def bands_for(self, present: Sequence[str]) -> tuple[str, ...]:
        """The bands to read from an input with the bands ``present``: the required ones (even
        if missing, for the caller's error) and the others it has, in L1C order."""
        return tuple(b for b in self.bands if b in self.required or b in present)

    def for_bands(self, present: Sequence[str], top_of_atmosphere: bool = False) -> MaskParams:
        """These settings for an input with the bands ``present``: with B10, or at
        ``top_of_atmosphere`` levels (L1C, whose blue the score's ramp is set for), no veiled
        edges grown; without B09, B8A or B10, no water vapour's test; and no context read for
        what does not run."""
        edges = self.edges and "B10" not in present and not top_of_atmosphere
        vapour = self.vapour and all(b in present for b in (*VAPOUR_BANDS, "B10"))
        return replace(self, edges=edges, vapour=vapour)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ShadowThresholds:
    """Scene-wide thresholds of the shadow test (from one pass over the valid pixels); for
    ``remove``, also the offset (rows, columns) from the scene's clouds to their shadows
    (``shadow.scene_offset``; None: no shadow is cast in the scene, or it is not known)."""

    csi: float
    blue: float
    offset: tuple[int, int] | None = None


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """r(x, lo, hi) of eq. 13 before clipping: 0 at lo, 1 at hi, linear."""
    r = x - lo
    r /= hi - lo
    return r


def _ndsi(b03: np.ndarray, b11: np.ndarray) -> np.ndarray:
    """Normalised difference snow index (eq. 15); 0 where both bands are 0."""
    total = b03 + b11
    return np.divide(b03 - b11, total, out=np.zeros_like(total), where=total > 0)



def raw_score(b: dict[str, np.ndarray]) -> np.ndarray:
    """Eq. 13 without the snow test, in [0, 1] (the minimum of the ramps, clipped once); the
    ramps of missing bands (B01, B10) are left out."""
    score = _ramp(b["B02"], 0.1, 0.5)
    if "B01" in b:
        np.minimum(score, _ramp(b["B01"], 0.1, 0.3), out=score)
    if "B01" in b and "B10" in b:
        np.minimum(score, _ramp(b["B01"] + b["B10"], 0.15, 0.2), out=score)
    np.minimum(score, _ramp(b["B02"] + b["B03"] + b["B04"], 0.2, 0.8), out=score)
    return np.clip(score, 0.0, 1.0, out=score).astype(np.float32, copy=False)


def hot_positive(b: dict[str, np.ndarray]) -> np.ndarray:
    """HOT = B02 - 0.5 B04 - 0.08 > 0: blue raised above red as cloud and haze raise it."""
    return b["B02"] - 0.5 * b["B04"] - 0.08 > 0


def shadow_thresholds(reflectance: np.ndarray, valid: np.ndarray,
                      bands: Sequence[str] = BANDS) -> tuple[np.ndarray, np.ndarray]:
    """Per-window (min, sum, count) statistics of CSI and B02 over valid pixels, to be combined
    (none, as over no pixel, when ``bands`` lack B08 or B11: then nothing is shadow)."""
    if any(b not in bands for b in SHADOW_BANDS):
        return np.array([np.inf, np.inf]), np.zeros(3)
    b = pick(reflectance, bands, SHADOW_BANDS)
    csi = ((b["B08"] + b["B11"]) / 2)[valid]
    blue = b["B02"][valid]
    if csi.size == 0:
        return np.array([np.inf, np.inf]), np.zeros(3)
    return (np.array([csi.min(), blue.min()]),
            np.array([csi.sum(dtype=np.float64), blue.sum(dtype=np.float64), csi.size]))


def combine_shadow_stats(stats: list[tuple[np.ndarray, np.ndarray]]) -> ShadowThresholds:
    """Scene-wide thresholds from per-window statistics."""
    mins = np.min([s[0] for s in stats], axis=0)
    sums = np.sum([s[1] for s in stats], axis=0)
    if sums[2] == 0:  # no valid pixel: nothing is shadow
        return ShadowThresholds(csi=-np.inf, blue=-np.inf)
    mean_csi, mean_blue = sums[0] / sums[2], sums[1] / sums[2]
    return ShadowThresholds(csi=float(mins[0] + 3 / 4 * (mean_csi - mins[0])),
                            blue=float(mins[1] + 5 / 6 * (mean_blue - mins[1])))


def classify(
    reflectance: np.ndarray,
    valid: np.ndarray | None = None,
    params: MaskParams = MaskParams(),
    bands: Sequence[str] = BANDS,
    shadow: ShadowThresholds | None = None,
    scl: np.ndarray | None = None,
    cores: bool = True,
    index: ParallaxIndex | None = None,
    inside: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Classes uint8 [H, W] (0 clear, 1 cloud, 2 shadow, 3 snow, 255 nodata; ``thin_cloud``
    parts thin cloud off for ``mask``'s output) and score float32.

    ``reflectance`` holds the bands named in ``bands`` (default: all 13 in L1C order). With
    ``params.shadow`` and no ``shadow`` thresholds, they are computed from this array alone.
    ``scl``: an L2A scene classification [H, W] on the same pixels, which then gives the classes
    (``params.scl`` is for the caller, who reads it or not; with ``params.scl_shadows`` off, but
    the shadows, which the bands show as without it). ``cores=False`` leaves snow
    cores snow (``snow_cores``; for a caller that classifies again with their context where
    there is snow). ``index``: where the parallax index of ``reflectance`` is kept for the
    caller. ``inside``: the scene's pixels [H, W] where the array holds context mirrored beyond
    the scene's edge; the tests read that context pixel by pixel, but their squares count the
    scene's pixels alone (a roof at the edge is judged by the land beside it, not by its own
    mirror image), and it is no data in the classes and score.
    """
    b = pick(reflectance, bands, params.bands_for(bands))
    h, w = b["B02"].shape
    valid = np.ones((h, w), bool) if valid is None else valid
    all_valid = bool(valid.all())
    if not all_valid:
        b = {k: np.where(valid, v, 0.0).astype(np.float32, copy=False) for k, v in b.items()}
    if inside is not None:  # the bands as they are there (so the parallax index is shared)
        valid = valid & inside
    raw = raw_score(b)
    if inside is not None:  # nothing beyond the scene's edge is cloud or snow
        raw[~inside] = 0
    ndsi = _ndsi(b["B03"], b["B11"]) if "B11" in b else np.zeros((h, w), np.float32)
    # bright at 1375 nm: a cloud's ice, not the ground's snow
    icy = b["B10"] > SNOW_CIRRUS if "B10" in b else np.zeros((h, w), bool)
    snowy = (ndsi >= params.ndsi_threshold) & ~icy if "B11" in b else np.zeros((h, w), bool)
    snow = (raw > params.threshold) & snowy
    if params.hot:
        raw[~hot_positive(b)] = 0
    if params.method == "dsen2cr":
        soft = np.clip(_ramp(ndsi, params.ndsi_threshold + 0.2, params.ndsi_threshold), 0, 1)
        soft[icy] = 1
        score = np.minimum(raw, soft)
        score = ndimage.grey_closing(score, size=(5, 5), mode="reflect")
        score = ndimage.uniform_filter(score, size=7, mode="reflect")
        cloud = score > params.threshold
        snow &= ~cloud
    else:
        score = raw
        score[snowy] = 0
        cloud = score > params.threshold
    # the parallax index, computed once where the bright-land test and the buffer's confident
    # clouds or the caller's read it (``cloud_parallax`` reads the bands as they are: the same
    # where all are valid)
    shared = None
    if (params.land and (params.buffer or index is not None) and all_valid and scl is None
            and cloud.any() and all(k in b for k in PARALLAX_BANDS)):
        index = ParallaxIndex() if index is None else index
        shared = index.of(reflectance, bands)
    if params.land and scl is None:
        cloud &= ~bright_land(b, cloud, score, valid, shared)
        if all(k in b for k in LAND_BANDS):  # with the bands of the bright-land test
            cloud &= ~specks(cloud, valid)
        if params.vapour and all(k in b for k in (*VAPOUR_BANDS, "B10")):  # top of atmosphere
            cloud &= ~vapour_land(b, cloud, valid)
    if params.edges and "B10" not in b and scl is None:  # L2A: the thin edges the score misses
        cloud |= veiled_edges(b, cloud, snowy, valid)
    if cores and scl is None:  # a scene classification gives the classes itself
        inside = snow_cores(snow, cloud)
        cloud |= inside
        snow &= ~inside
    if scl is not None:
        cloud, snow = np.isin(scl, SCL_CLOUD), scl == SCL_SNOW
        valid = valid & (scl != SCL_NODATA)
        all_valid = bool(valid.all())
    classes = snow.view(np.uint8) * np.uint8(SNOW)
    classes[cloud] = CLOUD
    if scl is not None and params.scl_shadows:
        classes[(scl == SCL_SHADOW) & (classes == CLEAR)] = SHADOW
    elif params.shadow:
        if shadow is None:
            shadow = combine_shadow_stats([shadow_thresholds(reflectance, valid, bands)])
        dark = ((b["B08"] + b["B11"]) / 2 < shadow.csi) & (b["B02"] < shadow.blue) & valid
        # the 5 x 5 median of a binary image: at least 13 of its 25 pixels dark (the same
        # pixels as ``ndimage.median_filter``'s, for a 20th of the work)
        dark = box_share(dark, 5) > 0.5
        classes[dark & (classes == CLEAR)] = SHADOW
    if params.buffer:
        for cls in ((SHADOW, CLOUD) if params.shadow or scl is not None else (CLOUD,)):
            seeds = classes == cls
            if cls == CLOUD:
                grown = grow_in_proportion(
                    confirmed_reach(reflectance, bands, seeds, score, valid, index)
                    if params.land else seed_reach(seeds, score, valid), params.buffer)
            else:
                grown = grow(seeds, params.buffer)
            classes[grown & ((classes == CLEAR) | (classes == SHADOW))] = cls
    if all_valid and inside is None:
        return classes, score.astype(np.float32, copy=False)
    classes[~valid] = NODATA
    return classes, np.where(valid, score, np.nan).astype(np.float32)


#: A patch of snow (8-connected) at most ``SNOW_CORE`` px across, rows and columns, is cloud
#: when at least ``SNOW_CORE_RING`` of the pixels bordering it are cloud: the cold top of a
#: cloud or an ice part of it passes the snow test, a patch of snow on the ground shows land
#: somewhere around it, or is large. Chosen on the tuning half of the pool's cloudy / clear
#: pairs (by scene, benchmarks/mask_quality.py) with the real snow of the pool kept
#: (benchmarks/records/masks.md#cloud-kept-as-snow).
SNOW_CORE, SNOW_CORE_RING = 20, 0.75
#: Context the snow cores need: a patch and the pixels bordering it.
SNOW_REACH = SNOW_CORE + 1


def snow_cores(snow: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """The pixels of ``snow`` [H, W] in patches inside ``cloud`` (``SNOW_CORE``,
    ``SNOW_CORE_RING``). Exact with ``SNOW_REACH`` px of context; beyond the array's edges the
    classes are mirrored, as windows are read beyond a scene's."""
    if not (snow.any() and cloud.any()):
        return np.zeros_like(snow)
    pad = SNOW_REACH
    snow, cloud = (np.pad(x, pad, mode="symmetric") for x in (snow, cloud))
    labels, _ = ndimage.label(snow, np.ones((3, 3), bool))
    out = np.zeros_like(snow)
    height, width = snow.shape
    touching = np.unique(labels[snow & ndimage.binary_dilation(cloud, np.ones((3, 3), bool))])
    found = ndimage.find_objects(labels)
    for i in touching:
        rows, cols = found[i - 1]
        if (rows.stop - rows.start > SNOW_CORE or cols.stop - cols.start > SNOW_CORE
                or rows.start == 0 or cols.start == 0 or rows.stop == height
                or cols.stop == width):  # large, or may be (cut by the array's edge)
            continue
        box = (slice(rows.start - 1, rows.stop + 1), slice(cols.start - 1, cols.stop + 1))
        patch = labels[box] == i
        ring = ndimage.binary_dilation(patch, np.ones((3, 3), bool)) & ~patch
        if cloud[box][ring].mean() >= SNOW_CORE_RING:
            out[box] |= patch
    return out[pad:-pad, pad:-pad]


def thin_cloud(classes: np.ndarray, reflectance: np.ndarray, bands: Sequence[str] = BANDS,
               scl: np.ndarray | None = None) -> np.ndarray:
    """``classes`` [H, W] with their ``CLOUD`` pixels whose score before the snow and HOT tests
    (``raw_score``: how bright the pixel is as cloud) is under ``THIN_SCORE`` as ``THIN``;
    ``reflectance`` holds ``bands`` on the same pixels. A buffer's pixels, scored low, are thin
    too. With an L2A scene classification ``scl`` (which gave the classes), its thin cirrus is
    the thin cloud."""
    cloud = classes == CLOUD
    if not cloud.any():
        return classes.copy()
    if scl is not None:
        thin = scl == SCL_THIN
    else:
        b = pick(reflectance, bands, [x for x in SCORE_BANDS
                                       if x in REQUIRED_BANDS or x in bands])
        thin = raw_score(b) < THIN_SCORE
    out = classes.copy()
    out[cloud & thin] = THIN
    return out


#: Without B10 (L2A products, and band subsets not named L1C), a cloud grows by up to ``EDGE_GROW``
#: px (diagonals too) from its pixels amid cloud (at least ``EDGE_SHARE`` of the ``SHARE_BOX`` px
#: square around them cloud: a cloud, not a town's bright roofs) into the veil at its edge: pixels,
#: not snow, whose HOT = B02 - 0.5 B04 (Zhang, Guindon and Cihlar 2002) exceeds the least around
#: them (``EDGE_BOX`` px square, both 3 x 3 means) by ``EDGE_HOT`` and whose blue exceeds its least
#: by ``EDGE_BLUE``: thin cloud raises blue, and blue more than red. Surface reflectance (L2A) is
#: darker than top-of-atmosphere in blue by the haze and air light that atmospheric correction takes
#: off, so the score's fixed blue ramp misses thin edges that it finds in L1C; the clearest land
#: near is the level to rise above. Chosen on the tuning half of the pool's cloudy / clear pairs (by
#: scene) as an L2A band set brought to surface levels by a dark-object subtraction
#: (``benchmarks/mask_l2a.py``; benchmarks/records/masks.md): cloud IoU 0.740 to 0.835 (held out:
#: 0.870 to 0.901), no more cloud on the clear Sen1Floods11 chip's roofs or the pool's real L2A
#: images, and at most 3 points more of a village beside a cloud (a rise in HOT of 0.01 took 11
#: points more). With the benchmark's division by the transmittance since: 0.787 to 0.860 (held
#: out: 0.823 to 0.846), and the same grid run on it keeps these settings.
EDGE_BOX, EDGE_HOT, EDGE_BLUE, EDGE_GROW, EDGE_SHARE = 31, 0.03, 0.04, 15, 0.5
#: Context the veiled edges need: the growth, and the squares around it.
EDGE_REACH = EDGE_GROW + max(EDGE_BOX // 2 + 1, SHARE_BOX // 2)


def veiled_edges(b: dict[str, np.ndarray], cloud: np.ndarray, snowy: np.ndarray,
                 valid: np.ndarray) -> np.ndarray:
    """The pixels next to ``cloud`` [H, W] that its veil covers, grown from cloud pixels amid
    cloud into blue and HOT raised above the clearest land around (``EDGE_*``); ``snowy``
    passes the snow test, ``valid`` marks the scene's pixels. Exact with ``EDGE_REACH`` px of
    context."""
    if not cloud.any():
        return np.zeros_like(cloud)
    seeds = cloud & (box_mean(cloud, valid, SHARE_BOX) >= EDGE_SHARE)
    if not seeds.any():
        return seeds
    veiled = valid & ~snowy
    for x, rise in ((b["B02"] - 0.5 * b["B04"], EDGE_HOT), (b["B02"], EDGE_BLUE)):
        x = box_mean(x, valid, 3)  # over the scene's pixels: no data is not dark land
        least = ndimage.minimum_filter(np.where(valid, x, np.inf), EDGE_BOX, mode="reflect")
        veiled &= x - least > rise
    return ndimage.binary_dilation(seeds, EIGHT, EDGE_GROW, mask=veiled | cloud) & ~cloud


#: A cloud pixel is built-up land, and left clear, when within the ``BUILT_BOX`` px square
#: around it no pixel scores ``BUILT_SCORE`` or more and the Sentinel-1 VV backscatter of the
#: pixels scoring as cloud there averages above ``BUILT_VV`` dB: roofs, walls and the ground
#: between them reflect C-band back by double bounce, where fields and trees sit near -10 dB and
#: below. S1 sees through cloud, so under a real cloud VV is that of the land beneath, and the
#: test relies on the score: a cloud over a town has confident pixels near. On the tuning half
#: of the by-scene split it clears 26 % of what the mask (buffer included) calls cloud on the
#: cloud-free dates with S1, and 1.5 % of what it calls cloud on the cloudy dates of the same
#: places and not on the clear ones (-6 dB: 36 % and 2.7 %; ``benchmarks/records/masks.md``).
BUILT_BOX, BUILT_VV, BUILT_SCORE = 15, -5.0, 0.6


def built_up(classes: np.ndarray, score: np.ndarray, threshold: float,
             vv: np.ndarray) -> np.ndarray:
    """The cloud pixels of ``classes`` [H, W] on built-up land by the Sentinel-1 ``vv`` (dB,
    NaN where there is none) and with no confident cloud near (``BUILT_*``). Exact with
    ``BUILT_BOX // 2`` px of context."""
    cloud = classes == CLOUD
    if not cloud.any():
        return cloud
    # no confident cloud in the square: the largest score in it below BUILT_SCORE, told by
    # booleans (NaN scores none)
    confident = box_any(score >= BUILT_SCORE, BUILT_BOX, "constant")
    land = cloud & ~confident
    if not land.any():
        return land
    scored = (score > threshold) & np.isfinite(vv)
    total = ndimage.uniform_filter(np.where(scored, vv, np.float32(0)).astype(
        np.float32, copy=False), BUILT_BOX, mode="constant")
    count = box_share(scored, BUILT_BOX, "constant")
    return land & (count > 1e-6) & (total > BUILT_VV * count)


