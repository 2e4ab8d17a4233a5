"""Single-date cloud removal judged against the same date's land: real clouds and real shadows
over the pool's clear real S1/S2 images, one scene held out at a time.

    python benchmarks/one_date_quality.py --data DATA [--json out.json] [--half tuning]

DATA is the set built by ``scripts/build_training_set.py``. Every clear L1C image with its S1 (the
pairs and the cloud-free image of every triplet, ``train_default.clear_scenes``) is a scene. Its
clouds and shadows come from a real cloudy image of another scene of the pool (a donor, turned by
90 degrees):

- cloud: ``clear + a * (cloud - clear)``, ``cloud`` the donor's cloud (its edges below), with
  the donor's opacity ``a`` rising with its cloud score (``training/simulate.py``: cores hide
  the land, edges let it through), on the donor's cloud alone (``donor_opacity``): its score
  above the mask's threshold, where the donor has a clear image of another date also
  ``TWIN_BRIGHTER`` brighter in B02 than that image (roofs and bright soil score too, but are
  as bright on both dates), in objects of ``MIN_CLOUD`` px or more, the opacity fading to 0
  over ``FADE`` px beyond them. So the donor's own clear land
  (a town's street grid, at a score of 0.05-0.2) is not blended in as a veil. The cloud's B09
  is brought to the scene's air (``with_scene_vapour``): water vapour differs from image to
  image, and a cloud stands above the land of its own image at 945 nm;
- shadow: where the donor's clouds cast their shadows (``cast_shadow``: the shadow its mask finds
  within ``NEAR`` px of its clouds, on the outline of its opaque clouds displaced by the offset
  that lays most of that outline on it, ``shadow.footprint``; the dark land its mask flags
  elsewhere near its clouds is left out), the clear land darkened by the per-band ratio measured
  on the pool's real shadows (``shadow_ratios``: cloudy over cloud-free, median over the shadows
  of the images where B08 loses 30 % or more), with a 1 px soft edge. The run prints, per donor
  used, how much of the flagged shadow its clouds cast. Donors are chosen by all of it, so the
  cloud case does not depend on the cast part.

Cases: ``cloud``, ``shadow`` and ``both``. Every setting runs the real ``remove_scene`` (GeoTIFFs,
S1 aligned); scores are PSNR (reflectance in [0, 1], 13 bands) over the image, over the pixels the
clouds and shadows changed, and over the changed pixels of opaque cloud (blend opacity 0.5 and
more) and of thin cloud (less), and over the ring just inside each cloud (its pixels within
``RING`` px of the land it left clear), where restoring hands over to filling, and over its
outermost ``EDGE`` px (``edge``), where the veil is thinnest; RMSE (reflectance) over the image
and that edge. Specks: the filled
pixels (those the output changed) darker than the clear land's 1st percentile in B02, B03 or
B04, or bluer (B02 / B04) than its 99th, summed over the scenes. Colour, on the opaque cloud
pixels: per band, the relative error of the output's mean against the truth's (its level), and
of the output's mean against that of the clear land within ``LAND_RING`` px of the cloud (what
the eye compares a patch with), in % and averaged over the scenes; and the first on the ring
just inside each cloud. Settings: the scene median,
the local base (shadows left dark, ``--no-shadow``), then each step on it (haze restored;
shadows relit, with the mask's shadow test, ``remove``'s default for one date), then all
together (the default). Then, guard, the ``other date`` case: every real triplet's own cloudy image
against its cloud-free image of another date (the papers' protocol; its ring inside the
triplet's own cloud mask). A triplet on whose cloudy image ``remove``'s mask finds no cloud is
left out: ``remove`` leaves it as it is, so every setting would score it alike. Of the pool's
11 triplets that leaves 8, 4 in each half: winter_112 holds only a haze scoring under 0.04,
and the bright-land test leaves clear the bright river sand of oriolac 316 (the red of sand)
and the coastal town's roofs of oriolac 1302 (dim at 443 nm against 490 nm), which the mask
took for cloud before those rules (tables of 10 triplets).

The donor's thin edges add its cloud alone (``cloud_only``): where the opacity is under
``CORE``, the spectrum of its core takes the donor's pixel's place, so a thin edge is
``clear + a * (core - clear)``, the linear mixing of thin cloud, which real thin edges follow
(``thin_edges.py``: against the donors' clear twins, the mixing explains 75 % of their veil, the
cloud's share following ``a``). ``--edges "as seen"`` blends the donor's pixels as they are: an
edge of opacity ``a`` then carries about ``a`` times the cloud of the real date's edge and
``a * (1 - a)`` of the donor's own land.

Not run by default: ``given the true mask``, the default given each case's truth as its mask
(``given_mask``, ``remove --mask-in``), to measure what the mask costs the fill; and ``given
s2cloudless's mask`` (s2cloudless installed), what a user giving that mask gets; ``given
s2cloudless's probability``, its probability as it is (Earth Engine's S2_CLOUD_PROBABILITY is
that) given with the threshold of 0.4 (``remove --mask-in-threshold``).

Held out, leave-one-scene-out: ``haze, constants held out`` scores each scene with the haze
constants (the default or one of ``HAZE_VARIANTS``) best on the cloud case of the other scenes;
``held-out choice`` with the setting best on the ``both`` case of the other scenes.

``--half tuning`` or ``--half held-out`` runs the scenes and guard triplets of one half of the
by-scene split (``HELD_OUT`` of ``mask_quality.py``).

``--bands l2a10`` gives ``remove`` each case as the ten bands of an L2A product (B01, B09 and B10
dropped; named, tagged L2A), at top-of-atmosphere levels, or with ``--surface DEST`` at surface
levels: the visible bands of the case and of its truth brought alike to the dark levels of the
pool's real L2A images and divided by a typical transmittance (``mask_l2a.py``'s emulation of an
atmospheric correction, the clear image's offsets).
PSNR and RMSE are then over those ten bands; the guard does not run.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import code_version
import numpy as np
import rasterio
import torch
from clear_scenes import held_out as in_held_out
from mask_l2a import L2A_10, band_arguments, lowered, offsets, surface_levels
from mask_quality import s2cloudless
from metrics import psnr, rmse
from remove_quality import GRID, write_inputs  # puts scripts/ on the path for train_default
from scipy import ndimage
from train_default import load_set, real_triplets, reflectance

from cloudfree.fill.restore import RestoreParams
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, MaskParams, classify
from cloudfree.mask.haze import HazeParams
from cloudfree.mask.shadow import OFFSET_REACH, footprint, offset_counts
from cloudfree.pipeline.options import split_options
from cloudfree.pipeline.remove import remove_scene
from cloudfree.training.datasets import LoadedSample, cloud_mask
from cloudfree.training.simulate import opacity, overlay

#: Shadows count as cast by a donor's clouds within this many px of them.
NEAR = 40
#: A donor has 5-70 % cloud (some land for shadows and the local fill) and real shadows.
DONOR_CLOUD = (0.05, 0.7)
MIN_SHADOW = 300
SHADOWS = MaskParams(buffer=5, shadow=True)
#: ``remove``'s mask without shadows (``--no-shadow``)
UNSHADED = MaskParams(buffer=5, shadow=False)
#: A donor's cloud: brighter in B02 than its clear twin by this much (reflectance), in objects of
#: this many px or more; its opacity fades to 0 over ``FADE`` px beyond them.
TWIN_BRIGHTER = 0.03
MIN_CLOUD = 20
FADE = 8
#: Land pixels an image needs for its air's water vapour to be measured (``land_vapour``).
MIN_LAND = 100
#: ``--edges "cloud only"``: a donor's pixels count as cloud alone from this opacity; its thin
#: edges take the spectrum of that core, smoothed over ``CORE_SIGMA`` px.
CORE = 0.9
CORE_SIGMA = 10.0
#: name -> remove options: the steps, one at a time, then together
SETTINGS = {
    "scene-median fill": {"model": "median-fill", "fill_method": "median", "feather": 8,
                          "restoring": None, "mask_params": UNSHADED},
    "local base": {"model": "median-fill", "restoring": None, "mask_params": UNSHADED},
    "+ haze restored": {"model": "median-fill", "restoring": RestoreParams(shadows=False),
                        "mask_params": UNSHADED},
    "+ shadows relit": {"model": "median-fill", "mask_params": SHADOWS,
                        "restoring": RestoreParams(haze=None)},
    "all together": {"model": "median-fill", "mask_params": SHADOWS,
                     "restoring": RestoreParams()},
    # not run by default
    # the bright-land test as measured before the built-up test (S1) existed
    "+ bright-land test": {"model": "median-fill",
                           "mask_params": replace(UNSHADED, land=True, built_up=False),
                           "restoring": RestoreParams(shadows=False)},
    "without the bright-land test": {"model": "median-fill", "restoring": RestoreParams(),
                                     "mask_params": replace(SHADOWS, land=False)},
    "without the S1 built-up test": {"model": "median-fill",
                                     "mask_params": replace(UNSHADED, built_up=False),
                                     "restoring": RestoreParams(shadows=False)},
    "local base, shadows filled": {"model": "median-fill", "restoring": None,
                                   "mask_params": SHADOWS},
    "fillnet on the local base": {"model": "cloudfree-fillnet", "restoring": None,
                                  "mask_params": UNSHADED},
    "fillnet + haze restored": {"model": "cloudfree-fillnet", "mask_params": UNSHADED,
                                "restoring": RestoreParams(shadows=False)},
    # the default given the case's true clouds and shadows as its mask (``remove --mask-in``,
    # ``true_mask``), exactly: grown by no buffer, and no feather, whose 2 px would ease the
    # fill against the veil seen at the truth's thin edge: what a better mask would buy the fill
    "given the true mask": {"model": "median-fill", "restoring": RestoreParams(), "feather": 0,
                            "mask_params": replace(SHADOWS, buffer=0), "mask_in": "true"},
    # the default given s2cloudless's cloud mask (``mask_quality.s2cloudless``: its README's
    # settings) as a user would give it, with remove's buffer
    "given s2cloudless's mask": {"model": "median-fill", "restoring": RestoreParams(),
                                 "mask_params": SHADOWS, "mask_in": "s2cloudless"},
    # its probability, not averaged nor grown, read from 0.4 (``remove --mask-in-threshold``)
    "given s2cloudless's probability": {"model": "median-fill", "restoring": RestoreParams(),
                                        "mask_params": SHADOWS, "mask_threshold": 0.4,
                                        "mask_in": "s2cloudless probability"},
    # the bundled networks as ``remove --model NAME`` runs them (the default's other settings)
    **{f"{name}, all together": {"model": name, "mask_params": SHADOWS,
                                 "restoring": RestoreParams()}
       for name in ("cloudfree-fillnet", "cloudfree-fillnet-fast")},
}
#: The haze constants' alternatives: each scene is scored with the one (default included) best
#: on the cloud case of the other scenes (``haze held out``).
HAZE_VARIANTS = {
    "haze: hand-over at 0.05-0.2": HazeParams(t_restore=0.05, t_fill=0.2),
    "haze: hand-over at 0.15-0.4": HazeParams(t_restore=0.15, t_fill=0.4),
}
SETTINGS.update({n: {"model": "median-fill", "restoring": RestoreParams(haze=h, shadows=False),
                     "mask_params": UNSHADED} for n, h in HAZE_VARIANTS.items()})
DEFAULT_SETTINGS = ("scene-median fill", "local base", "+ haze restored", "+ shadows relit",
                    "all together", *HAZE_VARIANTS)
HAZE_DEFAULT = "+ haze restored"
#: The guard runs the steps, not the haze alternatives.
GUARD_SETTINGS = DEFAULT_SETTINGS[:5]
#: Cloud pixels of the blend whose opacity is at least this are opaque; thin below it.
OPAQUE = 0.5
#: The ring inside a cloud: its pixels within this many px of the land it left unchanged (the
#: local fill's haze ring is as wide; the artefacts of restoring sit there).
RING = 10
#: The edge of a cloud: its pixels within this many px of the land it left clear (the thinnest
#: veil, restored rather than filled).
EDGE = 4
#: A speck is a filled pixel darker than the clear land's ``SPECK_DARK`` percentile in one of
#: ``SPECK_BANDS``, or bluer (B02 / B04) than its ``SPECK_BLUE`` percentile.
SPECK_DARK, SPECK_BLUE = 1.0, 99.0
SPECK_BANDS = (1, 2, 3)  # B02, B03, B04
#: The clear land a fill is compared with by eye: within this many px of the cloud.
LAND_RING = 20
#: Bands of the colour columns (the visible, NIR and SWIR), and those whose mean relative error
#: (absolute) sums a fill's level up: the land's, not the atmosphere's (B01, B09, B10).
COLOUR_BANDS = ("B02", "B03", "B04", "B08", "B11")
LEVEL_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
CASES = ("cloud", "shadow", "both")
#: The blend's opacity from which the truth given as a mask (``true_mask``) calls a pixel
#: cloud: a veil of less hardly shows.
TRUE_OPACITY = 0.02
BASELINE = "scene-median fill"
LOCAL = "local base"
#: ``--bands``: the bands ``remove`` is not given.
MISSING = {"l1c": (), "l2a10": L2A_10}


def donor_cloud(cloudy: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cloud [H, W] of a real cloudy image by its score alone (score above the threshold),
    and the score: the donors and their clouds do not change with the mask's other tests, so
    every mask is scored on the same cases."""
    _, score = classify(cloudy, valid, MaskParams())
    return np.nan_to_num(score) > MaskParams().threshold, score


