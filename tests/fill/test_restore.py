"""One date: thin cloud and shadows restored, opaque cloud filled, on real scenes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S1, FLOODS_S2, ROOT, SUMMER_S2
from scipy import ndimage

from cloudfree.fill.local import LocalFillParams, local_fill, source_weight
from cloudfree.fill.restore import RestoreParams, restore
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import CLOUD, MaskParams, classify
from cloudfree.mask.haze import SPREAD_SIGMA, HazeParams, dehaze, land_spread, smooth_within, unveil
from cloudfree.mask.shadow import NEAR, relight, shadow_weight
from cloudfree.pipeline.remove import remove_scene
from cloudfree.training.simulate import opacity, overlay

N = 256  # px of the Sen1Floods11 chip and of the summer_19 cloud used


@pytest.fixture(scope="module")
def land():
    """The cloud-free Sen1Floods11 chip's top-left (reflectance, valid) and its S1 (dB)."""
    with open_sentinel2(FLOODS_S2) as ds:
        refl, valid = ds.read()
    with rasterio.open(FLOODS_S1) as ds:
        s1 = ds.read().astype(np.float32)
    return refl[:, :N, :N], valid[:N, :N], s1[:, :N, :N]


@pytest.fixture(scope="module")
def clouded(land):
    """The chip under summer_19's real cumulus, blended by its opacity from the cloud score:
    (cloudy, opacity, mask region, expected land from the local fill)."""
    clear, valid, s1 = land
    with open_sentinel2(SUMMER_S2) as ds:
        cloud, cloud_valid = ds.read()
    alpha = opacity(classify(cloud, cloud_valid)[1])[:N, :N]
    cloudy = overlay(clear, cloud[:, :N, :N], alpha)
    region = (classify(cloudy, valid, MaskParams(buffer=5))[0] == CLOUD) & valid
    expected = expected_land(cloudy, region, valid, s1)
    return cloudy, alpha, region, expected


def expected_land(image, region, valid, s1):
    """The local fill of ``region`` from the clear land around, as ``remove`` runs it."""
    params = LocalFillParams()
    weight = source_weight(image, region, valid & ~region, params)
    median = np.median(image[:, valid & ~region], axis=1)
    return local_fill(image, region, weight, s1, median, params)[0]


def rmse(a, b, where):
    return float(np.sqrt(((a - b)[:, where] ** 2).mean()))


def texture_correlation(a, b, where):
    """Correlation of the Laplacians (the land's fine texture) of a and b over ``where``, mean
    over bands."""
    out = []
    for x, y in zip(a, b, strict=True):
        lx, ly = ndimage.laplace(x)[where], ndimage.laplace(y)[where]
        out.append(np.corrcoef(lx, ly)[0, 1] if lx.std() > 0 and ly.std() > 0 else 0.0)
    return float(np.mean(out))


def test_thin_cloud_is_restored_with_the_lands_texture_better_than_filled(land, clouded):
    clear, valid, _ = land
    cloudy, alpha, region, expected = clouded
    (rows, cols), veil, trust = dehaze(cloudy, expected, region, valid & ~region)
    land = unveil(cloudy[:, rows, cols], veil, BANDS)
    assert land.shape[1:] == trust.shape == region[rows, cols].shape
    assert not trust[~region[rows, cols]].any()  # the weight is 0 off the region
    restored, weight = cloudy.copy(), np.zeros(region.shape, np.float32)
    restored[:, rows, cols] = np.where(region[rows, cols], land, cloudy[:, rows, cols])
    weight[rows, cols] = trust
    thin = region & (alpha > 0.02) & (alpha < 0.15) & (weight > 0.5)
    assert thin.sum() > 500  # real translucent cloud edges, taken as land that shows
    out = weight * restored + (1 - weight) * expected
    assert texture_correlation(out, clear, thin) > texture_correlation(expected, clear, thin) + 0.2
    assert rmse(out, clear, thin) < rmse(expected, clear, thin)


def test_opaque_cores_are_still_filled(clouded):
    cloudy, alpha, region, expected = clouded
    base, filled = restore(cloudy, expected.copy(), region, np.zeros_like(region),
                           ~region, RestoreParams())
    core = ndimage.binary_erosion(alpha >= 1, iterations=4) & region
    assert core.sum() > 500
    assert (filled[core] == 1).all()
    np.testing.assert_array_equal(base[:, core], expected[:, core])


def test_pixels_off_the_region_are_untouched(land, clouded):
    cloudy, _, region, expected = clouded
    shadow = ndimage.binary_dilation(region, iterations=6) & ~region  # a made-up shadow ring
    whole = region | shadow
    base, filled = restore(cloudy, expected.copy(), whole, shadow, ~whole, RestoreParams())
    np.testing.assert_array_equal(base[:, ~whole], cloudy[:, ~whole])
    assert (filled[~whole] == 0).all() and (filled[shadow] == 0).all()


def test_the_base_is_written_over_the_expected_land_on_the_region_alone(clouded):
    """No second image: the restored land goes into ``expected`` on the region, the rest of it
    is left as it was given."""
    cloudy, _, region, expected = clouded
    given = expected.copy()
    base, filled = restore(cloudy, given, region, np.zeros_like(region), ~region,
                           RestoreParams())
    assert base is given
    np.testing.assert_array_equal(given[:, ~region], expected[:, ~region])
    restored = region & (filled < 1)
    assert restored.sum() > 500
    assert (given[:, restored] != expected[:, restored]).any(axis=0).mean() > 0.9


