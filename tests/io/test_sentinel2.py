"""Reading Sentinel-2: band names and order, dtypes, offset, nodata, SAFE folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S2, SUMMER_S1, SUMMER_S2
from rasterio.windows import Window
from s2_builders import coarsen_like_l1c, read_stack, write_safe, write_stack

from cloudfree.core.errors import CloudfreeError
from cloudfree.io.sentinel2 import BANDS, canonical_band, open_sentinel2


@pytest.mark.parametrize(
    ("name", "expected"),
    [("B1", "B01"), ("b01", "B01"), ("B8A", "B8A"), ("b8a", "B8A"), ("B12", "B12"),
     ("B08", "B08"), ("VV", None), ("B13", None), ("", None), (None, None)],
)
def test_canonical_band(name, expected):
    assert canonical_band(name) == expected


def test_unnamed_13_band_stack_uses_l1c_order():
    with open_sentinel2(SUMMER_S2) as s2, rasterio.open(SUMMER_S2) as ds:
        assert s2.bands == BANDS
        refl, valid = s2.read(bands=("B8A", "B10"))
        assert valid.all()
        np.testing.assert_allclose(refl[0], ds.read(9) / 10000, rtol=1e-6)
        np.testing.assert_allclose(refl[1], ds.read(11) / 10000, rtol=1e-6)
        assert s2.offset == 0 and s2.dn_scale == 10000


def test_unnamed_12_band_stack_uses_l2a_order(tmp_path, cloudfree_log):
    cloudfree_log.set_level("DEBUG", logger="cloudfree")  # the order is a note (-v)
    data, profile = read_stack(SUMMER_S2, 64)
    l2a = write_stack(tmp_path / "l2a.tif", np.delete(data, 10, axis=0), profile)
    with open_sentinel2(l2a) as s2:
        assert s2.bands == tuple(b for b in BANDS if b != "B10") and s2.level == "L2A"
        refl, _ = s2.read(bands=("B8A", "B09", "B11"))
    np.testing.assert_allclose(refl, data[[8, 9, 11]] / 10000, rtol=1e-6)
    assert "12-band L2A order" in cloudfree_log.text


def test_named_bands_int16_and_nodata(tmp_path):
    with open_sentinel2(FLOODS_S2) as s2:
        assert s2.bands == BANDS and s2.dtype == "int16" and s2.nodata == 0
        assert str(s2.crs) == "EPSG:4326"
    # Bands in another order are found by their names.
    with rasterio.open(FLOODS_S2) as ds:
        data, profile = ds.read(), {"crs": ds.crs, "transform": ds.transform}
    order = list(range(13))[::-1]
    names = [f"b{int(BANDS[i][1:]) if BANDS[i] != 'B8A' else '8a'}" for i in order]
    data[:, :10, :20] = 0
    shuffled = write_stack(tmp_path / "shuffled.tif", data[order], profile, nodata=0,
                           descriptions=names)
    with open_sentinel2(shuffled) as s2:
        refl, valid = s2.read(bands=("B02", "B11"))
    np.testing.assert_allclose(refl[0][20:], data[1][20:] / 10000, rtol=1e-6)
    np.testing.assert_allclose(refl[1][20:], data[11][20:] / 10000, rtol=1e-6)
    assert not valid[:10, :20].any() and valid[10:].all()
    assert (refl[:, :10, :20] == 0).all()


def test_a_pixel_at_0_dn_in_every_band_is_nodata_even_undeclared(tmp_path):
    # SEN12MS-CR declares no nodata; a zero-filled swath edge is still no measurement, while a
    # pixel with a single band at 0 is data
    data, profile = read_stack(SUMMER_S2, 64)
    data[:, :, :8] = 0
    data[10, 20:, 8:] = 0  # B10 alone at 0 DN
    scene = write_stack(tmp_path / "edge.tif", data, profile)
    with open_sentinel2(scene) as s2:
        assert s2.nodata is None
        refl, valid = s2.read()
        _, valid_b02 = s2.read(bands=("B02",))
    assert not valid[:, :8].any() and valid[:, 8:].all()
    np.testing.assert_array_equal(valid_b02, valid)  # as seen from one band
    np.testing.assert_allclose(refl[1][:, 8:], data[1][:, 8:] / 10000, rtol=1e-6)


def test_float_reflectance_is_recognised(tmp_path, caplog):
    data, profile = read_stack(SUMMER_S2, 256)
    path = write_stack(tmp_path / "refl.tif", data / 10000.0, profile, dtype="float32")
    logging.getLogger("cloudfree").addHandler(caplog.handler)
    with caplog.at_level("DEBUG", logger="cloudfree"), open_sentinel2(path) as s2:
        assert s2.dn_scale == 1.0
        refl, _ = s2.read(bands=("B02",))
        back = s2.to_dn(refl)
    logging.getLogger("cloudfree").removeHandler(caplog.handler)
    assert "read as reflectance" in caplog.text
    np.testing.assert_allclose(refl[0], data[1] / 10000, rtol=1e-6)
    assert back.dtype == np.float32
    dn_float = write_stack(tmp_path / "dn.tif", data, profile, dtype="float32")
    with open_sentinel2(dn_float) as s2:
        assert s2.dn_scale == 10000


@pytest.mark.parametrize("path", [SUMMER_S2, FLOODS_S2])
def test_reflectance_is_exactly_the_float32_dn_over_the_scale(path):
    # uint16 and int16 (with nodata): the cast and the divide in one pass, into a given array too
    with open_sentinel2(path) as s2, rasterio.open(path) as ds:
        raw, valid = s2.read_dn(None, BANDS)
        out = np.full(raw.shape, np.nan, np.float32)
        refl, valid = s2.reflectance(raw, valid, out)
        assert refl is out and valid.any()
        expected = ds.read().astype(np.float32) / np.float32(10000)
        np.testing.assert_array_equal(refl[:, valid], expected[:, valid])
        assert not refl[:, ~valid].any()


def test_offset_option_and_dn_round_trip():
    with open_sentinel2(SUMMER_S2, offset="1000") as s2, rasterio.open(SUMMER_S2) as ds:
        refl, _ = s2.read(bands=BANDS)
        np.testing.assert_allclose(refl[1], (ds.read(2) - 1000.0) / 10000, rtol=1e-5, atol=1e-7)
        # exactly float32(dn - offset) / scale, the cast and the offset taken in one pass
        dn = ds.read().astype(np.float32)
        np.testing.assert_array_equal(refl, (dn - np.float32(1000)) / np.float32(10000))
        np.testing.assert_array_equal(s2.to_dn(refl), ds.read())


def test_safe_folder_matches_geotiff(tmp_path):
    data, profile = read_stack(SUMMER_S2, 252)
    l1c = coarsen_like_l1c(data)
    tif = write_stack(tmp_path / "stack.tif", l1c, profile)
    safe = write_safe(tmp_path / "S2A_MSIL1C_20220301_N0400.SAFE", l1c, profile, offset=1000)
    with open_sentinel2(safe) as s2, open_sentinel2(tif) as ref:
        assert s2.kind == "safe" and s2.offset == 1000
        assert (s2.width, s2.height, s2.transform, s2.crs) == (252, 252, ref.transform, ref.crs)
        whole, valid = s2.read()
        np.testing.assert_array_equal(whole, ref.read()[0])
        assert valid.all()
        # An odd window of the 60 m band replicates exactly as the whole read does.
        from rasterio.windows import Window

        part, _ = s2.read(Window(7, 13, 101, 55), bands=("B01", "B05"))
        np.testing.assert_array_equal(part, whole[[0, 4], 13:68, 7:108])


def test_safe_offset_auto_from_metadata_and_override(tmp_path):
    data, profile = read_stack(SUMMER_S2, 252)
    safe = write_safe(tmp_path / "old.SAFE", coarsen_like_l1c(data), profile, offset=0)
    with open_sentinel2(safe) as s2:
        assert s2.offset == 0
    with open_sentinel2(safe, offset="1000") as s2:
        assert s2.offset == 1000


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("not a raster"), "not a raster GDAL can read"),
        (lambda p: None, "does not exist"),
    ],
)
def test_bad_inputs(tmp_path, make, message):
    path = tmp_path / "scene.tif"
    make(path)
    with pytest.raises(CloudfreeError, match=message):
        open_sentinel2(path)


def test_wrong_band_count_and_missing_band(tmp_path):
    with pytest.raises(CloudfreeError,
                       match="2 unnamed band.*expected 13 bands in L1C order.*12 in L2A order"):
        open_sentinel2(SUMMER_S1)
    data, profile = read_stack(SUMMER_S2, 64)
    names = [b for b in BANDS if b != "B10"]
    l2a = write_stack(tmp_path / "l2a.tif", np.delete(data, 10, axis=0), profile,
                      descriptions=names)
    with open_sentinel2(l2a) as s2, pytest.raises(CloudfreeError, match="band B10 missing"):
        s2.require(("B01", "B10"), "the cloud mask")


def test_reads_on_a_thread_pool_match_and_leave_no_handles_behind():
    # each pool thread reads through handles of its own; they close when the pool's threads
    # end, so a pass on a pool leaves only the opening thread's handle open
    from cloudfree.core.threads import ordered_map

    def open_handles() -> int:
        return sum(Path(f"/proc/self/fd/{fd}").resolve() == SUMMER_S2.resolve()
                   for fd in os.listdir("/proc/self/fd"))

    windows = [Window(c, r, 64, 64) for r in range(0, 256, 64) for c in range(0, 256, 64)]
    with open_sentinel2(SUMMER_S2) as s2:
        alone = [s2.read(w)[0] for w in windows]
        before = open_handles()
        for _ in range(3):  # three passes, three pools of two threads
            pooled = list(ordered_map(lambda w: s2.read(w)[0], windows, 2))
            for a, b in zip(alone, pooled, strict=True):
                np.testing.assert_array_equal(a, b)
        assert before == 1 and open_handles() == before
    assert open_handles() == 0
