"""`cloudfree mask` on real scenes: outcomes, window invariance, SAFE parity, errors."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import (
    FLOODS_S1,
    FLOODS_S2,
    SUMMER_S1,
    SUMMER_S2,
    WINTER_CLEAR,
    WINTER_S2,
    classify_scene,
    in_scene_air,
    land_vapour,
    mask_cloud,
)
from rasterio.windows import Window
from s2_builders import coarsen_like_l1c, read_stack, write_safe, write_stack
from scipy import ndimage
from scipy.spatial import cKDTree

from cloudfree.core.boxes import box_count, box_mean
from cloudfree.core.distance import grow
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.bright_land import (
    CLOUD_BLUE,
    CONFIDENT_CDI,
    FAINT_SCORE,
    LAND_BOX,
    LAND_CDI,
    LAND_REACH,
    ROOF_SWIR,
    ROOF_TEXTURE,
    SAND_SCORE,
    SEED_EXTENT,
    SEED_SCORE,
    SEED_STEPS,
    SPECK_REACH,
    VAPOUR_REACH,
    blue_ratio,
    cloud_parallax,
    confirmed_reach,
    ground_texture,
    parallax_index,
    seed_reach,
    specks,
    texture,
    veiled_blue,
)
from cloudfree.mask.classify import (
    BUILT_BOX,
    BUILT_SCORE,
    CLEAR,
    CLOUD,
    NODATA,
    SHADOW,
    SNOW,
    THIN,
    THIN_SCORE,
    MaskParams,
    built_up,
    classify,
    combine_shadow_stats,
    raw_score,
    shadow_thresholds,
    thin_cloud,
)
from cloudfree.mask.scene_input import mask_reader, read_classified
from cloudfree.pipeline.mask import classified_windows, mask_scene
from cloudfree.training.simulate import opacity


def read_mask(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds


def test_summer_cumulus_is_found_where_it_is(tmp_path, cli):
    out = tmp_path / "summer_mask.tif"
    result = cli("mask", SUMMER_S2, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert 0.2 < summary["cloud_fraction"] < 0.6
    classes, ds = read_mask(out)
    with rasterio.open(SUMMER_S2) as src:
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        visible = src.read([2, 3, 4]).astype(float).sum(axis=0)
    cloud = np.isin(classes, (CLOUD, THIN))
    assert summary["cloud_fraction"] == pytest.approx(cloud.mean())
    assert summary["thin_cloud_fraction"] == pytest.approx((classes == THIN).mean())
    # The big cumulus at the top left is cloud, the open fields in the middle are not.
    assert cloud[10:80, 0:60].mean() > 0.75
    assert cloud[100:160, 100:200].mean() < 0.05
    # Cloud pixels are the bright ones.
    assert visible[cloud].mean() > 2 * visible[~cloud].mean()
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == NODATA
        assert ds.tags()["MASK_METHOD"] == "score" and ds.tags()["CLOUD_THRESHOLD"] == "0.2"
        assert ds.block_shapes == [(256, 256)] and ds.compression.value == "DEFLATE"


def test_thin_cloud_is_the_cloud_scored_low_at_the_cumulus_edges(tmp_path, cli):
    # thin cloud (4) and cloud (1) together are the cloud of the classification, split by the
    # score; the thin pixels lie at the edges of the cumulus, the thick ones inside
    out, score = tmp_path / "mask.tif", tmp_path / "score.tif"
    result = cli("mask", SUMMER_S2, "-o", out, "--score", score)
    assert result.exit_code == 0 and "(thin " in result.stdout, result.output
    with rasterio.open(out) as ds:
        classes = ds.read(1)
        assert ds.tags()["CLASSES"] == "0=clear 1=cloud 2=shadow 3=snow 4=thin_cloud 255=nodata"
        assert ds.colormap(1)[THIN][:3] != ds.colormap(1)[CLOUD][:3]
    with open_sentinel2(SUMMER_S2) as s2:
        single = classify_scene(s2.read()[0])[0]
    np.testing.assert_array_equal(np.isin(classes, (CLOUD, THIN)), single == CLOUD)
    with rasterio.open(score) as ds:
        scores = ds.read(1)
    thin, thick = classes == THIN, classes == CLOUD
    assert 0.3 < thin.sum() / (thin | thick).sum() < 0.8  # edges and wisps; the cores thick
    assert (scores[thin] < THIN_SCORE).all() and (scores[thick] >= THIN_SCORE).all()
    inside = ndimage.distance_transform_edt(thin | thick)  # pixels to the cloud's edge
    assert np.median(inside[thin]) < 5 < 10 < np.median(inside[thick])


@pytest.mark.parametrize("depth, expected", [(0.4, THIN), (1.0, CLOUD)])
def test_a_real_cloud_made_thin_over_real_land_is_thin_cloud(tmp_path, depth, expected):
    # the summer sample's thick cloud laid over the winter sample's clear land at 40 % of its
    # depth (0.1 brighter in B02-B04: the land shows through) is thin cloud, 4; at its full
    # depth, cloud, 1; the land around stays clear. Without the bright-land test, which leaves
    # some of such a veil over textured land clear (2 % at 40 %: docs/guides/masks.md)
    with rasterio.open(SUMMER_S2) as ds:
        cloud = ds.read().astype(np.float32)
    land, profile = read_stack(WINTER_CLEAR, 256)
    with open_sentinel2(SUMMER_S2) as s2:
        refl = s2.read()[0]
    thick = thin_cloud(classify(refl, None, MaskParams())[0], refl) == CLOUD
    veil = np.where(thick, land + depth * (cloud - land), land)
    scene = write_stack(tmp_path / "veil.tif", np.rint(veil), profile, dtype="uint16")
    mask_scene(scene, tmp_path / "mask.tif", MaskParams(land=False))
    classes = read_mask(tmp_path / "mask.tif")[0]
    assert (classes[thick] == expected).mean() > 0.95
    assert (classes[~thick] == CLEAR).mean() > 0.99


def test_no_thin_writes_thin_cloud_as_cloud_with_the_other_codes_unchanged(tmp_path, cli):
    split, merged = tmp_path / "split.tif", tmp_path / "merged.tif"
    assert cli("mask", SUMMER_S2, "-o", split).exit_code == 0
    result = cli("mask", SUMMER_S2, "-o", merged, "--no-thin", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["thin_cloud_fraction"] is None and summary["cloud_fraction"] > 0.2
    with rasterio.open(split) as a, rasterio.open(merged) as b:
        thin, one = a.read(1), b.read(1)
        assert b.tags()["CLASSES"] == "0=clear 1=cloud 2=shadow 3=snow 255=nodata"
        assert b.tags()["CLOUD_FRACTION"] == a.tags()["CLOUD_FRACTION"]
    assert (thin == THIN).mean() > 0.1 and THIN not in one
    np.testing.assert_array_equal(one, np.where(thin == THIN, CLOUD, thin))
    assert "(thin" not in cli("mask", SUMMER_S2, "-o", merged, "--no-thin",
                              "--overwrite").stdout


def test_clear_floods_scene_near_zero_and_nodata_preserved(tmp_path):
    with rasterio.open(FLOODS_S2) as ds:
        data, profile = ds.read(), {"crs": ds.crs, "transform": ds.transform}
    data[:, 300:, :40] = 0  # a swath edge of nodata
    scene = write_stack(tmp_path / "floods.tif", data, profile, nodata=0,
                        descriptions=[f"B{int(b[1:])}" if b != "B8A" else "B8A" for b in BANDS])
    out = tmp_path / "floods_mask.tif"
    summary = mask_scene(scene, out)
    classes, ds = read_mask(out)
    assert str(ds.crs) == "EPSG:4326"
    assert (classes[300:, :40] == NODATA).all()
    assert (classes[:300] != NODATA).all() and (classes[:, 40:] != NODATA).all()
    # Clear scene: only a few bright roofs and greenhouses pass the score.
    assert summary["cloud_fraction"] < 0.05
    assert summary["nodata_fraction"] == pytest.approx(212 * 40 / 512**2)


#: The summer sample as an L2A band set (no B01, B09, B10) at surface levels, as
#: ``benchmarks/mask_l2a.py`` emulates an atmospheric correction: each visible band lowered so that
#: its 1st percentile meets the dark level of the pool's real L2A images, then divided by a
#: typical two-way transmittance.
L2A_SET = tuple(b for b in BANDS if b not in ("B01", "B09", "B10"))
L2A_DARK = {"B02": 0.0202, "B03": 0.0382, "B04": 0.0216}
L2A_TRANSMITTANCE = {"B02": 0.80, "B03": 0.86, "B04": 0.90}


def _summer_at_l2a_levels() -> np.ndarray:
    with open_sentinel2(SUMMER_S2) as s2:
        refl = s2.read()[0]
    out = refl[[BANDS.index(b) for b in L2A_SET]]
    for band, dark in L2A_DARK.items():
        i, t = L2A_SET.index(band), L2A_TRANSMITTANCE[band]
        out[i] = np.maximum(out[i] - max(0.0, np.percentile(out[i], 1) - dark * t), 0) / t
    return out


def test_l2a_band_set_finds_the_thin_edges_of_the_cumulus():
    """At surface levels the score alone sees the cumulus's cores (60 % of the L1C mask's
    cloud, 16 % of the pixels within 3 px of its edges); the veiled edges grown from them find
    its thin edges (87 %, 67 %), as thin cloud, and leave the open fields clear."""
    with open_sentinel2(SUMMER_S2) as s2:
        l1c = classify(s2.read()[0], None, MaskParams())[0] == CLOUD
    refl = _summer_at_l2a_levels()
    classes = thin_cloud(classify(refl, None, MaskParams(), L2A_SET)[0], refl, L2A_SET)
    cloud = np.isin(classes, (CLOUD, THIN))
    alone = classify(refl, None, MaskParams(edges=False), L2A_SET)[0] == CLOUD
    edges = l1c & ~ndimage.binary_erosion(l1c, iterations=3)  # within 3 px of its edge
    assert (alone & l1c).sum() / l1c.sum() < 0.7 and (alone & edges).sum() / edges.sum() < 0.25
    assert (cloud & l1c).sum() / l1c.sum() > 0.85
    assert (cloud & edges).sum() / edges.sum() > 0.6
    assert (classes[edges & cloud] == THIN).mean() > 0.85
    assert (cloud & ~l1c).mean() < 0.02 and not cloud[100:160, 100:200].any()


def test_l2a_veiled_edges_window_by_window_are_those_of_the_whole_image(tmp_path):
    with rasterio.open(SUMMER_S2) as ds:
        profile = {"crs": ds.crs, "transform": ds.transform}
    scene = write_stack(tmp_path / "l2a.tif", np.rint(_summer_at_l2a_levels() * 10000), profile,
                        dtype="uint16", descriptions=list(L2A_SET))
    mask_scene(scene, tmp_path / "whole.tif", block=4096)
    mask_scene(scene, tmp_path / "tiled.tif", block=64, threads=2)
    whole, tiled = read_mask(tmp_path / "whole.tif")[0], read_mask(tmp_path / "tiled.tif")[0]
    np.testing.assert_array_equal(whole, tiled)
    assert (whole == THIN).mean() > 0.15


def test_no_data_beside_a_cloud_grows_no_veiled_edges():
    """A swath edge of no data beside the cumulus at L2A levels: the veil test's land level is
    that of the scene's pixels, so no pixel becomes cloud that the whole image leaves clear but
    two next to the edge, where the cloud's share of the scene's pixels around is higher (no data
    read as dark land made 19 of them, as the subtraction alone brought the sample to L2A)."""
    refl = _summer_at_l2a_levels()
    whole = np.isin(classify(refl, None, MaskParams(), L2A_SET)[0], (CLOUD, THIN))
    valid = np.ones(refl.shape[1:], bool)
    valid[:, :8] = False
    refl[:, ~valid] = 0
    classes = classify(refl, valid, MaskParams(), L2A_SET)[0]
    cloud = np.isin(classes, (CLOUD, THIN))
    assert (classes[~valid] == NODATA).all() and whole[:, 8:20].sum() > 100
    assert (cloud & ~whole).sum() <= 2 and not (cloud & ~whole)[:, 10:].any()


def test_a_band_set_named_l1c_grows_no_veiled_edges(tmp_path, cli):
    """The summer sample's L1C bands without B01, B09 and B10: at top-of-atmosphere levels the
    score's blue ramp finds the thin edges itself, so where the scene is named L1C (a tag, the
    metadata, ``--level L1C``) the mask grows no veiled edges; where no level is named the band
    set may be L2A, and they are grown."""
    with open_sentinel2(SUMMER_S2) as s2, rasterio.open(SUMMER_S2) as ds:
        refl = s2.read()[0][[BANDS.index(b) for b in L2A_SET]]
        profile = {"crs": ds.crs, "transform": ds.transform}
    scene = write_stack(tmp_path / "set.tif", np.rint(refl * 10000), profile, dtype="uint16",
                        descriptions=list(L2A_SET))
    mask_scene(scene, tmp_path / "named.tif", level="L1C")
    mask_scene(scene, tmp_path / "auto.tif")
    named, auto = read_mask(tmp_path / "named.tif")[0], read_mask(tmp_path / "auto.tif")[0]
    with open_sentinel2(scene) as s2:
        assert (s2.level, s2.level_named) == ("L1C", False)
        refl = s2.read()[0]
    plain = classify_scene(refl, None, MaskParams(edges=False), L2A_SET)[0]
    np.testing.assert_array_equal(named, thin_cloud(plain, refl, L2A_SET))
    grown, kept = np.isin(auto, (CLOUD, THIN)), np.isin(named, (CLOUD, THIN))
    assert not (kept & ~grown).any() and (grown & ~kept).sum() > 100
    said = "set.tif names no processing level and has no B10"  # the user is told, once
    result = cli("mask", scene, "-o", tmp_path / "told.tif")
    assert result.exit_code == 0 and result.output.count(said) == 1
    result = cli("mask", scene, "-o", tmp_path / "named_cli.tif", "--level", "L1C")
    assert result.exit_code == 0 and said not in result.output
    other = write_stack(tmp_path / "other.tif", np.rint(refl * 10000) + 1, profile,
                        dtype="uint16", descriptions=list(L2A_SET))  # the dates judge the edges
    result = cli("mask", scene, "-o", tmp_path / "dated.tif", "--reference", other)
    assert result.exit_code == 0 and said not in result.output


def test_winter_haze_regression():
    """Thin haze over dark terrain: the score stays far below the threshold (s2cloudless ~0%)."""
    with open_sentinel2(WINTER_S2) as s2:
        refl, valid = s2.read()
    classes, score = classify(refl, valid)
    assert (classes == CLOUD).sum() == 0
    assert float(np.nanmax(score)) == pytest.approx(0.039, abs=0.001)
    classes, score = classify(refl, valid, MaskParams(method="dsen2cr", hot=False))
    assert (classes == CLOUD).sum() == 0
    assert float(np.nanmax(score)) == pytest.approx(0.0289, abs=0.001)


def _eq_13_to_16(refl: np.ndarray, hot: bool) -> np.ndarray:
    """The CARF score written out from the paper (seed 002, eq. 13-16), with the HOT gate."""
    b01, b02, b03, b04, b10, b11 = (refl[BANDS.index(b)] for b in
                                    ("B01", "B02", "B03", "B04", "B10", "B11"))

    def r(x, lo, hi):
        return np.clip((x - lo) / (hi - lo), 0, 1)

    score = np.minimum.reduce([r(b02, .1, .5), r(b01, .1, .3), r(b01 + b10, .15, .2),
                               r(b02 + b03 + b04, .2, .8)])
    score[(b03 - b11) / (b03 + b11) >= 0.6] = 0
    if hot:
        score[b02 - 0.5 * b04 - 0.08 <= 0] = 0
    return score


@pytest.mark.parametrize("hot", [False, True])
def test_score_is_the_papers_formula_bit_for_bit(tmp_path, hot):
    """The streamed, threaded score equals eq. 13-16 computed on the whole image at once."""
    with open_sentinel2(SUMMER_S2) as s2:
        refl, _ = s2.read()
    mask_scene(SUMMER_S2, tmp_path / "m.tif", MaskParams(hot=hot), block=64, threads=2,
               score_path=tmp_path / "s.tif")
    with rasterio.open(tmp_path / "s.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), _eq_13_to_16(refl, hot))


def test_hot_test_clears_bright_roofs_and_keeps_the_cumulus():
    """HOT = B02 - 0.5 B04 - 0.08 > 0 only ever lowers the score: roofs go, the cumulus stays."""
    masks = {}
    for name, path in (("floods", FLOODS_S2), ("summer", SUMMER_S2)):
        with open_sentinel2(path) as s2:
            refl, valid = s2.read()
        plain, plain_score = classify(refl, valid, MaskParams(hot=False, land=False))
        gated, gated_score = classify(refl, valid, MaskParams(land=False))
        assert (gated_score <= plain_score).all()
        assert ((gated == CLOUD) <= (plain == CLOUD)).all()
        masks[name] = (plain == CLOUD).mean(), (gated == CLOUD).mean()
    # The clear Sen1Floods11 scene: 3.9 % of bright roofs and greenhouses, less than half left.
    assert masks["floods"][0] == pytest.approx(0.039, abs=0.001)
    assert masks["floods"][1] < 0.5 * masks["floods"][0]
    # The summer cumulus loses almost nothing.
    assert masks["summer"][1] > 0.98 * masks["summer"][0] > 0.29


def test_bright_land_leaves_roofs_and_greenhouses_clear_and_keeps_the_cumulus():
    """On the cloud-free Sen1Floods11 chip the bright-land test (on by default) clears most of
    what scores as cloud (roofs, greenhouses, roads: 1.7 % of the scene without it); the summer
    cumulus keeps all but a few pixels of its cloud, and nothing clear becomes cloud."""
    fractions = {}
    for name, path in (("floods", FLOODS_S2), ("summer", SUMMER_S2)):
        with open_sentinel2(path) as s2:
            refl, valid = s2.read()
        without = classify(refl, valid, MaskParams(land=False))[0] == CLOUD
        cloud = classify(refl, valid)[0] == CLOUD
        assert (cloud <= without).all()
        fractions[name] = without.mean(), cloud.mean()
    assert fractions["floods"][0] == pytest.approx(0.017, abs=0.001)
    assert fractions["floods"][1] < 0.35 * fractions["floods"][0]
    assert fractions["summer"][1] > 0.99 * fractions["summer"][0] > 0.3


@functools.cache
def cloud_fractions() -> dict[str, tuple[float, float]]:
    """The cloud share of the cloud-free floods chip and of the summer cumulus, without the
    bright-land test and with it."""
    fractions = {}
    for name, path in (("floods", FLOODS_S2), ("summer", SUMMER_S2)):
        refl, valid = reflectance_of(path)
        without = classify(refl, valid, MaskParams(land=False))[0] == CLOUD
        fractions[name] = without.mean(), (classify(refl, valid)[0] == CLOUD).mean()
    return fractions


def test_roofs_with_a_cloudlike_parallax_are_left_clear_by_their_texture():
    """On the cloud-free Sen1Floods11 chip, white sheds and greenhouses among the fields and
    roofs of the village whose parallax index reads like a cloud's (B08's 10 m texture against
    B8A) are bright land by the texture of roofs (and the later rules): the mask keeps 0.002 %
    of the chip as cloud (1.7 % without the bright-land test), and the summer cumulus keeps its
    cloud."""
    fractions = cloud_fractions()
    assert fractions["floods"][1] < 0.0035
    assert fractions["summer"][1] > 0.99 * fractions["summer"][0]


def test_roofs_bright_as_a_clouds_core_are_bright_land_by_their_texture():
    """An industrial estate's large white roofs score 1, as a thick cloud's core does. The
    Sen1Floods11 chip's sheds, roofs and greenhouses made three times as bright in every band
    (so their colour, short-wave infrared ratio and texture stay theirs) score 1, and wherever
    their square's cloud has the texture and short-wave infrared of roofs they are bright land
    all the same, blocks of them with a cloud-like parallax index included."""
    refl, valid = reflectance_of(FLOODS_S2)
    scored = classify(refl, valid, MaskParams(land=False))[0] == CLOUD
    bright = refl.copy()
    bright[:, scored] *= 3
    classes, score = classify(bright, valid, MaskParams(land=False))
    cloud = classes == CLOUD
    assert (cloud == scored).all() and (score[scored] >= 1).all()
    band = {b: bright[i] for i, b in enumerate(BANDS)}
    count = box_count(cloud, LAND_BOX)
    visible = (band["B02"] + band["B03"] + band["B04"]) / 3
    roofs = (cloud & (box_mean(texture(band["B04"], cloud), cloud, LAND_BOX, count=count)
                      > ROOF_TEXTURE)
             & (box_mean(band["B11"] / visible, cloud, LAND_BOX, count=count) > ROOF_SWIR)
             & (box_mean(parallax_index(band), cloud, LAND_BOX, count=count) <= LAND_CDI)
             & ~specks(cloud, valid))
    assert roofs.sum() > 50
    assert not (classify(bright, valid)[0] == CLOUD)[roofs].any()


def test_the_mask_with_buffer_and_shadows_computes_the_parallax_index_once(monkeypatch):
    """With ``remove``'s buffer and shadows, the bright-land test and the buffer's confident
    clouds read one parallax index, and the shadows' buffer none, over the summer sample's
    cumulus and their shadows: its classes stay those of the windows around it."""
    from cloudfree.mask import bright_land as module

    calls = []

    def counted(b):
        calls.append(b["B08"].shape)
        return parallax_index(b)

    parallax_index = module.parallax_index
    monkeypatch.setattr(module, "parallax_index", counted)
    refl, valid = reflectance_of(SUMMER_S2)
    params = MaskParams(buffer=5, shadow=True)
    shadow = combine_shadow_stats([shadow_thresholds(refl, valid)])
    classes = classify(refl, valid, params, shadow=shadow)[0]
    assert {CLOUD, SHADOW} <= set(np.unique(classes)) and len(calls) == 1
    monkeypatch.setattr(module, "parallax_index", parallax_index)
    end = 128 + params.context
    window = classify(refl[:, :end], valid[:end], params, shadow=shadow)[0]
    np.testing.assert_array_equal(window[:128], classes[:128])


def test_red_land_with_lands_short_wave_infrared_is_left_clear():
    """On the cloud-free Sen1Floods11 chip, the pale roofs and bare soil of the village that
    score as cloud with neither the texture of roofs nor a parallax are red (B04 above B02) and
    bright in B11: they are bright land, and the mask keeps 0.14 % of the chip as cloud (0.33 %
    without the tint). The summer cumulus, as bright in B11 but white, keeps its cloud."""
    fractions = cloud_fractions()
    assert fractions["floods"][1] < 0.002
    assert fractions["summer"][1] > 0.99 * fractions["summer"][0] > 0.3


def test_land_dim_at_443_nm_and_lone_specks_are_left_clear():
    """Clouds are white from 443 to 490 nm. What still scores as cloud on the cloud-free
    Sen1Floods11 chip is dimmer in B01 than in B02 (roofs and bare soil; B01's 60 m pixels also
    average them with the fields around) or lies alone in specks of a few pixels: the mask keeps
    0.01 % of the chip as cloud (0.14 % with neither rule). The summer cumulus keeps its cloud."""
    fractions = cloud_fractions()
    assert fractions["floods"][1] < 0.0003
    assert fractions["summer"][1] > 0.99 * fractions["summer"][0] > 0.3


def test_a_veil_dim_at_443_nm_stays_cloud_and_dim_land_stays_clear(monkeypatch):
    """A cloud adds about as much light at 443 nm as at 490 nm; a bright roof is brighter than
    the land beside it far more at 490 nm than at 443 (and B01's 60 m pixels average it with
    the streets around). The summer cumulus dimmed at 443 nm (B01 at 0.85 of B02, as dim as
    land) is a veil by that rise and keeps its cloud, where the dim-land rule alone left 30 % of
    it clear; on the cloud-free Sen1Floods11 chip, the dim land that scores as cloud is no veil
    and stays clear."""
    from cloudfree.mask import bright_land as module

    refl, valid = reflectance_of(SUMMER_S2)
    dim = refl.copy()
    dim[BANDS.index("B01")] = 0.85 * refl[BANDS.index("B02")]
    chip, chip_valid = reflectance_of(FLOODS_S2)

    def clouds() -> tuple[int, int, int]:
        return tuple(int((classify(r, v, params)[0] == CLOUD).sum()) for r, v, params in (
            (dim, valid, MaskParams(land=False)), (dim, valid, MaskParams()),
            (chip, chip_valid, MaskParams())))

    scored, veiled, chip_cloud = clouds()
    monkeypatch.setattr(module, "veiled_blue", lambda b, cloud, *_: np.zeros_like(cloud))
    _, dim_land, chip_without = clouds()
    assert veiled > 0.98 * scored and dim_land < 0.75 * scored
    assert chip_cloud == chip_without < 30
    band = {b: chip[i] for i, b in enumerate(BANDS)}
    cloud = classify(chip, chip_valid, MaskParams(land=False))[0] == CLOUD
    count = box_count(cloud, LAND_BOX)
    dim_chip = cloud & (box_mean(blue_ratio(band), cloud, LAND_BOX, count=count) < CLOUD_BLUE)
    assert dim_chip.sum() > 1000
    assert veiled_blue(band, cloud, chip_valid, count)[dim_chip].mean() < 0.01


def _hazy_village() -> tuple[np.ndarray, np.ndarray]:
    """The Sen1Floods11 chip under a uniform haze that adds more light at 443 nm than at 665 nm,
    over its clear land and its roofs alike (no veil's rise), and its valid pixels."""
    refl, valid = reflectance_of(FLOODS_S2)
    for band, rise in (("B01", 0.02), ("B02", 0.017), ("B03", 0.013), ("B04", 0.009)):
        refl[BANDS.index(band)] += rise
    return refl, valid


def test_faint_textured_land_far_from_any_cloud_is_left_clear(monkeypatch):
    """The Sen1Floods11 village under a uniform haze (more light added at 443 nm than at 665 nm,
    over its clear land and its roofs alike: no veil's rise) scores as faint cloud over its
    textured land, far from anything scoring 0.5: some hundreds of those pixels are left clear,
    nothing becomes cloud, and windows keep the whole chip's classes. The thin wisps at the
    edges of the summer cumulus are as textured and no brighter at 443 nm, but lie within
    ``TOWN_BOX // 2`` px of its bright cores: the cumulus keeps all its cloud. Its rim, within
    ``TOWN_RIM`` px of the cloud kept, stays cloud too where no core is that near: in a 128 px
    window whose cores lie beyond the guard (the rule took 111 px of its rim on the score's guard
    alone), and with the guard over ``LAND_BOX`` px alone (340 px). (The land brighter at 1610
    than at 865 nm, which takes some of the same roofs, and the water vapour's test of small
    patches, which judges the patches this rule leaves, are set aside.)"""
    from cloudfree.mask import bright_land as module

    monkeypatch.setattr(module, "SOIL_RATIO", np.inf)
    monkeypatch.setattr(module, "VAPOUR_DROP", np.inf)
    hazy, valid = _hazy_village()
    summer, summer_valid = reflectance_of(SUMMER_S2)
    params = MaskParams(buffer=2, shadow=True).for_bands(BANDS)
    shadow = combine_shadow_stats([shadow_thresholds(hazy, valid)])
    classes = classify(hazy, valid, params, shadow=shadow)[0]
    cloud = classify(hazy, valid)[0] == CLOUD
    summer_cloud = (classify(summer, summer_valid)[0] == CLOUD).sum()
    for cut in (256, 384):
        end = cut + params.context
        window = classify(hazy[:, :end], valid[:end], params, shadow=shadow)[0]
        np.testing.assert_array_equal(window[:cut], classes[:cut])
    rim = np.s_[:, 32:160, 96:224]  # the cores of its clouds 50 px and more away
    rim_cloud = (classify(summer[rim], summer_valid[rim[1:]])[0] == CLOUD).sum()
    monkeypatch.setattr(module, "TOWN_BOX", LAND_BOX)
    assert (classify(summer, summer_valid)[0] == CLOUD).sum() > summer_cloud - 50
    monkeypatch.setattr(module, "TOWN_TEXTURE", np.inf)
    without = classify(hazy, valid)[0] == CLOUD
    assert (cloud <= without).all() and without.sum() - cloud.sum() > 200
    assert (classify(summer, summer_valid)[0] == CLOUD).sum() == summer_cloud
    rim_without = (classify(summer[rim], summer_valid[rim[1:]])[0] == CLOUD).sum()
    assert rim_without > 900 and rim_cloud >= rim_without - 2


def test_a_clouds_thin_edge_over_textured_land_stays_cloud_beside_its_cores(monkeypatch):
    """The summer cumulus laid over the winter sample's clear land by its opacity (``opacity`` of
    its score: cores hide the land, edges let it through), its edges the mean spectrum of its
    cores (B09 in the winter's air: ``in_scene_air``), as a real thin edge mixes cloud and land.
    Where an edge crosses textured land and shows
    no parallax of its own, the bright-land test took it for roofs. Beside the cumulus's cores,
    which show a cloud's parallax and smoothness (``beside_cloud``), it stays cloud: without that
    guard tens of the edge's pixels leave the mask, and nothing else changes."""
    from cloudfree.mask import bright_land as module

    cloudy, _ = reflectance_of(SUMMER_S2)
    land, valid = reflectance_of(WINTER_CLEAR)
    alpha = opacity(classify(cloudy)[1])
    core = cloudy[:, alpha >= 0.9].mean(1)[:, None, None]
    core = in_scene_air(core, land_vapour(land, valid) / land_vapour(cloudy, alpha == 0))
    scene = (land + alpha * (core - land)).astype(np.float32)
    params = MaskParams(buffer=0, shadow=False)
    guarded, score = classify(scene, valid, params)
    monkeypatch.setattr(module, "beside_cloud", lambda strong, index, fine: np.zeros_like(strong))
    unguarded = classify(scene, valid, params)[0]
    edge = (alpha > 0.2) & (alpha < 0.6) & (score > params.threshold)
    kept = (guarded == CLOUD) & (unguarded != CLOUD)
    assert kept.sum() > 50 and (guarded[unguarded == CLOUD] == CLOUD).all()
    assert (guarded[edge] == CLOUD).mean() > 0.925 > (unguarded[edge] == CLOUD).mean()
    near = ndimage.binary_dilation(alpha >= 0.5, iterations=module.BESIDE_BOX // 2)
    assert (kept <= near).all()


def test_box_means_and_the_veil_test_on_some_rows_are_those_of_the_whole_array():
    """Box means of real values over a few rows (the columns filtered down to the last of them
    and its square, the rows along them alone) are SciPy's whole filter's on those rows, bit
    for bit, in both edge modes, the array's first and last rows included; and the veil test
    asked about some pixels gives on their rows what it gives on the whole chip."""
    chip, valid = reflectance_of(FLOODS_S2)
    band = {b: chip[i] for i, b in enumerate(BANDS)}
    cloud = classify(chip, valid, MaskParams(land=False))[0] == CLOUD
    x = blue_ratio(band)
    for rows in (np.array([0]), np.array([3, 40, 41, 200]), np.array([len(x) - 1])):
        for size, mode in ((LAND_BOX, "reflect"), (31, "constant"), (3, "reflect")):
            whole = box_mean(x, cloud, size, mode)[rows]
            some = box_mean(x, cloud, size, mode, rows=rows)
            assert some.dtype == whole.dtype and np.array_equal(some, whole)
    count = box_count(cloud, LAND_BOX)
    whole = veiled_blue(band, cloud, valid, count)
    asked = np.zeros_like(cloud)
    asked[[5, 90, len(x) - 2], 7] = True
    some = veiled_blue(band, cloud, valid, count, asked)
    rows = asked.any(axis=1)
    assert whole[rows].any() and not some[~rows].any()
    assert np.array_equal(some[rows], whole[rows])


def test_a_cloud_coloured_as_the_ground_confirms_nothing():
    """The summer cumulus confirms nearly all its pixels as seeds of the buffer and the haze
    ring. The same cloud dimmed at 443 nm (B01 at 0.85 of B02, as roofs are) or reddened (B04
    above B02, as sand) has the colour of the ground at the top of the atmosphere and confirms
    none, however large it is and whatever its parallax."""
    refl, valid = reflectance_of(SUMMER_S2)
    classes, score = classify(refl, valid)
    cloud = classes == CLOUD

    def seeds(reflectance: np.ndarray) -> int:
        return int((confirmed_reach(reflectance, BANDS, cloud, score, valid) > 0).sum())

    assert seeds(refl) > 0.99 * cloud.sum()
    band = {b: i for i, b in enumerate(BANDS)}
    dim, red = refl.copy(), refl.copy()
    dim[band["B01"]] = 0.85 * refl[band["B02"]]
    red[band["B04"]] = 1.3 * refl[band["B02"]]
    assert seeds(dim) == seeds(red) == 0


def test_a_cloud_with_the_texture_of_built_up_land_confirms_nothing(monkeypatch):
    """The Sen1Floods11 village's roofs, yards and bare soil that score above 0.1 before the HOT
    test (what a lower threshold would take for cloud), taken as cloud, vary from one 10 m pixel
    to the next as no cloud does: two thirds of them have the texture of built-up land around
    them (``ground_texture``), and the pixels that confirm a cloud and grow the buffer and the
    haze ring fall by more than half. The summer cumulus is smooth: its mask with a 5 px buffer
    is the same pixel for pixel with the rule and without."""
    from cloudfree.mask import bright_land as module

    chip, chip_valid = reflectance_of(FLOODS_S2)
    score = raw_score({b: chip[i] for i, b in enumerate(BANDS)})
    village = (score > 0.1) & chip_valid
    rough = ground_texture(chip[BANDS.index("B04")], village) & village
    assert rough.sum() > 0.6 * village.sum() > 20000
    summer, summer_valid = reflectance_of(SUMMER_S2)

    def grown() -> tuple[int, np.ndarray]:
        reach = confirmed_reach(chip, BANDS, village, score, chip_valid)
        return int((reach > 0).sum()), classify(summer, summer_valid, MaskParams(buffer=5))[0]

    seeds, buffered = grown()
    monkeypatch.setattr(module, "GROUND_TEXTURE", np.inf)
    before, unchanged = grown()
    assert seeds < 0.5 * before
    assert (buffered == unchanged).all()


def _clouds_with_and_without_soil_ratio(
        monkeypatch: pytest.MonkeyPatch, cases: list[tuple[np.ndarray, np.ndarray | None]],
        bands: tuple[str, ...]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each case's cloud without a buffer and with 5 px, as ``classify`` finds it, then the same
    with the soil's ratio (``SOIL_RATIO``) turned off; the water vapour's test of small patches,
    which judges the patches that ratio leaves, set aside in both."""
    from cloudfree.mask import bright_land as module

    monkeypatch.setattr(module, "VAPOUR_DROP", np.inf)

    def clouds() -> list[np.ndarray]:
        return [classify(r, v, MaskParams(buffer=buffer), bands)[0] == CLOUD
                for r, v in cases for buffer in (0, 5)]

    found = clouds()
    monkeypatch.setattr(module, "SOIL_RATIO", np.inf)
    return found, clouds()


def test_without_b10_land_bright_at_1610_nm_is_left_clear(monkeypatch):
    """As an L2A band set (B10 dropped; and B01 and B09), the Sen1Floods11 village's pale roofs
    and bare soil that score as cloud are no darker in B11 than in B8A, as water clouds and the
    vegetation seen through them are: the soil's ratio leaves most of them clear, where neither
    the red of sand nor the dim blue at 443 nm runs without B10. The summer cumulus, as the same
    bands at the top of the atmosphere and brought to surface levels, keeps its cloud and its
    buffer pixel for pixel."""
    chip, chip_valid = reflectance_of(FLOODS_S2)
    summer = reflectance_of(SUMMER_S2)[0]
    cases = [(chip[[BANDS.index(b) for b in L2A_SET]], chip_valid),
             (summer[[BANDS.index(b) for b in L2A_SET]], None), (_summer_at_l2a_levels(), None)]
    found, before = _clouds_with_and_without_soil_ratio(monkeypatch, cases, L2A_SET)
    assert before[0].sum() > 300 and found[0].sum() < 0.4 * before[0].sum()
    assert (found[0] <= before[0]).all()
    for now, then in zip(found[2:], before[2:], strict=True):
        np.testing.assert_array_equal(now, then)


def test_without_b01_and_b10_faint_towns_far_from_a_cloud_are_left_clear(monkeypatch):
    """Without B01 and B10 (ten L2A bands) the faint textured land of the Sen1Floods11 village
    far from any cloud's core is bright land too, with no veil test (it needs B01), and a few
    white roofs scoring 0.5 do not count as such a core: some of what the other rules keep is
    left clear, none added. The summer cumulus, as the same bands at the top of the atmosphere,
    keeps its cloud and its buffer within a few pixels (a thin one at the image's edge); at
    surface levels within 1 % of them, all within 20 px of the image's edge, where the squares
    of the tests are mirrored (29 of its 18051 pixels, 75 of the 23657 with the buffer)."""
    from cloudfree.mask import bright_land as module

    chip, chip_valid = reflectance_of(FLOODS_S2)
    summer = reflectance_of(SUMMER_S2)[0]
    cases = [(chip[[BANDS.index(b) for b in L2A_SET]], chip_valid),
             (summer[[BANDS.index(b) for b in L2A_SET]], None), (_summer_at_l2a_levels(), None)]

    def clouds() -> list[np.ndarray]:
        return [classify(r, v, MaskParams(buffer=buffer), L2A_SET)[0] == CLOUD
                for r, v in cases for buffer in (0, 5)]

    found, town_texture = clouds(), module.TOWN_TEXTURE
    monkeypatch.setattr(module, "TOWN_TEXTURE", np.inf)
    before = clouds()
    assert (found[0] <= before[0]).all() and found[0].sum() < before[0].sum() - 10
    for now, then in zip(found[2:4], before[2:4], strict=True):  # the cumulus, within 6 px
        assert then.sum() > 10000 and (now != then).sum() <= 6
    for now, then in zip(found[4:], before[4:], strict=True):  # at surface levels
        rows, cols = np.nonzero(now != then)
        assert then.sum() > 10000 and rows.size < 0.01 * then.sum() and not (now & ~then).any()
        assert np.minimum.reduce([rows, cols, 255 - rows, 255 - cols]).max() <= 20
    # counted as a cloud's core, the village's few roofs scoring 0.5 would leave it all cloud
    monkeypatch.setattr(module, "TOWN_TEXTURE", town_texture)
    monkeypatch.setattr(module, "TOWN_CORE", 1)
    np.testing.assert_array_equal(classify(*cases[0], MaskParams(), L2A_SET)[0] == CLOUD,
                                  before[0])


def test_land_bright_at_1610_nm_is_left_clear_with_b10_too(monkeypatch):
    """With every L1C band, land no darker in B11 than in B8A is bright land as well, where
    nothing near scores as an opaque cloud: of the Sen1Floods11 village under a uniform haze it
    leaves clear hundreds of the roofs and bare soil that the other rules keep, and makes
    nothing cloud; the summer cumulus keeps its cloud and its buffer pixel for pixel."""
    cases = [_hazy_village(), reflectance_of(SUMMER_S2)]
    found, before = _clouds_with_and_without_soil_ratio(monkeypatch, cases, BANDS)
    assert before[0].sum() > 1000 and found[0].sum() < 0.6 * before[0].sum()
    assert (found[0] <= before[0]).all()
    for now, then in zip(found[2:], before[2:], strict=True):
        np.testing.assert_array_equal(now, then)


def test_without_b10_a_red_cloud_is_ground_only_with_lands_short_wave_infrared():
    """Without B10 a cloud reddened (B04 above B02, as sand and as a cloud's thin edges at
    surface levels) still confirms its pixels, being darker in B11 than in B8A as water clouds
    are; raised in B11 above B8A as well, it has the colour of bare ground and confirms none."""
    refl, valid = reflectance_of(SUMMER_S2)
    bands = [b for b in BANDS if b != "B10"]
    band = {b: i for i, b in enumerate(bands)}
    l2a = refl[[BANDS.index(b) for b in bands]]
    classes, score = classify(l2a, valid, MaskParams(), bands)
    cloud = classes == CLOUD

    def seeds(reflectance: np.ndarray) -> int:
        return int((confirmed_reach(reflectance, bands, cloud, score, valid) > 0).sum())

    red = l2a.copy()
    red[band["B04"]] = 1.3 * l2a[band["B02"]]
    soil = red.copy()
    soil[band["B11"]] = 1.2 * l2a[band["B8A"]]
    assert seeds(red) == seeds(l2a) > 0.99 * cloud.sum()
    assert seeds(soil) == 0


def test_bright_land_is_not_found_under_an_overcast_sky():
    """The summer cumulus spread over the whole patch (each pixel that of the cloud pixel
    nearest it, its rim's too, where the land shows through) is cloud everywhere: bright land
    lies among fields and streets, so the test finds none where nearly all the sky around
    scores as cloud (without that rule it left 27 % of this sky clear)."""
    refl, valid = reflectance_of(SUMMER_S2)
    cloud = classify(refl, valid)[0] == CLOUD
    _, (rows, cols) = ndimage.distance_transform_edt(~cloud, return_indices=True)
    assert (classify(refl[:, rows, cols], valid)[0] == CLOUD).all()


def test_bright_land_needs_its_bands_and_can_be_turned_off():
    """Without B07, B08, B8A and B11 (or with land=False) the test is skipped, and the mask
    reads none of them; its neighbourhood is part of the halo."""
    on, off = MaskParams(), MaskParams(land=False)
    assert on.land and {"B07", "B08", "B8A", "B09", "B11"} <= set(on.bands)
    assert not {"B07", "B08", "B8A", "B09"} & set(off.bands)
    assert on.halo == off.halo + LAND_REACH + SPECK_REACH + VAPOUR_REACH
    # the water vapour's test needs B09, B8A and B10: without them no band or context for it
    l1c, l2a = on.for_bands(BANDS), on.for_bands([b for b in BANDS if b != "B10"])
    assert l1c.vapour and "B09" in l1c.bands and not l2a.vapour and "B09" not in l2a.bands
    assert l2a.halo == replace(l2a, vapour=True).halo - VAPOUR_REACH
    with open_sentinel2(FLOODS_S2) as s2:
        refl, valid = s2.read()
    keep = [i for i, b in enumerate(BANDS) if b not in ("B07", "B8A")]
    without = classify(refl[keep], valid, on, [BANDS[i] for i in keep])[0]
    np.testing.assert_array_equal(without, classify(refl, valid, off)[0])
    assert (without != classify(refl, valid, on)[0]).any()


def test_only_clouds_with_parallax_seed_a_buffer():
    """The parallax of the clouds around a pixel (B07, B08 and B8A) confirms a cloud: the
    summer sample's real clouds show it and seed as many pixels with the test as without; the
    same clouds with the parallax index of the ground (above ``CONFIDENT_CDI``), as a dense
    block of roofs shows, seed none (nor do they amid no haze). Without the bands there is no
    parallax to judge by."""
    refl, valid = reflectance_of(SUMMER_S2)
    classes, score = classify(refl, valid)
    cloud = classes == CLOUD
    parallax = cloud_parallax(refl, BANDS, cloud)
    seeds = (seed_reach(cloud, score, valid, parallax) > 0)
    assert seeds.sum() == (seed_reach(cloud, score, valid) > 0).sum() > 0.99 * cloud.sum()
    assert np.median(parallax[cloud]) < CONFIDENT_CDI - 0.2
    ground = np.full_like(parallax, CONFIDENT_CDI + 0.1)
    hazy = (seed_reach(cloud, score, valid, ground) > 0)
    assert hazy.sum() < 0.5 * seeds.sum()
    assert cloud_parallax(refl[[BANDS.index(b) for b in ("B02", "B03", "B04")]],
                          ("B02", "B03", "B04"), cloud) is None


#: WorldCereal's nine L2A bands: no B8A, so no parallax and no bright-land test.
NINE = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")


def test_without_parallax_a_bright_speck_grows_no_buffer():
    """Without B8A nothing tells a lone bright roof from a small cloud: a speck of 2 x 2 px
    or a block of 4 x 4 px scoring 1 (the summer cumulus's brightest pixel, set into the
    Sen1Floods11 chip's fields on WorldCereal's nine bands) is masked but grows no buffer; a
    block of 18 x 18 px of it, a cloud's extent, does."""
    refl, valid = reflectance_of(SUMMER_S2)
    classes, score = classify(refl, valid)
    core = refl[:, *np.unravel_index(np.argmax(np.where(classes == CLOUD, score, 0)),
                                     score.shape)]
    fields, _ = reflectance_of(FLOODS_S2)
    nine = [BANDS.index(b) for b in NINE]
    fields = fields[:, 180:280, 340:440]
    assert not (classify(fields[nine], None, MaskParams(buffer=5), NINE)[0] == CLOUD).any()
    for size, grows in ((2, False), (4, False), (18, True)):
        scene = fields.copy()
        scene[:, 50:50 + size, 50:50 + size] = core[:, None, None]
        classes, score = classify(scene[nine], None, MaskParams(buffer=5), NINE)
        cloud = classes == CLOUD
        assert cloud[50:50 + size, 50:50 + size].all() and score[50, 50] == 1
        assert (cloud.sum() > size * size) == grows


def test_a_lone_bright_object_grows_no_buffer_whatever_its_parallax():
    """A white roof's few pixels scoring as opaque cloud (4 x 4 px of the summer cumulus's
    core, set into the winter sample's clear land with all 13 bands, B09 in the winter's air,
    so that its edges show a cloud's parallax) are masked but grow no buffer: they lack a
    cloud's extent; 2 x 2 px, a lone speck, are not masked at all. The same core over 20 x 20 px
    grows the whole buffer."""
    cumulus, _ = reflectance_of(SUMMER_S2)
    score = classify(cumulus)[1]
    least = ndimage.minimum_filter(score, 20, mode="constant")  # over the 20 px square
    y, x = np.unravel_index(np.argmax(least), least.shape)
    assert least[y, x] > 0.5
    land, valid = reflectance_of(WINTER_S2)
    assert not (classify(land, valid, MaskParams(buffer=5))[0] == CLOUD).any()
    air = land_vapour(land, valid) / land_vapour(cumulus, score < 0.05)
    for size in (2, 4, 20):
        scene = land.copy()
        top, left = y - size // 2, x - size // 2
        scene[:, 100:100 + size, 100:100 + size] = in_scene_air(
            cumulus[:, top:top + size, left:left + size], air)
        cloud = classify(scene, valid)[0] == CLOUD
        assert cloud.sum() == (0 if size == 2 else size * size)
        buffered = classify(scene, valid, MaskParams(buffer=5))[0] == CLOUD
        np.testing.assert_array_equal(buffered, grow(cloud, 5) if size == 20 else cloud)


def test_built_up_backscatter_clears_the_chips_roofs_and_none_of_the_cumulus():
    """Under the Sentinel-1 of the cloud-free Sen1Floods11 chip, over a third of what the mask
    (with its buffer, without the bright-land test) calls cloud lies on built-up backscatter
    with no confident cloud near;
    under that of the summer sample none of its cumulus does. Without S1 (NaN) nothing is."""
    for path, s1, low, high in ((FLOODS_S2, FLOODS_S1, 0.35, 0.8), (SUMMER_S2, SUMMER_S1, 0, 0)):
        with open_sentinel2(path) as s2:
            refl, valid = s2.read()
        with rasterio.open(s1) as src:
            vv = src.read(1).astype(np.float32)
        classes, score = classify(refl, valid, MaskParams(buffer=5, land=False))
        cloud = classes == CLOUD
        land = built_up(classes, score, 0.2, vv)
        assert (land <= cloud).all() and cloud.mean() > 0.01
        assert low <= land.sum() / cloud.sum() <= high
        assert not built_up(classes, score, 0.2, np.full_like(vv, np.nan)).any()


def test_no_score_at_a_level_in_a_square_is_the_squares_peak_below_it():
    """The built-up and bright-land tests ask whether any pixel of a square scores a level or
    more by a maximum filter of booleans: the same pixels as the square's largest score (NaN
    as 0, the clouds' alone for the bright-land test) below that level, on the summer
    sample's real scores (NaN on a corner, as on nodata)."""
    with open_sentinel2(SUMMER_S2) as s2:
        refl, valid = s2.read()
    classes, score = classify(refl, valid, MaskParams(buffer=5, land=False))
    cloud = classes == CLOUD
    score[:64, :64] = np.nan
    for where, size, mode in ((cloud, LAND_BOX, "reflect"),
                              (np.ones_like(cloud), BUILT_BOX, "constant")):
        peak = ndimage.maximum_filter(np.where(where, np.nan_to_num(score), 0), size, mode=mode)
        for level in (SAND_SCORE, FAINT_SCORE, BUILT_SCORE):
            calm = ~ndimage.maximum_filter(where & (score >= level), size, mode=mode)
            np.testing.assert_array_equal(calm, peak < level)
            assert 0 < calm.sum() < calm.size


def test_thresholds_buffer_and_score_output(tmp_path):
    base = mask_scene(SUMMER_S2, tmp_path / "a.tif")
    strict = mask_scene(SUMMER_S2, tmp_path / "b.tif", MaskParams(threshold=0.6))
    buffered = mask_scene(SUMMER_S2, tmp_path / "c.tif", MaskParams(buffer=3),
                          score_path=tmp_path / "score.tif")
    assert strict["cloud_fraction"] < base["cloud_fraction"] < buffered["cloud_fraction"]
    plain, _ = read_mask(tmp_path / "a.tif")
    grown, _ = read_mask(tmp_path / "c.tif")
    plain, grown = mask_cloud(plain), mask_cloud(grown)
    assert (plain <= grown).all()
    with rasterio.open(tmp_path / "score.tif") as ds:
        score = ds.read(1)
        assert ds.dtypes[0] == "float32" and ds.descriptions[0] == "cloud_score"
    # cloud where the score exceeds the threshold, but bright land (a few roofs of the town)
    assert (plain <= (score > 0.2)).all() and plain.sum() > 0.99 * (score > 0.2).sum()


@pytest.mark.parametrize("buffer", [1, 3, 5, 10, 11, 23, 24, 300])
def test_the_buffer_takes_every_clear_pixel_within_its_radius(buffer):
    """By shifted copies of the seeds for small radii and a distance transform beyond: the
    same pixels (within each seed's share of the radius, ``confirmed_reach`` rounded up to
    quarters, of a cloud pixel that seeds the buffer), and a buffer larger than the image (up
    to the largest allowed) runs."""
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    classes, score = classify(refl, valid)
    cloud = classes == CLOUD
    grown = classify(refl, valid, MaskParams(buffer=buffer))[0] == CLOUD
    pixels = np.indices(cloud.shape).reshape(2, -1).T
    steps = np.ceil(confirmed_reach(refl, BANDS, cloud, score, valid) * SEED_STEPS)
    assert (steps == SEED_STEPS).any() and ((steps > 0) & (steps < SEED_STEPS)).any()
    expected = cloud.copy()
    for step in range(1, SEED_STEPS + 1):
        distance, _ = cKDTree(np.argwhere(steps == step)).query(pixels)  # to the nearest seed
        expected |= (distance <= -(-buffer * step // SEED_STEPS)).reshape(cloud.shape)
    np.testing.assert_array_equal(grown, expected)
    assert 0 < cloud.mean() < grown.mean() <= 1


def test_the_buffer_window_by_window_is_the_buffer_of_the_whole_image():
    """Windows of 32 px read with the mask's halo (no data beyond the scene's edges) grow the
    buffer where the whole image does, at the edges too: what confirms a cloud reaches 65 px."""
    params = MaskParams(buffer=5)
    with open_sentinel2(SUMMER_S2) as s2:
        expected = classify_scene(s2.read()[0], None, params)[0]
        read = mask_reader(s2, s2.bands, params)
        got = np.zeros_like(expected)
        halo = params.halo
        for top in range(0, s2.height, 32):
            for left in range(0, s2.width, 32):
                window = read_classified(read, top, left, 32, 32, (s2.height, s2.width), halo,
                                         params, s2.bands).classes
                got[top:top + 32, left:left + 32] = window[halo:halo + 32, halo:halo + 32]
    np.testing.assert_array_equal(got, expected)
    assert 0.3 < (expected == CLOUD).mean() < 0.9


def test_snow_is_not_cloud():
    data, _ = read_stack(SUMMER_S2, 64)
    refl = data.astype(np.float32) / 10000
    refl[:, :, :32] = refl[:, :, :32].max(axis=(1, 2), keepdims=True)  # bright everywhere
    refl[11, :, :16] = 0.02  # ... and dark in SWIR B11 on the left: NDSI high, snow
    classes, _ = classify(refl, params=MaskParams(land=False))  # a flat block: no land test
    assert (classes[:, :16] == 3).all() and (classes[:, 16:32] == CLOUD).all()


@pytest.mark.parametrize("method", ["score", "dsen2cr"])
def test_ice_cloud_bright_in_the_cirrus_band_is_not_snow(method):
    # the real cumulus of the summer sample made ice-like: dark in SWIR B11 (NDSI over 0.8, as
    # ice cloud and snow are) and, on its left half, bright at 1375 nm as ice cloud is (B10
    # 0.07, the January ice cloud of the pool's series): cloud there; where B10 stays that of
    # the water cloud (0.0013) it passes for snow, as on the ground, and without B10 (L2A)
    # it all does
    refl = read_stack(SUMMER_S2, 256)[0].astype(np.float32) / 10000
    params = MaskParams(method=method)
    cloud = classify(refl, None, params)[0] == CLOUD
    refl[BANDS.index("B11")][cloud] = 0.1 * refl[BANDS.index("B03")][cloud]  # NDSI 0.82
    left = np.zeros_like(cloud)
    left[:, :128] = True
    refl[BANDS.index("B10")][cloud & left] = 0.07
    classes = classify(refl, None, params)[0]
    assert cloud[:, :128].mean() > 0.4 and cloud[:, 128:].mean() > 0.1
    assert (classes[cloud & left] == CLOUD).mean() > 0.97
    right = np.zeros_like(cloud)
    right[:, 136:] = True  # beyond the reach of dsen2cr's smoothing
    assert (classes[cloud & right] == SNOW).mean() > 0.9  # dsen2cr: 0.91, its edges smoothed
    l2a = [b for b in BANDS if b != "B10"]
    without = classify(refl[[BANDS.index(b) for b in l2a]], None, params, l2a)[0]
    assert (without[cloud] == SNOW).mean() > 0.9


def snow_spots(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The real cumulus of the summer sample with spots made to pass the snow test (B11 a
    tenth of B03, as ice and snow are dark there): one of 25 x 9 px deep inside its largest
    cloud, spots of 7 x 7 px inside its clouds, and on its clear land with the spectrum of the
    cloud's brightest pixel (snow on the ground) beside a cloud (touching it) and away from
    them. Its GeoTIFF and each kind's pixels."""
    data, profile = read_stack(SUMMER_S2, 256)
    cloud = classify(data.astype(np.float32) / 10000)[0] == CLOUD
    inside = ndimage.binary_erosion(cloud, iterations=6)
    distance = ndimage.distance_transform_edt(~cloud)
    bright = data[:, cloud].max(axis=1)
    spots = {kind: np.zeros_like(cloud) for kind in ("large", "inside", "beside", "land")}
    row, col = np.unravel_index(np.argmax(ndimage.distance_transform_edt(cloud)), cloud.shape)
    # 25 x 9 px deep in a cloud, 9 px of it above a multiple of 32 (a window's edge below)
    top = 32 * round(row / 32) - 9
    spots["large"][top:top + 25, col + 4:col + 13] = True
    for row in range(4, 252, 6):
        for col in range(4, 252, 6):
            square = (slice(row - 3, row + 4), slice(col - 3, col + 4))
            near = ndimage.binary_dilation(np.logical_or.reduce(list(spots.values())),
                                           iterations=2)
            for kind, where in (("inside", inside), ("beside", distance == 4),
                                ("land", distance > 12)):
                if where[row, col] and not near[square].any():
                    spots[kind][square] = True
                    if kind != "inside":
                        data[:, square[0], square[1]] = bright[:, None, None]
    snowy = np.logical_or.reduce(list(spots.values()))
    data[BANDS.index("B11")][snowy] = data[BANDS.index("B03")][snowy] // 10
    return write_stack(tmp_path / "spots.tif", data, profile), spots


def test_snow_inside_a_cloud_is_cloud(tmp_path):
    path, spots = snow_spots(tmp_path)
    assert all(s.sum() > 200 for s in spots.values()), {k: s.sum() for k, s in spots.items()}
    with open_sentinel2(path) as s2:
        refl = s2.read()[0]
    classes = classify_scene(refl)[0]
    assert (classes[spots["inside"]] == CLOUD).mean() > 0.95
    assert (classes[spots["beside"]] == SNOW).all()  # land on one side
    assert (classes[spots["large"]] == SNOW).all()  # larger than a core
    assert (classes[spots["land"]] == SNOW).all()
    # window by window, as `mask` and `remove` read the scene, as on the whole image
    mask_scene(path, tmp_path / "mask.tif")
    np.testing.assert_array_equal(mask_cloud(read_mask(tmp_path / "mask.tif")[0]),
                                  mask_cloud(classes))
    for params in (MaskParams(), MaskParams(buffer=5)):
        expected, halo = classify_scene(refl, None, params)[0], params.halo
        got = np.zeros_like(expected)
        with open_sentinel2(path) as s2:
            windows = [Window(left, top, 32, 32) for top in range(0, 256, 32)
                       for left in range(0, 256, 32)]
            for window, found, _ in classified_windows(s2, windows, params, None, 2):
                rows, cols = window.toslices()
                got[rows, cols] = np.where(found == THIN, CLOUD, found)
            np.testing.assert_array_equal(got, expected)  # as `mask` reads it
            read = mask_reader(s2, s2.bands, params)
            for top in range(0, 256, 32):
                for left in range(0, 256, 32):
                    window = read_classified(read, top, left, 32, 32, (256, 256), halo,
                                             params, s2.bands).classes
                    got[top:top + 32, left:left + 32] = window[halo:halo + 32, halo:halo + 32]
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("method", ["score", "dsen2cr"])
def test_windowed_equals_whole_image(tmp_path, method):
    # the dsen2cr method at 0.1: at 0.2 its smoothed score leaves none of the chip cloud
    params = MaskParams(method=method, buffer=2, shadow=True, land=True,
                        threshold=0.1 if method == "dsen2cr" else 0.2)
    whole = mask_scene(FLOODS_S2, tmp_path / "whole.tif", params, block=4096,
                       score_path=tmp_path / "whole_score.tif")
    tiled = mask_scene(FLOODS_S2, tmp_path / "tiled.tif", params, block=100,
                       score_path=tmp_path / "tiled_score.tif")
    a, _ = read_mask(tmp_path / "whole.tif")
    b, _ = read_mask(tmp_path / "tiled.tif")
    np.testing.assert_array_equal(a, b)
    assert whole["shadow_fraction"] == tiled["shadow_fraction"] > 0
    assert (a == SHADOW).any() and mask_cloud(a).any()
    with rasterio.open(tmp_path / "whole_score.tif") as s, rasterio.open(
        tmp_path / "tiled_score.tif"
    ) as t:
        np.testing.assert_array_equal(s.read(), t.read())


def _reference_mask(scene: Path, params: MaskParams) -> tuple[np.ndarray, np.ndarray]:
    """The mask computed the plain way: every band of the whole image read at once, one thread
    (thin cloud apart, as ``mask`` writes it)."""
    with rasterio.open(scene) as ds:
        dn, valid = ds.read().astype(np.float32), (ds.read_masks() > 0).all(axis=0)
    refl = np.where(valid, dn / 10000, 0).astype(np.float32)
    classes, score = classify_scene(refl, valid, params)
    return thin_cloud(classes, refl), score


@pytest.mark.parametrize("params", [MaskParams(), MaskParams(method="dsen2cr", buffer=2,
                                                               shadow=True, threshold=0.1)])
def test_threaded_minimal_read_equals_plain_whole_image(tmp_path, params):
    """Threads, band selection and windows change nothing, bit for bit (nodata edge included;
    the dsen2cr method at a threshold of 0.1, where it leaves some of the chip cloud)."""
    with rasterio.open(FLOODS_S2) as ds:
        data, profile = ds.read(), {"crs": ds.crs, "transform": ds.transform}
    data[:, 300:, :40] = 0
    scene = write_stack(tmp_path / "floods.tif", data, profile, nodata=0,
                        descriptions=[f"B{int(b[1:])}" if b != "B8A" else "B8A" for b in BANDS])
    classes, score = _reference_mask(scene, params)
    mask_scene(scene, tmp_path / "m.tif", params, block=96, threads=3,
               score_path=tmp_path / "s.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif")[0], classes)
    with rasterio.open(tmp_path / "s.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), score)
    assert mask_cloud(classes).any() and (classes == NODATA).any()


def test_mask_reads_only_the_bands_it_needs(tmp_path, cli):
    """Without --shadow, B08 and the bands no test uses are not needed (nor read from a SAFE)."""
    data, profile = read_stack(SUMMER_S2, 64)
    keep = [b for b in BANDS if b in ("B01", "B02", "B03", "B04", "B10", "B11")]
    scene = write_stack(tmp_path / "six.tif", data[[BANDS.index(b) for b in keep]], profile,
                        descriptions=keep)
    full = write_stack(tmp_path / "full.tif", data, profile)
    assert cli("mask", scene, "-o", tmp_path / "six_mask.tif", "--threads", "2").exit_code == 0
    assert cli("mask", full, "-o", tmp_path / "full_mask.tif").exit_code == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "six_mask.tif")[0],
                                  read_mask(tmp_path / "full_mask.tif")[0])
    result = cli("mask", scene, "-o", tmp_path / "shadow.tif", "--shadow")
    assert result.exit_code == 1 and "band B08 missing" in result.output


def test_safe_needs_only_the_score_bands(tmp_path):
    """A SAFE folder with only B01-B04, B10 and B11 gives the mask of the full product (without
    the bright-land test, which needs B07, B08 and B8A and is skipped without them)."""
    data, profile = read_stack(SUMMER_S2, 120)
    l1c = coarsen_like_l1c(data)
    full = write_safe(tmp_path / "full.SAFE", l1c, profile, offset=0)
    part = write_safe(tmp_path / "part.SAFE", l1c, profile, offset=0)
    for jp2 in part.glob("GRANULE/*/IMG_DATA/*.jp2"):
        if not jp2.stem.endswith(("B01", "B02", "B03", "B04", "B10", "B11")):
            jp2.unlink()
    mask_scene(full, tmp_path / "full.tif", MaskParams(land=False), threads=2)
    mask_scene(part, tmp_path / "part.tif", threads=2)
    a, b = read_mask(tmp_path / "full.tif")[0], read_mask(tmp_path / "part.tif")[0]
    np.testing.assert_array_equal(a, b)
    assert (a == CLOUD).any() and (a == 0).any()


def test_safe_gives_the_same_mask_as_geotiff(tmp_path, cli):
    data, profile = read_stack(SUMMER_S2, 252)
    l1c = coarsen_like_l1c(data)
    tif = write_stack(tmp_path / "stack.tif", l1c, profile)
    safe = write_safe(tmp_path / "S2B_MSIL1C_N0400.SAFE", l1c, profile, offset=1000)
    assert cli("mask", tif, "-o", tmp_path / "tif_mask.tif").exit_code == 0
    result = cli("mask", safe, "--method", "dsen2cr")
    assert result.exit_code == 0, result.output
    tif_mask, _ = read_mask(tmp_path / "tif_mask.tif")
    cli("mask", tif, "-o", tmp_path / "tif_mask2.tif", "--method", "dsen2cr")
    safe_mask, _ = read_mask(tmp_path / "S2B_MSIL1C_N0400_mask.tif")
    np.testing.assert_array_equal(safe_mask, read_mask(tmp_path / "tif_mask2.tif")[0])
    # Ignoring the baseline 04.00 offset would change the result.
    cli("mask", safe, "-o", tmp_path / "no_offset.tif", "--offset", "0")
    assert (read_mask(tmp_path / "no_offset.tif")[0] != tif_mask).any()


def test_default_name_overwrite_and_creation_options(tmp_path, cli):
    scene = tmp_path / "scene.tif"
    scene.write_bytes(SUMMER_S2.read_bytes())
    assert cli("mask", scene, "--co", "COMPRESS=LZW").exit_code == 0
    out = tmp_path / "scene_mask.tif"
    with rasterio.open(out) as ds:
        assert ds.compression.value == "LZW"
    before = out.stat().st_mtime_ns
    result = cli("mask", scene)
    assert result.exit_code == 2
    assert "exists: pass --overwrite" in result.output
    assert out.stat().st_mtime_ns == before
    assert cli("mask", scene, "--overwrite").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "scene_mask.tif"]


def _all_nodata(tmp_path):
    data, profile = read_stack(SUMMER_S2, 32)
    return write_stack(tmp_path / "empty.tif", np.zeros_like(data), profile, nodata=0)


def _no_green_red(tmp_path):
    data, profile = read_stack(SUMMER_S2, 32)
    return write_stack(tmp_path / "subset.tif", np.delete(data, [2, 3], 0), profile,
                       descriptions=[b for b in BANDS if b not in ("B03", "B04")])


def _text(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("hello")
    return path


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (_text, 1, "is not a raster GDAL can read"),
        (lambda t: SUMMER_S1, 1, "2 unnamed band(s); expected 13 bands"),
        (_no_green_red, 1, "band B03, B04 missing, needed for the score cloud mask"),
        (_all_nodata, 1, "every pixel is nodata"),
        (lambda t: t / "missing.tif", 1, "does not exist"),
    ],
)
def test_bad_input_one_line_and_no_file(tmp_path, make, code, message, cli):
    scene = make(tmp_path)
    out = tmp_path / "out" / "mask.tif"
    out.parent.mkdir()
    result = cli("mask", scene, "-o", out)
    assert result.exit_code == code
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output
    assert list(out.parent.iterdir()) == []


def test_unwritable_output(tmp_path, cli):
    target = tmp_path / "m.tif" if os.geteuid() else Path("/proc/cloudfree_mask.tif")
    if os.geteuid():
        tmp_path.chmod(0o500)
    result = cli("mask", SUMMER_S2, "-o", target)
    tmp_path.chmod(0o700)
    assert result.exit_code == 1
    assert "cannot write" in result.output and "Traceback" not in result.output
    assert not target.exists()


def test_missing_output_folder(tmp_path, cli):
    result = cli("mask", SUMMER_S2, "-o", tmp_path / "nope" / "m.tif")
    assert result.exit_code == 1
    assert "folder" in result.output and "does not exist" in result.output


def test_version_and_module_entry(cli):
    result = cli("--version")
    assert result.exit_code == 0 and "cloudfree, version" in result.output


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "cloudfree", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("cloudfree, version ")


def test_block_and_threads_beyond_memory_are_refused_before_any_work(tmp_path, cli,
                                                                      monkeypatch):
    """The windows classified at once must fit in memory: on a machine of 16 MiB the 512 px
    scene in one 512 px window (about 12 MiB) runs, in four 256 px windows on four threads it
    runs, and two dates of it at once are refused in a line naming the options."""
    monkeypatch.setattr("cloudfree.core.memory.total_memory", lambda: 16 * 2**20)
    assert cli("mask", FLOODS_S2, "-o", tmp_path / "one.tif", "--block", "512").exit_code == 0
    assert cli("mask", FLOODS_S2, "-o", tmp_path / "four.tif", "--block", "256",
               "--threads", "4").exit_code == 0
    reference = tmp_path / "other_date.tif"
    data, profile = read_stack(FLOODS_S2, 512)
    write_stack(reference, np.roll(data, 7, axis=2), profile)
    result = cli("mask", FLOODS_S2, "-o", tmp_path / "two.tif", "--reference", reference,
                 "--threads", "2")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: --block 512 with --threads 2 needs about 24 MiB for the windows classified at "
        "once; this machine has 16 MiB: give a smaller --block SIZE or --threads N")
    assert not (tmp_path / "two.tif").exists()


def reflectance_of(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open_sentinel2(path) as s2:
        return s2.read()


def test_bright_land_is_masked_but_grows_no_buffer():
    """The cloud-free Sen1Floods11 chip's roofs, roads and greenhouses score as cloud, in specks
    and in blocks, some bright enough (a score of 0.5 or more) or dense enough to pass for a
    cloud's pixels on their own: they stay masked, but with no confident cloud near and no haze
    around, none grows a buffer, while the summer sample's real clouds grow nearly all of it."""
    refl, valid = reflectance_of(FLOODS_S2)
    bare, score = classify(refl, valid, MaskParams(land=False))  # all of them
    specks = bare == CLOUD
    near = ndimage.uniform_filter(specks.astype(np.float32), 7, mode="constant") * 49
    alike = specks & ((near > 8.5) | (score >= SEED_SCORE))  # cloud-like on their own
    assert alike.sum() > 1000 and (specks & (score >= SEED_SCORE)).sum() > 100
    assert not (seed_reach(specks, score, valid) > 0).any()
    buffered, _ = classify(refl, valid, MaskParams(buffer=5, land=False))
    np.testing.assert_array_equal(buffered == CLOUD, specks)

    refl, valid = reflectance_of(SUMMER_S2)
    bare, score = classify(refl, valid)
    cloud = bare == CLOUD
    assert (seed_reach(cloud, score, valid) > 0).sum() > 0.99 * cloud.sum()
    buffered = classify(refl, valid, MaskParams(buffer=5))[0] == CLOUD
    full = grow(cloud, 5)  # every cloud pixel's buffer: a few wisps far from the cores lose it
    assert (buffered <= full).all() and (full & ~buffered).mean() < 0.01


def test_shadow_test_and_seeding_take_their_filters_shortcuts_exactly():
    """The shadow test's 5 x 5 median of the dark pixels is taken as a count, the seeding skips
    the haze where every seed has confident cloud near and the box means their weights where
    every pixel is valid, and the confirmation by the parallax shares the seeding's share of
    cloud around each pixel: the same pixels as the filters in full, on the summer sample whole
    and with a corner of it nodata."""
    refl, whole = reflectance_of(SUMMER_S2)
    holed = whole.copy()
    holed[:40, :60] = False
    for valid in (whole, holed):
        classes, score = classify(refl, valid, MaskParams(shadow=True))
        index = {b: i for i, b in enumerate(BANDS)}
        stats = combine_shadow_stats([shadow_thresholds(refl, valid)])
        dark = (((refl[index["B08"]] + refl[index["B11"]]) / 2 < stats.csi)
                & (refl[index["B02"]] < stats.blue) & valid)
        median = ndimage.median_filter(dark.astype(np.uint8), size=5, mode="reflect") > 0
        lit = np.isin(classes, (CLEAR, SHADOW))
        assert (classes == SHADOW).sum() > 1000
        np.testing.assert_array_equal(classes == SHADOW, median & lit)

        cloud, score = classes == CLOUD, np.nan_to_num(score)
        weight = valid.astype(np.float32)

        def mean(x, where, size):
            where = where.astype(np.float32)
            return ndimage.uniform_filter(x * where, size, mode="reflect") / np.maximum(
                ndimage.uniform_filter(where, size, mode="reflect"), 1e-6)

        near = ndimage.uniform_filter(cloud.astype(np.float32), 7, mode="reflect") * 49
        seeds = cloud & ((near > 8.5) | (score >= SEED_SCORE))
        share = mean(cloud.astype(np.float32), weight, 31)
        extent = share >= SEED_EXTENT
        confident = cloud & ((share >= 0.5) | ((score >= 0.8) & extent))
        backed = ndimage.maximum_filter(confident, 101, mode="reflect")
        hazy = (mean((score > 0.05).astype(np.float32), valid & ~cloud, 15) >= 0.7) & extent
        np.testing.assert_array_equal(seed_reach(cloud, score, valid) > 0,
                                      seeds & (backed | hazy))
        np.testing.assert_array_equal(  # the share of cloud computed once for both
            confirmed_reach(refl, BANDS, cloud, score, valid) > 0,
            (seed_reach(cloud, score, valid, cloud_parallax(refl, BANDS, cloud)) > 0))


def test_a_small_patch_dim_at_945_nm_is_bright_land():
    """A cloud's top lies above much of the water vapour, so a cloud is brighter at 945 nm
    against 865 nm than the ground around it; a roof is not. On the cloud-free Sen1Floods11
    chip, a flat bright patch of 10 x 10 px is left clear where its B09 / B8A is 0.85 of the
    land's around it, and kept as cloud where it is 1.15 of it, where it is larger than a patch
    the rule judges, or where it touches the array's edge (its land unseen). The bundled summer
    cumulus keeps its cloud."""
    from cloudfree.mask import bright_land as module

    chip, valid = reflectance_of(FLOODS_S2)
    band = {b: chip[i].copy() for i, b in enumerate(BANDS)}
    land = band["B09"][valid].sum() / band["B8A"][valid].sum()

    def patch(rows: slice, cols: slice, ratio: float) -> np.ndarray:
        b = {k: v.copy() for k, v in band.items()}
        cloud = np.zeros(valid.shape, bool)
        cloud[rows, cols] = True
        b["B8A"][cloud] = 0.4
        b["B09"][cloud] = 0.4 * ratio * land
        return module.vapour_land(b, cloud, valid) & cloud

    middle = slice(100, 110)
    assert patch(middle, middle, 0.85).sum() == 100
    assert not patch(middle, middle, 1.15).any()
    large = slice(100, 101 + module.VAPOUR_EXTENT)
    assert not patch(large, large, 0.85).any()
    assert not patch(slice(0, 10), middle, 0.85).any()
    summer, summer_valid = reflectance_of(SUMMER_S2)
    with_rule = classify(summer, summer_valid)[0] == CLOUD
    kept = (classify(summer, summer_valid, MaskParams(land=False))[0] == CLOUD)
    assert with_rule.sum() > 0.95 * kept.sum()


def test_the_water_vapours_patches_are_judged_alike_in_windows():
    """Blocks of the summer cumulus's core set into the cloud-free Sen1Floods11 chip, B09 in the
    chip's air: a 12 x 12 px block dim at 945 nm (B09 at 0.6 of that) is left clear, one as
    bright there as a cloud is kept, and a window with the mask's context classifies them as
    the whole chip does."""
    chip, valid = reflectance_of(FLOODS_S2)
    cumulus, cumulus_valid = reflectance_of(SUMMER_S2)
    score = classify(cumulus, cumulus_valid)[1]
    core = cumulus[:, score >= 0.9].mean(1)
    core = in_scene_air(core, land_vapour(chip, valid) / land_vapour(cumulus, score < 0.05))
    scene = chip.copy()
    dim = core.copy()
    dim[BANDS.index("B09")] *= 0.6
    scene[:, 250:262, 200:212] = dim[:, None, None]
    scene[:, 250:262, 350:362] = core[:, None, None]
    params = MaskParams(buffer=5)
    whole = classify(scene, valid, params)[0]
    assert not (whole[250:262, 200:212] == CLOUD).any()
    assert (whole[250:262, 350:362] == CLOUD).all()
    assert params.context < 250 and 262 + params.context < scene.shape[1]
    for cut in (250, 256, 262):  # each window's edge within the mask's context of the blocks
        top = classify(scene[:, :cut + params.context], valid[:cut + params.context], params)[0]
        np.testing.assert_array_equal(top[:cut], whole[:cut])
        low = classify(scene[:, cut - params.context:], valid[cut - params.context:], params)[0]
        np.testing.assert_array_equal(low[params.context:], whole[cut:])
