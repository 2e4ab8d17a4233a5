"""`remove --reference`: other dates fill the clouds they see clear; the model fills the rest.

The scenes: the real clear winter SEN12MS-CR patch with the real summer cumulus pasted over it
(the summer pixels where its mask says cloud) is the target, the clear image its truth; the hazy
winter image of the same place (another date, no cloud by the mask) is the reference.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S2, SUMMER_S1, SUMMER_S2, WINTER_CLEAR, WINTER_S1, WINTER_S2
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window
from s2_builders import coarsen_like_l1c, write_safe
from scipy import ndimage

from cloudfree.core.threads import thread_pool
from cloudfree.dates import (
    agreement,
    joint_fit,
    references,
    similar_pixels,
    statistics,
    weights,
)
from cloudfree.dates import fill as reference_fill
from cloudfree.dates import residual as local_residual
from cloudfree.dates.fill import ReferenceBlock, ReferenceFill
from cloudfree.dates.opening import open_references
from cloudfree.dates.references import acquisition_date, change_threshold_db, open_reference
from cloudfree.dates.report import OBSERVED, SINGLE_DATE, SOURCE_NODATA
from cloudfree.dates.residual import REACH, carry_residual
from cloudfree.fill.local import LocalFillParams
from cloudfree.fill.restore import RestoreParams
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, MaskParams, classify
from cloudfree.mask.haze import reach as haze_reach
from cloudfree.pipeline.options import (
    EngineOptions,
    FillOptions,
    OutputOptions,
    ReferenceOptions,
)
from cloudfree.pipeline.remove import remove_scene, restore_dates


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.tags()


def write(path, data, profile, **changes):
    with rasterio.open(path, "w", **{**profile, **changes}) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, pasted_cloud):
    """Target (cumulus pasted on the clear winter patch: ``pasted_cloud``), its cloud, and the
    truth; ``folder`` is this module's own."""
    folder = tmp_path_factory.mktemp("refs")
    return {"folder": folder, **{key: pasted_cloud[key]
                                 for key in ("target", "cloud", "truth", "profile")}}


@pytest.fixture(scope="module")
def winter_fit(scenes):
    """The clear winter patch (reflectance, valid), the summer cumulus' reflectance, and the
    other winter date fitted to the clear patch by a line per band on the land outside the
    pasted cloud: the dates' prediction."""
    with open_sentinel2(WINTER_CLEAR) as s2:
        truth, valid = s2.read()
    with open_sentinel2(WINTER_S2) as s2:
        other = s2.read()[0]
    with open_sentinel2(SUMMER_S2) as s2:
        summer = s2.read()[0]
    land = ~scenes["cloud"]
    predicted = np.stack([np.polyval(np.polyfit(o[land], t[land], 1), o)
                          for o, t in zip(other, truth, strict=True)]).astype(np.float32)
    return truth, valid, summer, predicted


def psnr(a, b, where):
    diff = (a[:, where].astype(np.float64) - b[:, where]) / 10000
    return 10 * np.log10(1 / np.mean(diff ** 2))


def test_reference_in_another_crs_fills_the_cloud(scenes, tmp_path):
    src, profile, _ = read(WINTER_S2)
    transform, width, height = calculate_default_transform(
        profile["crs"], "EPSG:4326", profile["width"], profile["height"],
        *rasterio.transform.array_bounds(profile["height"], profile["width"],
                                         profile["transform"]))
    warped = np.zeros((13, height, width), np.uint16)
    reproject(src, warped, src_transform=profile["transform"], src_crs=profile["crs"],
              dst_transform=transform, dst_crs="EPSG:4326", resampling=Resampling.bilinear,
              src_nodata=0, dst_nodata=0)
    ref = write(tmp_path / "ref_4326.tif", warped, profile, crs="EPSG:4326",
                transform=transform, width=width, height=height, nodata=0)
    out, src_map = tmp_path / "out.tif", tmp_path / "src.tif"
    summary = remove_scene(scenes["target"], None, out, dates=ReferenceOptions(references=[ref]),
                           outputs=OutputOptions(source_out=src_map), quiet=True)
    median = tmp_path / "median.tif"
    remove_scene(scenes["target"], None, median, engine=EngineOptions(model="median-fill"),
                 quiet=True)
    result, out_profile, tags = read(out)
    assert out_profile["crs"] == scenes["profile"]["crs"]
    assert out_profile["transform"] == scenes["profile"]["transform"]
    cloud, truth = scenes["cloud"], scenes["truth"]
    sources = read(src_map)[0][0]
    assert (sources[cloud] == 1).mean() > 0.95  # the reference saw the cumulus' place clear
    gained = psnr(result, truth, cloud) - psnr(read(median)[0], truth, cloud)
    assert gained > 3, gained
    assert summary["references"][0]["used"]
    assert summary["pixels_by_source"]["references"] == (sources == 1).sum()
    assert json.loads(tags["REFERENCES"])[0]["filled_pixels"] == (sources == 1).sum()


@pytest.fixture(scope="module")
def overcast(scenes):
    """A reference of real cloud pixels only (the summer cumulus spread over the whole patch)."""
    summer = read(SUMMER_S2)[0]
    _, (rows, cols) = ndimage.distance_transform_edt(~scenes["cloud"], return_indices=True)
    return write(scenes["folder"] / "overcast.tif", summer[:, rows, cols], scenes["profile"])


def test_no_clear_reference_gives_the_plain_remove_bit_for_bit(scenes, overcast, tmp_path):
    plain, with_ref = tmp_path / "plain.tif", tmp_path / "ref.tif"
    # with references the shadows are left as they are by default
    remove_scene(scenes["target"], WINTER_S1, plain, inputs=InputOptions(s1_aligned=True),
                 mask_params=MaskParams(buffer=5, shadow=False), quiet=True)
    summary = remove_scene(scenes["target"], WINTER_S1, with_ref,
                           inputs=InputOptions(s1_aligned=True),
                           dates=ReferenceOptions(references=[overcast]), quiet=True)
    assert summary["references"][0]["used"] is False
    assert summary["pixels_by_source"]["references"] == 0
    np.testing.assert_array_equal(read(plain)[0], read(with_ref)[0])


def test_overcast_reference_is_ignored_beside_a_clear_one(scenes, overcast, tmp_path):
    out, src_map = tmp_path / "out.tif", tmp_path / "src.tif"
    summary = remove_scene(scenes["target"], None, out,
                           dates=ReferenceOptions(references=[overcast, WINTER_S2]),
                           outputs=OutputOptions(source_out=src_map), quiet=True)
    used = {r["index"]: r["used"] for r in summary["references"]}
    assert used == {1: False, 2: True}
    sources = read(src_map)[0][0]
    assert not (sources == 1).any() and (sources[scenes["cloud"]] == 2).mean() > 0.95


def test_a_target_almost_all_cloud_takes_its_reference_as_it_is(scenes, overcast, tmp_path):
    # real cloud everywhere but a 24 px corner of the clear winter date: 576 pixels clear in
    # both, too few to fit a line, so the reference, the same date 3 % brighter (another
    # illumination), is taken nearly as it is
    corner = np.zeros(scenes["cloud"].shape, bool)
    corner[:24, :24] = True
    truth, profile = scenes["truth"], scenes["profile"]
    target = write(tmp_path / "target_20171201.tif",
                   np.where(corner, truth, read(overcast)[0]), profile)
    reference = write(tmp_path / "ref_20171211.tif", (truth * 1.03).astype(np.uint16), profile)
    out, src_map, median = tmp_path / "out.tif", tmp_path / "src.tif", tmp_path / "median.tif"
    summary = remove_scene(target, None, out, dates=ReferenceOptions(references=[reference]),
                           outputs=OutputOptions(source_out=src_map), quiet=True)
    remove_scene(target, None, median, engine=EngineOptions(model="median-fill"), quiet=True)
    (reference,) = summary["references"]
    # counted without the cloud buffer (with it, 19 x 19), as no date shares 1000 with it
    assert reference["used"] and 540 < reference["common_clear_pixels"] < 1000, reference
    cloud = classify(read(target)[0].astype(np.float32) / 10000, None, MaskParams())[0] == CLOUD
    assert cloud.mean() > 0.95
    assert (read(src_map)[0][0][cloud] == 1).mean() > 0.95
    gained = psnr(read(out)[0], truth, cloud) - psnr(read(median)[0], truth, cloud)
    assert gained > 3, gained