def donor_opacity(cloudy: np.ndarray, valid: np.ndarray,
                  clear: np.ndarray | None = None) -> np.ndarray:
    """The blend's opacity [H, W] of a real cloudy image: ``opacity`` of its score on its cloud
    (``donor_cloud``; with its ``clear`` image of another date, only where B02 is brighter than
    there by ``TWIN_BRIGHTER``), objects under ``MIN_CLOUD`` px left out, fading to 0 over
    ``FADE`` px beyond it: none on its clear land."""
    cloud, score = donor_cloud(cloudy, valid)
    if clear is not None:
        cloud &= (cloudy[1] - clear[1] > TWIN_BRIGHTER) | (clear == 0).all(0)
    labels, n = ndimage.label(cloud)
    sizes = ndimage.sum(cloud, labels, np.arange(1, n + 1))
    cloud = np.isin(labels, 1 + np.flatnonzero(sizes >= MIN_CLOUD))
    fade = np.clip(1 - ndimage.distance_transform_edt(~cloud) / FADE, 0, 1)
    return (opacity(score) * fade).astype(np.float32)


def donor_shadow(cloudy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The shadow pixels [H, W] of a real cloudy image within ``NEAR`` px of its clouds."""
    classes, _ = classify(cloudy, valid, MaskParams(shadow=True))
    near = ndimage.distance_transform_edt(~donor_cloud(cloudy, valid)[0]) <= NEAR
    return (classes == SHADOW) & near & valid


def shadow_ratios(records: list[dict]) -> np.ndarray:
    """Per-band darkening [13] of real shadows: cloudy over cloud-free, the median over the
    shadows of each image (where B08 loses 30 % or more), then over the images, at most 1."""
    ratios = []
    for r in records:
        cloudy, valid = reflectance(r["s2_cloudy"])
        clear, valid_clear = reflectance(r["s2_clear"])
        shadow = donor_shadow(cloudy, valid & valid_clear)
        if shadow.sum() < MIN_SHADOW:
            continue
        ratio = np.median(cloudy[:, shadow] / np.maximum(clear[:, shadow], 1e-3), axis=1)
        if ratio[7] <= 0.7:
            ratios.append(ratio)
    return np.minimum(np.median(ratios, axis=0), 1).astype(np.float32)


def donors(records: list[dict]) -> list[dict]:
    """The real cloudy images with 5-70 % cloud and real shadows: image, opacity, the shadow its
    clouds cast and the shadow its mask flags near them."""
    out = []
    for r in records:
        cloudy, valid = reflectance(r["s2_cloudy"])
        share = float(donor_cloud(cloudy, valid)[0][valid].mean())
        shadow = donor_shadow(cloudy, valid)
        if DONOR_CLOUD[0] < share < DONOR_CLOUD[1] and shadow.sum() >= MIN_SHADOW:
            twin = reflectance(r["s2_clear"])[0] if "s2_clear" in r else None
            alpha = donor_opacity(cloudy, valid, twin)
            out.append({"scene": r["scene"], "id": r["id"], "cloudy": cloudy, "alpha": alpha,
                        "shadow": cast_shadow(alpha, shadow), "flagged": shadow})
    return out


def cast_shadow(alpha: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """The ``shadow`` pixels [H, W] that the opaque clouds (``alpha`` 0.3 or more) cast:
    within their ``shadow.footprint`` at the offset laying most of their outline on it."""
    cloud, r = alpha >= 0.3, OFFSET_REACH
    inner = (slice(r, r + cloud.shape[0]), slice(r, r + cloud.shape[1]))
    counts = offset_counts(np.pad(shadow, r), np.pad(cloud, r), inner,
                           np.pad(np.ones_like(cloud), r))
    dy, dx = (int(i) - r for i in np.unravel_index(
        np.argmax(counts[0] / np.maximum(counts[1], 1)), counts[0].shape))
    return shadow & footprint(cloud, (dy, dx))


def cloud_only(donor: dict) -> np.ndarray:
    """The donor's cloud [13, H, W] without the land its thin edges let through: its pixels
    where the opacity reaches ``CORE``, elsewhere its core's spectrum (a Gaussian of ``CORE_SIGMA``
    px over the core pixels, their mean far from any), the two blended from an opacity of
    ``CORE`` - 0.3. Blended by the opacity, a thin edge then adds the cloud alone, as the
    linear mixing of thin cloud has it."""
    cloudy, alpha = donor["cloudy"], donor["alpha"]
    core = alpha >= CORE
    if not core.any():
        core = alpha >= alpha.max()
    weight = ndimage.gaussian_filter(core.astype(np.float32), CORE_SIGMA)
    mean = cloudy[:, core].mean(1)
    spectrum = np.stack([np.where(weight > 1e-2, ndimage.gaussian_filter(
        np.where(core, band, 0).astype(np.float32), CORE_SIGMA) / np.maximum(weight, 1e-2), m)
        for band, m in zip(cloudy, mean, strict=True)])
    w = np.clip((alpha - CORE + 0.3) / 0.3, 0, 1)[None]
    return (w * cloudy + (1 - w) * spectrum).astype(np.float32)


def land_vapour(image: np.ndarray, land: np.ndarray) -> float:
    """B09 / B8A of an image [13, H, W] summed over the ``land`` pixels [H, W] whose B8A
    exceeds 0.1: how much of 945 nm the air's water vapour lets through over its land; NaN
    with fewer than ``MIN_LAND`` such pixels (a scene of water)."""
    land = land & (image[BANDS.index("B8A")] > 0.1)
    if land.sum() < MIN_LAND:
        return float("nan")
    return float(image[BANDS.index("B09"), land].sum() / image[BANDS.index("B8A"), land].sum())


def with_scene_vapour(field: np.ndarray, donor: dict, scene: dict) -> np.ndarray:
    """The donor's cloud ``field`` [13, H, W] with its B09 in the scene's air: scaled by the
    scene's ``land_vapour`` over the donor's (its land: opacity 0). The water vapour under a
    cloud's top differs from image to image (B09 / B8A of the land 0.09 to 0.57 over the pool's
    donors) and a cloud is brighter at 945 nm than the land of its own image (by 11 % to 50 %
    over those donors, ``bright_land.vapour_land``): pasted as it is, a cloud from dry air over
    a humid scene would be dimmer there than the scene's land, as no real cloud is. Unscaled
    where the scene or the donor has too little land to tell."""
    scale = (land_vapour(scene["clear"], scene["valid"])
             / land_vapour(donor["cloudy"], donor["alpha"] == 0))
    if not np.isfinite(scale):  # no land to compare with: the cloud as it is
        return field
    out = field.copy()
    out[BANDS.index("B09")] *= scale
    return out


def cases(scene: dict, donor: dict, ratios: np.ndarray,
          edges: str = "cloud only") -> dict[str, tuple[LoadedSample, np.ndarray]]:
    """The scene under the donor's cloud, its shadows, and both (crops to the common size),
    each with the cloud's opacity [H, W] (0 in the shadow case). ``edges``: the donor's cloud
    "cloud only" (``cloud_only``, the default) or "as seen"."""
    n = min(scene["clear"].shape[1], scene["clear"].shape[2], donor["cloudy"].shape[1],
            donor["cloudy"].shape[2])
    clear, s1, valid = scene["clear"][:, :n, :n], scene["s1"][:, :n, :n], scene["valid"][:n, :n]
    field = donor["cloudy"] if edges == "as seen" else cloud_only(donor)
    field = with_scene_vapour(field, donor, scene)
    cloud = np.rot90(field[:, :n, :n], axes=(1, 2))
    alpha = np.rot90(donor["alpha"][:n, :n])
    shade = ndimage.gaussian_filter(np.rot90(donor["shadow"][:n, :n]).astype(np.float32), 1)
    dark = clear * (1 - shade[None] * (1 - ratios[:, None, None]))
    out = {}
    for case, image in (("cloud", overlay(clear, cloud, alpha)), ("shadow", dark),
                        ("both", overlay(dark, cloud, alpha))):
        image = np.where(valid[None], image, 0).astype(np.float32)
        out[case] = (LoadedSample(image, clear, s1, valid, cloud_mask(image, valid, SHADOWS)),
                     np.zeros_like(alpha) if case == "shadow" else alpha)
    return out


def given_mask(folder: Path, sample: LoadedSample, alpha: np.ndarray, kind: str) -> Path:
    """A mask of the case on its grid for ``remove --mask-in``, no data where the scene has
    none. ``kind`` "true": its truth, cloud where the blend's opacity reaches
    ``TRUE_OPACITY``, shadow where the land was darkened (B08 by 2 % or more) outside it;
    "s2cloudless": s2cloudless's cloud mask of the image (no shadows); "s2cloudless
    probability": its cloud probability (float, NaN where the scene has no data)."""
    if kind == "s2cloudless probability":
        from s2cloudless import S2PixelCloudDetector

        values = S2PixelCloudDetector(all_bands=True).get_cloud_probability_maps(
            np.moveaxis(sample.cloudy, 0, -1)[None])[0].astype(np.float32)
        values[~sample.valid] = np.nan
        return write_given(folder, values)
    if kind == "s2cloudless":
        classes = np.where(s2cloudless()(sample.cloudy), CLOUD, CLEAR).astype(np.uint8)
    else:
        cloud = alpha >= TRUE_OPACITY
        dark = sample.cloudy[BANDS.index("B08")] < 0.98 * sample.clear[BANDS.index("B08")]
        classes = np.where(cloud, CLOUD, np.where(dark, SHADOW, CLEAR)).astype(np.uint8)
    classes[~sample.valid] = NODATA
    return write_given(folder, classes)


