"""The classical fill, the networks on top of it, and `remove --preview`, on real patches."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from helpers import SUMMER_S1, SUMMER_S2, WINTER_CLEAR, WINTER_S1, WINTER_S2, classify_scene
from scipy import ndimage

from cloudfree.fill.local import LocalFillParams
from cloudfree.fill.median import (
    MIN_CLEAR_FRACTION,
    PRIOR_REFLECTANCE,
    STEP,
    ClearHistogram,
    fill_image,
)
from cloudfree.inference.bundled import DEFAULT_MODEL, bundled_models
from cloudfree.inference.checkpoint import load_checkpoint
from cloudfree.inference.engines import open_engine
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, COLORMAP, SHADOW, MaskParams, classify
from cloudfree.networks import build
from cloudfree.output.preview import LEGEND
from cloudfree.pipeline.options import EngineOptions, FillOptions, OutputOptions
from cloudfree.pipeline.remove import remove_scene
from cloudfree.training.baselines import median_fill


@pytest.fixture(scope="module")
def summer():
    """Cloudy summer reflectance, its valid pixels and remove's default cloud mask."""
    with open_sentinel2(SUMMER_S2) as s2:
        refl, valid = s2.read()
    classes, _ = classify_scene(refl, valid, MaskParams(buffer=5))
    return refl, valid, classes == CLOUD


def test_streamed_median_is_numpys_median_of_the_clear_pixels(summer):
    refl, valid, cloud = summer
    histogram = ClearHistogram(13)
    for rows in (slice(0, 100), slice(100, 256)):  # two windows, as remove streams them
        histogram.add(refl[:, rows], (valid & ~cloud)[rows], valid[rows])
    spectrum = histogram.spectrum()
    assert spectrum.source == "scene"
    assert spectrum.clear_fraction == pytest.approx((valid & ~cloud).sum() / valid.sum())
    want = np.median(refl[:, valid & ~cloud], axis=1)
    np.testing.assert_allclose(spectrum.values, want, atol=STEP)
    # the plain median fill of `evaluate` agrees wherever there is cloud
    filled, _ = fill_image(refl, cloud, valid)
    np.testing.assert_allclose(filled, median_fill(refl, cloud, valid), atol=STEP)


def test_prior_replaces_the_median_when_almost_nothing_is_clear(summer):
    refl, valid, _ = summer
    clear = np.zeros_like(valid)
    clear[0, : int(MIN_CLEAR_FRACTION * valid.size) - 1] = True  # just under the threshold
    histogram = ClearHistogram(13)
    histogram.add(refl, clear, valid)
    spectrum = histogram.spectrum()
    assert spectrum.source == "prior" and spectrum.values == PRIOR_REFLECTANCE
    assert "prior spectrum" in spectrum.describe()


def test_fillnet_output_under_the_mask_ignores_the_cloudy_values(summer):
    refl, valid, cloud = summer
    torch.manual_seed(0)
    net = build("fillnet", "small").eval()
    torch.nn.init.normal_(net.head.weight, std=0.1)  # a network that changes the fill
    s1 = torch.from_numpy(np.clip((rasterio.open(SUMMER_S1).read() + 25) / 25, 0, 1))[None]
    mask = torch.from_numpy(cloud[None, None].astype(np.float32))
    outputs = []
    for under_cloud in (refl, np.full_like(refl, 0.9)):  # the cloud's values, or others
        cloudy = np.where(cloud[None], under_cloud, refl)
        filled, _ = fill_image(cloudy, cloud, valid)
        with torch.no_grad():
            outputs.append(net(torch.from_numpy(filled)[None].float(), s1.float(), mask)[0])
    assert torch.equal(outputs[0], outputs[1])
    change = (outputs[0] - torch.from_numpy(fill_image(refl, cloud, valid)[0])).abs()
    assert change[:, ~torch.from_numpy(cloud)].max() == 0  # clear pixels pass unchanged
    assert change[:, torch.from_numpy(cloud)].max() > 0  # the network acts under the mask


