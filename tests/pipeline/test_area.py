"""`--bbox`: an area of interest on the real samples; ``remove``, ``mask`` and ``batch`` write
the scene's grid cropped to it, as the same window of a whole-scene run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import ROOT, SUMMER_S2, WINTER_S2
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from s2_builders import write_band_folder

from cloudfree.core.errors import UsageError
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.output.provenance import INPUT_WINDOW

#: The window the box below covers: its edges fall inside pixels, so it snaps outward.
WINDOW = Window(44, 53, 121, 131)


def box_at(path, left: float, top: float, right: float, bottom: float) -> list[float]:
    """The box (minx, miny, maxx, maxy) between pixel positions (column, row) of the scene."""
    with rasterio.open(path) as ds:
        (x0, y0), (x1, y1) = ds.transform * (left, bottom), ds.transform * (right, top)
    return [x0, y0, x1, y1]


#: Pixel positions 44.3 .. 164.5 across and 53.6 .. 183.2 down: WINDOW snapped outward.
BOX = box_at(SUMMER_S2, 44.3, 53.6, 164.5, 183.2)


def read(path, window: Window | None = None) -> tuple[np.ndarray, rasterio.Affine, dict]:
    with rasterio.open(path) as ds:
        return ds.read(window=window), ds.transform, ds.tags()


def inner(shape: tuple[int, int], margin: int) -> np.ndarray:
    """Pixels at least ``margin`` px from the border of a [h, w] window."""
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    return np.minimum.reduce([rows, cols, shape[0] - 1 - rows, shape[1] - 1 - cols]) >= margin


@pytest.fixture(scope="module")
def whole(tmp_path_factory, cli) -> dict:
    """``remove`` of the whole summer sample, with its mask."""
    folder = tmp_path_factory.mktemp("whole")
    out, mask = folder / "whole.tif", folder / "whole_mask.tif"
    result = cli("remove", "--s2", SUMMER_S2, "-o", out, "--mask-out", mask, "-q")
    assert result.exit_code == 0, result.output
    return {"output": out, "mask": mask}


def test_remove_bbox_writes_the_box_of_the_grid_as_a_whole_run_does(whole, tmp_path, cli):
    out, mask = tmp_path / "crop.tif", tmp_path / "crop_mask.tif"
    result = cli("remove", "--s2", SUMMER_S2, "-o", out, "--mask-out", mask, "--bbox", *BOX)
    assert result.exit_code == 0, result.output
    crop, transform, tags = read(out)
    full, full_transform, _ = read(whole["output"], WINDOW)
    observed, _, _ = read(SUMMER_S2, WINDOW)
    assert crop.shape == (13, WINDOW.height, WINDOW.width)
    assert transform == full_transform * Affine.translation(WINDOW.col_off, WINDOW.row_off)
    assert tags[INPUT_WINDOW] == "44 53 121 131"
    # every pixel the whole run keeps as observed is kept in the crop too
    kept = (full == observed).all(axis=0)
    assert kept.mean() > 0.5
    assert np.array_equal(crop[:, kept], full[:, kept])
    # the mask reaches a few pixels (its buffer, its morphology) into the box from clouds
    # outside it, which the crop does not see: beyond that it is the whole run's
    crop_mask, full_mask = read(mask)[0][0], read(whole["mask"], WINDOW)[0][0]
    away = inner(crop_mask.shape, 10)
    assert np.array_equal(crop_mask[away], full_mask[away])
    # the fill takes its statistics from the scene it is given, so the filled pixels differ,
    # by a small share of what the fill changes (measured: 4%)
    filled = away & (full_mask != 0)
    assert filled.sum() > 1000
    moved = np.abs(crop.astype(float) - full)[:, filled].mean()
    change = np.abs(full.astype(float) - observed)[:, filled].mean()
    assert moved < 0.1 * change


def test_a_lon_lat_box_is_snapped_outward_onto_the_scenes_grid(tmp_path, cli):
    out = tmp_path / "lonlat.tif"
    lonlat = (4.951, 11.632, 4.962, 11.644)
    result = cli("remove", "--s2", SUMMER_S2, "-o", out, "--bbox", *lonlat,
                 "--bbox-crs", "EPSG:4326", "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(SUMMER_S2) as src, rasterio.open(out) as ds:
        box = transform_bounds("EPSG:4326", src.crs, *lonlat, densify_pts=21)
        # on the scene's grid: whole pixels from its corner
        col, row = ~src.transform * (ds.transform.c, ds.transform.f)
        assert (ds.crs, ds.res) == (src.crs, src.res)
        assert col == pytest.approx(round(col), abs=1e-6) and round(col) > 0
        assert row == pytest.approx(round(row), abs=1e-6) and round(row) > 0
        # holding the box, less than a pixel beyond it on each side
        bounds = ds.bounds
        beyond = (box[0] - bounds.left, box[1] - bounds.bottom, bounds.right - box[2],
                  bounds.top - box[3])
        assert all(0 <= b < 10 for b in beyond), beyond


@pytest.mark.parametrize("options", [(), ("--buffer", "5")])
def test_mask_bbox_is_the_same_window_of_the_whole_mask(tmp_path, cli, options):
    whole_mask, crop_mask = tmp_path / "whole_mask.tif", tmp_path / "crop_mask.tif"
    assert cli("mask", SUMMER_S2, "-o", whole_mask, *options, "-q").exit_code == 0
    result = cli("mask", SUMMER_S2, "-o", crop_mask, "--bbox", *BOX, *options, "-q")
    assert result.exit_code == 0, result.output
    crop, transform, tags = read(crop_mask)
    full, full_transform, _ = read(whole_mask, WINDOW)
    assert transform == full_transform * Affine.translation(WINDOW.col_off, WINDOW.row_off)
    assert tags[INPUT_WINDOW] == "44 53 121 131"
    # the box is read with the context around it that the tests' squares and the buffer take,
    # as a window of the whole scene is: the very same classes up to its edges
    assert np.array_equal(crop, full)
    assert (crop == 1).any() and (crop == 0).any()


def test_a_box_partly_outside_is_clipped_with_a_note(tmp_path, cli):
    out = tmp_path / "clipped_mask.tif"
    box = box_at(SUMMER_S2, -30.5, 200.2, 100.5, 300)  # beyond the left and bottom edges
    result = cli("mask", SUMMER_S2, "-o", out, "--bbox", *box)
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (101, 56)
        assert ds.tags()[INPUT_WINDOW] == "0 200 101 56"
    notes = [line for line in result.stderr.splitlines() if "reaches beyond" in line]
    assert notes == [f"cloudfree: {SUMMER_S2}: bbox {' '.join(f'{v:.10g}' for v in box)} "
                     "reaches beyond the scene: cropped to the 101 x 56 px inside it"]


@pytest.mark.parametrize("args, message", [
    (("--bbox", 714000, 1288000, 713000, 1288500), "is empty or inverted"),
    (("--bbox", 713000, 1288000, 713000, 1288500), "is empty or inverted"),
    (("--bbox", 0, 0, 1, 1), "lies outside"),
    (("--bbox", 2.0, 48.0, 2.1, 48.1, "--bbox-crs", "EPSG:4326"), "in EPSG:4326 lies outside"),
    (("--bbox", 0, 0, 1, 1, "--bbox-crs", "EPSG:99999"), "is no CRS PROJ knows"),
    (("--bbox", 0, 0, 1, 1, "--bbox-crs", "north-up please"), "is no CRS PROJ knows"),
    (("--bbox-crs", "EPSG:4326"), "--bbox-crs EPSG:4326 needs --bbox MINX MINY MAXX MAXY"),
    (("--bbox", 0, 0, 1, "nan"), "must be four finite numbers"),
])
@pytest.mark.parametrize("command", ["remove", "mask"])
def test_a_bad_box_is_one_line_exit_2_and_no_file(tmp_path, cli, command, args, message):
    out = tmp_path / "out.tif"
    scene = ("--s2", SUMMER_S2) if command == "remove" else (SUMMER_S2,)
    result = cli(command, *scene, "-o", out, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["remove", "mask", "batch"])
def test_a_box_written_with_commas_is_told_to_space_its_numbers(tmp_path, cli, command):
    scene = {"remove": ("--s2", SUMMER_S2), "mask": (SUMMER_S2,), "batch": (SUMMER_S2.parent,)}
    out = tmp_path / ("out" if command == "batch" else "out.tif")
    result = cli(command, *scene[command], "--bbox", "0,0,1,1", "-o", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--bbox': '0,0,1,1': give the box as four numbers separated "
        "by spaces (--bbox MINX MINY MAXX MAXY), not commas")
    assert list(tmp_path.iterdir()) == []


def test_outside_names_the_scenes_extent_in_its_crs(tmp_path, cli):
    result = cli("mask", SUMMER_S2, "-o", tmp_path / "m.tif", "--bbox", 0, 0, 1, 1)
    with rasterio.open(SUMMER_S2) as ds:
        left, bottom = ds.bounds.left, ds.bounds.bottom
    assert f"which covers {left:.10g} {bottom:.10g}" in result.stderr
    assert "in EPSG:32631" in result.stderr


def test_input_options_check_the_box_when_made():
    assert InputOptions(bbox=(1, 2, 3, 4)).bbox == (1.0, 2.0, 3.0, 4.0)
    for bad in ((1, 2, 3), "1 2 3 4", (1, 2, 3, float("inf")), (3, 2, 1, 4), (True, 2, 3, 4)):
        with pytest.raises(UsageError, match="bbox="):
            InputOptions(bbox=bad)
    with pytest.raises(UsageError, match="bbox_crs="):
        InputOptions(bbox=(1, 2, 3, 4), bbox_crs="EPSG:nope")


def test_coarse_bands_of_a_cropped_scene_line_up_with_the_whole_scenes(tmp_path, native_stack):
    """A scene of per-band files at their native 10, 20 and 60 m, cropped at an offset that
    is no multiple of 6: each band reads as the same window of the whole scene."""
    data, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", data, profile, BANDS)
    window = Window(7, 13, 50, 41)
    t = profile["transform"]
    (x0, y1), (x1, y0) = t * (7.4, 13.2), t * (56.5, 53.9)
    with open_sentinel2(folder) as s2:
        assert {factor for _, _, factor in s2.band_sources.values()} == {1, 2, 6}
        expected = s2.read_dn(window)[0]
    with InputOptions(bbox=(x0, y0, x1, y1)).open_scene(folder) as s2:
        assert (s2.width, s2.height, s2.area) == (50, 41, window)
        assert s2.transform == t * Affine.translation(7, 13)
        assert np.array_equal(s2.read_dn()[0], expected)
        # and a window inside it, as the same window shifted
        assert np.array_equal(s2.read_dn(Window(5, 3, 20, 30))[0],
                              expected[:, 3:33, 5:25])


def test_batch_masks_the_box_of_each_scene(tmp_path, cli):
    root = tmp_path / "scenes"
    for name, s2 in (("summer", SUMMER_S2), ("winter", WINTER_S2)):
        (root / name).mkdir(parents=True)
        (root / name / s2.name).symlink_to(s2)
    out = tmp_path / "out"
    with rasterio.open(SUMMER_S2) as ds:
        lonlat = transform_bounds(ds.crs, "EPSG:4326", *BOX)
    result = cli("batch", root, "-o", out, "--command", "mask", "--bbox", *lonlat,
                 "--bbox-crs", "EPSG:4326", "-q")
    # the winter scene lies elsewhere: it fails with the box's one line, the summer one is
    # cropped to it
    assert result.exit_code == 1
    assert "winter" in result.stderr
    with rasterio.open(out / "summer_mask.tif") as ds:
        bounds = ds.bounds
        assert ds.width < 256 and ds.height < 256
    assert bounds.left <= BOX[0] and bounds.bottom <= BOX[1]
    assert bounds.right >= BOX[2] and bounds.top >= BOX[3]
    assert not (out / "winter_mask.tif").exists()


def test_the_other_dates_and_their_source_map_follow_the_box(tmp_path, cli):
    """The five bundled dates (EPSG:4326): a box in that CRS, with three references."""
    series = ROOT / "examples" / "data" / "series"
    target = series / "s2_2018-07-05.tif"
    references = [a for d in ("06-10", "06-25", "07-20") for a in
                  ("--reference", series / f"s2_2018-{d}.tif")]
    out, source = tmp_path / "out.tif", tmp_path / "source.tif"
    result = cli("remove", "--s2", target, *references, "-o", out, "--source-out", source,
                 "--bbox", 12.726, 42.066, 12.732, 42.072, "--bbox-crs", "EPSG:4326", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with rasterio.open(target) as src, rasterio.open(out) as ds, rasterio.open(source) as sm:
        window = Window(*map(int, ds.tags()[INPUT_WINDOW].split()))
        assert (sm.transform, sm.shape) == (ds.transform, ds.shape)
        assert ds.transform == src.window_transform(window)
        assert ds.width < src.width and ds.height < src.height
        sources, observed = sm.read(1), src.read(window=window)
        # every pixel taken from another date is counted, and the observed ones are kept
        taken = (sources >= 1) & (sources <= 3)
        assert taken.sum() == summary["pixels_by_source"]["references"] > 0
        assert np.array_equal(ds.read()[:, sources == 0], observed[:, sources == 0])
