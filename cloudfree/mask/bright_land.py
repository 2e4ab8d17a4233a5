"""Bright land against cloud: roofs, greenhouses, roads and sand that score as cloud, and which
clouds are confident enough to grow a buffer and a haze ring (array level, no I/O).

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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from cloudfree.core.boxes import box_any, box_count, box_mean, box_share, local_variance
from cloudfree.core.distance import EIGHT, grow
from cloudfree.mask.bands import COLOUR_BANDS, LAND_BANDS, PARALLAX_BANDS, SOIL_BANDS, pick

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
#: Textured land with no parallax beside a confirmed cloud is that cloud's thin edge over the
#: land, not roofs: the test keeps it cloud where the pixels of the ``BESIDE_BOX`` px square
#: around that score ``BESIDE_SCORE`` or more show a cloud's parallax (mean index under
#: ``LAND_CDI``) and its smoothness (mean ``texture`` in B04 under ``GROUND_TEXTURE``). Chosen on
#: the tuning halves of the pool's blended clouds (benchmarks/one_date_quality.py, edges of
#: cloud alone), its cloud-free scenes and towns (benchmarks/clear_scenes.py) and its cloudy /
#: clear pairs (benchmarks/mask_quality.py; benchmarks/records/masks.md).
BESIDE_SCORE, BESIDE_BOX = 0.5, 51
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
#: took 27 % of the towns', and 0.15 dB of a blended cloud over a town; at 0.07 it leaves clear
#: the white roofs of more estates, but also the textured rims of small cumulus over water and
#: some of their cores (1.7 dB less on the single-date benchmark's clouds, 2.5 dB on its tuning
#: half). Leaving clear any textured land with a cloud-like index where nothing near scores 0.5
#: took thin cloud over towns too (-6 dB on a blended cloud of the single-date benchmark).
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
#: has land's short-wave infrared (``LAND_SWIR``) and a mean ``texture`` in B04 above
#: ``TOWN_TEXTURE`` are bright land whatever their index, where fewer than ``TOWN_CORE`` pixels
#: of the ``TOWN_BOX`` px square score ``TOWN_SCORE`` or more: a town far from any cloud's core
#: (a few white roofs among it score that high too). With B01 (L1C, twelve L2A bands) the cloud
#: must also show no veil's rise at 443 nm over the square's clear pixels (it has some:
#: ``veiled_blue``). With the guard over the ``LAND_BOX`` px square alone, the thin wisps at the
#: edges of the bundled summer cumulus's clouds over fields (textured, and no brighter at 443 nm
#: than the land) were left clear. Chosen on the tuning towns of the Onera Satellite Change
#: Detection dataset against the tuning halves of the pool; without B01 and B10 (ten L2A bands)
#: and with ``TOWN_CORE`` on the tuning EuroSAT tiles of towns and industrial estates as ten
#: bands, where 6 px of roofs scoring 0.5 kept a third of a tile of Athens cloud, against the
#: tuning halves of the pool's pairs with their clouds at L2A levels (benchmarks/mask_l2a.py;
#: benchmarks/records/masks.md).
TOWN_TEXTURE, TOWN_SCORE, TOWN_BOX, TOWN_CORE = 0.03, 0.5, 101, 10
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
#: A cloud's top lies above much of the air's water vapour, which absorbs at 945 nm (B09), so
#: a cloud is brighter at 945 nm against 865 nm (B8A) than the ground around it; a roof or a
#: yard is ground. A patch of cloud (8-connected) at most ``VAPOUR_EXTENT`` px across, rows and
#: columns, is bright land where its summed B09 over its summed B8A is under that of the clear
#: land around it (``VAPOUR_RING``: the clear pixels, B8A above 0.1, more than ``VAPOUR_RING[0]``
#: and at most ``VAPOUR_RING[1]`` px from cloud, each counted for the nearest patch) by more
#: than ``VAPOUR_DROP`` of it. Judged per patch, not per pixel: B09's 60 m pixels mix a cloud's
#: edge with the ground, but a whole cloud stands above its land (on the tuning half of the
#: pool's cloudy pairs, the patches over 2000 px +0.19 at the median, +0.11 at the 10th
#: percentile), while the bright land the other rules keep on the tuning towns and built-up
#: tiles lies under it (-0.06 to -0.09 at the median; benchmarks/records/masks.md). A patch
#: within ``VAPOUR_RING[1]`` px of a larger one is left as it is: the wisps beside a cumulus
#: (over its own shadow, in the bundled sample) are pieces of that cloud.
VAPOUR_EXTENT, VAPOUR_RING, VAPOUR_DROP = 40, (5, 15), 0.05
#: The clear pixels around a thin cloud that score above this are haze (``seed_reach``).
HAZE_SCORE = 0.05
#: Variances of the parallax index over this many px (square).
CDI_BOX = 7
#: B08 (10 m) smoothed by this kernel, across and along, before it is compared with B8A (20 m).
NEAR_KERNEL = np.array([0.25, 0.5, 0.25], np.float32)
#: Context the bright-land test needs: its square or that of the confirmed clouds beside it,
#: with the variances' and the 3 px kernel of B08, the square of its overcast share, or the faint
#: towns' score guard.
LAND_REACH = max(LAND_BOX // 2 + CDI_BOX // 2 + 1, BESIDE_BOX // 2 + CDI_BOX // 2 + 1,
                 SHARE_BOX // 2, TOWN_BOX // 2)
#: Context the water vapour's patches need around what the specks leave (``vapour_land``).
VAPOUR_REACH = VAPOUR_EXTENT + VAPOUR_RING[1] + 1
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
            self._index = parallax_index(pick(reflectance, bands, PARALLAX_BANDS))
            self._of = reflectance
        return self._index


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


def vapour_land(b: dict[str, np.ndarray], cloud: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The pixels of ``cloud`` [H, W] in patches at most ``VAPOUR_EXTENT`` px across that are
    dimmer at 945 nm against 865 nm than the clear ``valid`` land around them (``VAPOUR_*``).
    A patch that touches the array's edge, or lies within ``VAPOUR_RING[1]`` px of a larger one
    (a piece of a cloud beside it), is left as it is. Exact with ``VAPOUR_REACH`` px of
    context around ``cloud``."""
    labels, count = ndimage.label(cloud, EIGHT)
    if not count:
        return np.zeros_like(cloud)
    h, w = cloud.shape
    small = np.zeros(count + 1, bool)
    for k, (rows, cols) in enumerate(ndimage.find_objects(labels), 1):
        small[k] = (rows.stop - rows.start <= VAPOUR_EXTENT and cols.stop - cols.start
                    <= VAPOUR_EXTENT and rows.start > 0 and cols.start > 0 and rows.stop < h
                    and cols.stop < w)
    # a patch beside a larger one (within the ring's reach) is a piece of it
    beside = grow(cloud & ~small[labels], VAPOUR_RING[1])
    small &= np.bincount(labels[beside], minlength=count + 1) == 0
    if not small.any():
        return np.zeros_like(cloud)
    judged = small[labels]
    # the distances only where the patches judged have their rings, and as far again around
    # (a ring pixel's nearest cloud is no farther than its patch)
    zone = grow(judged, VAPOUR_RING[1])
    rows, cols = np.flatnonzero(zone.any(axis=1)), np.flatnonzero(zone.any(axis=0))
    crop = (slice(max(rows[0] - VAPOUR_RING[1], 0), rows[-1] + VAPOUR_RING[1] + 1),
            slice(max(cols[0] - VAPOUR_RING[1], 0), cols[-1] + VAPOUR_RING[1] + 1))
    distance, (near_rows, near_cols) = ndimage.distance_transform_edt(~cloud[crop],
                                                                      return_indices=True)
    ring = (zone[crop] & valid[crop] & ~cloud[crop] & (distance > VAPOUR_RING[0])
            & (distance <= VAPOUR_RING[1]) & (b["B8A"][crop] > 0.1))
    owner = labels[crop][near_rows[ring], near_cols[ring]]
    sums = [np.bincount(owner, b[k][crop][ring], count + 1) for k in ("B09", "B8A")]
    inside = [np.bincount(labels[judged], b[k][judged], count + 1) for k in ("B09", "B8A")]
    with np.errstate(divide="ignore", invalid="ignore"):
        land = sums[0] / sums[1]
        patch = inside[0] / inside[1]
    dim = small & (sums[1] > 0) & (patch < land * (1 - VAPOUR_DROP))
    return dim[labels]


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
    parallax, land's short-wave infrared and the texture of built-up land around with no
    confirmed cloud beside (``beside_cloud``, ``BESIDE_*``), the texture
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
    fine = texture(b["B04"], cloud)
    grain = box_mean(fine, cloud, LAND_BOX, count=count)
    index = parallax_index(b) if index is None else index
    land = rough & (swir > LAND_SWIR)
    parallax = box_mean(index, cloud, LAND_BOX, count=count)
    still = parallax > LAND_CDI
    textured = land & (grain > LAND_TEXTURE)
    kept = textured & still
    if kept.any():  # not a confirmed cloud's thin edge
        kept &= ~beside_cloud(cloud & (score >= BESIDE_SCORE), index, fine)
    kept |= rough & (grain > ROOF_TEXTURE)  # roofs, whatever their parallax and score
    sand &= ~kept
    top = "B01" in b and "B10" in b  # top-of-atmosphere levels, with the blue at 443 nm
    dim = (rough & ~kept & (box_mean(blue_ratio(b), cloud, LAND_BOX, count=count) < CLOUD_BLUE)
           if top else np.zeros_like(rough))
    # bare land, sand or roofs by 1610 against 865 nm
    bare = rough & ~kept & soil
    # faint textured land that is no veil, beside some clear land; a town where no cloud is near
    faint = land & ~kept & (grain > TOWN_TEXTURE)
    if faint.any():
        faint &= box_any(valid & ~cloud, LAND_BOX)
    if "B01" in b and (dim.any() or faint.any()):  # the veil's means on their rows alone
        veiled = veiled_blue(b, cloud, valid, count, dim | faint)
        dim &= ~veiled
        faint &= ~veiled
    # a town: fewer than ``TOWN_CORE`` pixels of an opaque cloud near
    town = (faint & (box_share(cloud & (score >= TOWN_SCORE), TOWN_BOX) * TOWN_BOX**2
                     < TOWN_CORE - 0.5) if faint.any() else faint)
    plain = land & ~textured & still & (parallax > FAINT_CDI) & (swir > FAINT_SWIR)
    for pixels, level in ((sand, SAND_SCORE), (dim, BLUE_SCORE), (bare, SOIL_SCORE),
                          (plain, FAINT_SCORE)):
        if pixels.any():  # those with no cloud scoring ``level`` or more in their square
            kept |= pixels & ~box_any(cloud & (score >= level), LAND_BOX)
    if town.any():  # not the rim of a cloud the other rules keep
        town &= ~ndimage.binary_dilation(cloud & ~kept & ~faint, EIGHT, TOWN_RIM, mask=faint)
    return kept | town


def beside_cloud(strong: np.ndarray, index: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Whether the ``strong`` cloud pixels of the ``BESIDE_BOX`` px square around each pixel
    [H, W] are a confirmed cloud: a mean parallax ``index`` under ``LAND_CDI`` and a mean
    texture ``fine`` (``texture`` in B04) under ``GROUND_TEXTURE``; False where it holds
    none."""
    if not strong.any():
        return np.zeros_like(strong)
    count = box_count(strong, BESIDE_BOX)
    return ((box_mean(index, strong, BESIDE_BOX, count=count) < LAND_CDI)
            & (box_mean(fine, strong, BESIDE_BOX, count=count) < GROUND_TEXTURE))


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
        parallax[ground_colour(pick(reflectance, bands, colour), cloud, count)] = np.inf
    parallax[ground_texture(pick(reflectance, bands, ("B04",))["B04"], cloud, count)] = np.inf
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