def write_given(folder: Path, values: np.ndarray) -> Path:
    """``values`` [H, W] written as the mask given to ``remove`` (``given_mask``)."""
    path = folder / "given_mask.tif"
    h, w = values.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1,
                       dtype=values.dtype.name, **GRID) as ds:
        ds.write(values, 1)
    return path


def run(folder: Path, sample: LoadedSample, options: dict,
        alpha: np.ndarray | None = None, missing: tuple[str, ...] = ()) -> np.ndarray:
    """``remove`` with these options and every other default; reflectance [13, H, W]. An
    option ``mask_in="true"``, ``"s2cloudless"`` or ``"s2cloudless probability"`` gives that
    mask of the case (``given_mask``, the truth from the blend's opacity ``alpha``). Without the
    bands ``missing`` (an L2A band set, named and tagged L2A), which the output takes from the
    truth."""
    s2, s1 = write_inputs(folder, sample, missing)
    if missing:
        options = options | {"level": "l2a"}
    if options.get("mask_in") is not None:
        options = options | {"mask_in": given_mask(folder, sample, alpha, options["mask_in"])}
    out = folder / "output.tif"
    remove_scene(s2, s1, out, quiet=True, **split_options(
        {"s1_aligned": True, "overwrite": True, "device": "cpu", **options}))
    with rasterio.open(out) as ds:
        given = ds.read().astype(np.float32) / 10000
    pred = sample.clear.copy()
    pred[[i for i, b in enumerate(BANDS) if b not in missing]] = given
    return pred