def test_a_target_almost_all_cloud_still_gets_the_level_of_its_reference_right(scenes, overcast,
                                                                              tmp_path):
    # the same 24 px corner (576 pixels clear in both, too few for a line): a reference 400 DN
    # brighter than the truth everywhere is brought down to its level, not taken as it is
    corner = np.zeros(scenes["cloud"].shape, bool)
    corner[:24, :24] = True
    truth, profile = scenes["truth"], scenes["profile"]
    target = write(tmp_path / "target_20171201.tif",
                   np.where(corner, truth, read(overcast)[0]), profile)
    brighter = write(tmp_path / "ref_20171211.tif", truth + np.uint16(400), profile)
    out = tmp_path / "out.tif"
    remove_scene(target, None, out, dates=ReferenceOptions(references=[brighter]), quiet=True)
    cloud = classify(read(target)[0].astype(np.float32) / 10000, None, MaskParams())[0] == CLOUD
    bias = (read(out)[0][:, cloud].astype(np.float64) - truth[:, cloud]).mean(axis=1)
    assert np.abs(bias).max() < 60, bias  # with no shift: about 215 DN


def test_a_few_hazy_pixels_do_not_set_the_level_of_a_whole_fill(scenes, overcast, tmp_path):
    # a 6 px gap in the cloud, hazed 400 DN brighter than the truth, is all the target shares
    # with a clear date of the truth (counted without the cloud buffer, as no date shares a
    # fit's worth): the shift its few pixels suggest is mostly not taken
    gap = np.zeros(scenes["cloud"].shape, bool)
    gap[:6, :6] = True
    truth, profile = scenes["truth"], scenes["profile"]
    target = write(tmp_path / "target_20171201.tif",
                   np.where(gap, truth + np.uint16(400), read(overcast)[0]), profile)
    reference = write(tmp_path / "ref_20171211.tif", truth, profile)
    out = tmp_path / "out.tif"
    summary = remove_scene(target, None, out, dates=ReferenceOptions(references=[reference]),
                           quiet=True)
    shared = summary["references"][0]["common_clear_pixels"]
    assert shared < 64, shared  # the other date finds them hazy: none may be shared at all
    cloud = classify(read(target)[0].astype(np.float32) / 10000, None, MaskParams())[0] == CLOUD
    bias = (read(out)[0][:, cloud].astype(np.float64) - truth[:, cloud]).mean(axis=1)
    assert np.abs(bias).max() < 250, bias  # taken in full, the shift gave about 400 DN


def test_a_date_sharing_almost_no_clear_pixel_does_not_outweigh_one_that_shares_some(
        scenes, overcast, tmp_path):
    # the target is cloud but for a 28 px square, so no date shares the 1000 clear pixels of a
    # fit. The truth shifted by 4 px (a poorly registered date) shares the square; another place
    # (the truth turned over, 1.5x as bright), cloudy over the square, shares nothing. Knowing
    # nothing of a date must not weigh more than knowing it fits poorly
    square = np.zeros(scenes["cloud"].shape, bool)
    square[192:220, 16:44] = True
    truth, profile = scenes["truth"], scenes["profile"]
    clouds = read(overcast)[0]
    target = write(tmp_path / "target_20171201.tif", np.where(square, truth, clouds), profile)
    shifted = write(tmp_path / "shifted_20171211.tif", np.roll(truth, (4, 4), (1, 2)), profile)
    elsewhere = write(tmp_path / "elsewhere_20170902.tif",
                      np.where(square, clouds, truth[:, ::-1, ::-1] * 1.5), profile)
    both, alone = tmp_path / "both.tif", tmp_path / "alone.tif"
    summary = remove_scene(target, None, both,
                           dates=ReferenceOptions(references=[shifted, elsewhere]), quiet=True)
    remove_scene(target, None, alone, dates=ReferenceOptions(references=[shifted]), quiet=True)
    shared = [r["common_clear_pixels"] for r in summary["references"]]
    assert 256 <= shared[0] < 1000 and shared[1] < 50, shared
    cloud = classify(read(target)[0].astype(np.float32) / 10000, None, MaskParams())[0] == CLOUD
    assert cloud.mean() > 0.95
    # with the other place weighing as a date known to fit well, this was 6 dB below
    assert psnr(read(both)[0], truth, cloud) > psnr(read(alone)[0], truth, cloud) - 0.5


def test_a_reference_zero_filled_without_declared_nodata_fills_nothing_there(scenes, tmp_path):
    # half of the clear winter date is zero-filled (a swath edge) and no nodata is declared,
    # as in SEN12MS-CR files: those pixels are not a date seen clear. A date all zeros is
    # left out, without a numerical warning from its (empty) shadow statistics
    ref, profile, _ = read(WINTER_S2)
    ref[:, :, 128:] = 0
    half = write(tmp_path / "half_20171211.tif", ref, {**profile, "nodata": None})
    empty = write(tmp_path / "empty_20171221.tif", ref * 0, {**profile, "nodata": None})
    out, src_map = tmp_path / "out.tif", tmp_path / "src.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        summary = remove_scene(scenes["target"], None, out,
                               dates=ReferenceOptions(references=[half, empty]),
                               outputs=OutputOptions(source_out=src_map), quiet=True)
    assert [r["used"] for r in summary["references"]] == [True, False]
    sources, result = read(src_map)[0][0], read(out)[0]
    cloud = scenes["cloud"]
    assert (sources[:, 128:][cloud[:, 128:]] == SINGLE_DATE).all()
    assert (sources[:, :128][cloud[:, :128]] == 1).mean() > 0.95
    assert summary["references"][0]["common_clear_pixels"] < 128 * 256
    # no fill from the zeros (but in B10, a few DN over this winter land, where one may round to 0)
    assert np.delete(result, BANDS.index("B10"), axis=0)[:, cloud].min() > 0


