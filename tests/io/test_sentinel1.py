"""Sentinel-1 reading on the real samples: band names, units, nodata, clear errors."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S1, WINTER_S1

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.io.sentinel1 import db_to_linear, guess_units, linear_to_db, open_sentinel1


def copy_s1(src, dst, *, transform_data=None, bands=None, descriptions=None, crs="keep"):
    """A copy of a real S1 file with its values, bands, descriptions or CRS changed."""
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read()
        descriptions = descriptions or ds.descriptions
    if transform_data:
        data = transform_data(data)
    if bands:
        data = data[[b - 1 for b in bands]]
        descriptions = tuple(descriptions[b - 1] for b in bands)
    profile.update(count=data.shape[0], dtype="float32")
    if crs is None:
        profile.pop("crs")
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data.astype(np.float32))
        out.descriptions = descriptions
    return dst


def test_named_bands_db_and_nan_nodata():
    with open_sentinel1(FLOODS_S1) as s1, rasterio.open(FLOODS_S1) as ds:
        assert s1.bands == (1, 2) and s1.units == "db"
        power = s1.read_linear()
        db = ds.read()
    assert power.shape == (2, 512, 512) and power.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(power), np.isnan(db))
    np.testing.assert_allclose(linear_to_db(power), db, atol=1e-4)


def test_band_names_any_case_and_order(tmp_path):
    path = copy_s1(FLOODS_S1, tmp_path / "s1.tif", bands=[2, 1], descriptions=("vv", "Vh"))
    with open_sentinel1(path) as s1:
        assert s1.bands == (2, 1)


def test_unnamed_bands_read_in_order_vv_vh():
    with open_sentinel1(WINTER_S1) as s1:
        assert s1.bands == (1, 2) and s1.units == "db"


def test_linear_power_detected_and_converted(tmp_path):
    path = copy_s1(WINTER_S1, tmp_path / "lin.tif", transform_data=lambda d: 10 ** (d / 10))
    with open_sentinel1(path) as s1, open_sentinel1(WINTER_S1) as ref:
        assert s1.units == "linear"
        np.testing.assert_allclose(s1.read_linear(), ref.read_linear(), rtol=1e-5)


@pytest.mark.parametrize(("linear", "claimed"), [(True, "db"), (False, "linear")])
def test_wrong_units_is_a_usage_error(tmp_path, linear, claimed):
    path = copy_s1(WINTER_S1, tmp_path / "s1.tif",
                   transform_data=(lambda d: 10 ** (d / 10)) if linear else None)
    with pytest.raises(UsageError, match=f"s1_units={claimed} contradicts"):
        open_sentinel1(path, claimed)


def test_db_scaled_by_100_reads_divided_with_a_warning(tmp_path, caplog):
    """dB stored times 100 (an integer habit) is read divided by 100, and the user is told."""
    path = copy_s1(WINTER_S1, tmp_path / "x100.tif", transform_data=lambda d: d * 100)
    logger = logging.getLogger("cloudfree")  # the CLI's logger need not propagate to the root
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="cloudfree"):
            with open_sentinel1(path) as s1, open_sentinel1(WINTER_S1) as real:
                assert s1.units == "db" and s1.db_scale == 0.01
                np.testing.assert_allclose(s1.read_linear(), real.read_linear(), rtol=1e-5)
            # one record, seen once or twice (through the root logger too, when it propagates)
            [warning] = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
            caplog.clear()
            for real in (WINTER_S1, FLOODS_S1):
                open_sentinel1(real).close()
            assert not [r for r in caplog.records if r.levelname == "WARNING"]
    finally:
        logger.removeHandler(caplog.handler)
    assert re.search(r"x100.tif: median backscatter -\d{3,4} is dB x 100 \(-\d+.\d+ dB\); "
                     "read divided by 100", warning)


def test_amplitude_is_told_apart_from_power(tmp_path, caplog):
    """Linear amplitude (the square root of power) passes the units check, so the user is warned;
    the same scenes in power give no warning."""
    logger = logging.getLogger("cloudfree")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="cloudfree"):
            for real in (WINTER_S1, FLOODS_S1):
                for name, data in (("power", lambda d: 10 ** (d / 10)),
                                   ("amplitude", lambda d: 10 ** (d / 20))):
                    open_sentinel1(copy_s1(real, tmp_path / f"{name}_{real.name}",
                                           transform_data=data)).close()
            warnings = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
    finally:
        logger.removeHandler(caplog.handler)
    assert sorted(Path(w.split(": ")[0]).name for w in warnings) == sorted(
        f"amplitude_{p.name}" for p in (FLOODS_S1, WINTER_S1))
    for warning in warnings:
        assert re.fullmatch(r"\S+: the backscatter looks like amplitude, not power \(as power: VV "
                            r"median -\d\.\d dB, VV - VH \d\.\d dB, about half of "
                            r"Sentinel-1's usual\); if it is amplitude, square it or give it in dB",
                            warning)


def test_one_band_missing_crs_and_all_zero_are_clear_errors(tmp_path):
    with pytest.raises(CloudfreeError, match="1 band; Sentinel-1 input needs two bands"):
        open_sentinel1(copy_s1(WINTER_S1, tmp_path / "one.tif", bands=[1]))
    with pytest.raises(CloudfreeError, match="zero.tif: no valid VV pixels .every value read is 0"):
        open_sentinel1(copy_s1(WINTER_S1, tmp_path / "zero.tif", transform_data=lambda d: d * 0))
    with pytest.raises(CloudfreeError, match="no coordinate reference system"):
        open_sentinel1(copy_s1(WINTER_S1, tmp_path / "nocrs.tif", crs=None))


def test_conversions_and_guess():
    db = np.array([-25.0, -10.0, 0.0, np.nan], np.float32)
    np.testing.assert_allclose(linear_to_db(db_to_linear(db)), db, atol=1e-5)
    assert np.isnan(linear_to_db(np.array([0.0, -1.0], np.float32))).all()
    assert guess_units(np.array([-12.0, -8.0, 1.0])) == "db"
    assert guess_units(np.array([0.02, 0.1, 0.5])) == "linear"
    assert guess_units(np.array([3.0, 40.0, 200.0])) is None


def test_reads_on_many_threads_at_once_match_reads_on_one_each_thread_a_handle():
    """Loaders read S1 with no lock: every thread reads through a handle of its own, and the
    values are those of a read on the opening thread."""
    from concurrent.futures import ThreadPoolExecutor

    from rasterio.windows import Window

    windows = [Window(c, r, 96, 80) for r in range(0, 432, 48) for c in range(0, 416, 52)]
    with open_sentinel1(FLOODS_S1) as s1:
        expected = [s1.read_linear(w) for w in windows]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(s1.read_linear, windows))
            handles = set(pool.map(lambda _: id(s1.handle()), range(64)))
        assert s1.handle() is s1.dataset
        assert id(s1.dataset) not in handles
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
    assert s1.dataset.closed
