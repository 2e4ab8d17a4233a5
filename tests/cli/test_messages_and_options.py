"""Messages that say what is really wrong, and options refused when they cannot do what they say."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import rasterio
from helpers import ROOT, SEN12
from rasterio.errors import NotGeoreferencedWarning

from cloudfree.core.errors import UsageError
from cloudfree.io.sentinel1 import open_sentinel1
from cloudfree.mask.classify import MAX_BUFFER, MaskParams

SAMPLE = ROOT / "examples" / "data"
SAMPLE_S1, SAMPLE_S2 = SAMPLE / "s1.tif", SAMPLE / "s2.tif"
SERIES_S2 = SAMPLE / "series" / "s2_2018-07-05.tif"


def write_like(src, dst, transform_data=lambda d: d, **profile):
    """A copy of a real raster with its values (and profile entries) changed."""
    with rasterio.open(src) as ds:
        merged, data = {**ds.profile, **profile}, transform_data(ds.read())
    with rasterio.open(dst, "w", **merged) as out:
        out.write(data.astype(merged["dtype"]))
    return dst


def test_s1_in_db_x100_is_read_divided_by_100(tmp_path, cli):
    s1 = write_like(SAMPLE_S1, tmp_path / "s1.tif", lambda d: np.round(d * 100), dtype="int16")
    with open_sentinel1(s1) as scaled, open_sentinel1(SAMPLE_S1) as real:
        assert scaled.db_scale == 0.01
        np.testing.assert_allclose(scaled.read_linear(), real.read_linear(), rtol=2e-3)
    result = cli("remove", "--s1", s1, "--s2", SAMPLE_S2, "-o", tmp_path / "out.tif")
    assert result.exit_code == 0, result.output
    assert "median backscatter -983 is dB x 100 (-9.83 dB); read divided by 100" in result.output
    assert "too little S1 overlap" not in result.output
    assert "no Sentinel-1 under them" not in result.output


def test_s1_neither_db_nor_db_x100_is_refused_with_the_reason(tmp_path, cli):
    s1 = write_like(SAMPLE_S1, tmp_path / "s1.tif", lambda d: d * 10)  # median -98 "dB"
    out = tmp_path / "out.tif"
    result = cli("remove", "--s1", s1, "--s2", SAMPLE_S2, "-o", out)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].endswith(
        "median backscatter -98.3 dB is outside the -40 to 10 dB of calibrated Sentinel-1; "
        "give calibrated sigma0 or gamma0 in dB or linear power")
    assert not out.exists()


def test_s1_aligned_off_the_grid_says_what_differs(tmp_path, cli):
    with rasterio.open(SAMPLE_S2) as ds:
        t = ds.transform
    shifted = write_like(SAMPLE_S1, tmp_path / "shifted.tif",
                         transform=t * rasterio.Affine.translation(5, 0))
    coarse = write_like(SAMPLE_S1, tmp_path / "coarse.tif", lambda d: d[:, ::2, ::2], width=128,
                        height=128, transform=t * rasterio.Affine.scale(2))
    expected = {
        shifted: f"origin ({t.c + 50:.2f}, {t.f:.2f}) vs ({t.c:.2f}, {t.f:.2f})",
        coarse: "pixel size 20 x 20 vs 10 x 10; size 128x128 vs 256x256",
    }
    for s1, differences in expected.items():
        result = cli("remove", "--s1", s1, "--s2", SAMPLE_S2, "--s1-aligned",
                     "-o", tmp_path / "out.tif")
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == (
            f"Error: --s1-aligned: {s1.name} is not on the Sentinel-2 grid (S1 vs S2: "
            f"{differences}); drop --s1-aligned to co-register it")


def without_georeference(src, dst, drop):
    """A copy of a real raster without its CRS and geotransform, or without the geotransform."""
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read()
    for key in drop:
        profile.pop(key)
    with pytest.warns(NotGeoreferencedWarning), rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


@pytest.mark.parametrize(("role", "drop", "missing"), [
    ("s2", ("crs", "transform"), "coordinate reference system"),
    ("s1", ("crs", "transform"), "coordinate reference system"),
    ("reference", ("crs", "transform"), "coordinate reference system"),
    ("s2", ("transform",), "geotransform (pixel size and position)"),
    ("s1", ("transform",), "geotransform (pixel size and position)"),
    ("reference", ("transform",), "geotransform (pixel size and position)"),
    ("mask", ("transform",), "geotransform (pixel size and position)"),
])
def test_a_raster_without_georeference_is_refused_in_our_words(tmp_path, cli, role, drop,
                                                               missing):
    bad = without_georeference(SAMPLE_S1 if role == "s1" else SAMPLE_S2, tmp_path / "bad.tif",
                               drop)
    args = {"s2": ["remove", "--s1", SAMPLE_S1, "--s2", bad],
            "s1": ["remove", "--s1", bad, "--s2", SAMPLE_S2],
            "reference": ["remove", "--s2", SERIES_S2, "--reference", bad],
            "mask": ["mask", bad]}[role]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli(*args, "-o", tmp_path / "out.tif")
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {bad}: no {missing}; georeference it first"
    assert not (tmp_path / "out.tif").exists()


def test_the_readme_sample_run_says_in_plain_words_what_was_done(tmp_path, cli):
    result = cli("remove", "--s1", SAMPLE_S1, "--s2", SAMPLE_S2, "-o", tmp_path / "x.tif", "-v")
    assert result.exit_code == 0, result.output
    notes = result.stderr.splitlines()
    assert ("cloudfree: S1 co-registration: Sentinel-1 used as georeferenced, without shift "
            "correction: no significant correlation peak (significance 3.8, 6.5 needed): "
            "Sentinel-1 and Sentinel-2 have too few edges in common to measure a shift (usual "
            "over water, cloud or flat land)") in notes
    assert ("cloudfree: cloud pixels: where the land shows through thin cloud or haze, the veil "
            "taken off, shadows relit; the rest filled from nearby clear pixels with similar "
            "Sentinel-1 backscatter (where none is near: the scene's clear-sky median), no "
            "network") in notes
    for jargon in ("different places", "on top of the base", "match in S1", "residual shift",
                   " tiles"):
        assert jargon not in result.output
    assert re.fullmatch(r".*x\.tif: filled 42\.4% cloud and 4\.1% shadow with median-fill in "
                        r"\d+\.\d s", result.stdout.strip())


def test_the_result_line_gives_the_shadow_share_when_shadows_are_filled(tmp_path, cli):
    result = cli("remove", "--s1", SAMPLE_S1, "--s2", SAMPLE_S2, "-o", tmp_path / "x.tif",
                 "--shadow")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r".*x\.tif: filled 42\.4% cloud and 4\.1% shadow with median-fill in "
                        r"\d+\.\d s", result.stdout.strip())
    result = cli("remove", "--s2", SERIES_S2, "--reference",
                 SAMPLE / "series" / "s2_2018-06-25.tif", "-o", tmp_path / "y.tif", "--shadow")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r".*y\.tif: filled 33\.8% cloud and 17\.9% shadow, 8435 pixels from "
                        r"other dates, the rest with median-fill in \d+\.\d s",
                        result.stdout.strip())


@pytest.mark.parametrize("flag, judged", [(None, "found by comparing the dates, "),
                                           ("--no-temporal-mask", "")])
def test_a_run_with_other_dates_says_they_fill_first(tmp_path, cli, flag, judged):
    # the series has blue and red (B02, B04): the dates judge the clouds unless told not to
    other = SAMPLE / "series" / "s2_2018-06-25.tif"
    result = cli("remove", "--s2", SERIES_S2, "--reference", other, "-o", tmp_path / "x.tif",
                 "--verbose", *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    assert (f"cloudfree: cloud pixels: {judged}taken from the other dates where they are clear; "
            "where the land shows through thin cloud or haze, the veil taken off, shadows "
            "relit; the rest "
            "filled from nearby clear pixels (where none is near: the scene's clear-sky "
            "median), no network") in result.stderr.splitlines()


def test_train_amp_on_cpu_is_refused_like_fp16(tmp_path, cli):
    run = tmp_path / "run"
    result = cli("train", SEN12, "--amp", "--device", "cpu", "--epochs", "1", "-o", run)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: --amp (mixed precision) needs a GPU, and the device is cpu; drop --amp to "
        "train in fp32")
    assert not run.exists()


def crop(src, dst, size):
    """The top-left size x size pixels of a real raster."""
    return write_like(src, dst, lambda d: d[:, :size, :size], width=size, height=size)


def test_tiles_narrower_or_overlapping_less_than_the_model_needs_are_warned(tmp_path, cli):
    s2, s1 = crop(SAMPLE_S2, tmp_path / "s2.tif", 96), crop(SAMPLE_S1, tmp_path / "s1.tif", 96)
    runs = {}
    for tiling in ("16", "88", "88 0", ""):
        out = tmp_path / f"{len(runs)}.tif"
        options = [o for flag, v in zip(("--tile", "--overlap"), tiling.split(), strict=False)
                   for o in (flag, v)]
        result = cli("remove", "--s1", s1, "--s2", s2, "-o", out, "--model", "cloudfree-fillnet",
                     *options)
        assert result.exit_code == 0, result.output
        warned = [line for line in result.stderr.splitlines()
                  if line.startswith(("cloudfree: tile ", "cloudfree: overlap "))]
        runs[tiling] = warned, rasterio.open(out).read().astype(int)
    assert runs["16"][0] == [
        "cloudfree: tile 16 px is narrower than what this model sees around each pixel (88 px "
        "across), so the output changes near every tile border (overlap 4 px); give a tile of "
        "at least 88 px (--tile 88; default 256)"]
    assert runs["88 0"][0] == [
        "cloudfree: overlap 0 px is less than the 22 px this model's 88 px tiles get by "
        "default, so the output changes near every tile border; leave the overlap unset or "
        "give at least 22 (--overlap 22)"]
    assert runs["88"][0] == runs[""][0] == []  # the default is one tile over this scene
    whole = runs[""][1]
    for tiling in ("16", "88 0"):  # what the warnings are about
        assert np.abs(runs[tiling][1] - whole).max() > 100


@pytest.mark.parametrize("command", ["remove", "mask"])
def test_a_buffer_beyond_what_memory_allows_is_refused_with_the_cost(tmp_path, cli, command):
    out = tmp_path / "out.tif"
    args = ["--s1", SAMPLE_S1, "--s2", SAMPLE_S2] if command == "remove" else [SAMPLE_S2]
    result = cli(command, *args, "-o", out, "--buffer", "1000")
    assert result.exit_code == 2 and not out.exists()
    assert result.output.splitlines()[-1] == (
        "Error: --buffer 1000 is more than the 300 px allowed: every window is read with that "
        "much context around it, and memory grows with its square (2.6 GB at 1000 px on a "
        "256 px scene); give --buffer 300 or less")
    assert MaskParams(buffer=MAX_BUFFER).buffer == 300
    with pytest.raises(UsageError, match="buffer=301 is more than the 300 px allowed"):
        MaskParams(buffer=MAX_BUFFER + 1)


def test_an_all_nodata_scene_is_refused_before_any_note_on_the_fill(tmp_path, cli):
    s2 = write_like(SAMPLE_S2, tmp_path / "s2.tif", lambda d: d * 0, nodata=0)
    result = cli("remove", "--s1", SAMPLE_S1, "--s2", s2, "-o", tmp_path / "out.tif", "-v")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {s2}: every pixel is nodata; nothing to do"
    assert "cloud pixels" not in result.output and "prior spectrum" not in result.output


README_SERIES = ["--s2", SERIES_S2, *(a for d in ("06-10", "06-25", "07-20", "07-30") for a in
                                       ("--reference", SAMPLE / "series" / f"s2_2018-{d}.tif"))]


def test_the_readme_commands_print_their_result_line_and_nothing_else(tmp_path, cli):
    result = cli("remove", "--s1", SAMPLE_S1, "--s2", SAMPLE_S2, "-o", tmp_path / "x.tif",
                 "--overwrite")
    assert (result.exit_code, result.stderr) == (0, "")
    assert re.fullmatch(r".*x\.tif: filled 42\.4% cloud and 4\.1% shadow with median-fill in "
                        r"\d+\.\d s\n", result.stdout)
    result = cli("remove", *README_SERIES, "-o", tmp_path / "series_clear.tif", "--source-out",
                 tmp_path / "series_source.tif", "--preview", tmp_path / "series.png",
                 "--overwrite")
    assert (result.exit_code, result.stderr) == (0, "")
    assert re.fullmatch(r".*series_clear\.tif: filled 34\.5% cloud and 21\.6% shadow, 9184 "
                        r"pixels from other dates, the rest with median-fill in \d+\.\d s\n",
                        result.stdout)


def test_verbose_notes_name_their_file_once_each_however_often_it_is_read(tmp_path, cli):
    result = cli("remove", *README_SERIES, "-o", tmp_path / "x.tif", "-v")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == len(set(lines)), result.stderr  # the references are read twice
    for name in ("07-05", "06-10", "06-25", "07-20", "07-30"):
        assert lines.count(f"cloudfree: {SAMPLE}/series/s2_2018-{name}.tif: no band names, "
                           "assuming the 13-band L1C order B01..B12 (B8A 9th)") == 1
    assert ("cloudfree: s2_2018-07-05.tif: reference s2_2018-06-25.tif: shifted by (0.09, "
            "-0.54) px onto the target") in lines


def test_quiet_leaves_errors_only_and_warnings_name_their_file(tmp_path, cli):
    s1 = write_like(SAMPLE_S1, tmp_path / "s1.tif", lambda d: np.round(d * 100), dtype="int16")
    args = ["remove", "--s1", s1, "--s2", SAMPLE_S2, "-o", tmp_path / "out.tif", "--overwrite"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"cloudfree: {s1}: median backscatter -983 is dB x 100 (-9.83 dB); "
                             "read divided by 100\n")
    result = cli(*args, "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    result = cli("mask", SAMPLE_S2, "-o", tmp_path / "m.tif", "-q", "-v")  # --quiet wins
    assert (result.exit_code, result.stderr) == (0, "")
    result = cli("coregister", "--s1", s1, "--s2", SAMPLE_S2, "-o", tmp_path / "c.tif", "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    assert "halves disagree" not in result.stdout  # not applied: the reason says why, once
    assert result.stdout.count("no significant correlation peak") == 1
    empty = write_like(SAMPLE_S2, tmp_path / "empty.tif", lambda d: d * 0, nodata=0)
    result = cli("remove", "--s2", empty, "-o", tmp_path / "e.tif", "-q")  # errors still show
    assert (result.exit_code, result.stderr) == (
        1, f"Error: {empty}: every pixel is nodata; nothing to do\n")


COVERED = "the rest is filled from the other dates or the model"


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.slow
def test_batch_warns_once_per_scene_and_quiet_leaves_nothing(tmp_path, cli, jobs):
    series = tmp_path / "series"
    series.mkdir()
    for scene in (SAMPLE / "series").iterdir():
        (series / scene.name).symlink_to(scene)
    (series / "s2_2018-06-25.tif").unlink()  # a scene covering the left half only
    with rasterio.open(SAMPLE / "series" / "s2_2018-06-25.tif") as ds:
        window = rasterio.windows.Window(0, 0, ds.width // 2, ds.height)
        profile = {**ds.profile, "width": ds.width // 2,
                   "transform": ds.window_transform(window)}
        half = ds.read(window=window)
    with rasterio.open(series / "s2_2018-06-25.tif", "w", **profile) as out:
        out.write(half)
    args = ["batch", series, "--references", "3", "-j", jobs]
    result = cli(*args, "-o", tmp_path / "a")
    assert result.exit_code == 0, result.output
    # the scenes are each other's references: each is read several times, warned about once
    # (the others' shifts onto each other leave border strips, not warned about)
    assert sorted(result.stderr.splitlines()) == [
        f"cloudfree: s2_2018-{date}.tif: reference s2_2018-06-25.tif covers only {share}% of "
        f"the scene: {COVERED}"
        for date, share in (("06-10", 49), ("07-05", 50), ("07-20", 50), ("07-30", 50))]
    result = cli(*args, "-o", tmp_path / "b", "-q")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("batch: 5 ok, 0 failed, 0 skipped in ")


def test_every_command_takes_quiet_and_verbose():
    from cloudfree.cli.commands import main

    for name, command in main.commands.items():
        if name == "models":  # prints the list, nothing else
            continue
        flags = {o for p in command.params for o in getattr(p, "opts", ())}
        assert {"-q", "--quiet", "-v", "--verbose"} <= flags, name


def test_a_message_passes_once_per_run_and_errors_always():
    import logging

    from cloudfree.core.messages import OncePerRun

    once = OncePerRun()

    def record(level, msg, *args):
        return logging.LogRecord("cloudfree", level, __file__, 1, msg, args, None)

    assert once.filter(record(logging.WARNING, "%s: odd", "a.tif"))
    assert not once.filter(record(logging.WARNING, "a.tif: odd"))
    assert once.filter(record(logging.WARNING, "%s: odd", "b.tif"))
    assert once.filter(record(logging.INFO, "a.tif: odd"))
    assert once.filter(record(logging.ERROR, "failed")) and once.filter(
        record(logging.ERROR, "failed"))