def at_surface(sample: LoadedSample, by: np.ndarray) -> LoadedSample:
    """The case and its truth at surface levels (``mask_l2a.lowered``), their visible bands
    lowered by ``by`` (``mask_l2a.offsets``)."""
    return replace(sample, cloudy=lowered(sample.cloudy, by), clear=lowered(sample.clear, by))


def specks(pred: np.ndarray, sample: LoadedSample, land: np.ndarray) -> int:
    """Filled pixels (changed by the output) darker than the input's clear ``land``
    [H, W] in one of ``SPECK_BANDS`` (its ``SPECK_DARK`` percentile), or bluer (B02 / B04) than
    its ``SPECK_BLUE`` percentile."""
    filled = (np.abs(pred - sample.cloudy).max(0) > 5e-4) & sample.valid
    seen, clear = pred[:, filled], sample.cloudy[:, land]
    low = np.percentile(clear[list(SPECK_BANDS)], SPECK_DARK, axis=1)[:, None]
    bluest = np.percentile(clear[1] / np.maximum(clear[3], 1e-4), SPECK_BLUE)
    dark = (seen[list(SPECK_BANDS)] < low).any(0)
    return int((dark | (seen[1] > bluest * seen[3])).sum())


def colour(pred: np.ndarray, sample: LoadedSample, opaque: np.ndarray, land: np.ndarray,
           inner: np.ndarray) -> dict[str, list[float]]:
    """Per band [13], on the ``opaque`` pixels: the relative error (%) of the output's mean
    against the truth's (``bias``), and the output's and the truth's against the mean of the
    clear ``land`` within ``LAND_RING`` px of them (``vs_ring``, ``truth_vs_ring``; NaN without
    such land); on the cloud's ``inner`` ring, the output's mean against the truth's
    (``ring_bias``)."""
    ring = land & (ndimage.distance_transform_edt(~opaque) <= LAND_RING)
    around = sample.clear[:, ring].mean(1) if ring.any() else np.full(len(pred), np.nan)
    mean, truth = pred[:, opaque].mean(1), sample.clear[:, opaque].mean(1)
    inner_mean, inner_truth = (x[:, inner].mean(1) if inner.any() else np.full(len(pred), np.nan)
                               for x in (pred, sample.clear))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"bias": (100 * (mean / truth - 1)).tolist(),
                "vs_ring": (100 * (mean / around - 1)).tolist(),
                "truth_vs_ring": (100 * (truth / around - 1)).tolist(),
                "ring_bias": (100 * (inner_mean / inner_truth - 1)).tolist()}


