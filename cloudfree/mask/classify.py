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
Bright land (``bright_land``, with ``land=True``, the default): roofs, greenhouses and roads can
score as cloud. Such a pixel is left clear when the cloud pixels around it show no parallax
between B07, B08 and B8A (the Cloud Displacement Index of Frantz et al. 2018: a cloud, high above
the ground, shifts between the B08 and B8A detectors, a roof does not), their short-wave infrared
B11 is that of land (water droplets absorb there) and B04 varies among them as built-up land
does (or they barely score and show land plainly), unless nearly all the sky around scores as
cloud (overcast). The sharp texture of roofs is bright land too whatever the parallax where
nothing near scores as an opaque cloud: at 10 m a town's texture in B08 against the 20 m B8A
reads like a cloud's parallax. In L1C (top-of-atmosphere levels), clouds are white or bluish:
land dimmer at 443 nm (B01) than at 490 nm (B02), or red, is bright land where nothing near
scores as an opaque cloud, unless it rises above the land beside it at 443 nm as a veil of
cloud does (``veiled_blue``). Land no darker in the short-wave infrared than in the near
infrared is bright land too where nothing near scores as an opaque cloud (``SOIL_RATIO``):
water clouds are darker in B11 than in B8A, bare soil, sand and roofs are not; without B10
(L2A products) it stands in for the red and the dim blue, which do not run there. A lone
speck of a few pixels is left clear (``specks``). A cloud must show parallax to be confident,
before it grows a buffer (without the parallax bands, a pixel confident by its score alone must
lie amid cloud: ``seed_reach``), and a cloud's extent before its opacity or the haze around it
confirms it (a lone white roof grows nothing); one that only the haze confirms grows the buffer
and the ring in proportion to it (``seed_reach``). A cloud with the colour of the ground
(``ground_colour``) or the texture of built-up land (``ground_texture``) is confirmed by
neither.
Without B07, B08, B8A or B11 the test is skipped; where other dates judge the clouds, they judge
such land (``pipeline/remove.py``).
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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage

from cloudfree.core.boxes import box_any, box_share
from cloudfree.core.errors import UsageError
from cloudfree.io.sentinel2 import BANDS

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
#: Bands of the cloud score and the snow test.
SCORE_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B10", "B11")
#: Score bands it cannot run without; the others' terms are left out when they are missing.
REQUIRED_BANDS: tuple[str, ...] = ("B02", "B03", "B04")
#: Scene classification (SCL) values of cloud (medium, high probability, thin cirrus), cloud
#: shadow, snow and no data (ESA, Sentinel-2 L2A product specification, Sen2Cor).
SCL_CLOUD, SCL_SHADOW, SCL_SNOW, SCL_NODATA = (8, 9, 10), 3, 11, 0
#: The SCL value of thin cirrus, among ``SCL_CLOUD``.
SCL_THIN = 10
#: Bands of the bright-land test (``bright_land``): the parallax index and short-wave infrared.
LAND_BANDS: tuple[str, ...] = ("B07", "B08", "B8A", "B11")
#: Bands of the shadow test (CSI and blue).
SHADOW_BANDS: tuple[str, ...] = ("B02", "B08", "B11")
METHODS = ("score", "dsen2cr")
#: The largest cloud buffer, in pixels (3 km at 10 m). Windows are read with the buffer as context
#: around them, so memory grows with its square: `remove` on the bundled 256 px sample peaks at
#: 0.78 GB with 200 px, 1.0 GB with 500 and 2.6 GB with 1000 (benchmarks/buffer_memory.py).
MAX_BUFFER = 300
#: A cloud pixel seeds the buffer (and ``remove``'s haze ring) when it is part of a cloud, not a
#: lone bright roof, road or greenhouse (which is masked itself but grows nothing): at least
#: ``SEED_NEIGHBOURS`` cloud pixels lie in the ``SEED_BOX`` x ``SEED_BOX`` px around it, or its
#: score is at least ``SEED_SCORE``; and the cloud is confirmed, by confident cloud within
#: ``SEED_NEAR`` px across and along (a square: a disk's distance transform took 6 times as
#: long) -- a cloud pixel with ``SEED_SHARE`` or more of the ``SHARE_BOX`` px square around it
#: cloud, or a score of ``CONFIDENT_SCORE`` or more: a cloud that is large or opaque --
#: or by the haze a thin cloud fades into (``SEED_HAZE`` or more of the clear pixels in the
#: ``HAZE_BOX`` px square around it score above ``HAZE_SCORE``; around a roof the land is clear).
#: Most towns' roofs are neither dense nor bright enough to be confident, and have clear land
#: between them. Chosen on the tuning half of the pool's by-scene split
#: (benchmarks/clear_scenes.py, benchmarks/one_date_quality.py; benchmarks/records/masks.md):
#: ``remove`` changes 0.42 % of its cloud-free scenes' pixels instead of 0.79 % (the
#: Sen1Floods11 chip: 0.86 % instead of 4.3 %), and the real clouds blended over the pool's
#: clear scenes score 0.03 dB more (at worst 0.15 dB less). Confident cloud within 25 px only:
#: 0.3 dB less (2 dB on one scene).
#: Without the parallax (no B07, B08 or B8A, as in WorldCereal's nine L2A bands, or
#: ``land=False``), a pixel confident by its score alone also needs ``SEED_NEIGHBOURS`` cloud
#: pixels in the ``SEED_BOX`` px square around it: the white roofs of a village's sheds, a few
#: pixels each, scored 1 on the pool's real L2A months and grew 1-2 % of them into a buffer
#: (at most 0.2 % now; benchmarks/records/masks.md).
SEED_NEIGHBOURS, SEED_BOX, SEED_SCORE = 9, 7, 0.5
SHARE_BOX, SEED_SHARE, CONFIDENT_SCORE, SEED_NEAR = 31, 0.5, 0.8, 50
HAZE_BOX, SEED_HAZE = 15, 0.7
#: A cloud has a cloud's extent before its opacity or the haze around it confirms it:
#: ``SEED_EXTENT`` or more of the ``SHARE_BOX`` px square around the pixel is cloud (289 of its
#: 961 px). A white roof of a few pixels is not, however bright and whatever its parallax (on
#: products read at their bands' own resolutions a town's 10 m texture reads as a cloud's
#: parallax), and towns under haze have clear land around their roofs that scores above
#: ``HAZE_SCORE``. A seed confirmed by the haze alone grows the buffer and the ring in
#: proportion to its cloud: by the share of the square that is cloud times the radius, rounded
#: up to ``SEED_STEPS`` steps (``grow_in_proportion``); a seed near confident cloud grows them
#: whole. Chosen on the tuning towns of the Onera Satellite Change Detection dataset
#: against the tuning halves of the pool's cloud-free scenes, its blended clouds and its cloudy
#: pairs (benchmarks/clear_scenes.py, benchmarks/one_date_quality.py,
#: benchmarks/mask_quality.py --filled; benchmarks/records/masks.md).
SEED_EXTENT, SEED_STEPS = 0.3, 4
#: Where B07, B08 and B8A are given, a cloud pixel is confident only if the cloud pixels of the
#: ``SHARE_BOX`` px square around it show a cloud's parallax: their mean parallax index
#: (``parallax_index``, ``cloud_parallax``) is under ``CONFIDENT_CDI``. A block of bright roofs
#: dense or bright enough to pass for a large or opaque cloud shows none (it is on the ground).
#: On the tuning half of the pool's by-scene split, the confident pixels of the cloudy pairs'
#: clouds average -0.52 (a thin cloud) to -0.93 (their medians), those of a town's roof block
#: -0.39 (``benchmarks/records/masks.md``).
CONFIDENT_CDI = -0.5
#: A cloud is smooth from one 10 m pixel to the next, and a thin one smooths the land it covers;
#: a block of roofs, yards and streets, or pale plots among them, is not. Where the cloud pixels
#: of the ``SHARE_BOX`` px square around a pixel have a mean ``texture`` in B04 above
#: ``GROUND_TEXTURE`` (``ground_texture``), neither its parallax nor the haze around confirms
#: it: a lone block of bright land grows no buffer and no haze ring, and casts no shadow. On
#: products read at their bands' own resolutions a town's 10 m texture reads as a cloud's
#: parallax, and a dense block of bright roofs or pale plots half fills its square, so it passed
#: for a large cloud. On the tuning halves, the confident pixels of the tuning towns of the Onera
#: Satellite Change Detection dataset (ten L2A bands) have a mean texture of 0.036 / 0.061 /
#: 0.104 (1st / 50th / 99th percentile), those of the real clouds of the pool's tuning pairs
#: 0.007 / 0.020 / 0.051, and of the same clouds at a quarter of their depth 0.006 / 0.011 /
#: 0.024. There ``remove`` changes 0.15 % of those towns instead of 0.20 % (as ten L2A bands
#: 0.48 % instead of 0.65 %), and the real clouds blended over the pool's scenes lose 0.02 dB
#: (0.11 dB a veil over a bright slope); at 0.05 they lose nothing, but Abu Dhabi's pale plots
#: keep their buffer and ring on L1C (benchmarks/records/masks.md).
GROUND_TEXTURE = 0.04
#: Bands of the parallax index.
PARALLAX_BANDS: tuple[str, ...] = ("B07", "B08", "B8A")
#: Bands of the colour of a cloud (``ground_colour``): at top-of-atmosphere levels only (with
#: B10, as L1C gives them).
COLOUR_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B10")
#: Bands of the colour of the ground without B10 (``ground_colour``; L2A products).
SOIL_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B8A", "B11")
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
    #: without B10, clouds grown into their veiled edges (``veiled_edges``); off where other
    #: dates judge the target's clouds, and on inputs named L1C (``for_bands``)
    edges: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"unknown mask method {self.method!r} (use {' or '.join(METHODS)})")
        if self.buffer < 0:
            raise UsageError(f"buffer={self.buffer} must be at least 0 pixels", "buffer")
        if self.buffer > MAX_BUFFER:
            raise UsageError(
                f"buffer={self.buffer} is more than the {MAX_BUFFER} px allowed: every window is "
                "read with that much context around it, and memory grows with its square (2.6 GB "
                f"at 1000 px on a 256 px scene); give buffer={MAX_BUFFER} or less", "buffer")
        for name, low in (("threshold", 0), ("ndsi_threshold", -1)):
            if not low <= getattr(self, name) <= 1:  # NaN too
                raise UsageError(f"{name}={getattr(self, name)} must be in {low}..1", name)

    @property
    def halo(self) -> int:
        """Pixels of context needed so windowed results equal whole-image results, but for the
        snow cores' (``SNOW_REACH``, which ``context`` adds)."""
        smoothing = 7 if self.method == "dsen2cr" else 0  # closing radius 4 + mean radius 3
        seeds = SEED_REACH if self.buffer else 0  # whether a cloud pixel seeds the buffer
        # the bright-land test's neighbourhood, and the specks' square around it
        land = LAND_REACH + SPECK_REACH if self.land else 0
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
        needed = (SCORE_BANDS + (LAND_BANDS if self.land else ())
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
        edges grown, and no context read for them."""
        return replace(self, edges=False) if "B10" in present or top_of_atmosphere else self

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


def _pick(reflectance: np.ndarray, bands: Sequence[str],
          needed: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``needed`` bands of ``reflectance`` (whose bands are ``bands``) by name, float32."""
    index = {b: i for i, b in enumerate(bands)}
    missing = [b for b in needed if b not in index]
    if missing:
        raise UsageError(f"the cloud mask needs bands {', '.join(missing)}")
    return {b: reflectance[index[b]].astype(np.float32, copy=False) for b in needed}


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
    b = _pick(reflectance, bands, SHADOW_BANDS)
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
) -> tuple[np.ndarray, np.ndarray]:
    """Classes uint8 [H, W] (0 clear, 1 cloud, 2 shadow, 3 snow, 255 nodata; ``thin_cloud``
    parts thin cloud off for ``mask``'s output) and score float32.

    ``reflectance`` holds the bands named in ``bands`` (default: all 13 in L1C order). With
    ``params.shadow`` and no ``shadow`` thresholds, they are computed from this array alone.
    ``scl``: an L2A scene classification [H, W] on the same pixels, which then gives the classes
    (``params.scl`` is for the caller, who reads it or not). ``cores=False`` leaves snow
    cores snow (``snow_cores``; for a caller that classifies again with their context where
    there is snow). ``index``: where the parallax index of ``reflectance`` is kept for the
    caller.
    """
    b = _pick(reflectance, bands, params.bands_for(bands))
    h, w = b["B02"].shape
    valid = np.ones((h, w), bool) if valid is None else valid
    all_valid = bool(valid.all())
    if not all_valid:
        b = {k: np.where(valid, v, 0.0).astype(np.float32, copy=False) for k, v in b.items()}
    raw = raw_score(b)
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
    if scl is not None:
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
    if all_valid:
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
        b = _pick(reflectance, bands, [x for x in SCORE_BANDS
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
#: scene) as an L2A band set brought to surface levels (``benchmarks/mask_l2a.py``;
#: benchmarks/records/masks.md): cloud IoU 0.740 to 0.835 (held out: 0.870 to 0.901), no more cloud
#: on the clear Sen1Floods11 chip's roofs or the pool's real L2A images, and at most 3 points more
#: of a village beside a cloud (a rise in HOT of 0.01 took 11 points more).
EDGE_BOX, EDGE_HOT, EDGE_BLUE, EDGE_GROW, EDGE_SHARE = 31, 0.03, 0.04, 15, 0.5
#: Context the veiled edges need: the growth, and the squares around it.
EDGE_REACH = EDGE_GROW + max(EDGE_BOX // 2 + 1, SHARE_BOX // 2)
#: Neighbours of a pixel: the eight around it.
EIGHT = np.ones((3, 3), bool)


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
        x = ndimage.uniform_filter(x, 3, mode="reflect")
        least = ndimage.minimum_filter(np.where(valid, x, np.inf), EDGE_BOX, mode="reflect")
        veiled &= x - least > rise
    return ndimage.binary_dilation(seeds, EIGHT, EDGE_GROW, mask=veiled | cloud) & ~cloud


#: A cloud pixel is bright land, and left clear, when the cloud pixels of the ``LAND_BOX`` px
#: square around it show no parallax (their mean parallax index, ``parallax_index``, exceeds
#: ``LAND_CDI``), land's short-wave infrared (their mean ratio of B11 to the visible bands
#: exceeds ``LAND_SWIR``: water droplets absorb there) and the texture of built-up land (their
#: mean ``texture`` in B04 exceeds ``LAND_TEXTURE``: roofs, streets and yards alternate from one
#: 10 m pixel to the next, a cloud is smooth and a thin cloud smooths the land under it). Large
#: smooth roofs are bright land too where they barely score as cloud (no pixel of the square
#: scores ``FAINT_SCORE`` or more) and show land more plainly: a mean parallax index above
#: ``FAINT_CDI`` and a short-wave infrared ratio above ``FAINT_SWIR``. Chosen on the tuning half
#: of the pool's by-scene split (benchmarks/clear_scenes.py, benchmarks/mask_quality.py,
#: benchmarks/one_date_quality.py; benchmarks/records/masks.md).
LAND_BOX, LAND_CDI, LAND_SWIR, LAND_TEXTURE = 15, -0.7, 1.0, 0.04
FAINT_SCORE, FAINT_CDI, FAINT_SWIR = 0.3, -0.5, 1.3
#: The parallax index compares B08 (10 m) with B8A (20 m), and a town's 10 m texture lowers it
#: as a cloud's edges do: on real products read at their bands' own resolutions (the cloud-free
#: towns of the Onera Satellite Change Detection dataset), what a town's score calls cloud has a
#: mean index of -0.68, the pool's clouds -0.86. So the pixels whose square's cloud has the
#: texture of roofs are bright land whatever their index: ``texture`` in B04 above
#: ``ROOF_TEXTURE`` (more than 999 in 1000 of the pool's cloud pixels have less: large white
#: roofs among dark yards) and a short-wave infrared ratio above ``ROOF_SWIR`` (ice cloud is
#: darker there), however brightly they score (an industrial estate's large white roofs score 1
#: as a thick cloud does, and blocked their own square when no pixel of it could score 0.9).
#: Chosen on the tuning towns of that set against the tuning half of the pool's cloudy pairs
#: and of its blended clouds: of what the test kept as cloud, it leaves clear 39 % on the towns
#: (18 % with that guard, when first measured) and none of the pairs' cloud
#: (benchmarks/bright_land_towns.py; benchmarks/records/masks.md); at 0.08 (with the guard) it
#: took 27 % of the towns', and 0.15 dB of a blended cloud over a town. Leaving clear any
#: textured land with a cloud-like index where nothing near scores 0.5 took thin cloud over
#: towns too (-6 dB on a blended cloud of the single-date benchmark).
ROOF_TEXTURE, ROOF_SWIR = 0.1, 0.6
#: Sand and the pale roofs of desert towns are red where a cloud is white or blue at the top of
#: the atmosphere: the pixels whose square's cloud has a mean tint (B02 - B04) / visible under
#: ``SAND_TINT`` and land's short-wave infrared (``LAND_SWIR``) are bright land whatever their
#: texture and index, with no pixel of the square scoring ``SAND_SCORE`` or more. On the tuning
#: towns of the Onera Satellite Change Detection dataset the sand of Abu Dhabi's suburbs has a
#: median tint of -0.20 and -0.26, the clouds of the pool's tuning pairs -0.07 to 0.13. Only
#: with B10 (L1C): at surface levels the thin edges of a cloud over land turn red as well (the
#: bundled cumulus brought to surface levels lost most of its thin cloud). Chosen on those
#: towns against the tuning halves of the pool (benchmarks/records/masks.md).
SAND_TINT, SAND_SCORE = -0.1, 0.9
#: Without B10 (L2A products, at surface levels) neither the red of sand nor the dim blue at
#: 443 nm tells bright land from a cloud: atmospheric correction turns a cloud's thin edges over
#: land red, and the ten-band set has no B01. The short-wave infrared against the near infrared
#: does: liquid water absorbs more at 1610 nm than at 865 nm, so a water cloud, and vegetation
#: seen through a thin one, is darker in B11 than in B8A, while bare soil, sand, concrete and
#: roofs are about as bright or brighter. So without B10 sand needs its square's cloud to have a
#: mean ratio of B11 to B8A (``soil_ratio``) above ``SOIL_RATIO`` as well, the pixels whose
#: square's cloud has that ratio and land's short-wave infrared (``ROOF_SWIR``) are bright land
#: where no pixel of the square scores ``SOIL_SCORE`` or more (as the dim blue's
#: ``BLUE_SCORE``), and a cloud both red and of that ratio has the colour of the ground
#: (``ground_colour``). On the tuning towns of the Onera Satellite Change Detection dataset as
#: L2A bands, the sand of Abu Dhabi that the red of sand would clear has a ratio of 0.96-1.16
#: (5th to 95th percentile), the bundled summer cumulus brought to surface levels, where that
#: rule alone took most of it, 0.75-0.85. Chosen on those towns against the tuning halves of
#: the pool's cloudy pairs: at 0.9 it cleared a faint cloud over bare autumn fields (a ratio of
#: 0.93) at surface levels (benchmarks/records/masks.md).
#: With B10 (L1C, top-of-atmosphere levels) the same pixels are bright land too: what the other
#: rules kept as cloud on those towns' products (pale yards, motorways, construction ground) has
#: a ratio of 0.88-1.06 (25th to 75th percentile), the cloud of the pool's tuning pairs
#: 0.64-0.81 (95th percentile 0.93). On the tuning halves it halves what ``remove`` changes on
#: the towns, and keeps all but 0.1 % of the pairs' cloud, a few thin edges far from their
#: cores (benchmarks/records/masks.md).
SOIL_RATIO, SOIL_SCORE = 0.95, 0.6
#: Under a sky that is overcast by the share of what scores as cloud (``OVERCAST_SHARE``), sand
#: is bright land where the square's cloud is redder still, with a mean tint under
#: ``OVERCAST_TINT``: a real cloud spread over a whole patch (the bundled summer cumulus, its
#: rims where the land shows through included) has squares as red as -0.12, a desert town's
#: pale sand, large enough to fill its squares, -0.2 to -0.3.
OVERCAST_TINT = -0.2
#: Clouds are white from 443 to 490 nm, and at the top of the atmosphere the air above them adds
#: more light at 443 than at 490 nm: the cloud of a square has a mean ratio of B01 (443 nm) to
#: B02 (490 nm) near 1 or above. Roofs, roads and sand darken from 490 to 443 nm, and B01, at
#: 60 m, averages a bright roof with the darker streets and yards around it. Where the square's
#: cloud has a mean ratio under ``CLOUD_BLUE`` and land's short-wave infrared (``ROOF_SWIR``)
#: it is bright land, with no pixel of the square scoring ``BLUE_SCORE`` or more (a thick cloud's
#: brightest tops come near the ratio of the ground: the air above adds less to them). Only at
#: top-of-atmosphere levels (with B10, as L1C gives them). Chosen on the tuning towns of the Onera
#: Satellite Change Detection dataset against the tuning halves of the pool
#: (benchmarks/records/masks.md). Without that guard the edges of the bundled series' cumulus (dim
#: at 443 nm, with no veil's rise) were left clear.
CLOUD_BLUE, BLUE_SCORE = 0.9, 0.6
#: A cloud adds about as much light at 443 nm as at 490 nm, so where a faint cloud is dim at
#: 443 nm it is still brighter than the land beside it there: the pixels whose ``LAND_BOX`` px
#: square's cloud is brighter than its clear pixels in B01 by ``VEIL_RISE`` or more of what it
#: is in B02 are a veil of cloud, not dim land (``veiled_blue``). Bright roofs and sand are
#: brighter than the land beside them far more at 490 than at 443 nm (they darken towards
#: 443 nm, and B01's 60 m pixels average them with the streets and yards around). On the
#: tuning halves, what the dim-land test cleared of the single-date benchmark's blended clouds
#: (a faint cloud of one donor, B01 / B02 0.84, over dark land) rises 0.41 to 0.62 of B02's
#: rise (but 3 px over the Sen1Floods11 chip's roofs, 0.1); the towns' dim land of the Onera
#: Satellite Change Detection dataset 0.15 (median; 95th percentile 0.35, 2 % from 0.4)
#: (benchmarks/records/masks.md).
VEIL_RISE = 0.4
#: A town's faint textured land in hazy air (tower roofs, grey yards, motorways) scores 0.2 to
#: 0.4 and its 10 m texture gives it a cloud-like parallax index. The pixels whose square's cloud
#: has land's short-wave infrared (``LAND_SWIR``), a mean ``texture`` in B04 above
#: ``TOWN_TEXTURE`` and no veil's rise at 443 nm over the square's clear pixels (it has some:
#: ``veiled_blue``) are bright land whatever their index, where no pixel of the ``TOWN_BOX`` px
#: square scores ``TOWN_SCORE`` or more: a town far from any cloud. Only at top-of-atmosphere
#: levels (with B01 and B10, as L1C gives them). With the guard over the ``LAND_BOX`` px square
#: alone, the thin wisps at the edges of the bundled summer cumulus's clouds over fields (textured,
#: and no brighter at 443 nm than the land) were left clear. Chosen on the tuning towns of the
#: Onera Satellite Change Detection dataset against the tuning halves of the pool
#: (benchmarks/records/masks.md).
TOWN_TEXTURE, TOWN_SCORE, TOWN_BOX = 0.03, 0.5, 101
#: A cloud's textured rim over land passes for such a town where the cloud's core scores under
#: ``TOWN_SCORE`` or lies beyond the window: the pixels within ``TOWN_RIM`` px of a cloud the
#: other rules keep, reached through faint textured land, stay cloud. On the tuning halves the
#: rule then took none of a cumulus rim it took 59 px of (the series benchmark's donor of 5
#: July) and changed no tuning town by more than 0.04 point (benchmarks/records/masks.md).
TOWN_RIM = 3
#: A lone speck of what scores as cloud, fewer than ``SEED_NEIGHBOURS`` pixels in the
#: ``SEED_BOX`` px square around it with under ``SPECK_SHARE`` of the ``SHARE_BOX`` px square
#: cloud, is a bright roof, car park or road (``specks``).
SPECK_SHARE = 0.1
#: Bright land lies among fields, trees and streets: where what scores as cloud covers
#: ``OVERCAST_SHARE`` or more of the valid pixels of the ``SHARE_BOX`` px square around a pixel,
#: the sky is overcast there and the test leaves the pixel cloud. On the cloud-free scenes of the
#: tuning half the bright land the test leaves clear has at most 0.58 of its square scoring as
#: cloud (the Sen1Floods11 chip 0.46); a real cloud's spread all over a scene, 1.
OVERCAST_SHARE = 0.8
#: The clear pixels around a thin cloud that score above this are haze (``seed_reach``).
HAZE_SCORE = 0.05
#: Variances of the parallax index over this many px (square).
CDI_BOX = 7
#: B08 (10 m) smoothed by this kernel, across and along, before it is compared with B8A (20 m).
NEAR_KERNEL = np.array([0.25, 0.5, 0.25], np.float32)
#: Context the bright-land test needs: its square, the variances' and the 3 px kernel of B08,
#: the square of its overcast share, or the faint towns' score guard.
LAND_REACH = max(LAND_BOX // 2 + CDI_BOX // 2 + 1, SHARE_BOX // 2, TOWN_BOX // 2)
#: Context the lone specks need around what the bright-land test leaves (``specks``).
SPECK_REACH = SHARE_BOX // 2
#: Context the parallax of the clouds around a pixel needs (``cloud_parallax``).
PARALLAX_REACH = SHARE_BOX // 2 + CDI_BOX // 2 + 1
#: Context ``seed_reach`` needs to be exact.
SEED_REACH = SEED_NEAR + PARALLAX_REACH


def parallax_index(b: dict[str, np.ndarray]) -> np.ndarray:
    """Cloud displacement index of Frantz, Hass, Uhl, Stoffels and Hill (2018, Remote Sensing of
    Environment 215): CDI = (V(B07 / B8A) - V(B08 / B8A)) / (V(B07 / B8A) + V(B08 / B8A)), V the
    variance over ``CDI_BOX`` px (B08 first smoothed towards B8A's 20 m by the kernel
    ``NEAR_KERNEL`` across and along: centred, so that a window mirrored beyond a scene's edge
    sees what the whole scene does). The B08 and B8A detectors see a cloud from slightly
    different angles, so its edges shift between them and B08 / B8A varies: clouds are near -1,
    ground (bright roofs too) higher."""
    b8a = np.maximum(b["B8A"], np.float32(1e-4))
    near = ndimage.correlate1d(b["B08"], NEAR_KERNEL, axis=0, mode="reflect")
    near = ndimage.correlate1d(near, NEAR_KERNEL, axis=1, mode="reflect") / b8a
    edge = b["B07"] / b8a
    v8, v7 = local_variance(near, CDI_BOX), local_variance(edge, CDI_BOX)
    return (v7 - v8) / np.maximum(v7 + v8, np.float32(1e-12))


class ParallaxIndex:
    """The parallax index (``parallax_index``) of a reflectance array's bands as they are,
    computed once for that array: ``classify`` and its caller read the same."""

    def __init__(self) -> None:
        self._of: np.ndarray | None = None
        self._index = np.zeros((0, 0), np.float32)

    def of(self, reflectance: np.ndarray, bands: Sequence[str]) -> np.ndarray:
        """The index [H, W] of ``reflectance`` [C, H, W], whose bands are ``bands`` (with
        ``PARALLAX_BANDS``)."""
        if self._of is not reflectance:
            self._index = parallax_index(_pick(reflectance, bands, PARALLAX_BANDS))
            self._of = reflectance
        return self._index


def local_variance(x: np.ndarray, size: int) -> np.ndarray:
    """Variance of ``x`` [H, W] over the ``size`` px square around each pixel."""
    mean = ndimage.uniform_filter(x, size, mode="reflect")
    return ndimage.uniform_filter(x * x, size, mode="reflect") - mean * mean


def texture(x: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Absolute difference of ``x`` [H, W] from the mean of the ``where`` pixels of its 3 x 3 px
    square, relative to that mean: the texture within what ``where`` holds, not the step at its
    edge (a cloud's sharp rim against the land)."""
    mean = np.maximum(box_mean(x, where, 3), np.float32(1e-4))
    return np.abs(x - mean) / mean


def specks(cloud: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The pixels of ``cloud`` [H, W] in lone specks: fewer than ``SEED_NEIGHBOURS`` cloud
    pixels in the ``SEED_BOX`` px square around them and under ``SPECK_SHARE`` of the
    ``SHARE_BOX`` px square's ``valid`` pixels cloud. Exact with ``SPECK_REACH`` px of context
    around ``cloud``."""
    if not cloud.any():
        return cloud
    near = box_share(cloud, SEED_BOX) * (SEED_BOX * SEED_BOX)
    lone = cloud & (near < SEED_NEIGHBOURS - 0.5)
    if not lone.any():
        return lone
    return lone & (box_mean(cloud, valid, SHARE_BOX) < SPECK_SHARE)


def blue_ratio(b: dict[str, np.ndarray]) -> np.ndarray:
    """B01 / B02 [H, W] (``CLOUD_BLUE``)."""
    return b["B01"] / np.maximum(b["B02"], np.float32(1e-4))


def veiled_blue(b: dict[str, np.ndarray], cloud: np.ndarray, valid: np.ndarray,
                count: np.ndarray, asked: np.ndarray | None = None) -> np.ndarray:
    """Whether the ``cloud`` pixels of the ``LAND_BOX`` px square around each pixel [H, W] are
    brighter than its clear ``valid`` pixels at 443 nm by ``VEIL_RISE`` or more of what they are
    at 490 nm, as a veil of cloud is; False where the square has no clear pixel. ``count``:
    ``box_count(cloud, LAND_BOX)``; ``asked``: the pixels [H, W] the caller asks about, whose
    rows alone are then computed (False on the others)."""
    rows = None if asked is None else np.flatnonzero(asked.any(axis=1))
    land = valid & ~cloud
    beside = box_count(land, LAND_BOX, rows=rows)
    count = count if rows is None else count[rows]
    rise = [box_mean(b[k], cloud, LAND_BOX, count=count, rows=rows)
            - box_mean(b[k], land, LAND_BOX, count=beside, rows=rows) for k in ("B01", "B02")]
    veiled = (beside > 1e-5) & (rise[1] > 0) & (rise[0] >= VEIL_RISE * rise[1])
    if rows is None:
        return veiled
    out = np.zeros(cloud.shape, bool)
    out[rows] = veiled
    return out


def soil_ratio(b: dict[str, np.ndarray]) -> np.ndarray:
    """B11 / B8A [H, W] (``SOIL_RATIO``)."""
    return b["B11"] / np.maximum(b["B8A"], np.float32(1e-4))


def tint(b: dict[str, np.ndarray]) -> np.ndarray:
    """(B02 - B04) / mean(B02, B03, B04) [H, W] (``SAND_TINT``): below 0 red, above 0 blue."""
    visible = np.maximum((b["B02"] + b["B03"] + b["B04"]) / 3, np.float32(1e-4))
    return (b["B02"] - b["B04"]) / visible


def bright_land(b: dict[str, np.ndarray], cloud: np.ndarray, score: np.ndarray,
                valid: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """The pixels of ``cloud`` [H, W] that are bright land (roofs, greenhouses, roads): no
    parallax, land's short-wave infrared and the texture of built-up land around, the texture
    of roofs however brightly they score, the red of sand or the dim blue of the ground (not a
    veil of cloud: ``veiled_blue``) with no opaque ``score`` near, textured land that is no
    veil far from any cloud, land as bright at 1610 nm as at 865 nm, or a faint
    score and plainer land (the constants ``LAND_*``, ``ROOF_*``, ``SAND_TINT``, ``CLOUD_BLUE``,
    ``TOWN_*``, ``SOIL_*``, ``FAINT_*``), under a sky that is not overcast (``OVERCAST_SHARE``
    of the ``valid`` [H, W] pixels); under an overcast sky only sand redder still
    (``OVERCAST_TINT``). None without the bands
    ``LAND_BANDS``. ``index``: ``parallax_index(b)``, where the caller has it. Exact with
    ``LAND_REACH`` px of context."""
    if not cloud.any() or any(k not in b for k in LAND_BANDS):
        return np.zeros_like(cloud)
    overcast = box_mean(cloud, valid, SHARE_BOX) >= OVERCAST_SHARE
    count = box_count(cloud, LAND_BOX)  # the divisor of the means over the clouds
    visible = np.maximum((b["B02"] + b["B03"] + b["B04"]) / 3, np.float32(1e-4))
    swir = box_mean(b["B11"] / visible, cloud, LAND_BOX, count=count)
    sand = cloud & (swir > LAND_SWIR) & (box_mean(tint(b), cloud, LAND_BOX, count=count)
                                         < np.where(overcast, OVERCAST_TINT, SAND_TINT))
    rough = cloud & ~overcast & (swir > ROOF_SWIR)
    if not (rough.any() or sand.any()):
        return rough
    # land's short-wave infrared against the near infrared (``SOIL_RATIO``); without B10 (L2A,
    # surface levels, where a cloud's thin edges turn red too) sand needs it as well
    soil = box_mean(soil_ratio(b), cloud, LAND_BOX, count=count) > SOIL_RATIO
    if "B10" not in b:
        sand &= soil
    grain = box_mean(texture(b["B04"], cloud), cloud, LAND_BOX, count=count)
    land = rough & (swir > LAND_SWIR)
    parallax = box_mean(parallax_index(b) if index is None else index, cloud, LAND_BOX,
                        count=count)
    still = parallax > LAND_CDI
    textured = land & (grain > LAND_TEXTURE)
    kept = textured & still
    kept |= rough & (grain > ROOF_TEXTURE)  # roofs, whatever their parallax and score
    sand &= ~kept
    top = "B01" in b and "B10" in b  # top-of-atmosphere levels, with the blue at 443 nm
    dim = (rough & ~kept & (box_mean(blue_ratio(b), cloud, LAND_BOX, count=count) < CLOUD_BLUE)
           if top else np.zeros_like(rough))
    # bare land, sand or roofs by 1610 against 865 nm
    bare = rough & ~kept & soil
    # faint textured land that is no veil, beside some clear land; a town where no cloud is near
    faint = land & ~kept & (grain > TOWN_TEXTURE) if top else np.zeros_like(rough)
    if faint.any():
        faint &= box_any(valid & ~cloud, LAND_BOX)
    if dim.any() or faint.any():  # a few pixels: the veil's means on their rows alone
        veiled = veiled_blue(b, cloud, valid, count, dim | faint)
        dim &= ~veiled
        faint &= ~veiled
    town = faint & ~box_any(cloud & (score >= TOWN_SCORE), TOWN_BOX) if faint.any() else faint
    plain = land & ~textured & still & (parallax > FAINT_CDI) & (swir > FAINT_SWIR)
    for pixels, level in ((sand, SAND_SCORE), (dim, BLUE_SCORE), (bare, SOIL_SCORE),
                          (plain, FAINT_SCORE)):
        if pixels.any():  # those with no cloud scoring ``level`` or more in their square
            kept |= pixels & ~box_any(cloud & (score >= level), LAND_BOX)
    if town.any():  # not the rim of a cloud the other rules keep
        town &= ~ndimage.binary_dilation(cloud & ~kept & ~faint, EIGHT, TOWN_RIM, mask=faint)
    return kept | town


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


def cloud_parallax(reflectance: np.ndarray, bands: Sequence[str], cloud: np.ndarray,
                   index: ParallaxIndex | None = None,
                   count: np.ndarray | None = None) -> np.ndarray | None:
    """Mean parallax index [H, W] (``parallax_index``) of the ``cloud`` pixels in the
    ``SHARE_BOX`` px square around each pixel (0 where there are none); ``reflectance`` holds
    ``bands``; None without the bands ``PARALLAX_BANDS``. ``index``: where the parallax index
    of ``reflectance`` is kept; ``count``: ``box_count(cloud, SHARE_BOX)``, where the caller
    has it. Where that cloud has the colour of the ground (``ground_colour``) or its texture
    (``ground_texture``) it is +inf: no cloud's parallax. Exact with ``PARALLAX_REACH`` px of
    context."""
    if any(k not in bands for k in PARALLAX_BANDS) or not cloud.any():
        return None
    count = box_count(cloud, SHARE_BOX) if count is None else count  # for both means
    parallax = box_mean((ParallaxIndex() if index is None else index).of(reflectance, bands),
                        cloud, SHARE_BOX, count=count)
    colour = (COLOUR_BANDS if "B10" in bands else SOIL_BANDS)
    if all(k in bands for k in colour):
        parallax[ground_colour(_pick(reflectance, bands, colour), cloud, count)] = np.inf
    parallax[ground_texture(_pick(reflectance, bands, ("B04",))["B04"], cloud, count)] = np.inf
    return parallax


def ground_colour(b: dict[str, np.ndarray], cloud: np.ndarray,
                  count: np.ndarray | None = None) -> np.ndarray:
    """Whether the ``cloud`` pixels of the ``SHARE_BOX`` px square around each pixel [H, W] have
    the colour of the ground rather than a cloud's: at the top of the atmosphere (``b`` holds
    ``COLOUR_BANDS``, with B10) red (a mean tint (B02 - B04) / visible under ``SAND_TINT``) or
    dim at 443 nm (a mean ratio of B01 to B02 under ``CLOUD_BLUE``); without B10 (``b`` holds
    ``SOIL_BANDS``) red and with land's short-wave infrared against the near infrared (a mean
    ``soil_ratio`` above ``SOIL_RATIO``). ``count``: ``box_count(cloud, SHARE_BOX)``, where the
    caller has it."""
    count = box_count(cloud, SHARE_BOX) if count is None else count
    red = box_mean(tint(b), cloud, SHARE_BOX, count=count) < SAND_TINT
    if "B10" not in b:
        return red & (box_mean(soil_ratio(b), cloud, SHARE_BOX, count=count) > SOIL_RATIO)
    return red | (box_mean(blue_ratio(b), cloud, SHARE_BOX, count=count) < CLOUD_BLUE)


def ground_texture(b04: np.ndarray, cloud: np.ndarray,
                   count: np.ndarray | None = None) -> np.ndarray:
    """Whether the ``cloud`` pixels of the ``SHARE_BOX`` px square around each pixel [H, W] have
    the texture of built-up land rather than a cloud's: a mean ``texture`` in ``b04`` above
    ``GROUND_TEXTURE``. ``count``: ``box_count(cloud, SHARE_BOX)``, where the caller has it."""
    count = box_count(cloud, SHARE_BOX) if count is None else count
    return box_mean(texture(b04, cloud), cloud, SHARE_BOX, count=count) > GROUND_TEXTURE


def confirmed_reach(reflectance: np.ndarray, bands: Sequence[str], cloud: np.ndarray,
                    score: np.ndarray, valid: np.ndarray,
                    index: ParallaxIndex | None = None) -> np.ndarray:
    """``seed_reach`` of ``cloud`` with its clouds' parallax (``cloud_parallax``; ``reflectance``,
    ``bands`` and ``index`` as there). Where every pixel is valid, the share of cloud around
    each pixel is computed once for both (the parallax's divisor and the confident clouds')."""
    if not cloud.any():
        return np.zeros(cloud.shape, np.float32)
    share = (box_count(cloud, SHARE_BOX) if valid.all()
             and all(k in bands for k in PARALLAX_BANDS) else None)
    return seed_reach(cloud, score, valid,
                      cloud_parallax(reflectance, bands, cloud, index, share), share)


def seed_reach(cloud: np.ndarray, score: np.ndarray, valid: np.ndarray,
               parallax: np.ndarray | None = None, share: np.ndarray | None = None
               ) -> np.ndarray:
    """How far [H, W] (0 to 1 of the buffer's or the ring's radius) each pixel of ``cloud``
    grows them: the pixels with at least ``SEED_NEIGHBOURS`` cloud pixels in the ``SEED_BOX``
    px square around them (themselves included) or a ``score`` of at least ``SEED_SCORE``, near
    confident cloud (1) or, with a cloud's extent, amid haze (the share of cloud around them);
    0 elsewhere (``SEED_*``, ``CONFIDENT_SCORE``, and with ``parallax`` (``cloud_parallax``)
    the ``CONFIDENT_CDI`` of confident cloud; without it, a pixel confident by its score has
    ``SEED_NEIGHBOURS`` cloud pixels around it too). ``valid`` [H, W] marks the scene's pixels.
    ``share``: ``box_mean(cloud, valid, SHARE_BOX)`` (or, where every pixel is valid,
    ``box_count(cloud, SHARE_BOX)``), where the caller has it. Exact with ``SEED_REACH`` px of
    context."""
    reach = np.zeros(cloud.shape, np.float32)
    if not cloud.any():
        return reach
    # ``score`` is NaN off the scene's pixels: compared with the positive levels below it is
    # none of them, as 0 would be
    box = SEED_BOX * SEED_BOX
    near = box_share(cloud, SEED_BOX) * box
    seeds = cloud & ((near > SEED_NEIGHBOURS - 0.5) | (score >= SEED_SCORE))
    if not seeds.any():
        return reach
    opaque = score >= CONFIDENT_SCORE
    if parallax is None:  # nothing tells a lone bright roof from a small cloud: a speck is none
        opaque &= near > SEED_NEIGHBOURS - 0.5
    if share is None:
        share = box_mean(cloud, valid, SHARE_BOX)
    extent = share >= SEED_EXTENT  # a cloud, not a lone roof or a speck
    confident = cloud & ((share >= SEED_SHARE) | (opaque & extent))
    if parallax is not None:  # on the ground: no parallax
        confident &= parallax < CONFIDENT_CDI
    backed = seeds & box_any(confident, 2 * SEED_NEAR + 1)
    reach[backed] = 1
    if not (seeds & ~backed).any():  # every seed near confident cloud: the haze is not asked
        return reach
    hazy = seeds & ~backed & extent
    if parallax is not None:  # the colour of the ground: no cloud the haze could confirm
        hazy &= np.isfinite(parallax)
    rows = np.flatnonzero(hazy.any(axis=1))  # the share of haze is needed on these alone
    hazy[rows] &= box_mean(score > HAZE_SCORE, valid & ~cloud, HAZE_BOX, rows=rows) >= SEED_HAZE
    reach[hazy] = share[hazy]
    return reach


def box_mean(x: np.ndarray, where: np.ndarray, size: int,
             mode: str = "reflect", count: np.ndarray | None = None,
             rows: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``x`` [H, W] over the ``where`` pixels of the ``size`` px square around each
    pixel (0 where it holds none); beyond the array's edges mirrored (``mode``), as windows
    read at the scene's edges are. ``x`` booleans: the share of them, in float32
    (``box_share``).
    ``count``: ``box_count(where, size, mode, rows)``, where the caller has it; ``rows``:
    only those rows (indices), [len(rows), W]."""
    if mode != "constant" and where.all():  # every weight and their mean exactly 1
        return _box_filter(x, size, mode, rows)
    total = _box_filter(x & where if x.dtype == bool else x * where.astype(np.float32), size,
                        mode, rows)
    return total / (box_count(where, size, mode, rows) if count is None else count)


def _box_filter(x: np.ndarray, size: int, mode: str,
                rows: np.ndarray | None = None) -> np.ndarray:
    """``ndimage.uniform_filter`` of ``x`` [H, W] into float32 or wider (``box_share`` for
    booleans); only its ``rows`` (indices, ascending) where given, the same values.

    SciPy filters the columns, then the rows, each line a running mean from its start: a
    column's mean at a row reads nothing more than half a square below it, and each row is a
    line of its own. So for some rows the columns are filtered down to a square below the last
    of them, and the rows along them alone."""
    if x.dtype == bool:
        return box_share(x, size, mode, rows)
    dtype = np.result_type(x, np.float32)
    if rows is None:
        return ndimage.uniform_filter(x, size, output=dtype, mode=mode)
    if not len(rows):
        return np.zeros((0, x.shape[1]), dtype)
    down = ndimage.uniform_filter1d(x[:int(rows[-1]) + size], size, axis=0, output=dtype,
                                    mode=mode)
    return ndimage.uniform_filter1d(down[rows], size, axis=1, output=dtype, mode=mode)


def box_count(where: np.ndarray, size: int, mode: str = "reflect",
              rows: np.ndarray | None = None) -> np.ndarray:
    """The share of ``where`` [H, W] pixels in the ``size`` px square around each pixel, at
    least 1e-6: ``box_mean``'s divisor (``rows``: only those, as ``box_share``)."""
    share = box_share(where, size, mode, rows)
    return np.maximum(share, np.float32(1e-6), out=share)


def grow_in_proportion(reach: np.ndarray, radius: int) -> np.ndarray:
    """The pixels within ``reach`` [H, W] (``seed_reach``: 0 to 1) times ``radius`` of a pixel
    whose reach is above 0, the reach rounded up to ``SEED_STEPS`` steps."""
    steps = np.ceil(np.minimum(reach, 1) * SEED_STEPS)  # a share may round above 1
    out = steps > 0
    if radius <= 0 or not out.any():
        return out
    for step in range(1, SEED_STEPS + 1):
        at = steps == step
        if at.any():
            out |= grow(at, -(-radius * step // SEED_STEPS))
    return out


def grow(seeds: np.ndarray, radius: int) -> np.ndarray:
    """The pixels within ``radius`` (Euclidean) of ``seeds``: a dilation by a disk (scipy's
    dilation slows with the disk's area and runs out of memory from a radius of about 200).
    Below ``NEAR_REACH``, the seeds grown along the rows by the disk's half-width at each row
    of it, or-ed in shifted by that row (the same pixels in a quarter to a third of the time
    of ``squared_distance``'s shifted minima), else from the squared distance."""
    if radius + 1 > NEAR_REACH:
        return squared_distance(seeds, radius + 1) <= radius * radius
    (h, w), out = seeds.shape, np.zeros_like(seeds)
    across, width = seeds.copy(), 0  # the seeds grown along the rows by ``width`` px
    for dy in range(min(radius, h - 1), -1, -1):  # the half-width grows towards the centre
        half = min(math.isqrt(radius * radius - dy * dy), w - 1)
        for dx in range(width + 1, half + 1):
            across[:, dx:] |= seeds[:, :-dx]
            across[:, :-dx] |= seeds[:, dx:]
        width = half
        out[dy:] |= across[:h - dy]
        if dy:
            out[:-dy] |= across[dy:]
    return out


#: Largest reach at which ``squared_distance`` shifts the seeds rather than taking a distance
#: transform (its passes grow with the reach): on a 414 x 1982 chunk, 5.6 ms at 11 px and
#: 7.1 ms at 15 against the transform's 27 ms.
NEAR_REACH = 24


def squared_distance(seeds: np.ndarray, reach: int) -> np.ndarray:
    """Squared Euclidean distance [H, W] (unsigned integers) from each pixel to the nearest of
    ``seeds`` [H, W], exact below ``reach`` squared, which it is elsewhere (also with no seed):
    ``ndimage.distance_transform_edt(~seeds) ** 2`` capped, for a fraction of the work.

    The squared distance is separable (Felzenszwalb and Huttenlocher 2012): the least
    dx**2 + dy**2 over the seeds is the least dy**2 plus the nearest seed's dx**2 in the row dy
    away. Within the reach both minima are a few shifted copies of whole arrays."""
    cap = reach * reach
    if reach > NEAR_REACH:
        if not seeds.any():
            return np.full(seeds.shape, cap, np.uint32)
        distance = ndimage.distance_transform_edt(~seeds)
        return np.minimum(np.rint(np.square(distance, out=distance)), cap).astype(np.uint32)
    narrow, wide = np.min_scalar_type(cap + 1), np.min_scalar_type(2 * cap)
    # along the rows: a seed's dx**2 is dx**2 | 0, every other pixel keeps all bits set
    seen = np.where(seeds, narrow.type(0), narrow.type(np.iinfo(narrow).max))
    rows = seen.copy()
    shifted = np.empty_like(seen)
    for dx in range(1, min(reach, seeds.shape[1])):
        for to, of in ((slice(dx, None), slice(None, -dx)), (slice(None, -dx), slice(dx, None))):
            np.bitwise_or(seen[:, of], narrow.type(dx * dx), out=shifted[:, to])
            np.minimum(rows[:, to], shifted[:, to], out=rows[:, to])
    # across the rows, whole rows at a time (contiguous: 3 times faster than the columns)
    rows = np.minimum(rows, narrow.type(cap)).astype(wide)
    out = rows.copy()
    shifted = np.empty_like(rows)
    for dy in range(1, min(reach, len(seeds))):
        for to, of in ((slice(dy, None), slice(None, -dy)), (slice(None, -dy), slice(dy, None))):
            np.add(rows[of], wide.type(dy * dy), out=shifted[to])
            np.minimum(out[to], shifted[to], out=out[to])
    return np.minimum(out, wide.type(cap), out=out)
