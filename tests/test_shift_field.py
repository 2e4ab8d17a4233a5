"""The shift field on a mosaic of real pairs with a known smooth deformation of the S1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from deformed_mosaic import deformation, write_mosaic

from cloudfree.coregister import coregister_file
from cloudfree.shift_field import ShiftField

SIZE = 1536


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mosaic")
    s1, s2 = write_mosaic(folder, SIZE)
    (folder / "aligned").mkdir()
    aligned, _ = write_mosaic(folder / "aligned", SIZE, deform=False)
    return s1, s2, aligned


def test_known_deformation_recovered(mosaic, tmp_path):
    s1, s2, aligned = mosaic
    out, report_path = tmp_path / "out.tif", tmp_path / "report.json"
    report = coregister_file(s1, s2, out, report_path=report_path, quiet=True)
    assert report["applied"] and report["windows"] == 9 and report["inlier_windows"] == 9
    assert report["field"]["degree"] == 2
    windows = json.loads(report_path.read_text())["window_estimates"]
    assert len(windows) == 9 and all(w["reliable"] and w["inlier"] for w in windows)
    cols, rows = np.meshgrid(np.linspace(0, SIZE, 25), np.linspace(0, SIZE, 25))
    with rasterio.open(out) as ds:
        field = json.loads(ds.tags()["COREGISTER_FIELD"])
    true_x, true_y = deformation(cols, rows, SIZE)
    got_x, got_y = ShiftField(tuple(field["coef_x"]), tuple(field["coef_y"]), field["degree"],
                              tuple(field["size"])).at(cols, rows)
    error = np.hypot(got_x - true_x, got_y - true_y)
    assert np.sqrt(np.mean(error ** 2)) <= 0.3
    with rasterio.open(out) as corrected, rasterio.open(aligned) as truth, \
            rasterio.open(s1) as deformed:
        inner = (slice(None), slice(16, -16), slice(16, -16))
        fixed = np.nanmedian(np.abs(corrected.read()[inner] - truth.read()[inner]))
        before = np.nanmedian(np.abs(deformed.read()[inner] - truth.read()[inner]))
    assert fixed < 0.5 * before
