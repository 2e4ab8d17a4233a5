"""Overviews built from the streamed blocks equal those GDAL's COG driver makes itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from helpers import FLOODS_S1, WINTER_S2
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from cloudfree.output import atomic
from cloudfree.output.atomic import raster_output, remove_stale_partials
from cloudfree.output.cog import AVERAGE, NEAREST, cog_options, make_cog
from cloudfree.output.geotiff import geotiff_profile
from cloudfree.output.overviews import overview_sizes, read_levels, supported

#: Odd sides, so that some levels average three columns with fractional weights.
ODD = (700, 547)
#: Sides that halve evenly down to the last level.
EVEN = (640, 512)


def mosaic(path, size: tuple[int, int], band_count: int | None = None) -> np.ndarray:
    """A mosaic of ``size`` (rows, columns) of a real raster, mirrored at its edges."""
    with rasterio.open(path) as src:
        data = src.read(list(range(1, (band_count or src.count) + 1)))
    reps = (1, -(-size[0] // data.shape[1]), -(-size[1] // data.shape[2]))
    tiled = np.concatenate([np.concatenate([data, data[:, ::-1]], 1)] * reps[1], 1)
    tiled = np.concatenate([np.concatenate([tiled, tiled[:, :, ::-1]], 2)] * reps[2], 2)
    return np.ascontiguousarray(tiled[:, :size[0], :size[1]])


def profile_of(data: np.ndarray, nodata) -> dict:
    height, width = data.shape[1:]
    return geotiff_profile(width=width, height=height, crs="EPSG:32631", count=data.shape[0],
                           dtype=data.dtype.name, nodata=nodata,
                           transform=rasterio.transform.from_origin(500000, 4e6, 10, 10),
                           creation_options={"blockxsize": "128", "blockysize": "128"})


@pytest.fixture
def handed(monkeypatch) -> list[int]:
    """How many overview levels the COG step was handed, per output (0: GDAL made them)."""
    counts: list[int] = []

    def spy(path, resampling, profile, overviews=None):
        counts.append(len(overviews or ()))
        make_cog(path, resampling, profile, overviews)

    monkeypatch.setattr(atomic, "make_cog", spy)
    return counts


def streamed(path, data: np.ndarray, profile: dict, resampling: str, rows: int, cols: int,
             column_major: bool = False) -> None:
    """Write ``data`` as a COG output in blocks of ``rows`` x ``cols``, strip by strip (with
    ``column_major``, column by column instead)."""
    height, width = data.shape[1:]
    windows = [Window(c, r, min(cols, width - c), min(rows, height - r))
               for r in range(0, height, rows) for c in range(0, width, cols)]
    if column_major:
        windows.sort(key=lambda w: (w.col_off, w.row_off))
    with raster_output(path, False, [], profile, cog=resampling) as dst:
        for w in windows:
            block = data[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]
            dst.write(block if data.shape[0] > 1 else block[0], None if data.shape[0] > 1 else 1,
                      window=w)


def gdal_cog(path, data: np.ndarray, profile: dict, resampling: str) -> None:
    """The same data through GDAL's COG driver, which makes the overviews itself (with its
    default compressed scratch file, whose results do not depend on its chunking)."""
    plain = path.with_name("plain.tif")
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(data)
    with rasterio.open(plain) as src, rasterio.Env(COG_TMP_COMPRESSION="LZW"):
        rasterio.shutil.copy(src, path, driver="COG", **cog_options(profile, resampling))


def test_overview_sizes_round_down_as_the_cog_driver_does():
    assert overview_sizes(10980, 10980, 256) == [(5490, 5490), (2745, 2745), (1372, 1372),
                                                 (686, 686), (343, 343), (171, 171)]
    assert overview_sizes(2048, 2048, 256) == [(1024, 1024), (512, 512), (256, 256)]
    assert overview_sizes(256, 100, 256) == []


@pytest.mark.parametrize(("source", "kind", "resampling", "nodata", "size", "shapes"), [
    # reflectance with a nodata corner
    (WINTER_S2, "uint16", AVERAGE, 0, ODD, [(350, 273), (175, 136), (87, 68)]),
    (WINTER_S2, "uint16", AVERAGE, 0, EVEN, [(320, 256), (160, 128), (80, 64)]),
    (WINTER_S2, "uint16", AVERAGE, None, ODD, [(350, 273), (175, 136), (87, 68)]),
    (WINTER_S2, "uint16", AVERAGE, None, EVEN, [(320, 256), (160, 128), (80, 64)]),
    # signed digital numbers (as Sen1Floods11 ships them), here shifted to span zero
    (WINTER_S2, "int16", AVERAGE, 0, ODD, [(350, 273), (175, 136), (87, 68)]),
    (WINTER_S2, "int16", AVERAGE, None, ODD, [(350, 273), (175, 136), (87, 68)]),
    (WINTER_S2, "int16", AVERAGE, -9999, EVEN, [(320, 256), (160, 128), (80, 64)]),
    # dB with NaN gaps
    (FLOODS_S1, "float32", AVERAGE, float("nan"), ODD, [(350, 273), (175, 136), (87, 68)]),
    # classes
    (WINTER_S2, "uint8", NEAREST, 255, ODD, [(350, 273), (175, 136), (87, 68)]),
])
@pytest.mark.slow
def test_streamed_overviews_equal_gdals_own(tmp_path, handed, source, kind, resampling,
                                            nodata, size, shapes):
    data = mosaic(source, size)
    if kind == "uint8":
        data = (data[:1] // 1000).clip(0, 4).astype(np.uint8)
    if kind == "int16":
        data = data.astype(np.int32) - int(np.median(data))
        assert (data < 0).mean() > 0.3 and (data == 0).any()
    data = data.astype(kind)
    if nodata is not None:
        data[:, :150, :90] = nodata
    profile = profile_of(data, nodata)
    assert supported(kind, nodata, resampling == NEAREST)
    out, reference = tmp_path / "out.tif", tmp_path / "reference.tif"
    streamed(out, data, profile, resampling, rows=97, cols=301)  # strips cut levels oddly
    assert handed == [3]
    gdal_cog(reference, data, profile, resampling)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "plain.tif",
                                                          "reference.tif"]
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid and not errors, errors
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), data, equal_nan=True)
        assert ds.overviews(1) == [2, 4, 8]  # halved until 128 px blocks hold them
    ours, gdal = read_levels(out), read_levels(reference)
    assert [a.shape[1:] for a in ours] == shapes
    for a, b in zip(ours, gdal, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    if nodata is not None:
        assert (np.isnan(ours[0][:, :2, :2]) if kind == "float32" else
                ours[0][:, :2, :2] == nodata).all()  # nodata stays nodata


def test_blocks_out_of_strip_order_leave_the_overviews_to_gdal(tmp_path, handed):
    data = mosaic(WINTER_S2, ODD, band_count=3)
    profile = profile_of(data, None)
    out, reference = tmp_path / "out.tif", tmp_path / "reference.tif"
    streamed(out, data, profile, AVERAGE, rows=128, cols=128, column_major=True)
    assert handed == [0]
    gdal_cog(reference, data, profile, AVERAGE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif", "plain.tif",
                                                          "reference.tif"]
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), data) and ds.overviews(1) == [2, 4, 8]
    for a, b in zip(read_levels(out), read_levels(reference), strict=True):
        assert np.abs(a.astype(int) - b).max() <= 1  # GDAL's own, from its other scratch


def test_scratch_files_of_a_dead_run_are_removed(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # a process now dead
    partial = f".out.{atomic._HOST}.{done.stdout.strip()}.0123abcd.partial.tif"
    names = [partial + end for end in ("", ".ovr1", ".ovr12", ".vrt", ".cog", ".cog.ovr.tmp",
                                       ".aux.xml")]
    for name in names:
        (tmp_path / name).write_bytes(b"left by a killed run")
    (tmp_path / "out.tif.ovr1").write_bytes(b"not ours")
    remove_stale_partials(tmp_path / "out.tif")
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif.ovr1"]