def scores(pred: np.ndarray, sample: LoadedSample, alpha: np.ndarray | None = None,
           missing: tuple[str, ...] = ()) -> dict[str, float]:
    """PSNR over the valid image, over the pixels the clouds and shadows changed, over the
    changed pixels of opaque and of thin cloud (``alpha``: the blend's opacity), over the
    cloud's inner ``RING`` and its outer ``EDGE`` (without ``alpha``, another date's: the
    sample's own cloud), RMSE over the image and the edge, all over the bands but ``missing``;
    and, on the same date (with ``alpha``), the specks and the opaque pixels' ``colour``."""
    changed = (np.abs(sample.cloudy - sample.clear).max(0) > 1e-3) & sample.valid
    given = [i for i, b in enumerate(BANDS) if b not in missing]
    scored, truth = pred[given], sample.clear[given]
    out = {"psnr": psnr(scored, truth, sample.valid), "rmse": rmse(scored, truth, sample.valid)}
    same_date = alpha is not None
    if same_date:  # its land is the input's clear land
        cloud, land = changed & (alpha > 0), sample.valid & ~changed
    else:  # another date: the sample's cloud, and the land it leaves
        cloud = sample.cloud.astype(bool) & sample.valid
        land = sample.valid & ~cloud
        alpha = np.zeros(changed.shape)
    inside = ndimage.distance_transform_edt(~land)
    ring, edge = cloud & (inside <= RING), cloud & (inside <= EDGE)
    if same_date:
        out["specks"] = specks(pred, sample, land)
        opaque = changed & (alpha >= OPAQUE)
        if opaque.any():
            out.update(colour(pred, sample, opaque, land, ring))
    for name, where in (("changed", changed), ("opaque", changed & (alpha >= OPAQUE)),
                        ("thin", changed & (alpha > 0) & (alpha < OPAQUE)), ("ring", ring),
                        ("edge", edge)):
        out[name] = psnr(scored, truth, where) if where.any() else float("nan")
    out["edge_rmse"] = rmse(scored, truth, edge)
    return out


