"""The shift field on a mosaic of real pairs with a known smooth deformation of the S1."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from deformed_mosaic import field_error, write_mosaic
from rasterio.windows import Window

from cloudfree.coregister.s1_to_s2 import coregister_file
from cloudfree.coregister.shift_field import WindowEstimate, fit_field

SIZE = 1536


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """The deformed mosaic, the same mosaic undeformed, and coregister's output and report."""
    folder = tmp_path_factory.mktemp("mosaic")
    s1, s2 = write_mosaic(folder, SIZE)
    (folder / "aligned").mkdir()
    aligned, _ = write_mosaic(folder / "aligned", SIZE, deform=False)
    out, report_path = folder / "out.tif", folder / "report.json"
    report = coregister_file(s1, s2, out, report_path=report_path, quiet=True)
    return s1, aligned, out, report, json.loads(report_path.read_text())


@pytest.mark.slow
def test_known_deformation_recovered(corrected):
    s1, aligned, out, report, written = corrected
    assert report["applied"] and report["windows"] == 9 and report["inlier_windows"] == 9
    assert report["field"]["degree"] == 2
    windows = written["window_estimates"]
    assert len(windows) == 9 and all(w["reliable"] and w["inlier"] for w in windows)
    assert np.sqrt(np.mean(field_error(out, SIZE) ** 2)) <= 0.3
    with rasterio.open(out) as fixed, rasterio.open(aligned) as truth, \
            rasterio.open(s1) as deformed:
        inner = (slice(None), slice(16, -16), slice(16, -16))
        after = np.nanmedian(np.abs(fixed.read()[inner] - truth.read()[inner]))
        before = np.nanmedian(np.abs(deformed.read()[inner] - truth.read()[inner]))
    assert after < 0.5 * before


def test_outlier_window_rejected(corrected):
    written = corrected[4]["window_estimates"]
    estimates = [WindowEstimate(Window(w["col_off"], w["row_off"], w["width"], w["height"]),
                                w["dx"], w["dy"], w["significance"], w["reliable"])
                 for w in written]
    clean, _ = fit_field(estimates, (SIZE, SIZE))
    estimates[4] = replace(estimates[4], dx=estimates[4].dx + 2.5, dy=estimates[4].dy - 2.0)
    field, marked = fit_field(estimates, (SIZE, SIZE))
    assert [e.inlier for e in marked] == [True] * 4 + [False] + [True] * 4
    others, _ = fit_field(estimates[:4] + estimates[5:], (SIZE, SIZE))
    cols, rows = np.meshgrid(np.linspace(0, SIZE, 9), np.linspace(0, SIZE, 9))
    assert np.allclose(field.at(cols, rows), others.at(cols, rows), atol=1e-9)  # no weight
    # where the windows are, the field stays within 0.2 px of the clean one (its corners are
    # extrapolated by a quadratic through eight points and may move more)
    cx = [w["col_off"] + w["width"] / 2 for w in written]
    cy = [w["row_off"] + w["height"] / 2 for w in written]
    assert np.allclose(field.at(np.array(cx), np.array(cy)), clean.at(np.array(cx), np.array(cy)),
                       atol=0.2)
