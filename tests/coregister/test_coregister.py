"""S1 onto the S2 grid on real pairs: exact grid, shift refinement, reliability, errors, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S1, FLOODS_S2, SUMMER_S1, SUMMER_S2, WINTER_CLEAR, WINTER_S1, WINTER_S2
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from cloudfree.coregister.s1_to_s2 import Grid, coregister_file, coregister_to_grid
from cloudfree.coregister.shift_estimation import RULE, halves_disagreement
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import open_sentinel2


def moved_s1(src, dst, dx=0.0, dy=0.0, grid=None):
    """Real S1 with its transform moved by (dx, dy) pixels, or relabelled onto another grid."""
    with rasterio.open(src) as ds:
        profile, data, names = ds.profile, ds.read(), ds.descriptions
        profile["transform"] = ds.transform @ rasterio.Affine.translation(dx, dy)
    if grid is not None:
        profile.update(crs=grid.crs, transform=grid.transform)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = names
    return dst


@pytest.fixture(scope="module")
def utm_s2(tmp_path_factory):
    """The real Sen1Floods11 S2 warped from EPSG:4326 to its UTM zone (30N) at 10 m."""
    path = tmp_path_factory.mktemp("utm") / "s2_utm.tif"
    with rasterio.open(FLOODS_S2) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:32630", src.width, src.height, *src.bounds, resolution=10)
        profile = src.profile | {"crs": "EPSG:32630", "transform": transform, "width": width,
                                 "height": height}
        with rasterio.open(path, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(dst, b),
                          resampling=Resampling.bilinear)
            dst.descriptions = src.descriptions
    return path


def test_aligned_pair_near_zero_and_exact_grid(tmp_path, cli):
    out, report = tmp_path / "out.tif", tmp_path / "report.json"
    result = cli("coregister", "--s1", WINTER_S1, "--s2", WINTER_S2, "-o", out, "--report", report,
                 "-q")
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    assert r["reliable"] and r["applied"] and r["overlap_fraction"] == 1.0
    assert np.hypot(r["shift_px"]["x"], r["shift_px"]["y"]) < 0.5
    assert r["shift_m"]["east"] == pytest.approx(10 * r["shift_px"]["x"], abs=0.01)
    with rasterio.open(out) as o, rasterio.open(WINTER_S2) as s2, rasterio.open(WINTER_S1) as s1:
        assert (o.crs, o.transform, o.width, o.height) == (s2.crs, s2.transform, s2.width,
                                                          s2.height)
        assert o.descriptions == ("VV", "VH") and o.dtypes[0] == "float32"
        assert np.isnan(o.nodata) and o.compression is not None and o.block_shapes[0] == (256, 256)
        assert float(o.tags()["COREGISTER_SHIFT_X_PX"]) == r["applied_px"]["x"]
        assert np.nanmedian(np.abs(o.read() - s1.read())) < 1.5  # sub-pixel resampling only


def test_known_shift_recovered_and_compensated(tmp_path):
    with open_sentinel2(WINTER_S2) as s2:
        moved = moved_s1(WINTER_S1, tmp_path / "moved.tif", 3.4, -2.7)
        with coregister_to_grid(moved, s2) as shifted, coregister_to_grid(WINTER_S1, s2) as ref:
            assert shifted.applied and ref.applied
            (dx, dy), (x0, y0) = shifted.field.at(128, 128), ref.field.at(128, 128)
            assert np.hypot(dx - x0 - 3.4, dy - y0 + 2.7) < 0.3
            inner = (slice(None), slice(12, -12), slice(12, -12))
            corrected, aligned = shifted.read()[inner], ref.read()[inner]
    assert np.nanmedian(np.abs(corrected - aligned)) < 0.3


def test_fractional_shifts_recovered_to_a_tenth_of_a_pixel(tmp_path):
    """The refined peak search: a parabola through integer lags was off by 0.09-0.15 px here."""
    with open_sentinel2(WINTER_S2) as s2, coregister_to_grid(WINTER_S1, s2) as ref:
        x0, y0 = ref.field.at(128, 128)
        for ox, oy in ((0.5, -0.5), (2.25, 1.75), (-4.6, 3.3), (1.4, -6.2), (-0.3, 0.8)):
            moved = moved_s1(WINTER_S1, tmp_path / f"moved_{ox}_{oy}.tif", ox, oy)
            with coregister_to_grid(moved, s2) as shifted:
                dx, dy = shifted.field.at(128, 128)
            assert np.hypot(dx - x0 - ox, dy - y0 - oy) < 0.06, (ox, oy, dx - x0, dy - y0)


@pytest.mark.parametrize("s1, s2", [(WINTER_S1, SUMMER_S2), (SUMMER_S1, WINTER_CLEAR)])
def test_wrong_partner_unreliable_and_not_applied(tmp_path, s1, s2):
    with open_sentinel2(s2) as scene:
        wrong = moved_s1(s1, tmp_path / "wrong.tif", grid=scene)
        with coregister_to_grid(wrong, scene) as result:
            report = result.report()
            untouched = result.read()
    assert not report["reliable"] and not report["applied"] and result.field is None
    assert report["applied_px"] == {"x": 0.0, "y": 0.0}
    (window,) = report["window_estimates"]
    assert (window["significance"] < RULE.significance
            or window["halves_disagreement"] > RULE.disagreement)
    assert report["reason"].startswith("no significant correlation peak") or \
        "halves of the window disagree" in report["reason"]
    with rasterio.open(s1) as ds:
        np.testing.assert_allclose(untouched, ds.read(), atol=1e-3)


def crop(src, dst, window):
    """A window of a real raster as its own file."""
    with rasterio.open(src) as ds:
        profile, data, names = ds.profile, ds.read(window=window), ds.descriptions
        profile.update(width=window.width, height=window.height,
                       transform=ds.window_transform(window))
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = names
    return dst


def test_small_patch_with_large_displacement_corrected(tmp_path):
    # 128 px of the real pair: the former fixed gate (PSR >= 7 on VV) gave it 6.6 and no shift
    s2 = crop(FLOODS_S2, tmp_path / "s2.tif", Window(128, 128, 128, 128))
    moved = moved_s1(FLOODS_S1, tmp_path / "moved.tif", 9.3, -8.6)
    with open_sentinel2(s2) as scene, coregister_to_grid(moved, scene) as shifted, \
            coregister_to_grid(FLOODS_S1, scene) as own:
        assert shifted.applied and own.applied
        (dx, dy), (x0, y0) = shifted.field.at(64, 64), own.field.at(64, 64)
    assert np.hypot(dx - x0 - 9.3, dy - y0 + 8.6) < 0.3


def test_fair_peak_that_the_halves_agree_on_is_applied(tmp_path):
    # 96 px of the real pair displaced by (3, -2): the peak stays under the former single
    # threshold (7) but both halves of the window find the same shift, so it is applied
    s2 = crop(FLOODS_S2, tmp_path / "s2.tif", Window(288, 384, 96, 96))
    moved = moved_s1(FLOODS_S1, tmp_path / "moved.tif", 3, -2)
    with open_sentinel2(s2) as scene, coregister_to_grid(moved, scene) as shifted, \
            coregister_to_grid(FLOODS_S1, scene) as own:
        report = shifted.report()
        assert shifted.applied and own.applied
        (dx, dy), (x0, y0) = shifted.field.at(48, 48), own.field.at(48, 48)
    assert RULE.significance <= report["significance"] < 7
    assert report["halves_disagreement"] <= RULE.disagreement
    assert np.hypot(dx - x0 - 3, dy - y0 + 2) < 0.5


def test_report_carries_band_and_half_estimates(tmp_path, cli):
    out, report = tmp_path / "out.tif", tmp_path / "report.json"
    result = cli("coregister", "--s1", FLOODS_S1, "--s2", FLOODS_S2, "-o", out, "--report",
                 report, "-q")
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    (window,) = r["window_estimates"]
    bands = window["band_estimates"]
    assert [(b["optical"], b["sar"]) for b in bands] == [
        (o, s) for o in ("B02", "B03", "B04", "B08") for s in ("VV", "VH")]
    points = np.array([(b["dx"], b["dy"]) for b in bands])
    spread = np.median(np.hypot(*(points - np.median(points, axis=0)).T))
    assert window["band_spread"] == pytest.approx(spread, abs=2e-3)
    halves = window["halves"]
    assert set(halves) == {"left", "right", "top", "bottom"}
    assert window["halves_disagreement"] == pytest.approx(halves_disagreement(
        (window["dx"], window["dy"]), {k: (v["dx"], v["dy"]) for k, v in halves.items()}),
        abs=2e-3)
    assert r["halves_disagreement"] == window["halves_disagreement"]
    assert r["band_spread"] == window["band_spread"]
    assert f"halves disagree by {r['halves_disagreement']} px, applied" in result.output


@pytest.mark.parametrize("wrong", [False, True])
def test_evidence_for_reports_changes_no_estimate(tmp_path, wrong):
    # without ``evidence`` (as ``remove`` runs) the bands are not estimated, nor the halves of a
    # window whose peak is too weak to be trusted; shift, significance and decision stay the same
    with open_sentinel2(FLOODS_S2 if wrong else WINTER_S2) as s2:
        s1 = moved_s1(WINTER_S1, tmp_path / "s1.tif", 1.5, -0.5, grid=s2 if wrong else None)
        with coregister_to_grid(s1, s2, evidence=True) as full, \
                coregister_to_grid(s1, s2) as lean:
            (a,), (b,) = full.estimate.estimates, lean.estimate.estimates
    assert a.significance == pytest.approx(b.significance, rel=1e-9)
    assert (a.dx, a.dy, a.reliable, a.reason) == (b.dx, b.dy, b.reliable, b.reason)
    assert len(a.evidence.bands) == 8 and not b.evidence.bands and b.evidence.spread is None
    assert a.evidence.halves is not None and a.evidence.disagreement is not None
    assert (b.evidence.halves is None) == (b.significance < RULE.significance) == wrong
    if not wrong:
        assert a.reliable and a.evidence.halves == b.evidence.halves


def test_halves_disagreement_takes_the_better_split():
    whole = (1.0, -2.0)
    halves = {"left": (1.2, -2.0), "right": (1.0, -1.0), "top": (9.0, 4.0), "bottom": (1.0, -2.0)}
    assert halves_disagreement(whole, halves) == pytest.approx(1.0)  # left/right: 0.2 and 1
    halves["right"] = (-5.0, -2.0)
    assert halves_disagreement(whole, halves) == pytest.approx(6.0)  # left/right 6, top 10


@pytest.mark.parametrize("s1, s2, window", [
    (FLOODS_S1, FLOODS_S2, Window(384, 384, 96, 96)),  # little common structure
    (SUMMER_S1, SUMMER_S2, None),  # half under cumulus
])
def test_no_trustworthy_estimate_no_shift_and_why(tmp_path, s1, s2, window, cli):
    if window is not None:
        s2 = crop(s2, tmp_path / "s2.tif", window)
    out, report = tmp_path / "out.tif", tmp_path / "report.json"
    result = cli("coregister", "--s1", s1, "--s2", s2, "-o", out, "--report", report)
    assert result.exit_code == 0, result.output
    r = json.loads(report.read_text())
    assert not r["applied"] and r["applied_px"] == {"x": 0.0, "y": 0.0}
    assert r["reason"].startswith("no significant correlation peak")
    assert "not applied: no significant correlation peak" in result.output
    with rasterio.open(out) as o:
        assert o.tags()["COREGISTER_APPLIED"] == "FALSE" and "COREGISTER_FIELD" not in o.tags()


def test_a_patch_too_small_to_estimate_says_why_without_empty_figures(tmp_path, cli):
    s2 = crop(FLOODS_S2, tmp_path / "s2.tif", Window(100, 100, 3, 3))
    result = cli("coregister", "--s1", FLOODS_S1, "--s2", s2, "-o", tmp_path / "out.tif")
    assert result.exit_code == 0, result.output
    assert "not applied: no edges in the overlap" in result.output
    assert "None" not in result.output and "halves disagree" not in result.output


def test_geographic_s1_onto_utm_grid_and_back(tmp_path, utm_s2):
    out = tmp_path / "on_utm.tif"
    report = coregister_file(FLOODS_S1, utm_s2, out, block=200)
    assert report["reliable"] and 0.9 < report["overlap_fraction"] < 1
    with open_sentinel2(FLOODS_S2) as native, coregister_to_grid(FLOODS_S1, native) as direct:
        expected = direct.report()["shift_m"]
    # the same misregistration, measured on either grid (metres agree within ~2 m)
    assert report["shift_m"]["east"] == pytest.approx(expected["east"], abs=2.5)
    assert report["shift_m"]["north"] == pytest.approx(expected["north"], abs=2.5)
    with rasterio.open(out) as o, rasterio.open(utm_s2) as s2:
        assert (o.crs, o.transform, o.shape) == (s2.crs, s2.transform, s2.shape)
    with rasterio.open(FLOODS_S2) as ds:
        grid = Grid(ds.crs, ds.transform, ds.width, ds.height)
    with coregister_to_grid(out, grid) as back, rasterio.open(FLOODS_S1) as ds:
        inner = (slice(None), slice(40, -40), slice(40, -40))
        diff = back.read()[inner] - ds.read()[inner]
    shift_px = np.hypot(report["shift_px"]["x"], report["shift_px"]["y"])
    assert shift_px < 1.5 and abs(np.nanmedian(diff)) < 0.5


def test_windowed_output_equals_whole_window():
    with open_sentinel2(FLOODS_S2) as s2, \
            coregister_to_grid(FLOODS_S1, s2, InputOptions(refine=False)) as r:
        whole = r.read()
        part = r.read(Window(100, 300, 137, 90))
    np.testing.assert_allclose(part, whole[:, 300:390, 100:237], atol=1e-4)


def test_s1_on_the_grid_is_read_as_the_warp_would_give_it(tmp_path):
    """Where S1 lies on the S2 grid already and no field moves it, it is read without the warp:
    the same values, bit for bit, as the warp onto the grid (real pairs, UTM and EPSG:4326)."""
    from cloudfree.coregister.s1_to_s2 import warp_onto, warp_window
    from cloudfree.io.sentinel1 import linear_to_db, open_sentinel1

    moved = moved_s1(WINTER_S1, tmp_path / "moved.tif", 0.5, 0)
    for s1_path, s2_path in ((WINTER_S1, WINTER_S2), (FLOODS_S1, FLOODS_S2), (moved, WINTER_S2)):
        with open_sentinel2(s2_path) as s2, open_sentinel1(s1_path) as s1:
            grid = Grid.of(s2)
            for window in (Window(0, 0, grid.width, grid.height), Window(37, 5, 101, 88)):
                warped = linear_to_db(warp_onto(
                    s1, s1.read_linear, 2, grid, rasterio.windows.transform(window, grid.transform),
                    window, Resampling.bilinear, 1))
                read = warp_window(s1, grid, window, None, Resampling.bilinear, 1)
                assert np.array_equal(read, warped, equal_nan=True)
                if s1_path == moved:  # half a pixel off the grid: warped, and so not the file
                    assert not np.array_equal(read, linear_to_db(s1.read_linear(window)),
                                              equal_nan=True)


def test_a_source_without_nodata_is_warped_as_with_its_masks(monkeypatch):
    """A source read without NaN is warped without nodata (no validity masks): the values of
    the warp with them, bit for bit, and NaN beyond the source; one with NaN keeps the masks
    (a real S2 date read a fraction of a pixel over, the real S1, and the S2 with holes)."""
    import cloudfree.coregister.s1_to_s2 as s1_to_s2
    from cloudfree.io.sentinel1 import open_sentinel1

    asked = []  # the source window and nodata of each warp

    def recorded(source, out, **kwargs):
        asked.append((source, kwargs["src_transform"], kwargs["src_nodata"]))
        return reproject(source, out, **kwargs)

    monkeypatch.setattr(s1_to_s2, "reproject", recorded)

    def holed(win):
        refl = s2.read(win)[0]
        refl[:, ::7, ::5] = np.nan
        return refl

    with open_sentinel2(WINTER_S2) as s2, open_sentinel1(WINTER_S1) as s1:
        moved = s2.transform * rasterio.Affine.translation(-0.45, 0.29)
        grid = replace(Grid.of(s2), transform=moved)
        for source, read, count, holes in ((s2, lambda win: s2.read(win)[0], len(s2.bands), False),
                                           (s1, s1.read_linear, 2, False),
                                           (s2, holed, len(s2.bands), True)):
            for window in (Window(0, 0, grid.width, grid.height), Window(37, 5, 101, 88),
                           Window(-3, -2, 40, 30)):  # partly beyond the source: NaN there
                dst = rasterio.windows.transform(window, grid.transform)
                got = s1_to_s2.warp_onto(source, read, count, grid, dst, window,
                                         Resampling.bilinear, 1)
                data, src_transform, nodata = asked.pop()
                assert np.isnan(nodata) if holes else nodata is None
                want = np.full_like(got, np.nan)
                reproject(data, want, src_transform=src_transform, src_crs=source.crs,
                          src_nodata=np.nan, dst_transform=dst, dst_crs=grid.crs,
                          dst_nodata=np.nan, resampling=Resampling.bilinear, num_threads=1)
                assert np.array_equal(got, want, equal_nan=True)
                assert np.isfinite(got).any() and (np.isnan(got).any() or window.col_off >= 0)


def test_correlation_of_half_spectra_is_the_complex_correlations_real_part():
    """The surface from the fields' real and imaginary parts (real transforms, half spectra)
    and its search area alone are the real part of the complex fields' correlation, on the
    real pair's fields."""
    from scipy import fft

    from cloudfree.coregister.shift_estimation import (
        _cross,
        _half_search_area,
        _search_area,
        _spectrum,
        _surface,
        orientation_fields,
    )
    from cloudfree.io.sentinel1 import open_sentinel1

    with open_sentinel2(FLOODS_S2) as s2, open_sentinel1(FLOODS_S1) as s1:
        nir, valid = s2.read(bands=("B08",))
        sar = np.log(s1.read_linear()[:1])
    optical_field = orientation_fields(nir, valid)[0]
    sar_field = orientation_fields(sar, np.isfinite(sar[0]))[0]
    shape, radius = (sar_field.shape[0] + 32, sar_field.shape[1] + 32), 16
    expected = fft.ifft2(fft.fft2(sar_field, shape) * np.conj(fft.fft2(optical_field, shape))).real
    cross = _cross(_spectrum(sar_field, shape), _spectrum(optical_field, shape, conjugate=True))
    surface = _surface(cross, shape)
    scale = np.abs(expected).max()
    assert scale > 0 and surface.shape == shape
    np.testing.assert_allclose(surface, expected, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(_half_search_area(cross, shape, radius),
                               _search_area(expected, radius), rtol=0, atol=1e-5 * scale)


def test_partial_overlap_warns_with_fraction(tmp_path, cli):
    moved = moved_s1(WINTER_S1, tmp_path / "half.tif", 128, 0)
    out = tmp_path / "out.tif"
    result = cli("coregister", "--s1", moved, "--s2", WINTER_S2, "-o", out, "--no-refine")
    assert result.exit_code == 0, result.output
    assert "covers 50.0% of the Sentinel-2 grid" in result.stderr
    with rasterio.open(out) as o:
        data = o.read(1)
    assert np.isnan(data[:, :127]).all() and np.isfinite(data[:, 130:]).all()


def test_no_overlap_is_an_error(tmp_path, cli):
    far = moved_s1(WINTER_S1, tmp_path / "far.tif", 5000, 0)
    out = tmp_path / "out.tif"
    result = cli("coregister", "--s1", far, "--s2", WINTER_S2, "-o", out)
    assert result.exit_code == 1 and "does not overlap" in result.stderr
    assert "Traceback" not in result.output and not out.exists()


def test_existing_output_needs_overwrite(tmp_path, cli):
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep")
    result = cli("coregister", "--s1", WINTER_S1, "--s2", WINTER_S2, "-o", out, "--no-refine")
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert out.read_bytes() == b"keep"
    result = cli("coregister", "--s1", WINTER_S1, "--s2", WINTER_S2, "-o", out, "--no-refine",
                 "--overwrite")
    assert result.exit_code == 0 and out.read_bytes() != b"keep"
    assert list(tmp_path.iterdir()) == [out]


def test_cli_errors_are_one_line(tmp_path, cli):
    result = cli("coregister", "--s1", WINTER_S1, "--s2", WINTER_S2, "-o", tmp_path / "o.tif",
                 "--s1-units", "linear")
    assert result.exit_code == 2 and "contradicts the values" in result.stderr
    result = cli("coregister", "--s1", WINTER_S2, "--s2", WINTER_S2, "-o", tmp_path / "o.tif")
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_default_output_name(tmp_path, cli):
    s1 = moved_s1(WINTER_S1, tmp_path / "vv_vh.tif")
    result = cli("coregister", "--s1", s1, "--s2", WINTER_S2, "--no-refine", "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"vv_vh_on_{WINTER_S2.stem}.tif").exists()


def tiled(src, dst, reps, dx=0.0, dy=0.0):
    """A larger scene built from a real one by tiling it reps x reps (transform moved by dx, dy)."""
    with rasterio.open(src) as ds:
        profile, data, names = ds.profile, np.tile(ds.read(), (1, reps, reps)), ds.descriptions
        profile.update(width=data.shape[2], height=data.shape[1],
                       transform=ds.transform @ rasterio.Affine.translation(dx, dy))
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = names
    return dst


def test_large_scene_combines_several_windows(tmp_path):
    s2 = tiled(FLOODS_S2, tmp_path / "s2.tif", 2)
    s1 = tiled(FLOODS_S1, tmp_path / "s1.tif", 2, 2.5, 1.5)
    report = coregister_file(s1, s2, tmp_path / "out.tif", block=300)
    with open_sentinel2(FLOODS_S2) as native, coregister_to_grid(FLOODS_S1, native) as direct:
        own = direct.report()["shift_px"]
    assert report["windows"] == 4 and report["inlier_windows"] == 4 and report["applied"]
    assert report["field"]["degree"] == 0  # four windows support a translation only
    assert abs(report["shift_px"]["x"] - 2.5 - own["x"]) < 0.3
    assert abs(report["shift_px"]["y"] - 1.5 - own["y"]) < 0.3


def test_orientation_field_filters_are_ndimages_on_a_cloudy_scene():
    """The slicing Sobel, the one-transform erosion and the matrix-product Gaussians give
    ndimage's values on real clouds."""
    from scipy import ndimage

    from cloudfree.coregister.shift_estimation import SIGMA, eroded, orientation_field, sobel
    from cloudfree.mask.classify import CLEAR, MaskParams, classify

    with open_sentinel2(SUMMER_S2) as s2:
        reflectance, valid = s2.read()
        classes, _ = classify(reflectance, valid, MaskParams(buffer=5), bands=s2.bands)
        nir = reflectance[s2.bands.index("B08")].astype(np.float64)
    clear = valid & (classes == CLEAR)
    assert 0.2 < clear.mean() < 0.9  # cumulus: gaps inside and at the edges
    for iterations in (1, int(3 * SIGMA) + 2, 20):
        assert np.array_equal(eroded(clear, iterations),
                              ndimage.binary_erosion(clear, iterations=iterations))
        everywhere = np.ones_like(clear)  # only the outside invalid: by slicing
        assert np.array_equal(eroded(everywhere, iterations),
                              ndimage.binary_erosion(everywhere, iterations=iterations))
    gx, gy = sobel(nir)
    assert np.allclose(gx, ndimage.sobel(nir, axis=1), rtol=0, atol=1e-12)
    assert np.allclose(gy, ndimage.sobel(nir, axis=0), rtol=0, atol=1e-12)
    # the field as its definition writes it: z**2 / |z| of the normalised smoothing's gradient
    weights = np.maximum(ndimage.gaussian_filter(clear.astype(np.float64), SIGMA), 1e-6)
    smooth = ndimage.gaussian_filter(np.where(clear, nir, 0.0), SIGMA) / weights
    z = ndimage.sobel(smooth, axis=1) + 1j * ndimage.sobel(smooth, axis=0)
    inner = ndimage.binary_erosion(clear, iterations=int(3 * SIGMA) + 2)
    expected = np.where(inner & (np.abs(z) > 0), z * z / np.maximum(np.abs(z), 1e-12), 0)
    field = orientation_field(nir, clear)
    assert np.abs(field).max() > 0.01
    # the Gaussians are float32 matrix products: float32 rounding (3e-6 of the largest value)
    assert np.allclose(field, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(field, np.roll(expected, 1, axis=1), rtol=0,
                           atol=1e-2 * np.abs(expected).max())


@pytest.mark.parametrize(("size", "per_axis"), [(700, 1), (1024, 2), (1536, 3), (2048, 4),
                                                (4608, 8), (10980, 8)])
def test_estimation_windows_sample_the_scene_from_edge_to_edge(size, per_axis):
    from cloudfree.coregister.s1_to_s2 import ESTIMATION_WINDOW, estimation_windows

    windows = estimation_windows(size, size)
    assert len(windows) == per_axis ** 2
    for axis in ("col_off", "row_off"):
        starts = sorted({int(getattr(w, axis)) for w in windows})
        assert starts[0] == 0 and starts[-1] + windows[-1].width == size
        gaps = np.diff(starts)
        assert len(gaps) == 0 or gaps.max() - gaps.min() <= 1  # evenly spread
    assert windows[0].width == (size if per_axis == 1 else ESTIMATION_WINDOW)