def held_out(rows: list[dict], name: str, names: list[str], case: str,
             scored: tuple[str, ...] = CASES) -> None:
    """Row ``name`` of the ``scored`` cases: each scene under the setting of ``names`` best on
    ``case`` of the others."""
    for i, row in enumerate(rows):
        others = [r for j, r in enumerate(rows) if j != i]
        best = max(names, key=lambda n: np.mean([r[case][n]["psnr"] for r in others]))
        for c in scored:
            row[c][name] = {**row[c][best], "chosen": best}


def table(rows: list[dict], case: str, names: list[str]) -> None:
    """Mean PSNR (image; changed, opaque and thin cloud pixels, the ring and the edge inside the
    clouds) and RMSE (x 1e4: image, edge) of each setting, the specks summed over the rows,
    gain and wins over the scene-median fill, wins over the local base, and the mean PSNR on
    the tuning and the held-out scenes."""
    n = len(rows)
    base = np.mean([r[case][BASELINE]["psnr"] for r in rows])
    print(f"\n{case} (n={n}) | PSNR | changed px | opaque px | thin px | ring px | edge px | "
          "RMSE | edge RMSE | specks | vs scene-median | wins | wins vs local base | "
          "tuning / held out")
    for name in names:
        got = [r[case][name]["psnr"] for r in rows]
        parts = " | ".join(f"{np.nanmean([r[case][name].get(k, np.nan) for r in rows]):.2f}"
                           for k in ("changed", "opaque", "thin", "ring", "edge"))
        parts += "".join(f" | {1e4 * np.nanmean([r[case][name].get(k, np.nan) for r in rows]):.0f}"
                         for k in ("rmse", "edge_rmse"))
        speckled = sum(r[case][name]["specks"] for r in rows) \
            if "specks" in rows[0][case][name] else "-"
        wins = sum(r[case][name]["psnr"] > r[case][BASELINE]["psnr"] + 1e-6 for r in rows)
        local = sum(r[case][name]["psnr"] > r[case][LOCAL]["psnr"] + 1e-6 for r in rows)
        halves = " / ".join(f"{np.mean(m):.2f}" if m else "-" for m in (
            [r[case][name]["psnr"] for r in rows if r.get("held_out") == h] for h in (False, True)))
        print(f"| {name} | {np.mean(got):.2f} | {parts} | {speckled} | "
              f"{np.mean(got) - base:+.2f} | {wins}/{n} | {local}/{n} | {halves} |")


