"""Cloud Optimized GeoTIFF outputs and their provenance tags, on the real samples."""

from __future__ import annotations

import hashlib
import json
from functools import partial

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S1, FLOODS_S2, WINTER_S1, WINTER_S2
from rio_cogeo.cogeo import cog_validate

from cloudfree.core.errors import CloudfreeError
from cloudfree.inference.bundled import DEFAULT_MODEL, bundled_model
from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, SNOW, THIN
from cloudfree.output.atomic import atomic_output
from cloudfree.output.cog import NEAREST, make_cog
from cloudfree.output.geotiff import geotiff_profile
from cloudfree.output.provenance import Provenance


def assert_cog(path, overviews):
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors, errors
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == overviews


def block_mean(a: np.ndarray) -> np.ndarray:
    """Mean of 2 x 2 blocks, NaN left out, over the last two axes."""
    h, w = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    blocks = a[..., :h, :w].reshape(*a.shape[:-2], h // 2, 2, w // 2, 2)
    return np.nanmean(blocks, axis=(-3, -1))


def overview(path) -> tuple[np.ndarray, np.ndarray]:
    """The full-resolution data and the first overview of a file."""
    with rasterio.open(path) as ds:
        full = ds.read()
        return full, ds.read(out_shape=(ds.count, ds.height // 2, ds.width // 2))


def test_mask_and_coregister_write_cogs_with_the_right_overviews(tmp_path, cli):
    mask, score, s1 = tmp_path / "mask.tif", tmp_path / "score.tif", tmp_path / "s1.tif"
    for args in (("mask", FLOODS_S2, "-o", mask, "--score", score, "--buffer", "3", "-q"),
                 ("coregister", "--s1", FLOODS_S1, "--s2", FLOODS_S2, "-o", s1, "-q")):
        result = cli(*args)
        assert result.exit_code == 0, result.output
    for path, predictor in ((mask, None), (score, "3"), (s1, "3")):
        assert_cog(path, [2])  # 512 px in 256 px blocks: one overview level
        with rasterio.open(path) as ds:  # the mask is streamed uncompressed: still compressed
            assert ds.compression.value == "DEFLATE"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == predictor  # none for classes
    full, ov = overview(mask)
    assert np.isin(ov, [CLEAR, CLOUD, SHADOW, SNOW, THIN, NODATA]).all()
    assert (ov == full[:, ::2, ::2]).mean() > 0.95  # nearest: picked, never averaged
    with rasterio.open(mask) as ds:
        assert ds.colormap(1)[CLOUD] == (255, 255, 255, 255)
    full, ov = overview(s1)  # dB averaged (NaN nodata left out)
    assert np.allclose(ov, block_mean(full), atol=1e-4, equal_nan=True)


def test_remove_cog_keeps_creation_options_and_averages_reflectance(tmp_path, cli):
    out, mask = tmp_path / "out.tif", tmp_path / "mask.tif"
    result = cli("remove", "--s1", WINTER_S1, "--s2", WINTER_S2, "-o", out, "--mask-out", mask,
                 "--co", "BLOCKXSIZE=128", "--co", "BLOCKYSIZE=128", "--co", "COMPRESS=LZW", "-q")
    assert result.exit_code == 0, result.output
    for path in (out, mask):
        assert_cog(path, [2])  # 256 px in 128 px blocks
        with rasterio.open(path) as ds:
            assert ds.block_shapes[0] == (128, 128) and ds.compression.value == "LZW"
    full, ov = overview(out)
    assert np.abs(ov.astype(float) - block_mean(full.astype(float))).max() <= 1


def test_no_cog_writes_a_plain_tiled_geotiff(tmp_path, cli):
    out = tmp_path / "mask.tif"
    result = cli("mask", FLOODS_S2, "-o", out, "--no-cog", "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds:
        assert "LAYOUT" not in ds.tags(ns="IMAGE_STRUCTURE") and ds.overviews(1) == []
        assert ds.block_shapes == [(256, 256)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_a_failed_cog_step_leaves_nothing(tmp_path):
    profile = geotiff_profile(width=256, height=256, crs="EPSG:32631", count=1, dtype="uint8",
                              transform=rasterio.transform.from_origin(0, 256, 10, 10), nodata=255)
    with pytest.raises(CloudfreeError, match="cannot write .*out.tif: .*not recognized"), \
            atomic_output(tmp_path / "out.tif", overwrite=False,
                          finish=partial(make_cog, resampling=NEAREST, profile=profile)) as tmp:
        tmp.write_text("not a GeoTIFF\n")
    assert list(tmp_path.iterdir()) == []


def test_a_gdal_error_in_the_cog_step_is_one_line(tmp_path):
    """GDAL's own error types, which rasterio lets out of its copy, become a RasterioError."""
    profile = geotiff_profile(width=256, height=256, crs="EPSG:32631", count=1, dtype="uint8",
                              transform=rasterio.transform.from_origin(0, 256, 10, 10),
                              nodata=255, creation_options={"compress": "jpeg"})
    with pytest.raises(rasterio.errors.RasterioIOError,
                       match="^the COG step failed: JPEG compression not supported with "
                             "paletted image$"), \
            atomic_output(tmp_path / "out.tif", overwrite=False,
                          finish=partial(make_cog, resampling=NEAREST, profile=profile)) as tmp, \
            rasterio.open(tmp, "w", **{**profile, "compress": "none"}) as dst:
        dst.write_colormap(1, {0: (0, 0, 0, 0), 1: (255, 255, 255, 255)})
        dst.write(np.zeros((1, 256, 256), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_provenance_tags_of_remove(tmp_path, cli):
    s2 = tmp_path / "S2A_MSIL1C_20190918T105021_s2.tif"
    s2.symlink_to(FLOODS_S2)
    out = tmp_path / "out.tif"
    result = cli("remove", "--s1", FLOODS_S1, "--s2", s2, "-o", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    p = Provenance.of(out)
    assert (p.command, p.model, p.arch) == ("remove", DEFAULT_MODEL, summary["arch"])
    assert p.model_sha256 == hashlib.sha256(bundled_model().read_bytes()).hexdigest()
    assert p.inputs == {"s2": str(s2), "s1": str(FLOODS_S1)}
    assert p.acquired.isoformat() == "2019-09-18T10:50:21+00:00"
    assert p.cloud_fraction == pytest.approx(summary["cloud_fraction"], abs=1e-6)
    applied = summary["s1_coregistration"]["applied_px"]
    assert p.s1_shift_px == (applied["x"], applied["y"]) and p.s1_shift_applied
    assert p.processed is not None and p.radiometric_offset == 0


def test_deflate_level_carries_over_to_the_cog(tmp_path, cli):
    sizes = {}
    for level in ("1", "9"):  # 1 is the default
        score = tmp_path / f"score{level}.tif"
        result = cli("mask", FLOODS_S2, "-o", tmp_path / f"m{level}.tif", "--score", score,
                     "--co", f"ZLEVEL={level}", "-q")
        assert result.exit_code == 0, result.output
        assert_cog(score, [2])
        sizes[level] = score.stat().st_size
    default = tmp_path / "default.tif"
    assert cli("mask", FLOODS_S2, "-o", tmp_path / "m.tif", "--score", default, "-q").exit_code == 0
    assert default.stat().st_size == sizes["1"]
    assert sizes["9"] < sizes["1"]