def test_untrained_fillnet_is_the_fill():
    net = build("fillnet", "small").eval()
    s2, s1 = torch.rand(1, 13, 64, 64), torch.rand(1, 2, 64, 64)
    mask = (torch.rand(1, 1, 64, 64) > 0.5).float()
    assert torch.equal(net(s2, s1, mask), s2)


def test_median_fill_model_writes_the_clear_median_deep_in_clouds(tmp_path):
    out, mask = tmp_path / "filled.tif", tmp_path / "mask.tif"
    summary = remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(model="median-fill"),
                           fill=FillOptions(fill_method="median"),
                           inputs=InputOptions(s1_aligned=True),
                           outputs=OutputOptions(mask_out=mask), quiet=True)
    with open_sentinel2(SUMMER_S2) as s2:
        refl, valid = s2.read()
    classes, _ = classify_scene(refl, valid, MaskParams(buffer=5))  # remove's default mask
    with rasterio.open(mask) as ds:  # with the shadows its clouds cast (filled, not relit)
        used = ds.read(1)
    cloud = classes == CLOUD
    filled = cloud | (used == SHADOW)
    assert 0.05 < cloud.mean() < 0.95, "the test needs both clouds and clear pixels"
    assert 0.01 < (used == SHADOW).mean() < 0.1 and not (used[cloud] == SHADOW).any()
    with rasterio.open(out) as ds:
        result, tags = ds.read(), ds.tags()
    with rasterio.open(SUMMER_S2) as ds:
        original = ds.read()

    deep = ndimage.distance_transform_edt(filled) >= 9  # past the 8 px feather
    median = np.median(original[:, valid & ~filled], axis=1)
    np.testing.assert_allclose(result[:, deep], np.broadcast_to(median[:, None],
                                                                result[:, deep].shape), atol=1)
    assert np.array_equal(result[:, ~filled], original[:, ~filled])
    assert tags["FILL_SOURCE"] == "scene" and tags["ARCH"] == "fill"
    assert summary["fill"]["source"] == "scene"


def test_default_model_is_the_bundled_fill_without_a_network():
    assert {DEFAULT_MODEL, "cloudfree-fillnet", "cloudfree-fillnet-fast"} <= set(bundled_models())
    engine = open_engine(model=DEFAULT_MODEL, device="cpu")
    assert DEFAULT_MODEL == "median-fill" and engine.arch == "fill" and engine.uses_mask


def test_the_default_runs_without_s1_and_changes_only_the_masked_pixels(tmp_path, cli):
    out, mask = tmp_path / "x.tif", tmp_path / "m.tif"
    result = cli("remove", "--s2", SUMMER_S2, "-o", out, "--mask-out", mask, "-v")
    assert result.exit_code == 0, result.output
    assert "x.tif: filled 42.4% cloud and 4.1% shadow with median-fill in" in result.stdout
    assert "the rest filled from nearby clear pixels (where none is near" in result.stderr
    with rasterio.open(out) as o, rasterio.open(SUMMER_S2) as i, rasterio.open(mask) as m:
        filled, observed, classes = o.read(), i.read(), m.read(1)
    assert set(np.unique(classes)) <= {CLEAR, CLOUD, SHADOW}  # all its cloud 1, thin or not
    masked = classes > 0
    far = ndimage.distance_transform_edt(~masked) > 12  # beyond the haze ring around the mask
    assert far.mean() > 0.2 and (filled[:, far] == observed[:, far]).all()
    assert (filled[:, masked] != observed[:, masked]).any(axis=0).mean() > 0.9