def colour_table(rows: list[dict], case: str, names: list[str]) -> None:
    """Per setting, on the opaque cloud pixels: the mean over the scenes of each
    ``COLOUR_BANDS`` relative error (%) against the truth and against the clear land around,
    and of the absolute one over ``LEVEL_BANDS``; on the ring inside the clouds, the relative
    error against the truth; the truth's against the land around last."""
    level = [BANDS.index(b) for b in LEVEL_BANDS]
    shown = [BANDS.index(b) for b in COLOUR_BANDS]

    def bands(values: np.ndarray) -> str:
        return "/".join(f"{x:+.1f}" for x in np.nanmean(values[:, shown], 0))

    heads = "/".join(COLOUR_BANDS)
    print(f"\n{case}, opaque px (n={len(rows)}) | {heads} vs truth % | |error| % | "
          f"{heads} vs land around % | ring px: {heads} vs truth %")
    for name in names:
        got = [r[case][name] for r in rows if "bias" in r[case][name]]
        bias, ring, inner = (np.array([g[k] for g in got])
                             for k in ("bias", "vs_ring", "ring_bias"))
        print(f"| {name} | {bands(bias)} | {np.mean(np.abs(bias[:, level])):.1f} | "
              f"{bands(ring)} | {bands(inner)} |")
    truth = np.array([r[case][names[0]]["truth_vs_ring"] for r in rows
                      if "bias" in r[case][names[0]]])
    print(f"| the truth | - | - | {bands(truth)} | - |")


def pool_scenes(data: Path) -> tuple[list[dict], list[dict], list[dict], np.ndarray]:
    """The pool's L1C records, its clear scenes (image, S1, valid), the cloud donors and the
    shadow darkening."""
    records = [r for split in ("train", "val") for r in load_set(data, split)]
    l1c = [r for r in records if not r["bands_missing"]]
    ratios = shadow_ratios([r for r in l1c if {"s2_cloudy", "s2_clear"} <= set(r)])
    pool = donors([r for r in l1c if "s2_cloudy" in r])
    scenes = []
    for r in l1c:
        if r["kind"] in ("pair", "triplet"):
            clear, valid = reflectance(r["s2_clear"])
            scenes.append({"id": r["id"], "scene": r["scene"], "held_out": in_held_out(r),
                           "clear": clear, "s1": r["s1"],
                           "valid": valid & np.isfinite(r["s1"]).all(0)})
    return l1c, scenes, pool, ratios


def in_half(held_out: bool, half: str | None) -> bool:
    """Whether a scene (``held_out`` or not) is in ``half`` (``tuning``, ``held-out``; None:
    both)."""
    return half is None or held_out == (half == "held-out")


def donor_for(scenes: list[dict], pool: list[dict], i: int) -> dict:
    """The donor of scene ``i``: one of another scene, spread over the pool."""
    others = [d for d in pool if d["scene"] != scenes[i]["scene"]]
    return others[(7 * i + 3) % len(others)]


