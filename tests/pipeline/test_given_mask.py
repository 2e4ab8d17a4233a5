"""``remove --mask-in``: a mask given for the scene is filled as it is, on the real samples.

The bundled sample takes back the mask ``remove`` wrote for it; the clear Sen1Floods11 chip (a
town among fields, with its S1) takes a rectangle of cloud over its town at 10 m and at 20 m;
the bundled series takes the target's own mask with other dates; a cloud probability over the
chip's town, as a 0-1 map and as a 0-100 layer, is cloud from its threshold. Masks that cannot
be read as classes, or are off the scene's grid, and thresholds in other units, are refused in
one line.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import FLOODS_S1, FLOODS_S2, ROOT, SUMMER_S1, SUMMER_S2
from rasterio.windows import Window, from_bounds

from cloudfree.core.distance import grow
from cloudfree.core.errors import UsageError
from cloudfree.fill.local import LocalFillParams
from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, MaskParams
from cloudfree.pipeline.batch import run_batch

SERIES = ROOT / "examples" / "data" / "series"
#: The rectangle of cloud given over the chip's town (rows, columns).
RECT = (slice(100, 200), slice(300, 420))


def read(path, band=None):
    with rasterio.open(path) as ds:
        return ds.read() if band is None else ds.read(band)


def write_mask(path, classes, like=FLOODS_S2, scale=1, dtype="uint8"):
    """``classes`` written as a one-band mask on the grid of ``like``, its pixels ``scale`` times
    as large."""
    with rasterio.open(like) as ds:
        crs, transform = ds.crs, ds.transform * Affine.scale(scale)
    with rasterio.open(path, "w", driver="GTiff", width=classes.shape[1],
                       height=classes.shape[0], count=1, dtype=dtype, crs=crs,
                       transform=transform) as dst:
        dst.write(classes.astype(dtype), 1)
    return path


@pytest.fixture(scope="module")
def rect(tmp_path_factory):
    """A 0/1 cloud mask of the chip: 1 over ``RECT``."""
    classes = np.zeros((512, 512), np.uint8)
    classes[RECT] = 1
    return write_mask(tmp_path_factory.mktemp("given") / "rect.tif", classes)


def test_the_mask_remove_wrote_is_taken_back_as_it_is(tmp_path, cli):
    first, given = tmp_path / "first.tif", tmp_path / "mask.tif"
    assert cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", first,
               "--mask-out", given).exit_code == 0
    again, mask = tmp_path / "again.tif", tmp_path / "again_mask.tif"
    result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", again, "--mask-in", given,
                 "--buffer", "0", "--mask-out", mask)
    assert result.exit_code == 0, result.output
    classes = read(given, 1)
    assert {CLOUD, SHADOW} <= set(np.unique(classes).tolist())
    # cloud and shadows as given: the shadows kept whether or not the clouds seem to cast them
    np.testing.assert_array_equal(read(mask, 1), classes)
    assert "filled 42.4% cloud and 4.1% shadow" in result.output
    with rasterio.open(again) as ds:
        assert ds.tags()["MASK_SOURCE"] == "given mask"
    changed = (read(again) != read(SUMMER_S2)).any(0)
    near = grow(classes != CLEAR, LocalFillParams().ring)  # the haze ring, restored
    assert changed[classes != CLEAR].mean() > 0.95 and not changed[~near].any()


def test_a_mask_of_clouds_alone_has_their_shadows_found(tmp_path, cli):
    first, own = tmp_path / "first.tif", tmp_path / "own.tif"
    assert cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", first, "--buffer", "0",
               "--mask-out", own).exit_code == 0
    classes = read(own, 1)
    clouds = write_mask(tmp_path / "clouds.tif", (classes == CLOUD).astype(np.uint8),
                        like=SUMMER_S2)  # a 0/1 cloud mask: no shadow in it
    used = {}
    for name, extra in (("found", ()), ("none", ("--no-shadow",))):
        used[name] = tmp_path / f"{name}_mask.tif"
        result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o",
                     tmp_path / f"{name}.tif", "--mask-in", clouds, "--buffer", "0",
                     "--mask-out", used[name], *extra)
        assert result.exit_code == 0, result.output
    # the shadows the same clouds cast, exactly as `remove` finds them without a mask given
    found = read(used["found"], 1) == SHADOW
    assert (classes == SHADOW).sum() > 1000
    np.testing.assert_array_equal(found, classes == SHADOW)
    assert not (read(used["none"], 1) == SHADOW).any()


def test_a_cloud_given_over_a_town_is_filled_whole(tmp_path, rect, cli):
    # the chip is cloud-free: its own mask fills nothing, and with S1 the built-up test would
    # take part of a cloud over the town back as land; a given cloud is the caller's
    out, mask = tmp_path / "out.tif", tmp_path / "mask.tif"
    result = cli("remove", "--s2", FLOODS_S2, "--s1", FLOODS_S1, "-o", out, "--mask-in", rect,
                 "--buffer", "0", "--mask-out", mask)
    assert result.exit_code == 0, result.output
    classes = read(mask, 1)
    cloud = np.zeros_like(classes, bool)
    cloud[RECT] = True
    np.testing.assert_array_equal(classes == CLOUD, cloud)
    changed = (read(out) != read(FLOODS_S2)).any(0)
    assert changed[cloud].mean() > 0.95
    assert not changed[~grow(cloud, LocalFillParams().ring)].any()
    with rasterio.open(out) as ds:
        assert ds.tags()["S1_BUILT_UP_TEST"] == "False"


def test_a_coarser_mask_is_read_on_the_scenes_grid(tmp_path, cli):
    coarse = np.zeros((256, 256), np.uint8)
    coarse[50:100, 150:210] = CLOUD
    given = write_mask(tmp_path / "mask20.tif", coarse, scale=2)
    mask = tmp_path / "mask.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", tmp_path / "out.tif", "--mask-in", given,
                 "--buffer", "0", "--mask-out", mask)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(read(mask, 1), coarse.repeat(2, 0).repeat(2, 1))


def test_a_given_mask_is_cropped_with_the_scene(tmp_path, rect, cli):
    with rasterio.open(FLOODS_S2) as ds:
        west, south = ds.transform * (250, 250)
        east, north = ds.transform * (450, 50)
    mask = tmp_path / "mask.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", tmp_path / "out.tif", "--mask-in", rect,
                 "--buffer", "0", "--mask-out", mask, "--bbox", west + 1e-7, south + 1e-7,
                 east - 1e-7, north - 1e-7)
    assert result.exit_code == 0, result.output
    with rasterio.open(mask) as ds, rasterio.open(rect) as whole:
        window = from_bounds(*ds.bounds, whole.transform).round_offsets().round_lengths()
        assert window == Window(250, 50, 200, 200)
        np.testing.assert_array_equal(ds.read(1), whole.read(1, window=window))


def test_the_other_dates_fill_what_the_given_mask_marks(tmp_path, cli):
    target = SERIES / "s2_2018-07-05.tif"
    given = tmp_path / "mask.tif"
    assert cli("mask", target, "-o", given).exit_code == 0
    source, used = tmp_path / "source.tif", tmp_path / "used.tif"
    result = cli("remove", "--s2", target, "--reference", SERIES / "s2_2018-06-25.tif",
                 "--reference", SERIES / "s2_2018-07-20.tif", "-o", tmp_path / "out.tif",
                 "--mask-in", given, "--buffer", "0", "--source-out", source, "--mask-out", used)
    assert result.exit_code == 0, result.output
    from_dates = read(source, 1) > 0
    # what it marks (`mask` marks no shadow: the shadows its clouds cast are found), and the
    # haze ring around it where the bands show haze
    shadows = read(used, 1) == SHADOW
    marked = (read(given, 1) != CLEAR) | shadows
    assert shadows.any() and from_dates[marked].mean() > 0.5
    assert not from_dates[~grow(marked, LocalFillParams().ring)].any()


@pytest.mark.parametrize("case, expected", [
    ("values", "holds 7, which are no cloudfree codes; give cloudfree codes (0 clear, 1 cloud, "
               "2 shadow, 3 snow, 4 thin cloud, 255 no data), as cloudfree mask writes them"),
    ("white", "holds only 0 and 255, and 255 is no data, left as it is, not cloud: if it "
              "marks cloud, write it as 1"),
    ("float", "holds float32 values, not classes"),
    ("size", "the mask covers"),
    ("crs", "the mask is in EPSG:32631, the scene's grid (Spain_7370579_S2Hand.tif) in "
            "EPSG:4326; put it on that grid first, e.g. rio warp"),
])
def test_masks_that_are_not_classes_on_the_grid_are_refused(tmp_path, rect, cli, case,
                                                            expected):
    classes = read(rect, 1)
    given = tmp_path / "mask.tif"
    if case == "values":
        classes[0, 0] = 7
    if case == "crs":
        given = write_mask(given, classes[:256, :256], like=SUMMER_S2)
    else:
        write_mask(given, classes * (255 if case == "white" else 1),
                   dtype="float32" if case == "float" else "uint8") if case != "size" else \
            write_mask(given, classes[:, :500])
    out = tmp_path / "out.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", out, "--mask-in", given)
    assert result.exit_code == 1 and expected in result.output, result.output
    assert result.output.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize("option, expected", [
    (("--no-scl",), "--no-scl makes the mask from the bands, leaving --mask-in PATH unread"),
    (("--temporal-mask", "--reference", FLOODS_S2),
     "--temporal-mask has the dates find the clouds instead of --mask-in PATH"),
])
def test_options_that_would_leave_the_mask_unread_are_refused(tmp_path, rect, cli, option,
                                                              expected):
    result = cli("remove", "--s2", FLOODS_S2, "-o", tmp_path / "out.tif", "--mask-in", rect,
                 *option)
    assert result.exit_code == 2 and expected in result.output, result.output


@pytest.mark.parametrize("codes, cloud, thin, shadow, clear", [
    ("fmask", 4, None, 2, 1),  # Fmask's water is clear land here
    ("omnicloudmask", 1, 2, 3, 0),
    ("scl", 9, 10, 3, 6),
])
def test_other_tools_codes_are_read_as_their_classes(tmp_path, cli, codes, cloud, thin, shadow,
                                                     clear):
    given = np.zeros((512, 512), np.uint8)
    given[:] = clear
    given[RECT] = cloud
    if thin is not None:
        given[200:220, 300:420] = thin
    given[300:320, 300:420] = shadow
    path = write_mask(tmp_path / "mask.tif", given)
    mask = tmp_path / "used.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", tmp_path / "out.tif", "--mask-in", path,
                 "--mask-in-codes", codes, "--buffer", "0", "--mask-out", mask)
    assert result.exit_code == 0, result.output
    expected = np.where(given == shadow, SHADOW, np.where(
        np.isin(given, [cloud, thin]), CLOUD, CLEAR))  # remove writes thin cloud as cloud
    np.testing.assert_array_equal(read(mask, 1), expected)


def test_codes_of_another_kind_and_codes_without_a_mask_are_refused(tmp_path, rect, cli):
    given = write_mask(tmp_path / "mask.tif", read(rect, 1) * 5)
    out = tmp_path / "out.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", out, "--mask-in", given, "--mask-in-codes",
                 "omnicloudmask")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and (
        "holds 5, which are no omnicloudmask codes; give omnicloudmask codes (0 clear, 1 cloud, "
        "2 thin cloud, 3 shadow)") in result.output, result.output
    result = cli("remove", "--s2", FLOODS_S2, "-o", out, "--mask-in-codes", "fmask")
    assert result.exit_code == 2 and "--mask-in-codes fmask needs --mask-in PATH" \
        in result.output, result.output
    result = cli("batch", tmp_path, "-o", tmp_path / "b", "--mask-in-codes", "fmask")
    assert result.exit_code == 2 and "--mask-in-codes fmask: how to read the masks " \
        "--mask-pattern GLOB finds, and none is given" in result.output, result.output
    assert not out.exists() and not (tmp_path / "b").exists()


def probability(rect, scale=1.0, dtype="float32"):
    """A cloud probability of the chip: 0.7 over the rectangle of ``rect``, 0.2 elsewhere,
    times ``scale``; NaN (no data) over rows 100-119, across the cloud's top, where it is a
    float."""
    cloud = read(rect, 1) == 1
    values = np.where(cloud, 0.7, 0.2) * scale
    if np.dtype(dtype).kind == "f":
        values[100:120] = np.nan
    return values.astype(dtype)


def test_a_cloud_probability_is_cloud_from_its_threshold(tmp_path, rect, cli):
    outputs = {}
    for name, values, threshold in (
            ("map", probability(rect), "0.5"),  # s2cloudless's 0-1 map
            ("layer", probability(rect, 100, "uint8"), "50")):  # a 0-100 layer, no NaN
        given = write_mask(tmp_path / f"{name}.tif", values, dtype=values.dtype)
        outputs[name] = tmp_path / f"{name}_out.tif"
        result = cli("remove", "--s2", FLOODS_S2, "-o", outputs[name], "--mask-in", given,
                     "--mask-in-threshold", threshold, "--buffer", "0")
        assert result.exit_code == 0, result.output
    same = tmp_path / "classes_out.tif"
    assert cli("remove", "--s2", FLOODS_S2, "-o", same, "--mask-in", rect, "--buffer",
               "0").exit_code == 0
    # the 0-100 layer is the 0/1 mask, the 0-1 map that too but where it has no data
    np.testing.assert_array_equal(read(outputs["layer"]), read(same))
    changed = (read(outputs["map"]) != read(FLOODS_S2)).any(0)
    cloud = read(rect, 1) == 1
    assert not changed[100:120].any() and changed[cloud & ~np.isin(
        np.arange(512), range(100, 120))[:, None]].mean() > 0.95


@pytest.mark.parametrize("values, args, code, expected", [
    ("map", ("--mask-in-threshold", "50"), 1,
     "holds a probability from 0.2 to 0.7, none reaching the threshold 50: give it in the "
     "mask's units (0.4 for a 0-1 probability)"),
    ("layer", ("--mask-in-threshold", "0.5"), 1,
     "holds a probability from 20 to 70: a threshold of 0.5 makes every value from 1 cloud; "
     "give it in the mask's units (40 for a 0-100 probability), or none for a mask of classes"),
    ("map", (), 1, "holds float32 values, not classes: for a cloud probability give "
                   "--mask-in-threshold P"),
    ("map", ("--mask-in-threshold", "0"), 2, "--mask-in-threshold 0.0 must be above 0"),
    ("map", ("--mask-in-threshold", "0.5", "--mask-in-codes", "fmask"), 2,
     "--mask-in-threshold 0.5 reads the mask as a cloud probability, --mask-in-codes fmask as "
     "classes: give one of them"),
    (None, ("--mask-in-threshold", "0.5"), 2, "--mask-in-threshold 0.5 needs --mask-in PATH"),
])
def test_thresholds_that_cannot_read_the_mask_are_refused(tmp_path, rect, cli, values, args,
                                                          code, expected):
    layer = probability(rect, 100, "uint8") if values == "layer" else probability(rect)
    given = () if values is None else (
        "--mask-in", write_mask(tmp_path / "p.tif", layer, dtype=layer.dtype))
    out = tmp_path / "out.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", out, *given, *args)
    assert result.exit_code == code and expected in result.output, result.output
    assert result.output.count("\n") == 1 and not out.exists()


def test_batch_takes_no_mask_for_every_scene(tmp_path, rect):
    with pytest.raises(UsageError, match="a mask is one scene's; give mask_pattern=GLOB"):
        run_batch(tmp_path, tmp_path / "out", options={"mask_in": rect})


def scene_folder(folder, classes=None, mask_name="chip_s2_mask.tif"):
    """A scene folder of the chip's S2 and S1 (linked) and, with ``classes``, a mask named
    ``mask_name`` (by default one the S2's pattern matches too)."""
    folder.mkdir(parents=True)
    (folder / "chip_s2.tif").symlink_to(FLOODS_S2)
    (folder / "chip_s1.tif").symlink_to(FLOODS_S1)
    if classes is not None:
        write_mask(folder / mask_name, classes)
    return folder


def test_batch_fills_each_scene_folder_by_its_own_mask(tmp_path, cli):
    given = {}  # in Fmask's codes: 4 cloud, 0 land
    for name, rows in (("a", slice(100, 200)), ("b", slice(300, 360))):
        given[name] = np.zeros((512, 512), np.uint8)
        given[name][rows, 300:420] = 4
        scene_folder(tmp_path / "scenes" / name, given[name])
    scene_folder(tmp_path / "scenes" / "c")  # no mask: fails alone
    out = tmp_path / "out"
    result = cli("batch", tmp_path / "scenes", "-o", out, "--mask-pattern", "*mask*", "--masks",
                 "--mask-in-codes", "fmask", "-q")
    assert result.exit_code == 1 and "1 of 3 scene(s) failed: c" in result.output
    for name, classes in given.items():
        cloud = classes == 4
        reach = grow(cloud, MaskParams(buffer=5).buffer + LocalFillParams().ring)
        used = read(out / f"{name}_mask.tif", 1) == CLOUD  # with remove's 5 px buffer
        assert used[cloud].all() and not used[~reach].any()
        changed = (read(out / f"{name}.tif") != read(FLOODS_S2)).any(0)
        assert changed[cloud].mean() > 0.95 and not changed[~reach].any()
    assert not (out / "c.tif").exists()


def test_batch_reads_each_scene_folders_probability_from_the_threshold(tmp_path, rect, cli):
    folder = scene_folder(tmp_path / "scenes" / "a")
    write_mask(folder / "chip_cloudprob.tif", probability(rect), dtype="float32")
    out = tmp_path / "out"
    result = cli("batch", tmp_path / "scenes", "-o", out, "--mask-pattern", "*cloudprob*",
                 "--mask-in-threshold", "0.5", "--s2-pattern", "*_s2.tif", "-q")
    assert result.exit_code == 0, result.output
    changed = (read(out / "a.tif") != read(FLOODS_S2)).any(0)
    assert changed[RECT][20:].mean() > 0.95 and not changed[100:120].any()
    result = cli("batch", tmp_path / "scenes", "-o", tmp_path / "b", "--mask-in-threshold",
                 "0.5")
    assert result.exit_code == 2 and "--mask-in-threshold 0.5: how to read the masks " \
        "--mask-pattern GLOB finds, and none is given" in result.output, result.output
    result = cli("batch", tmp_path / "scenes", "-o", tmp_path / "b", "--mask-pattern",
                 "*cloudprob*", "--mask-in-threshold", "0.5", "--mask-in-codes", "fmask")
    assert result.exit_code == 2 and "--mask-in-threshold 0.5 reads the mask as a cloud " \
        "probability, --mask-in-codes fmask as classes" in result.output, result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("args, expected", [
    (("--command", "mask"), "--mask-pattern '*mask*': only for --command remove"),
    (("--temporal-mask", "--references", "1"),
     "--temporal-mask has the dates find the clouds instead of the masks --mask-pattern"),
])
def test_batch_mask_patterns_that_cannot_apply_are_refused(tmp_path, rect, cli, args,
                                                           expected):
    scene_folder(tmp_path / "scenes" / "a", read(rect, 1))
    result = cli("batch", tmp_path / "scenes", "-o", tmp_path / "out", "--mask-pattern",
                 "*mask*", *args)
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_batch_takes_masks_from_scene_folders_only(tmp_path, cli):
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "chip_s2.tif").symlink_to(FLOODS_S2)
    (flat / "chip_s1.tif").symlink_to(FLOODS_S1)
    result = cli("batch", flat, "-o", tmp_path / "out", "--mask-pattern", "*mask*")
    assert result.exit_code == 2 and "takes each scene's mask from its scene folder, and" \
        in result.output, result.output


def test_no_data_in_a_given_mask_is_left_as_it_is(tmp_path, cli):
    classes = np.zeros((512, 512), np.uint8)
    classes[RECT] = CLOUD
    classes[100:120] = NODATA  # across the cloud's top rows
    given = write_mask(tmp_path / "mask.tif", classes)
    out = tmp_path / "out.tif"
    result = cli("remove", "--s2", FLOODS_S2, "-o", out, "--mask-in", given, "--buffer", "0")
    assert result.exit_code == 0, result.output
    changed = (read(out) != read(FLOODS_S2)).any(0)
    assert not changed[classes == NODATA].any() and changed[classes == CLOUD].mean() > 0.95