def test_the_fast_model_is_the_small_preset_of_the_default_and_fills_the_same_pixels(tmp_path):
    """The fillnet model is fillnet's paper preset, the fast one its small preset; both
    trained on every scene of the pool, and both leave clear pixels as they are."""
    widths = {name: load_checkpoint(bundled_models()[name]).config["widths"]
              for name in ("cloudfree-fillnet", "cloudfree-fillnet-fast")}
    assert widths == {"cloudfree-fillnet": (32, 64, 96, 128),
                      "cloudfree-fillnet-fast": (16, 32, 48, 64)}
    outputs = {}
    for name in widths:
        summary = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / f"{name}.tif",
                               engine=EngineOptions(model=name, device="cpu"),
                               inputs=InputOptions(s1_aligned=True), quiet=True)
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            outputs[name] = (summary["filled_pixels"], ds.read().astype(np.int64))
    (filled, default), (filled_fast, fast) = outputs.values()
    assert filled == filled_fast > 0
    with rasterio.open(SUMMER_S2) as ds:
        original = ds.read().astype(np.int64)
    changed = (default != original).any(0)
    assert np.array_equal(changed, (fast != original).any(0))
    assert np.abs(default - fast)[:, changed].mean() > 10  # two networks, two fills


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # a PNG
def test_preview_shows_input_mask_and_output_side_by_side(tmp_path, cli):
    png, mask = tmp_path / "quicklook.png", tmp_path / "mask.tif"
    result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", tmp_path / "o.tif",
                 "--model", "median-fill", "--preview", png, "--mask-out", mask, "--quiet")
    assert result.exit_code == 0, result.output
    with rasterio.open(png) as ds:
        image = ds.read()
    assert image.shape == (3, 256 + LEGEND, 3 * 256 + 2 * 8)
    image = image[:, :256]  # the panels, above the legend
    mask_panel = image[:, :, 264:520]
    with open_sentinel2(SUMMER_S2) as s2:
        refl, valid = s2.read()
    cloud = classify_scene(refl, valid, MaskParams(buffer=5))[0] == CLOUD
    with rasterio.open(mask) as ds:
        shadow = ds.read(1) == SHADOW  # the shadows the clouds cast, relit
    assert (mask_panel[:, cloud] == 255).all()  # clouds drawn white
    assert (mask_panel[:, ~cloud] < 255).all()
    purple = np.array(COLORMAP[SHADOW][:3])[:, None]
    assert shadow.any() and (mask_panel[:, shadow] == purple).all()
    before, after = image[:, :, :256], image[:, :, 528:]
    away = ndimage.distance_transform_edt(~(cloud | shadow)) > LocalFillParams().ring
    assert np.array_equal(before[:, away], after[:, away])  # clear pixels untouched
    assert after[:, cloud].mean() < before[:, cloud].mean() - 50  # clouds gone
    assert after[:, shadow].mean() > before[:, shadow].mean() + 5  # shadows relit


def test_preview_must_be_a_png(tmp_path, cli):
    result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", tmp_path / "o.tif",
                 "--preview", tmp_path / "q.jpg")
    assert result.exit_code == 2
    assert "give a .png path" in result.output
    assert not (tmp_path / "o.tif").exists()


def test_winter_clear_partner_is_closer_after_the_default(tmp_path):
    """The default on the real winter triplet, against its cloud-free image of another date:
    within 0.3 dB of the plain fill (the other-date guard; the default is chosen on same-date
    truth, benchmarks/one_date_quality.py)."""
    out = tmp_path / "o.tif"
    params = MaskParams(threshold=0.005, buffer=5)  # the haze is faint: 8 % masked
    remove_scene(WINTER_S2, WINTER_S1, out, mask_params=params,
                 inputs=InputOptions(s1_aligned=True), quiet=True)
    with rasterio.open(out) as ds, rasterio.open(WINTER_CLEAR) as ref, \
            rasterio.open(WINTER_S2) as cloudy:
        result, truth, original = (d.read().astype(np.float64) / 1e4 for d in (ds, ref, cloudy))
    classes, _ = classify(original, None, params)
    cloud = classes == CLOUD
    fill = median_fill(original, cloud, np.ones_like(cloud))
    def psnr(x):
        return -10 * np.log10(((np.clip(x, 0, 1) - np.clip(truth, 0, 1)) ** 2).mean())

    assert psnr(result) >= psnr(fill) - 0.3