def test_source_map_values_and_colour_table(scenes, cli, tmp_path):
    # the reference without its lower half (nodata): the model fills the cloud there
    ref, profile, _ = read(WINTER_S2)
    ref[:, 128:] = 0
    half = write(tmp_path / "half.tif", ref, profile, nodata=0)
    target, _, _ = read(scenes["target"])
    target[:, :, :16] = 0  # and the target has nodata columns of its own
    target_path = write(tmp_path / "target.tif", target, profile, nodata=0)
    out, src_map, mask = tmp_path / "out.tif", tmp_path / "src.tif", tmp_path / "mask.tif"
    result = cli("remove", "--s2", target_path, "--reference", half, "-o", out,
                 "--source-out", src_map, "--mask-out", mask, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "reference half.tif covers only 50% of the scene" in result.stderr
    with rasterio.open(src_map) as ds:
        sources, colours = ds.read(1), ds.colormap(1)
    classes = read(mask)[0][0]
    cloud = classes == CLOUD
    assert set(np.unique(sources)) == {OBSERVED, 1, SINGLE_DATE, SOURCE_NODATA}
    assert (sources[:, :16] == SOURCE_NODATA).all() and (read(out)[0][:, :, :16] == 0).all()
    assert (sources[:128][cloud[:128]] == 1).mean() > 0.95
    assert (sources[128:][cloud[128:]] == SINGLE_DATE).all()  # no reference there
    # clear pixels beyond the haze ring keep their own value; the ring's hazy pixels are filled
    beyond_ring = ndimage.distance_transform_edt(classes != CLOUD) > LocalFillParams().ring
    assert (sources[(classes == 0) & beyond_ring] == OBSERVED).all()
    observed = sources == OBSERVED
    assert (read(out)[0][:, observed] == target[:, observed]).all()
    assert colours[1] != colours[SINGLE_DATE]
    counts = summary["pixels_by_source"]
    assert counts["references"] == (sources == 1).sum()
    assert counts["single_date_model"] == (sources == SINGLE_DATE).sum()
    # the one-line summary says how many pixels the other dates gave
    line = cli("remove", "--s2", target_path, "--reference", half, "-o", out, "--overwrite",
               "--quiet").output
    assert f"{counts['references']} pixels from other dates, the rest with median-fill" in line


def test_s1_change_keeps_a_changed_place_from_the_reference(scenes, tmp_path):
    s1, profile, _ = read(WINTER_S1)
    changed = s1.copy()
    rows, cols = np.nonzero(scenes["cloud"])
    r0, c0 = int(np.median(rows)) - 20, int(np.median(cols)) - 20
    changed[:, r0 : r0 + 40, c0 : c0 + 40] -= 10  # a flood: backscatter down 10 dB
    ref_s1 = write(tmp_path / "ref_s1.tif", changed, profile)
    src_map = tmp_path / "src.tif"
    remove_scene(scenes["target"], WINTER_S1, tmp_path / "out.tif",
                 engine=EngineOptions(model="median-fill"), inputs=InputOptions(s1_aligned=True),
                 dates=ReferenceOptions(references=[WINTER_S2], reference_s1=[ref_s1]),
                 outputs=OutputOptions(source_out=src_map), quiet=True)
    sources = read(src_map)[0][0]
    cloud = scenes["cloud"]
    inside = np.zeros(cloud.shape, bool)
    inside[r0 + 3 : r0 + 37, c0 + 3 : c0 + 37] = True
    assert (sources[inside & cloud] == SINGLE_DATE).all()
    assert (sources[~inside & cloud] == 1).mean() > 0.95  # unchanged S1: the reference
    assert 1.0 < change_threshold_db() < 6.0


def test_reference_dates_from_names_and_errors(scenes, tmp_path):
    with open_sentinel2(scenes["target"]) as s2:
        assert acquisition_date(s2).isoformat() == "2017-12-01"
    with open_sentinel2(WINTER_S2) as s2:
        assert acquisition_date(s2) is None
    with pytest.raises(Exception, match="needs the target's Sentinel-1"):
        remove_scene(scenes["target"], None, tmp_path / "o.tif",
                     dates=ReferenceOptions(references=[WINTER_S2], reference_s1=[WINTER_S1]),
                     quiet=True)
    with pytest.raises(Exception, match="source_out=PATH needs references=S2"):
        remove_scene(scenes["target"], WINTER_S1, tmp_path / "o.tif",
                     inputs=InputOptions(s1_aligned=True),
                     outputs=OutputOptions(source_out=tmp_path / "s.tif"), quiet=True)
    far = write(tmp_path / "far.tif", read(SUMMER_S2)[0], read(SUMMER_S2)[1])
    with pytest.raises(Exception, match="does not overlap"):
        remove_scene(scenes["target"], None, tmp_path / "o.tif",
                     dates=ReferenceOptions(references=[far]), quiet=True)
    assert not (tmp_path / "o.tif").exists()


def test_batch_gives_each_scene_its_nearest_dates(scenes, tmp_path, cli):
    root = tmp_path / "area"
    for name, s2 in (("a", scenes["target"]), ("b", WINTER_S2), ("c", WINTER_CLEAR)):
        date_ = {"a": "20171201", "b": "20171211", "c": "20180601"}[name]
        (root / name).mkdir(parents=True)
        (root / name / f"{name}_s2_{date_}.tif").symlink_to(s2)
        (root / name / f"{name}_s1_{date_}.tif").symlink_to(WINTER_S1)
    result = cli("batch", root, "-o", tmp_path / "out", "--references", 1, "--model",
                 "median-fill", "--stac", tmp_path / "stac", "--quiet")
    assert result.exit_code == 0, result.output
    item = json.loads((tmp_path / "stac" / "a" / "a.json").read_text())
    (recorded,) = item["properties"]["cloudfree:references"]
    assert recorded["date"] == "2017-12-11" and recorded["used"]
    by_source = item["properties"]["cloudfree:filled_pixels_by_source"]
    assert by_source["references"] == recorded["filled_pixels"] > 0
    expected = {"a": "b", "b": "a", "c": "b"}  # nearest dates first
    for name, ref in expected.items():
        tags = read(tmp_path / "out" / f"{name}.tif")[2]
        (used,) = json.loads(tags["REFERENCES"])
        assert used["path"].endswith(f"{ref}_s2_" + {"a": "20171201", "b": "20171211"}[ref]
                                     + ".tif")
    filled = json.loads(read(tmp_path / "out" / "a.tif")[2]["REFERENCES"])[0]["filled_pixels"]
    assert filled > 0.95 * scenes["cloud"].sum()  # the cumulus of a, filled from b
    result = cli("batch", root, "-o", tmp_path / "m", "--command", "mask", "--references", 1)
    assert result.exit_code == 2 and "--references 1: only for --command remove" in result.output


def test_batch_of_s2_dates_without_s1_runs_with_references(scenes, tmp_path, cli):
    # a flat folder of optical dates only: with --references each scene runs without S1, as
    # remove --reference does; without, so does the default (no network), while a network
    # needs an S1 and every scene fails as unpaired
    root = tmp_path / "dates"
    root.mkdir()
    (root / "a_20171201.tif").symlink_to(scenes["target"])
    (root / "b_20171211.tif").symlink_to(WINTER_S2)
    result = cli("batch", root, "-o", tmp_path / "out", "--references", 1, "--quiet")
    assert result.exit_code == 0, result.output
    alone = tmp_path / "alone.tif"
    remove_scene(scenes["target"], None, alone, dates=ReferenceOptions(references=[WINTER_S2]),
                 quiet=True)
    np.testing.assert_allclose(read(tmp_path / "out" / "a_20171201.tif")[0], read(alone)[0],
                               atol=1)  # the batch worker's threads sum in another order
    result = cli("batch", root, "-o", tmp_path / "plain", "--quiet")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plain" / "b_20171211.tif").exists()
    result = cli("batch", root, "-o", tmp_path / "net", "--model", "cloudfree-fillnet")
    assert result.exit_code == 1 and "unpaired: no Sentinel-1 file covers 50%" in result.output
    # scene folders: a scene with its S1 keeps it, one without runs without
    area = tmp_path / "area"
    for name, s2, s1 in (("a", scenes["target"], WINTER_S1), ("b", WINTER_S2, None)):
        (area / name).mkdir(parents=True)
        (area / name / f"{name}_s2_2017120{1 if name == 'a' else 9}.tif").symlink_to(s2)
        if s1 is not None:
            (area / name / f"{name}_s1.tif").symlink_to(s1)
    result = cli("batch", area, "-o", tmp_path / "out2", "--references", 1, "--model",
                 "median-fill", "--quiet")
    assert result.exit_code == 0, result.output
    assert read(tmp_path / "out2" / "a.tif")[2]["INPUT_S1"].endswith("a_s1.tif")
    assert "INPUT_S1" not in read(tmp_path / "out2" / "b.tif")[2]


def test_cli_errors_name_the_flags(scenes, cli, tmp_path):
    result = cli("remove", "--s2", scenes["target"], "--model", "cloudfree-fillnet", "-o",
                 tmp_path / "o.tif")
    assert result.exit_code == 2
    assert "model cloudfree-fillnet needs Sentinel-1: give --s1 PATH, or --model median-fill" \
        in result.output
    result = cli("remove", "--s2", scenes["target"], "--reference", WINTER_S2, "--reference",
                 WINTER_S2, "--reference-s1", "none", "-o", tmp_path / "o.tif")
    assert result.exit_code == 2 and "1 --reference-s1 S1 for 2 references" in result.output
    itself = scenes["target"].parent / "." / scenes["target"].name  # another spelling of the target
    result = cli("remove", "--s2", scenes["target"], "--reference", WINTER_S2, "--reference",
                 itself, "-o", tmp_path / "o.tif")
    assert result.exit_code == 2
    assert f"reference {scenes['target'].name} is the target scene itself" in result.output
    copy = tmp_path / "copy.tif"  # the same bytes under another name
    copy.write_bytes(scenes["target"].read_bytes())
    result = cli("remove", "--s2", scenes["target"], "--reference", copy, "-o", tmp_path / "o.tif")
    assert (result.exit_code, result.stderr) == (2, "Error: reference copy.tif is a copy of the "
                                                    "target scene (the same bytes): give other "
                                                    "dates of the place\n")
    result = cli("remove", "--s2", scenes["target"], "--reference", tmp_path / "gone.tif",
                 "-o", tmp_path / "o.tif")
    assert result.exit_code == 1 and f"reference {tmp_path / 'gone.tif'} does not exist" \
        in result.output
    text = tmp_path / "notes.tif"  # not a raster: named as the reference, not as the target
    text.write_text("not a raster")
    result = cli("remove", "--s2", scenes["target"], "--reference", text, "-o", tmp_path / "o.tif")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: reference {text} is not a raster GDAL can read")
    assert not (tmp_path / "o.tif").exists()


def test_fill_by_narrow_strips_is_the_fill_of_the_whole_block(scenes, monkeypatch, tmp_path):
    # the fill is computed strip by strip, one reference after another, to hold one
    # reference's arrays of one strip at a time; strips 40 columns wide (7 across the patch,
    # cutting the cumulus) give the same output, source map and change check bit for bit
    s1, profile, _ = read(WINTER_S1)
    s1[:, 100:140, 30:200] -= 10  # a change across several strips
    ref_s1 = write(tmp_path / "ref_s1.tif", s1, profile)
    outputs = []
    for columns in (reference_fill.STRIP_COLUMNS, 40):
        monkeypatch.setattr(reference_fill, "STRIP_COLUMNS", columns)
        out, src_map = tmp_path / f"out{columns}.tif", tmp_path / f"src{columns}.tif"
        remove_scene(scenes["target"], WINTER_S1, out, engine=EngineOptions(model="median-fill"),
                     inputs=InputOptions(s1_aligned=True),
                     dates=ReferenceOptions(references=[WINTER_S2, WINTER_CLEAR],
                                            reference_s1=[ref_s1, None]),
                     outputs=OutputOptions(source_out=src_map), quiet=True)
        outputs.append((read(out)[0], read(src_map)[0]))
    (whole, whole_src), (strips, strip_src) = outputs
    assert set(np.unique(whole_src)) >= {1, 2}
    np.testing.assert_array_equal(whole, strips)
    np.testing.assert_array_equal(whole_src, strip_src)


@pytest.mark.slow
def test_safe_reference_in_another_utm_zone_with_its_own_offset_and_date(scenes, tmp_path):
    # the hazy winter date as an L1C .SAFE: bands at native resolution (lossless JP2) on the
    # next UTM zone's 10 m grid, processing baseline 04.00 (DN + 1000), its date in the name
    # or, for a folder renamed by a user, only in MTD_MSIL1C.xml
    src, profile, _ = read(WINTER_S2)
    transform, width, height = calculate_default_transform(
        profile["crs"], "EPSG:32632", profile["width"], profile["height"],
        *rasterio.transform.array_bounds(profile["height"], profile["width"],
                                         profile["transform"]), resolution=10)
    width, height = -(-width // 6) * 6, -(-height // 6) * 6  # whole 60 m pixels
    warped = np.zeros((13, height, width), np.uint16)
    reproject(src, warped, src_transform=profile["transform"], src_crs=profile["crs"],
              dst_transform=transform, dst_crs="EPSG:32632", resampling=Resampling.bilinear,
              src_nodata=0, dst_nodata=0)
    grid = {"crs": CRS.from_epsg(32632), "transform": transform}
    named = write_safe(tmp_path / "S2B_MSIL1C_20171211T101029_N0400_R022_T32ULU_"
                       "20171211T121507.SAFE", coarsen_like_l1c(warped), grid, offset=1000)
    renamed = write_safe(tmp_path / "winter.SAFE", coarsen_like_l1c(warped), grid,
                         offset=1000, start="2017-12-21T10:10:31.026Z")
    median = tmp_path / "median.tif"
    remove_scene(scenes["target"], None, median, engine=EngineOptions(model="median-fill"),
                 quiet=True)
    cloud, truth = scenes["cloud"], scenes["truth"]
    for safe, day in ((named, "2017-12-11"), (renamed, "2017-12-21")):
        out, src_map = tmp_path / f"{safe.stem}.tif", tmp_path / f"{safe.stem}_src.tif"
        summary = remove_scene(scenes["target"], None, out,
                               dates=ReferenceOptions(references=[safe]),
                               outputs=OutputOptions(source_out=src_map), quiet=True)
        (used,) = summary["references"]
        assert used["date"] == day and used["used"]
        result, out_profile, _ = read(out)
        assert out_profile["crs"] == profile["crs"]
        assert out_profile["transform"] == profile["transform"]
        assert (read(src_map)[0][0][cloud] == 1).mean() > 0.95
        gained = psnr(result, truth, cloud) - psnr(read(median)[0], truth, cloud)
        assert gained > 3, gained


def test_batch_skips_a_reference_elsewhere_and_takes_the_next_date(scenes, tmp_path, cli):
    # d is another place (the summer patch) one day from a: nearest to a by date, but it does
    # not overlap a, so a takes b instead, and d (overlapping no other scene) runs without one
    root = tmp_path / "area"
    for name, s2, s1, date_ in (("a", scenes["target"], WINTER_S1, "20171201"),
                                ("b", WINTER_S2, WINTER_S1, "20171211"),
                                ("d", SUMMER_S2, SUMMER_S1, "20171202")):
        (root / name).mkdir(parents=True)
        (root / name / f"{name}_s2_{date_}.tif").symlink_to(s2)
        (root / name / f"{name}_s1_{date_}.tif").symlink_to(s1)
    report = tmp_path / "report.json"
    result = cli("batch", root, "-o", tmp_path / "out", "--references", 1, "--model",
                 "median-fill", "--report", report)
    assert result.exit_code == 0, result.output
    statuses = {r["scene"]: r["status"] for r in json.loads(report.read_text())["scenes"]}
    assert statuses == {"a": "ok", "b": "ok", "d": "ok"}
    assert "a_s2_20171201.tif: reference d_s2_20171202.tif skipped" in result.output
    (used,) = json.loads(read(tmp_path / "out" / "a.tif")[2]["REFERENCES"])
    assert used["path"].endswith("b_s2_20171211.tif") and used["filled_pixels"] > 0
    assert json.loads(read(tmp_path / "out" / "d.tif")[2]["REFERENCES"]) == []
    # the library says the same, and without reference_count the disjoint date is an error
    out = tmp_path / "a.tif"
    summary = remove_scene(scenes["target"], WINTER_S1, out,
                           engine=EngineOptions(model="median-fill"),
                           inputs=InputOptions(s1_aligned=True),
                           dates=ReferenceOptions(references=[SUMMER_S2, WINTER_S2],
                                                  reference_count=1),
                           quiet=True)
    assert [r["path"] for r in summary["references"]] == [str(WINTER_S2)]
    (skipped,) = summary["references_skipped"]
    assert skipped["path"] == str(SUMMER_S2) and "does not overlap" in skipped["reason"]
    with pytest.raises(Exception, match="does not overlap"):
        remove_scene(scenes["target"], WINTER_S1, tmp_path / "b.tif",
                     engine=EngineOptions(model="median-fill"),
                     inputs=InputOptions(s1_aligned=True),
                     dates=ReferenceOptions(references=[SUMMER_S2, WINTER_S2]), quiet=True)


def darkened_square(image, cloud):
    """The largest square (up to 30 px) deep inside ``cloud``, and ``image`` darkened there by
    half (a synthetic change: a flood, a harvest)."""
    inside = ndimage.distance_transform_cdt(cloud, metric="chessboard")
    r, c = np.unravel_index(np.argmax(inside), cloud.shape)
    half = min(15, int(inside[r, c]) - 1)
    square = np.zeros(cloud.shape, bool)
    square[r - half : r + half, c - half : c + half] = True
    assert cloud[square].all() and square.sum() >= 400
    darkened = image.copy()
    darkened[:, square] //= 2
    return square, darkened


def test_a_date_the_others_contradict_is_dropped_where_it_changed(scenes, monkeypatch,
                                                                 tmp_path):
    # three dates of the place: the hazy winter image (11 Dec), the same with another
    # calibration (21 Dec), and the nearest (3 Dec, the largest weight) on which a square
    # inside the cumulus turned dark (a synthetic flood). The fits cannot see the square (the
    # target is cloudy there), so only the other dates' agreement can keep it out.
    winter, profile, _ = read(WINTER_S2)
    square, flooded = darkened_square(winter, scenes["cloud"])
    a = write(tmp_path / "a_20171211.tif", winter, profile)
    b = write(tmp_path / "b_20171221.tif", (winter * 1.05 + 100).astype(np.uint16), profile)
    c = write(tmp_path / "c_20171203.tif", flooded, profile)

    def fill(references, agreement, name, pairs=joint_fit.KEPT, temporal=False):
        # pairs=0: the single dates alone (no group, no similar pixels)
        # the agreement check is that of the single-date mask: the temporal mask judges the
        # dates per pixel itself (below). The fits keep the cloud buffer: counting the ring
        # beside the cumulus brings both fills nearer the truth in the square (RMSE 231 and
        # 223 DN against 259 and 265), by different amounts under the two masks
        monkeypatch.setattr(reference_fill, "AGREEMENT", agreement)
        monkeypatch.setattr(statistics, "RING_HAZE", None)
        monkeypatch.setattr(joint_fit, "KEPT", pairs)
        monkeypatch.setattr(similar_pixels, "SIMILAR", similar_pixels.SIMILAR if pairs else None)
        remove_scene(scenes["target"], None, tmp_path / name,
                     dates=ReferenceOptions(references=references, temporal_mask=temporal),
                     outputs=OutputOptions(source_out=tmp_path / f"src_{name}"), quiet=True)
        return read(tmp_path / name)[0].astype(np.int32), read(tmp_path / f"src_{name}")[0][0]

    checked, checked_src = fill([a, b, c], reference_fill.AGREEMENT, "checked.tif")
    unchecked, unchecked_src = fill([a, b, c], None, "unchecked.tif")
    without_c, _ = fill([a, b], None, "without_c.tif", pairs=0)
    # without the check the nearest date leads inside the square, and its flood shows
    assert (unchecked_src[square] == 3).all()
    assert np.abs(unchecked[:, square] - without_c[:, square]).mean() > 100
    # with it, the square takes the two dates that agree, one by one (the pairs of dates are
    # left out where a date is dropped), as if the flooded one were not given
    assert not (checked_src[square] == 3).any()
    assert np.abs(checked[:, square] - without_c[:, square]).max() <= 1
    # where the three agree, nothing changes
    inner = ndimage.binary_erosion(~square, iterations=1)
    np.testing.assert_array_equal(checked[:, inner], unchecked[:, inner])
    # the temporal mask (--temporal-mask) keeps the flood out without the check:
    # the flooded date darkens in NIR and SWIR against the others there, so it gets no weight
    judged, judged_src = fill([a, b, c], None, "judged.tif", temporal=True)
    assert not (judged_src[square] == 3).any()
    assert np.abs(judged[:, square] - without_c[:, square]).mean() < 20  # DN; 349 unchecked


def test_a_date_that_far_outweighs_those_contradicting_it_is_kept(scenes, monkeypatch,
                                                                    tmp_path):
    # the dates that contradict the nearest one are half a year away: their time factors
    # leave them a tiny share of its weight, so their agreement does not overrule it (on a
    # month whose fields change fast, the months around agree on an error they share)
    winter, profile, _ = read(WINTER_S2)
    square, changed = darkened_square(winter, scenes["cloud"])
    far = [write(tmp_path / "a_20180611.tif", winter, profile),
           write(tmp_path / "b_20180621.tif", (winter * 1.05 + 100).astype(np.uint16), profile)]
    near = write(tmp_path / "c_20171203.tif", changed, profile)

    def fill(outweighed, name):
        monkeypatch.setattr(agreement, "OUTWEIGHED", outweighed)
        remove_scene(scenes["target"], None, tmp_path / name,
                     dates=ReferenceOptions(references=[*far, near], temporal_mask=False),
                     outputs=OutputOptions(source_out=tmp_path / f"src_{name}"), quiet=True)
        return read(tmp_path / name)[0].astype(np.int32), read(tmp_path / f"src_{name}")[0][0]

    kept, kept_src = fill(agreement.OUTWEIGHED, "kept.tif")
    dropped, dropped_src = fill(0.0, "dropped.tif")
    # any contradiction drops it (the check before the weights counted): the far dates fill
    assert not (dropped_src[square] == 3).any()
    # weighed against them, the near date stays, with what it saw: darker by about half
    assert (kept_src[square] == 3).all()
    assert kept[:, square].mean() < 0.75 * dropped[:, square].mean()
    inner = ndimage.binary_erosion(~square, iterations=1)
    np.testing.assert_array_equal(kept[:, inner], dropped[:, inner])


def test_two_dates_regressed_together_give_what_neither_gives_alone(scenes, monkeypatch,
                                                                   tmp_path):
    # two dates that differ from the truth by the real texture of another place (the
    # Sen1Floods11 chip), once and twice over: each date alone, and any weighted mean of
    # the two, carries the texture, which no line per band takes out; the two regressed
    # together (joint_fit.py) give the truth back (2 a - b), up to the fit's ridge
    truth, profile = scenes["truth"].astype(np.float64), scenes["profile"]
    with rasterio.open(FLOODS_S2) as ds:
        other = ds.read(window=rasterio.windows.Window(0, 0, 256, 256)).astype(np.float64)
    texture = 0.5 * (other - other.mean(axis=(1, 2), keepdims=True))
    a = write(tmp_path / "a_20171203.tif", np.clip(truth + texture, 1, None).astype(np.uint16),
              profile)
    b = write(tmp_path / "b_20171211.tif", np.clip(truth + 2 * texture, 1, None).astype(np.uint16),
              profile)
    cloud = scenes["cloud"]

    def fill(kept, name):  # kept=0: the single dates alone
        monkeypatch.setattr(joint_fit, "KEPT", kept)
        # the groups alone: the texture is exactly linear in the two dates, which the pair's
        # fit gives back and a search of similar pixels only approaches (with them, 39.9 dB)
        monkeypatch.setattr(similar_pixels, "SIMILAR", None)
        out, src = tmp_path / name, tmp_path / f"src_{name}"
        remove_scene(scenes["target"], None, out, dates=ReferenceOptions(references=[a, b]),
                     outputs=OutputOptions(source_out=src), quiet=True)
        return read(out)[0], read(src)[0][0]

    together, source = fill(joint_fit.KEPT, "pair.tif")
    alone, _ = fill(0, "single.tif")
    assert psnr(alone, truth, cloud) < 40
    assert psnr(together, truth, cloud) > psnr(alone, truth, cloud) + 5
    # the source map names the pair's nearer date, a
    assert (source[cloud] == 1).mean() > 0.95


def test_a_group_fitted_on_few_pixels_leans_towards_the_plain_mean_of_its_dates(scenes):
    # two dates that differ from the truth by the real texture of another place, once added
    # and once taken away: their plain mean is the truth. Fitted on 400 pixels (a target
    # almost all cloud), the pair's ridge leans towards that mean, so it predicts the whole
    # image within a DN; leaning towards no coefficients at all, it was 124 DN off on average
    truth = scenes["truth"].astype(np.float64) / 10000
    with rasterio.open(FLOODS_S2) as ds:
        other = ds.read(window=rasterio.windows.Window(0, 0, 256, 256)).astype(np.float64)
    texture = 0.5 * (other - other.mean(axis=(1, 2), keepdims=True)) / 10000
    dates = [truth + texture, truth - texture]
    fitted = np.zeros(truth.shape[1:], bool)
    fitted[:20, :20] = True
    sums = joint_fit.JointSums.of([d[:, fitted] for d in dates], truth[:, fitted])
    coef, variance = sums.solve(stride=1, fewest=joint_fit.FEW_PIXELS)
    predicted = joint_fit.JointFit((1, 2), coef, variance).predict(
        [d.astype(np.float32) for d in dates])
    assert np.abs(predicted - truth).max() * 10000 < 1


def three_textured_dates(scenes, folder):
    """Three dates that differ from the truth by the real textures of two other places (the
    Sen1Floods11 chip's quarters): one texture, the other, and both."""
    truth, profile = scenes["truth"].astype(np.float64), scenes["profile"]
    with rasterio.open(FLOODS_S2) as ds:
        other = ds.read().astype(np.float64)
    first, second = (0.5 * (part - part.mean(axis=(1, 2), keepdims=True))
                     for part in (other[:, :256, :256], other[:, 256:, 256:]))
    return [write(folder / f"{name}.tif", np.clip(truth + texture, 1, None).astype(np.uint16),
                  profile)
            for name, texture in (("a_20171203", first), ("b_20171211", second),
                                  ("c_20171219", first + second))]


@pytest.mark.slow
def test_the_dates_regressed_all_at_once_give_what_no_pair_gives(scenes, overcast, monkeypatch,
                                                                 tmp_path):
    # no date alone and no pair takes the textures out, the three together do (a + b - c), as
    # the group of the nearest mostly clear dates (joint_fit.py); an overcast date given too is
    # left out of the group (with it, no pixel would be clear in all)
    dates, cloud, truth = three_textured_dates(scenes, tmp_path), scenes["cloud"], scenes["truth"]

    def fill(whole, name, references=dates):
        monkeypatch.setattr(joint_fit, "WHOLE_CLEAR", whole)
        remove_scene(scenes["target"], None, tmp_path / name,
                     dates=ReferenceOptions(references=references), quiet=True)
        return read(tmp_path / name)[0]

    mostly = joint_fit.WHOLE_CLEAR
    together, pairs = fill(mostly, "whole.tif"), fill(None, "pairs.tif")
    assert psnr(together, truth, cloud) > psnr(pairs, truth, cloud) + 5
    beside = fill(mostly, "overcast.tif", [*dates, overcast])
    assert psnr(beside, truth, cloud) > psnr(pairs, truth, cloud) + 5
    every = fill(0.0, "every.tif", [*dates, overcast])
    assert psnr(every, truth, cloud) < psnr(pairs, truth, cloud) + 1


def test_on_a_target_almost_all_cloud_the_dates_are_regressed_on_every_clear_pixel(
        scenes, overcast, monkeypatch, tmp_path):
    # real cloud everywhere but a 30 px corner (900 pixels clear): the three textured dates'
    # group is fitted on every one of them (joint_fit.FEW_PIXELS); on every other one, or with
    # a fit's worth of pixels asked for, it is not fitted, and the textures stay
    corner = np.zeros(scenes["cloud"].shape, bool)
    corner[:30, :30] = True
    truth = scenes["truth"]
    target = write(tmp_path / "target_20171201.tif",
                   np.where(corner, truth, read(overcast)[0]), scenes["profile"])
    dates = three_textured_dates(scenes, tmp_path)

    def fill(fewest, name):
        monkeypatch.setattr(joint_fit, "FEW_PIXELS", fewest)
        remove_scene(target, None, tmp_path / name, dates=ReferenceOptions(references=dates),
                     quiet=True)
        return read(tmp_path / name)[0]

    cloud = classify(read(target)[0].astype(np.float32) / 10000, None, MaskParams())[0] == CLOUD
    few, full = fill(joint_fit.FEW_PIXELS, "few.tif"), fill(1000, "full.tif")
    # 32.7 against 29.2 dB: on so few pixels the fit's ridge keeps it from the exact a + b - c
    assert psnr(few, truth, cloud) > psnr(full, truth, cloud) + 3


def open_descriptors(path) -> int:
    """File descriptors of this process open on ``path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == os.path.realpath(path))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts /proc/self/fd")
def test_a_reference_read_on_many_threads_holds_one_handle_within_its_cache_share(
        scenes, monkeypatch, tmp_path):
    # every thread reads a reference through one set of handles (one handle per thread would
    # each cache its blocks), closed after its share of REFERENCE_CACHE_MB has been read
    path = write(tmp_path / "ref_20171211.tif", *read(WINTER_S2)[:2])
    windows = [Window(c, r, 64, 64) for r in range(0, 256, 64) for c in range(0, 256, 64)]
    for budget_mb, held in ((references.REFERENCE_CACHE_MB, 1), (0, 0)):
        monkeypatch.setattr(references, "REFERENCE_CACHE_MB", budget_mb)
        with open_sentinel2(scenes["target"]) as target:
            ref = open_reference(1, open_sentinel2(path), target, MaskParams(), count=4)
            with closing(ref):
                whole = ref.read(Window(0, 0, 256, 256))[0]
                with thread_pool(4) as pool:
                    parts = list(pool.map(ref.read, windows))
                    assert open_descriptors(path) == 1 + held  # the opening handle too
                for window, (part, _) in zip(windows, parts, strict=True):
                    np.testing.assert_array_equal(part, whole[:, window.toslices()[0],
                                                               window.toslices()[1]])
        assert open_descriptors(path) == 0


def test_the_residual_beside_a_cloud_is_carried_into_its_edge_and_fades_inside(scenes,
                                                                               winter_fit):
    """The other winter date fitted to the clear winter patch by a line per band predicts the
    land under the pasted cumulus; what the patch's clear pixels differ from that prediction by
    is carried into the cloud's edge (a third off the error of the 10 m bands next to it) and
    nowhere else: pixels beyond the Gaussian's reach and the clear pixels keep their values."""
    truth, valid, _, predicted = winter_fit
    cloud = scenes["cloud"]
    values = predicted.copy()
    carry_residual(values, truth, valid & ~cloud, cloud, cloud, BANDS)
    inside = ndimage.distance_transform_cdt(cloud, metric="chessboard")

    def rmse(a, where, bands=BANDS):
        at = [BANDS.index(b) for b in bands]
        return np.sqrt(np.mean((a[at][:, where] - truth[at][:, where]) ** 2))

    edge, next_ = cloud & (inside <= 2), cloud & (inside > 2) & (inside <= 4)
    ten = ("B02", "B03", "B04", "B08")  # a 20 or 60 m band lends from farther: less
    assert rmse(values, edge, ten) < 0.7 * rmse(predicted, edge, ten)
    assert rmse(values, next_, ten) < 0.9 * rmse(predicted, next_, ten)
    assert rmse(values, edge) < 0.8 * rmse(predicted, edge)
    deep = inside > REACH
    assert deep.sum() > 5000
    np.testing.assert_array_equal(values[:, deep | ~cloud], predicted[:, deep | ~cloud])


def test_cloud_the_mask_missed_beside_a_cloud_lends_no_residual(scenes, winter_fit, monkeypatch):
    """Every third pixel beside the pasted cumulus made cloud again (the cumulus' own values)
    but left clear by the mask: brighter in blue than the other date's prediction, they lend
    nothing, and the fill is the one without them; taken as land, they would brighten the
    cloud's edge."""
    truth, valid, summer, predicted = winter_fit
    cloud = scenes["cloud"]
    beside = ndimage.binary_dilation(cloud) & ~cloud
    missed = beside & (np.arange(cloud.size).reshape(cloud.shape) % 3 == 0)
    seen = np.where(missed, summer, truth)
    assert (summer[1, missed] - predicted[1, missed] > local_residual.HAZE).mean() > 0.9
    fills = {}
    for name, observed, clear, haze in (("missed", seen, valid & ~cloud, local_residual.HAZE),
                                        ("without", truth, valid & ~cloud & ~missed, 0.02),
                                        ("no test", seen, valid & ~cloud, np.inf)):
        monkeypatch.setattr(local_residual, "HAZE", haze)
        fills[name] = predicted.copy()
        carry_residual(fills[name], observed, clear, cloud, cloud, BANDS)
    taken = fills["missed"] == fills["without"]
    # the 10 m bands exactly; a 20 or 60 m band's margin keeps the rest off already
    assert taken[[BANDS.index(b) for b in ("B02", "B03", "B04", "B08")]].all()
    assert taken.mean() > 0.999
    edge = cloud & ndimage.binary_dilation(beside)
    assert (fills["no test"][1:4, edge] - fills["without"][1:4, edge]).mean() > 0.01


def test_remove_with_a_reference_carries_the_residual_seamlessly(scenes, monkeypatch,
                                                                 tmp_path):
    """``remove --reference`` on the pasted cumulus: the residual of the clear pixels beside
    it makes the cloud's edge closer to the truth than the other date's fit alone; and chunks
    of one 64 px tile (16 over the patch, cutting the cloud) give what chunks of whole rows of
    tiles give: the residual and the restoration of what shows through thin cloud read the
    pixels around each chunk (only the restoration's coarse map of the land's spread, laid on
    each chunk's own grid, leaves a few DN)."""
    removal = importlib.import_module("cloudfree.pipeline.remove")
    outputs = {}
    for name, width, carry in (("whole", removal.FILL_CHUNK_WIDTH, carry_residual),
                               ("narrow", 64, carry_residual),
                               ("fit alone", removal.FILL_CHUNK_WIDTH, lambda *a: None)):
        monkeypatch.setattr(removal, "FILL_CHUNK_WIDTH", width)
        monkeypatch.setattr(removal, "carry_residual", carry)
        out = tmp_path / f"{name}.tif"
        remove_scene(scenes["target"], None, out,
                     engine=EngineOptions(tile=64, model="median-fill"),
                     dates=ReferenceOptions(references=[WINTER_S2]), quiet=True)
        outputs[name] = read(out)[0].astype(np.int32)
    seams = np.abs(outputs["whole"] - outputs["narrow"]).max(axis=0)
    assert (seams == 0).mean() > 0.99 and seams.max() <= 20, (seams > 0).sum()
    cloud = scenes["cloud"]
    edge = cloud & (ndimage.distance_transform_cdt(cloud, metric="chessboard") <= 3)
    scores = {name: psnr(v, scenes["truth"], edge) for name, v in outputs.items()}
    assert scores["whole"] > scores["fit alone"] + 1, scores


def test_a_chunk_asks_the_dates_for_no_pixel_farther_past_the_scene_than_is_read(
        scenes, monkeypatch, tmp_path):
    """With 64 px tiles, whose chunks reach past the patch, a chunk asks the references for no
    pixel farther past the scene's edges than the restoration of thin cloud reads, and the
    residual's sources around those: the rest of a chunk past the scene is never written.
    Strips 40 columns wide give the same output."""
    asked = []
    plan = ReferenceFill.plan

    def recorded(self, top, left, height, width, need, *args, **kwargs):
        rows, cols = np.nonzero(need)
        asked.append((top + rows.min(), top + rows.max(), left + cols.min(),
                      left + cols.max()))
        return plan(self, top, left, height, width, need, *args, **kwargs)

    monkeypatch.setattr(ReferenceFill, "plan", recorded)
    outputs = []
    for columns in (reference_fill.STRIP_COLUMNS, 40):
        monkeypatch.setattr(reference_fill, "STRIP_COLUMNS", columns)
        out = tmp_path / f"out{columns}.tif"
        remove_scene(scenes["target"], None, out,
                     engine=EngineOptions(tile=64, model="median-fill"),
                     dates=ReferenceOptions(references=[WINTER_S2]), quiet=True)
        outputs.append(read(out)[0])
    reach = haze_reach(RestoreParams().haze.sigma) + REACH
    assert len(asked) == 10
    for top, bottom, left, right in asked:
        assert min(top, left) >= -reach and max(bottom, right) < 256 + reach, asked
    np.testing.assert_array_equal(*outputs)


def test_the_chunks_fill_from_the_dates_at_once_as_they_do_one_after_another(
        scenes, monkeypatch, tmp_path):
    """With 64 px tiles (rows of chunks, each taking the fill of the pixels it shares with the
    row before from it) and two loaders, the first chunk's fill held back: the next chunk
    fills its own pixels meanwhile, waits for the first's to take what it shares, and the
    output is the same bit for bit as with one loader, one chunk after another."""
    from cloudfree.pipeline import remove

    plan, fill = ReferenceFill.plan, ReferenceFill._fill
    planned, spans = [], []

    def numbered(self, *args, **kwargs):
        made = plan(self, *args, **kwargs)
        planned.append(made)
        return made

    def held(self, made, *args):
        number = next(i for i, p in enumerate(planned) if p is made)
        start = time.perf_counter()
        if number == 0 and loaders > 1:
            time.sleep(2.0)
        block = fill(self, made, *args)
        spans.append((number, start, time.perf_counter(), len(made.taken)))
        return block

    monkeypatch.setattr(ReferenceFill, "plan", numbered)
    monkeypatch.setattr(ReferenceFill, "_fill", held)
    outputs = []
    for loaders in (1, 2):
        monkeypatch.setattr(remove, "loader_threads", lambda *_, n=loaders: n)
        planned.clear()
        spans.clear()
        out = tmp_path / f"out{loaders}.tif"
        remove_scene(scenes["target"], None, out,
                     engine=EngineOptions(tile=64, model="median-fill"),
                     dates=ReferenceOptions(references=[WINTER_S2]), quiet=True)
        outputs.append(read(out)[0])
    first = next(s for s in spans if s[0] == 0)
    second = next(s for s in spans if s[0] == 1)
    assert second[1] < first[2] and second[3] > 0  # filled beside the first, taking from it
    assert second[2] > first[2]  # what it takes, once the first had it
    assert (outputs[0] != read(scenes["target"])[0]).any()  # filled
    np.testing.assert_array_equal(*outputs)


def test_land_seen_through_thin_cloud_is_restored_over_the_other_dates_fill(scenes, winter_fit):
    """A veil (a tenth of the summer cumulus' own median spectrum) over the clear winter patch
    where the cumulus is, filled from the other winter date (fitted by a line per band on the
    clear land): the veil is taken off the land that shows through, which beats the other
    date's prediction; under the opaque cumulus itself the prediction is kept."""
    truth, valid, summer, predicted = winter_fit
    cloud = scenes["cloud"]
    classes = np.where(cloud, CLOUD, CLEAR).astype(np.uint8)
    veil = np.median(summer[:, cloud], axis=1)[:, None, None]
    scores = {}
    for name, seen in (("veil", np.where(cloud, 0.9 * truth + 0.1 * veil, truth)),
                       ("opaque", np.where(cloud, summer, truth))):
        block = ReferenceBlock(predicted.copy(), np.where(cloud, 1, 0).astype(np.uint8))
        restore_dates(block, seen.astype(np.float32), cloud, classes, valid, RestoreParams(),
                      BANDS)
        scores[name] = block.values
    error = {name: np.sqrt(np.mean((v[:, cloud] - truth[:, cloud]) ** 2))
             for name, v in (("prediction", predicted), *scores.items())}
    assert error["veil"] < 0.7 * error["prediction"], error
    thick = cloud & (summer[1] > 0.3)  # the cumulus' opaque core
    assert np.abs(scores["opaque"][:, thick] - predicted[:, thick]).max() < 1e-3



@pytest.mark.slow
def test_dates_all_on_one_side_are_averaged_over_several_not_the_nearest_alone(
        scenes, monkeypatch, tmp_path):
    # a target at the end of its series: ten later dates, a month apart, each changed under
    # the target's cloud by as much as the others (the real pixels of another place, the
    # Sen1Floods11 chip, scattered, each date its own draw, all the same size; the fits see
    # none of it). Weighed by days apart as they
    # are, the nearest date takes most of the fill and its change with it; with the time
    # scale stretched until the dates' time factors spread over five dates' worth, their
    # changes average down
    truth, profile = scenes["truth"].astype(np.float64), scenes["profile"]
    with rasterio.open(FLOODS_S2) as ds:
        chip = ds.read(window=Window(0, 0, 256, 256)).astype(np.float64).reshape(13, -1)
    under = ndimage.binary_dilation(scenes["cloud"], iterations=8)  # the fill, buffer included
    references = []
    for k in range(10):
        change = np.random.default_rng(k).permutation(chip, axis=1).reshape(truth.shape)
        change -= change.mean(axis=(1, 2), keepdims=True)
        change *= 60 / change.std(axis=(1, 2), keepdims=True) * under
        acquired = np.datetime64("2017-12-01") + np.timedelta64(30 * (k + 1), "D")
        references.append(write(tmp_path / f"{k}_{str(acquired).replace('-', '')}.tif",
                                np.clip(truth + change, 1, None).astype(np.uint16), profile))
    spread = weights.MIN_SPREAD

    def fill(min_spread, name):
        monkeypatch.setattr(weights, "MIN_SPREAD", min_spread)
        # the single dates alone: the groups of dates, leaning towards their plain mean
        # (joint_fit.RIDGE), average the changes down too
        monkeypatch.setattr(joint_fit, "KEPT", 0)
        # the fits keep the cloud buffer: the changes reach 8 px beyond the cloud, and the
        # ring beside it (clear on this target) would show them to the fits
        monkeypatch.setattr(statistics, "RING_HAZE", None)
        # the single-date mask: judged by the dates, the changed pixels of each would be
        # taken for its own clouds, a test of its own
        remove_scene(scenes["target"], None, tmp_path / name,
                     dates=ReferenceOptions(references=references, temporal_mask=False), quiet=True)
        return read(tmp_path / name)[0]

    cloud = scenes["cloud"]
    nearest = psnr(fill(None, "nearest.tif"), truth, cloud)
    assert psnr(fill(spread, "spread.tif"), truth, cloud) > nearest + 0.6  # 48.45 vs 46.59
    # the time scale is stretched for these dates, not for dates on both sides of the target
    with open_sentinel2(scenes["target"]) as target:
        with closing(ReferenceFill(open_references(references, target, MaskParams(), None,
                                                   quiet=True))) as one_side:
            assert one_side.weights.scale > 2 * weights.TIME_SCALE
        both = [*references[:5], *(write(tmp_path / f"b{k}_201711{k:02d}.tif", truth.astype(
            np.uint16), profile) for k in (1, 8, 16, 24))]
        with closing(ReferenceFill(open_references(both, target, MaskParams(), None,
                                                   quiet=True))) as two_sides:
            assert two_sides.weights.scale == weights.TIME_SCALE


def test_a_date_masked_in_a_small_patch_hands_over_to_the_others_gradually(
        scenes, monkeypatch, tmp_path):
    # two dates under the target's cumulus: the nearest (11 Dec), the hazy winter image with a
    # patch of the real cumulus pasted in (its own small cloud), and the same image darkened
    # there by half (21 Dec, a change the fits cannot see). Inside the patch only the second
    # is clear; around it the first's weight ramps up over EDGE_RAMP px, so the fill does not
    # step from one date to the other at the patch's edge
    winter, profile, _ = read(WINTER_S2)
    pasted = read(scenes["target"])[0]  # the cumulus, its B09 in the winter's air
    cloud = scenes["cloud"]
    inside = ndimage.distance_transform_cdt(cloud, metric="chessboard")
    r, c = np.unravel_index(np.argmax(inside), cloud.shape)
    assert inside[r, c] > 20
    patch = np.zeros(cloud.shape, bool)
    patch[r - 4 : r + 4, c - 4 : c + 4] = True
    a = write(tmp_path / "a_20171211.tif", np.where(patch, pasted, winter), profile)
    b = write(tmp_path / "b_20171221.tif", np.where(cloud, winter // 2, winter), profile)

    def fill(ramp, name):
        monkeypatch.setattr(reference_fill, "EDGE_RAMP", ramp)
        # the fits keep the cloud buffer, as when the figures below were measured (counting
        # the ring beside the cumulus, clear here, the jumps are 463 against 641 DN)
        monkeypatch.setattr(statistics, "RING_HAZE", None)
        # the single dates' ramp alone: the similar pixels, predicted from both dates, step
        # off at the patch too (with them the jumps are 275 against 356 DN)
        monkeypatch.setattr(similar_pixels, "SIMILAR", None)
        remove_scene(scenes["target"], None, tmp_path / name,
                     dates=ReferenceOptions(references=[a, b], temporal_mask=False),
                     outputs=OutputOptions(source_out=tmp_path / f"src_{name}"), quiet=True)
        return read(tmp_path / name)[0].astype(np.float64), read(tmp_path / f"src_{name}")[0][0]

    ramped, _ = fill(reference_fill.EDGE_RAMP, "ramped.tif")
    stepped, source = fill(0, "stepped.tif")
    # where the first date is not clear (its patch and the mask's buffer): with no ramp, the
    # second takes over exactly there
    masked = source == 2
    assert masked[patch].all() and masked.sum() < 30 * 30
    distance = ndimage.distance_transform_edt(~masked)
    edge, next_ = distance == 0, (distance > 0) & (distance <= 1)
    edge &= ndimage.binary_dilation(next_)

    def step(image):  # the mean jump (DN, all bands) across the masked region's border
        return np.abs(image[:, next_].mean(axis=1) - image[:, edge].mean(axis=1)).mean()

    assert step(ramped) < 0.6 * step(stepped)  # 262 against 491 DN
    # inside the patch, and from EDGE_RAMP px around it on (to twice that), the fill is the same
    far = (distance >= reference_fill.EDGE_RAMP) & (distance <= 2 * reference_fill.EDGE_RAMP)
    assert np.abs(ramped - stepped)[:, masked | far].max() <= 1


def test_the_fits_count_the_pixels_beside_a_cloud_unless_they_are_brighter_in_blue(
        scenes, monkeypatch, tmp_path):
    # the pasted cumulus has no haze around it: the ring the cloud buffer takes from the fits
    # is as clear as the rest, so the fits count it, and the fill under the cloud gains. With
    # a veil fading out over 8 px around the cloud (a tenth of the cumulus' median spectrum
    # next to it), the ring is brighter in blue than the other date predicts, and the buffer
    # stays
    cloud, truth, profile = scenes["cloud"], scenes["truth"], scenes["profile"]
    pasted = read(scenes["target"])[0]  # the cumulus, its B09 in the winter's air
    distance = ndimage.distance_transform_edt(~cloud)
    veil = np.where((distance > 0) & (distance <= 8), 0.1 * (1 - (distance - 1) / 8), 0)
    hazy = write(tmp_path / "hazy_20171201.tif", np.where(
        cloud, pasted, (1 - veil) * truth + veil * np.median(pasted[:, cloud], axis=1)[
            :, None, None]).astype(np.uint16), profile)

    def fit_buffer(target):
        with open_sentinel2(target) as s2, closing(open_references(
                [WINTER_S2], s2, MaskParams(buffer=5), None, quiet=True)) as dates:
            return dates.fit_buffer

    def fill(ring_haze, name):
        monkeypatch.setattr(statistics, "RING_HAZE", ring_haze)
        remove_scene(scenes["target"], None, tmp_path / name,
                     dates=ReferenceOptions(references=[WINTER_S2]), quiet=True)
        return psnr(read(tmp_path / name)[0], truth, cloud)

    assert fit_buffer(scenes["target"]) == statistics.FIT_BUFFER
    assert fit_buffer(hazy) is None
    ring, buffer = fill(statistics.RING_HAZE, "ring.tif"), fill(None, "buffer.tif")
    assert ring > buffer + 0.4  # 35.57 against 34.97 dB


@pytest.mark.slow
def test_clear_pixels_alike_in_the_dates_show_a_change_no_line_follows(scenes, monkeypatch,
                                                                       tmp_path):
    # since the two dates, the target's most vegetated land (NDVI of the clear winter patch
    # above its median) lost 40 % of its red edge and near infrared (a harvest), the rest did
    # not: a step in the dates' spectra that no line per band, nor one over every band of both
    # dates, follows. The target's clear pixels whose dates look alike show it under the cloud
    truth, profile, cloud = scenes["truth"], scenes["profile"], scenes["cloud"]
    red, nir = (truth[BANDS.index(b)].astype(np.float64) for b in ("B04", "B08"))
    harvested = (nir - red) / (nir + red) > np.median((nir - red) / (nir + red))
    changed = truth.copy()
    for band in ("B05", "B06", "B07", "B08", "B8A"):
        changed[BANDS.index(band), harvested] = changed[BANDS.index(band), harvested] * 0.6
    summer = read(SUMMER_S2)[0]
    target = write(tmp_path / "target_20171201.tif", np.where(cloud, summer, changed), profile)
    a = write(tmp_path / "a_20171203.tif", truth, profile)
    b = write(tmp_path / "b_20171211.tif", (truth * 1.05 + 100).astype(np.uint16), profile)

    def fill(share, name):
        monkeypatch.setattr(similar_pixels, "SIMILAR", share)
        remove_scene(target, None, tmp_path / name, dates=ReferenceOptions(references=[a, b]),
                     quiet=True)
        return read(tmp_path / name)[0]

    alike, lines = fill(similar_pixels.SIMILAR, "alike.tif"), fill(None, "lines.tif")
    assert psnr(alike, changed, cloud) > psnr(lines, changed, cloud) + 1
    # away from the cloud both keep the target as it is
    away = ~ndimage.binary_dilation(cloud, iterations=40)
    assert away.sum() > 1000 and (alike[:, away] == lines[:, away]).all()


def test_the_similar_pixels_are_searched_for_the_filled_pixels_alone(scenes, monkeypatch,
                                                                     tmp_path):
    # the dates also predict the clear pixels beside the cloud, whose residual is carried in;
    # those take the dates' prediction alone, so the similar pixels' search (the costliest
    # step of the fill) runs for the pixels filled: 1.33 times those the source map counts
    # (the fill also covers the cloud mirrored past the scene's edge, which the restoration
    # reads), where with the clear pixels beside them it ran for 2.42 times as many (when
    # those reached 8 px from the fill)
    searched = []
    predict = similar_pixels.SimilarPixels.predict

    def counted(self, dates, where):
        searched.append(int(where.sum()))
        return predict(self, dates, where)

    monkeypatch.setattr(similar_pixels.SimilarPixels, "predict", counted)
    source = tmp_path / "source.tif"
    remove_scene(scenes["target"], None, tmp_path / "out.tif",
                 dates=ReferenceOptions(references=three_textured_dates(scenes, tmp_path)),
                 outputs=OutputOptions(source_out=source), quiet=True)
    src = read(source)[0][0]
    from_dates = int(((src > OBSERVED) & (src < SINGLE_DATE)).sum())
    assert from_dates > 5000
    assert 0.9 * from_dates < sum(searched) < 1.5 * from_dates


def half_scene(src: Path, dst: Path) -> Path:
    """``src`` cut to its left half, on the same grid (its own tags kept)."""
    with rasterio.open(src) as ds:
        window = Window(0, 0, ds.width // 2, ds.height)
        profile = {**ds.profile, "width": ds.width // 2,
                   "transform": ds.window_transform(window)}
        data, tags = ds.read(window=window), ds.tags()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.update_tags(**tags)
    return dst


SERIES = Path(__file__).resolve().parents[2] / "examples" / "data" / "series"


@pytest.mark.parametrize("target, shifted", [("06-25", "07-20"), ("06-25", "07-30"),
                                             ("07-20", "06-25"), ("07-30", "06-25")])
def test_a_reference_on_the_same_grid_is_not_warned_about_for_its_shift_strip(
        tmp_path, cli, target, shifted):
    # registration moves it by up to a pixel, leaving a 1 px border strip without data
    with open_sentinel2(SERIES / f"s2_2018-{target}.tif") as scene, closing(open_reference(
            1, open_sentinel2(SERIES / f"s2_2018-{shifted}.tif"), scene,
            MaskParams(buffer=5))) as ref:
        references.register(ref, scene, MaskParams(buffer=5))
        valid = ref.read(Window(0, 0, 128, 128))[1]
        strip = ref.shift_strip()
    assert ref.shift_applied and 0.98 < valid.mean() < 0.99  # what it warned about before
    assert strip in {(0, 2, 2, 0), (2, 0, 0, 2)}
    top, bottom, left, right = strip
    assert valid[top:128 - bottom, left:128 - right].all()
    result = cli("remove", "--s2", SERIES / f"s2_2018-{target}.tif", "--reference",
                 SERIES / f"s2_2018-{shifted}.tif", "--no-temporal-mask", "-o",
                 tmp_path / "out.tif")
    assert (result.exit_code, result.stderr) == (0, ""), result.output


def test_a_reference_covering_half_the_scene_is_still_warned_about(tmp_path, cli):
    half = half_scene(SERIES / "s2_2018-06-25.tif", tmp_path / "s2_2018-06-25.tif")
    result = cli("remove", "--s2", SERIES / "s2_2018-07-20.tif", "--reference", half,
                 "--no-temporal-mask", "-o", tmp_path / "out.tif")
    assert result.exit_code == 0, result.output
    assert result.stderr == ("cloudfree: s2_2018-07-20.tif: reference s2_2018-06-25.tif covers "
                             "only 50% of the scene: the rest is filled from the other dates "
                             "or the model\n")


def test_the_dates_replace_a_cloud_pixel_in_full_whatever_the_feather(tmp_path):
    # without a buffer (a small cloud grows none) the feather's ramp would lie on the cloud's
    # own edge and keep part of it where the dates do not judge the pixels: cloud pixels take
    # the dates' fill in full, the same with a 2 px feather as with none
    outputs = {}
    for feather in (0, 2):
        out, mask = tmp_path / f"f{feather}.tif", tmp_path / f"f{feather}_mask.tif"
        remove_scene(SERIES / "s2_2018-07-05.tif", None, out, mask_params=MaskParams(buffer=0),
                     fill=FillOptions(feather=feather), outputs=OutputOptions(mask_out=mask),
                     dates=ReferenceOptions(references=[SERIES / "s2_2018-06-25.tif"],
                                            temporal_mask=False), quiet=True)
        with rasterio.open(out) as o, rasterio.open(mask) as m:
            outputs[feather], cloud = o.read().astype(np.int32), m.read(1) == CLOUD
    differ = (outputs[0] != outputs[2]).any(axis=0)
    assert cloud.sum() > 2000 and not (differ & cloud).any(), (differ & cloud).sum()