def test_a_darkened_real_patch_is_relit_to_the_land_it_hides(land):
    clear, valid, s1 = land
    y, x = np.ogrid[:N, :N]
    patch = ((y - 80) ** 2 + (x - 170) ** 2 <= 25**2) & valid
    # the darkening of real shadows on the pool (benchmarks/one_date_quality.py), per band
    ratio = np.array([1, 1, .92, .87, .76, .64, .62, .59, .56, .56, .05, .34, .37], np.float32)
    dark = np.where(patch[None], clear * ratio[:, None, None], clear)
    expected = expected_land(dark, patch, valid, s1)
    relit = relight(dark, expected, patch)
    nir = 7
    assert rmse(relit, clear, patch) < 0.5 * rmse(dark, clear, patch)
    assert abs(relit[nir, patch].mean() / clear[nir, patch].mean() - 1) < 0.1
    inner = ndimage.binary_erosion(patch, iterations=2)  # the Laplacian sees the patch's edge
    kept = texture_correlation(relit, clear, inner)  # the texture under the shadow
    assert kept > 0.8 and kept > texture_correlation(expected, clear, inner) + 0.3
    np.testing.assert_array_equal(relit[:, ~patch], dark[:, ~patch])


def test_only_shadows_beside_a_cloud_and_darker_than_the_land_around_are_relit(land):
    """Three patches the mask would flag on real land: a real shadow's darkening beside a
    cloud, the same darkening far from any cloud, and undarkened land beside the cloud."""
    clear, valid, _ = land
    y, x = np.ogrid[:N, :N]

    def disk(cy, cx, r):
        return (y - cy) ** 2 + (x - cx) ** 2 <= r * r

    near, far, plain = disk(81, 166, 8), disk(137, 10, 8), disk(60, 163, 8)
    cloud = disk(81, 131, 15)
    distance = ndimage.distance_transform_edt(~cloud)
    assert distance[near].max() < NEAR and distance[plain].max() < NEAR < distance[far].min()
    ratio = np.array([1, 1, .92, .87, .76, .64, .62, .59, .56, .56, .05, .34, .37], np.float32)
    dark = np.where((near | far)[None], clear * ratio[:, None, None], clear)
    flagged = near | far | plain
    weight = shadow_weight(dark, flagged, cloud, valid & ~flagged & ~cloud)
    assert (weight[near] > 0.5).mean() > 0.9
    assert (weight[far] == 0).all() and (weight[plain] < 0.5).all()
    assert (weight[~flagged] == 0).all()


def test_restore_does_not_exceed_the_cloud_when_haze_is_off(clouded):
    cloudy, _, region, expected = clouded
    base, filled = restore(cloudy, expected.copy(), region, np.zeros_like(region), ~region,
                           RestoreParams(haze=None))
    np.testing.assert_array_equal(base[:, region], expected[:, region])
    assert (filled[region] == 1).all()
    assert HazeParams().t_restore < HazeParams().t_fill


def test_the_land_spread_on_its_coarse_grid_matches_the_direct_measure(clouded):
    """The clear land's local spread, measured on a grid 4 times coarser, against the
    normalised Gaussian of every pixel at full resolution."""
    cloudy, _, region, _ = clouded
    clear = ~region
    mean = smooth_within(cloudy, clear, SPREAD_SIGMA)
    square = smooth_within(cloudy * cloudy, clear, SPREAD_SIGMA)
    direct = np.sqrt(np.maximum(square - mean * mean, 0).mean(0))
    ratio = land_spread(cloudy, clear) / direct
    assert region.mean() > 0.2 and ratio.shape == region.shape
    assert np.percentile(np.abs(ratio - 1), 50) < 0.02
    assert np.percentile(np.abs(ratio - 1), 99) < 0.15


def test_no_restored_edge_of_the_bundled_sample_is_darker_or_bluer_than_its_land(tmp_path):
    """The bundled sample as ``remove`` runs it by default: no filled pixel darker in B02, B03
    or B04 than the clear land's 0.5th percentile, nor bluer (B02 / B04) than its bluest pixel
    (the veil of its cloud edges unmixed with a white cloud left hundreds of dark blue specks)."""
    sample = ROOT / "examples" / "data"
    out = tmp_path / "out.tif"
    remove_scene(sample / "s2.tif", sample / "s1.tif", out, quiet=True)
    with rasterio.open(sample / "s2.tif") as ds:
        seen = ds.read().astype(np.float32)
    with rasterio.open(out) as ds:
        written = ds.read().astype(np.float32)
    filled = (written != seen).any(axis=0)
    assert 0.2 < filled.mean() < 0.8
    land, restored = seen[1:4, ~filled], written[1:4, filled]  # B02, B03, B04
    darkest = np.percentile(land, 0.5, axis=1)[:, None]
    assert not (restored < darkest).any()
    bluest = (land[0] / land[2]).max()
    assert not (restored[0] > bluest * restored[2]).any()