def report(rows: list[dict], guard: list[dict], names: list[str]) -> None:
    """The tables of every case (with the held-out rows) and of the guard."""
    extra = []
    haze = [n for n in (HAZE_DEFAULT, *HAZE_VARIANTS) if n in names]
    if rows and len(haze) > 1:  # the haze constants chosen on the other scenes' cloud case
        held_out(rows, "haze, constants held out", haze, "cloud", ("cloud",))
        extra.append("haze, constants held out")
    if rows:
        steps = [n for n in names if n not in HAZE_VARIANTS and "mask_in" not in SETTINGS[n]]
        held_out(rows, "held-out choice", steps, "both")
        extra.append("held-out choice")
        for case in CASES:
            table(rows, case, [n for n in [*names, *extra] if n in rows[0][case]])
            if any("bias" in v for r in rows for v in r[case].values()):
                colour_table(rows, case, [n for n in [*names, *extra] if n in rows[0][case]])
    for name in extra:
        case = "cloud" if name.startswith("haze") else "both"
        print(f"{name} chose:", ", ".join(
            f"{c} x{sum(r[case][name]['chosen'] == c for r in rows)}"
            for c in sorted({r[case][name]["chosen"] for r in rows})))
    if guard:
        table(guard, "other date", list(guard[0]["other date"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS),
                        default=list(DEFAULT_SETTINGS),
                        help="the settings run; the scene-median fill and the local base, "
                             "which the tables compare with, always run first")
    parser.add_argument("--scenes", default=":",
                        help="the scenes run, as a Python slice: 0:8 (the others in another "
                             "run, then --merge), 0:0 the guard alone; default all")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="no run: the tables of the rows and guards of these --json files")
    parser.add_argument("--no-guard", action="store_true", help="skip the other-date guard")
    parser.add_argument("--edges", choices=("cloud only", "as seen"), default="cloud only",
                        help="the donors' thin edges: the cloud alone (cloud_only, default), or "
                             "as seen, their own land showing through")
    parser.add_argument("--half", choices=("tuning", "held-out"),
                        help="only the scenes (and guard triplets) of this half of the by-scene "
                             "split (HELD_OUT of mask_quality.py); default both")
    band_arguments(parser, MISSING, "give remove the 13 L1C bands (default) or the ten of an "
                   "L2A product, named and tagged L2A; scored over those given")
    args = parser.parse_args()
    print(code_version.describe(), flush=True)
    levels = surface_levels(parser, args)
    if args.merge:
        saved = [json.loads(f.read_text()) for f in args.merge]
        report([r for x in saved for r in x["rows"]], [g for x in saved for g in x["guard"]],
               list(saved[0]["rows"][0]["cloud"]) if saved[0]["rows"] else [])
        return
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    l1c, scenes, pool, ratios = pool_scenes(args.data)
    print("shadow darkening (B01..B12):", " ".join(f"{x:.2f}" for x in ratios))
    print(f"{len(scenes)} scenes, {len(pool)} donors")
    for donor in {donor_for(scenes, pool, i)["id"]: donor_for(scenes, pool, i)
                  for i, scene in enumerate(scenes) if in_half(scene["held_out"], args.half)
                  }.values():
        flagged = int(donor["flagged"].sum())
        print(f"donor {donor['id']}: {flagged} px of shadow flagged near its clouds, "
              f"{donor['shadow'].sum() / flagged:.2f} cast by them")
    settings = {n: SETTINGS[n] for n in dict.fromkeys([BASELINE, LOCAL, *args.settings])}
    missing = MISSING[args.bands]
    rows, guard = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start, stop = (int(x) if x else None for x in args.scenes.split(":"))
        for i, scene in list(enumerate(scenes))[start:stop]:
            if not in_half(scene["held_out"], args.half):
                continue
            donor = donor_for(scenes, pool, i)
            row = {"name": scene["id"], "donor": donor["id"], "held_out": scene["held_out"]}
            by = offsets(scene["clear"], levels) if levels else None
            for case, (sample, alpha) in cases(scene, donor, ratios, args.edges).items():
                sample = sample if by is None else at_surface(sample, by)
                row[case] = {n: scores(run(folder, sample, o, alpha, missing), sample, alpha,
                                       missing)
                             for n, o in settings.items()
                             if case == "cloud" or n not in HAZE_VARIANTS}
            rows.append(row)
            print(scene["id"], "|", " ".join(f"{v['psnr']:.2f}" for v in row["cloud"].values()),
                  flush=True)
        if not args.no_guard and not missing:
            guarded = {n: o for n, o in settings.items() if n in GUARD_SETTINGS}
            triplets = [r for r in l1c if r["kind"] == "triplet"
                        and in_half(in_held_out(r), args.half)]
            for record, sample in zip(triplets, real_triplets(triplets), strict=True):
                if not (sample.cloud.astype(bool) & sample.valid).any():
                    continue
                guard.append({"name": record["id"], "other date": {
                    n: scores(run(folder, sample, o), sample) for n, o in guarded.items()}})
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "guard": guard,
                                         "shadow_ratios": ratios.tolist()}, indent=1))
    report(rows, guard, list(settings))


if __name__ == "__main__":
    main()
