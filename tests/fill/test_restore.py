"""One date: thin cloud and shadows restored, opaque cloud filled, on real scenes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import FLOODS_S1, FLOODS_S2, ROOT, SUMMER_S2
from s2_builders import write_stack
from scipy import ndimage

from cloudfree.fill.local import LocalFillParams, local_fill, source_weight
from cloudfree.fill.restore import LandHistogram, RestoreParams, land_bounds, restore
from cloudfree.inference.bundled import DEFAULT_MODEL
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, MaskParams, classify
from cloudfree.mask.haze import (
    BLUE_PERCENTILE,
    DARK_PERCENTILE,
    LAND_BANDS,
    SPREAD_SIGMA,
    HazeParams,
    dehaze,
    land_spread,
    smooth_within,
    unveil,
)
from cloudfree.mask.shadow import (
    DARK,
    FLAGGED_WEIGHT,
    LAND_SIGMA,
    OFFSET_REACH,
    SEEN_SIGMA,
    TIE_REACH,
    WATER_NDWI,
    footprint,
    offset_counts,
    relight,
    scene_offset,
    shadow_like,
    shadow_weight,
    tie_reach,
    tied_shadows,
    water,
)
from cloudfree.pipeline.options import EngineOptions, OutputOptions
from cloudfree.pipeline.remove import remove_scene
from cloudfree.training.simulate import opacity, overlay

N = 256  # px of the Sen1Floods11 chip and of the summer_19 cloud used
#: the darkening of real shadows on the pool (benchmarks/one_date_quality.py), per band
DARKENING = np.array([1, 1, .92, .87, .76, .64, .62, .59, .56, .56, .05, .34, .37], np.float32)


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
    # without the bright-land test, which clears the chip's own bright roofs (false cloud) and
    # with them the buffer that reached a fifth of the cumulus's translucent edges (scoring 0)
    region = (classify(cloudy, valid, MaskParams(buffer=5, land=False))[0] == CLOUD) & valid
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


def test_restored_land_is_trusted_no_further_from_the_expected_land_than_its_error(land,
                                                                                  clouded):
    # the expected land is the truth here: told it is off by 0.002 at most, the restoration
    # keeps nearly all of it, where the white veil taken off the real cumulus leaves its land
    # further off; an error above the land's spread changes nothing
    clear, _, _ = land
    cloudy, _, region, _ = clouded
    bases = {}
    for error in (None, 1.0, 0.002):
        errors = None if error is None else np.full(region.shape, error, np.float32)
        bases[error] = restore(cloudy, clear.copy(), region, np.zeros_like(region), ~region,
                               RestoreParams(), error=errors)[0]
    np.testing.assert_array_equal(bases[1.0], bases[None])
    assert rmse(bases[0.002], clear, region) < 0.5 * rmse(bases[None], clear, region), {
        k: rmse(b, clear, region) for k, b in bases.items()}


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
    ratio = DARKENING
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


def test_a_relit_shadow_does_not_depend_on_the_window_it_is_read_in(land):
    """The gain is measured on the scene's grid: a window that starts 3 and 6 px further in
    (another place in the grid's cells) relights the same shadow to float rounding."""
    clear, valid, s1 = land
    y, x = np.ogrid[:N, :N]
    patch = ((y - 120) ** 2 + (x - 130) ** 2 <= 30**2) & valid
    dark = np.where(patch[None], clear * DARKENING[:, None, None], clear)
    expected = expected_land(dark, patch, valid, s1)
    whole = relight(dark, expected, patch)
    part = (slice(3, N), slice(6, N))
    cut = relight(dark[:, part[0], part[1]], expected[:, part[0], part[1]], patch[part],
                  corner=(3, 6))
    np.testing.assert_allclose(cut[:, patch[part]], whole[:, patch], rtol=1e-5)
    unanchored = relight(dark[:, part[0], part[1]], expected[:, part[0], part[1]], patch[part])
    assert np.abs(unanchored[:, patch[part]] - whole[:, patch]).max() > 1e-4


def test_only_shadows_where_the_scenes_offset_casts_them_and_darker_than_the_land_are_relit(
        land):
    """Four patches the mask would flag on real land: a real shadow's darkening where the
    cloud casts it (the scene's offset: 35 px east), the same darkening on the cloud's other
    side and far from any cloud, and undarkened land where the cloud casts its shadow."""
    clear, valid, _ = land
    y, x = np.ogrid[:N, :N]

    def disk(cy, cx, r):
        return (y - cy) ** 2 + (x - cx) ** 2 <= r * r

    cast, west, far = disk(81, 166, 8), disk(81, 96, 8), disk(137, 10, 8)
    plain = disk(70, 160, 6)
    cloud = disk(81, 131, 15)
    offset = (0, 35)
    where = footprint(cloud, offset)
    assert where[cast].all() and where[plain].all() and not (where[west] | where[far]).any()
    ratio = DARKENING
    darkened = cast | west | far
    dark = np.where(darkened[None], clear * ratio[:, None, None], clear)
    flagged = darkened | plain
    weight = shadow_weight(dark, flagged, cloud, valid & ~flagged & ~cloud, offset)
    assert (weight[cast] > 0.5).mean() > 0.9
    assert (weight[west] == 0).all() and (weight[far] == 0).all()
    assert (weight[plain] < 0.5).all() and (weight[~flagged] == 0).all()
    # darkened alike, the three patches look like shadows wherever they are
    assert (shadow_like(dark, flagged, valid & ~flagged & ~cloud)[darkened] > 0.5).mean() > 0.9
    no_offset = shadow_weight(dark, flagged, cloud, valid & ~flagged & ~cloud, None)
    assert not no_offset.any()


def darkened_disks(clear: np.ndarray, valid: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The chip with disks of 4 to 12 px darkened as real shadows darken land, the pixels the
    mask would flag (those disks and as many undarkened ones) and the darkened ones."""
    y, x = np.ogrid[:N, :N]
    flagged, dark = np.zeros((N, N), bool), np.zeros((N, N), bool)
    for i, r in enumerate((4, 6, 8, 10, 12, 4, 6, 8, 10, 12)):
        disk = (y - 30 - 45 * (i % 5)) ** 2 + (x - 50 - 150 * (i // 5)) ** 2 <= r * r
        flagged |= disk
        dark |= disk if i < 5 else False
    image = np.where(dark[None], clear * DARKENING[:, None, None], clear)
    return image, flagged & valid, dark & valid


def full_resolution_shadow_like(refl: np.ndarray, shadow: np.ndarray,
                                clear: np.ndarray) -> np.ndarray:
    """The shadow test's measure with its Gaussians at full resolution (B08, B11), 0 on
    water."""
    picked = refl[[BANDS.index("B08"), BANDS.index("B11")]]
    seen = smooth_within(picked, shadow, SEEN_SIGMA)
    land = (clear + FLAGGED_WEIGHT * shadow).astype(np.float32)
    around = np.stack([ndimage.gaussian_filter(b * land, LAND_SIGMA, mode="nearest")
                       for b in picked]) / ndimage.gaussian_filter(land, LAND_SIGMA, mode="nearest")
    ratio = (seen / around).mean(0)
    step = np.clip((DARK[1] - ratio) / (DARK[1] - DARK[0]), 0, 1)  # crosses a half with it
    return np.where(shadow & ~water(refl), step, 0)


def test_the_shadow_test_on_its_grid_finds_the_shadows_its_full_resolution_measure_finds(land):
    """Shadow-darkened and undarkened disks on real land: the shadow test, measured on a grid
    4 px coarser, takes the same pixels for shadows as its Gaussians at full resolution."""
    clear, valid, _ = land
    image, flagged, dark = darkened_disks(clear, valid)
    like = shadow_like(image, flagged, valid & ~flagged)
    full = full_resolution_shadow_like(image, flagged, valid & ~flagged)
    assert ((like >= 0.5) == (full >= 0.5))[flagged].mean() > 0.99
    assert (like >= 0.5)[dark & ~water(image)].mean() > 0.95
    assert (like >= 0.5)[flagged & ~dark].mean() < 0.1


def test_the_shadow_test_costs_less_cpu_than_one_full_resolution_blur_of_its_land(land):
    """The shadow test's Gaussians (4 and 32 px) run on a grid 4 px coarser: on the chip it
    takes less CPU than one band's Gaussian of 32 px at full resolution (it took three)."""
    clear, valid, _ = land
    image, flagged, _ = darkened_disks(clear, valid)

    def cpu(run) -> float:  # the least of five runs, CPU of this thread
        times = []
        for _ in range(5):
            start = time.thread_time()
            run()
            times.append(time.thread_time() - start)
        return min(times)

    test = cpu(lambda: shadow_like(image, flagged, valid & ~flagged))
    blur = cpu(lambda: ndimage.gaussian_filter(image[7], LAND_SIGMA, mode="nearest"))
    assert test < blur


def test_a_window_ties_the_whole_images_shadows_with_its_corner_and_reach_around():
    """A window cut anywhere (off the 4 px grid of the shadow test), with ``TIE_REACH`` px
    around it and its corner's place in the scene, ties the bundled sample's shadows as the
    whole (mirror-padded) image does; laid from the window's own corner, the grid moves, and
    with it some shadows' edges."""
    with open_sentinel2(ROOT / "examples" / "data" / "s2.tif") as ds:
        refl, valid = ds.read()
    classes, _ = classify(refl, valid, MaskParams(buffer=5, shadow=True))
    pad = TIE_REACH + 3
    refl = np.pad(refl, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    classes = np.pad(classes, pad, mode="symmetric")
    offset = (-1, -35)  # the sample's (``scene_offset``, next test)
    whole = tied_shadows(refl, classes, offset, BANDS, (-pad, -pad))
    assert ((classes == SHADOW) & (whole == CLEAR)).any()  # some dark land is let go
    h, w, r = 100, 120, TIE_REACH
    for top, left in ((1, 2), (7, 5)):
        rows, cols = slice(pad + top - r, pad + top + h + r), slice(pad + left - r,
                                                                  pad + left + w + r)
        inner = (slice(pad + top, pad + top + h), slice(pad + left, pad + left + w))
        window = (refl[:, rows, cols], classes[rows, cols], offset, BANDS)
        tied = tied_shadows(*window, (top - r, left - r))
        assert np.array_equal(tied[r:r + h, r:r + w], whole[inner])
        assert not np.array_equal(tied_shadows(*window)[r:r + h, r:r + w], whole[inner])



def test_where_no_cloud_casts_a_shadow_every_flagged_one_is_clear_and_no_margin_is_read():
    """Without the scene's offset (its clouds cast no shadow), the tie makes every flagged
    shadow of the bundled sample clear and leaves every other class, pixel by pixel: a window
    cut anywhere, with no margin, gives the whole image's classes, and the chunks read none
    for it (``tie_reach``)."""
    with open_sentinel2(ROOT / "examples" / "data" / "s2.tif") as ds:
        refl, valid = ds.read()
    classes, _ = classify(refl, valid, MaskParams(buffer=5, shadow=True))
    assert (classes == SHADOW).sum() > 1000
    whole = tied_shadows(refl, classes, None)
    assert np.array_equal(whole, np.where(classes == SHADOW, CLEAR, classes))
    rows, cols = slice(37, 141), slice(90, 203)
    window = tied_shadows(refl[:, rows, cols], classes[rows, cols], None, BANDS, (37, 90))
    assert np.array_equal(window, whole[rows, cols])
    assert tie_reach(None) == 0 and tie_reach((-1, -35)) == TIE_REACH

def test_the_bundled_samples_shadows_are_found_west_of_its_clouds_and_relit_by_default(
        tmp_path):
    """The bundled sample's real cumulus casts its shadows west (its shadows lie on the west
    side of every cloud in the quicklook): the scene's offset points there, and ``remove``
    relights them by default, brighter in NIR and SWIR with the land's texture, and changes
    nothing off the clouds, their haze ring and those shadows."""
    sample = ROOT / "examples" / "data"
    with open_sentinel2(sample / "s2.tif") as ds:
        refl, valid = ds.read()
    classes, score = classify(refl, valid, MaskParams(buffer=5, shadow=True))
    cloud = (classes == CLOUD) & (score > MaskParams().threshold)
    like = shadow_like(refl, classes == SHADOW, classes == CLEAR) >= 0.5
    r = OFFSET_REACH
    counts = offset_counts(np.pad(like, r), np.pad(cloud, r), (slice(r, N + r),) * 2,
                           np.pad(valid, r))
    dy, dx = scene_offset(counts)
    assert dx < -20 and abs(dy) < 10
    out, unshaded, mask = tmp_path / "out.tif", tmp_path / "unshaded.tif", tmp_path / "m.tif"
    remove_scene(sample / "s2.tif", None, out, outputs=OutputOptions(mask_out=mask),
                 quiet=True)
    remove_scene(sample / "s2.tif", None, unshaded, mask_params=MaskParams(buffer=5,
                                                                          shadow=False),
                 quiet=True)
    with rasterio.open(out) as a, rasterio.open(unshaded) as b, rasterio.open(mask) as m, \
            rasterio.open(sample / "s2.tif") as i:
        relit, kept, used, seen = (a.read().astype(np.float32), b.read().astype(np.float32),
                                   m.read(1), i.read().astype(np.float32))
    shadow = used == SHADOW
    assert 0.02 < shadow.mean() < 0.08
    # --no-shadow leaves them dark (but the few in a cloud's haze ring, which takes every
    # pixel within its reach that scores as cloud at all: 10.5 % of them)
    assert (kept[:, shadow] == seen[:, shadow]).all(axis=0).mean() > 0.85
    nir, swir = BANDS.index("B08"), BANDS.index("B11")
    for band in (nir, swir):
        assert relit[band, shadow].mean() > 1.3 * seen[band, shadow].mean()
    inner = ndimage.binary_erosion(shadow, iterations=2)
    assert texture_correlation(relit, seen, inner) > 0.8
    # east of each shadow pixel, within the offset's reach, its cloud
    east = np.array([cloud[row, col:col + 2 * r].any() for row, col in zip(*np.nonzero(shadow),
                                                                           strict=True)])
    assert east.mean() > 0.9
    changed = (relit != kept).any(axis=0)
    away = ndimage.distance_transform_edt(~(used > 0)) > LocalFillParams().ring
    assert not changed[away].any()


def test_water_and_dark_land_beside_a_cloud_without_shadows_are_left_alone(land, clouded,
                                                                            tmp_path):
    """The Sen1Floods11 chip (a river, dark fields) under summer_19's cumulus, whose shadows
    are not in the image: the mask's shadow test flags water and dark land beside the cloud
    that is as dark, against the land around, as a shadow, but no displacement lays the
    cloud's outline on it much more than on its other side, so ``remove`` by default relights
    none of it."""
    _, valid, _ = land
    cloudy, _, region, _ = clouded
    classes, _ = classify(cloudy, valid, MaskParams(buffer=5, shadow=True))
    flagged = classes == SHADOW
    near = ndimage.distance_transform_edt(classes != CLOUD) <= 50
    green, nir = cloudy[BANDS.index("B03")], cloudy[BANDS.index("B08")]
    water = flagged & (green - nir > WATER_NDWI * (green + nir))
    assert water.sum() > 1000  # the river, flagged as shadow
    dark = shadow_like(cloudy, flagged, classes == CLEAR) >= 0.5
    assert (dark & near).sum() > 1000  # dark land beside the cloud, as dark as a shadow
    with rasterio.open(FLOODS_S2) as ds:
        profile = ds.profile
    dn = np.where(valid, np.clip(np.rint(cloudy * 1e4), 1, 65535), 0).astype(np.uint16)
    scene = write_stack(tmp_path / "s2.tif", dn, profile, nodata=0)
    out, mask = tmp_path / "out.tif", tmp_path / "mask.tif"
    remove_scene(scene, None, out, outputs=OutputOptions(mask_out=mask), quiet=True)
    with rasterio.open(out) as a, rasterio.open(mask) as m:
        kept, used, tags = a.read(), m.read(1), a.tags()
    assert tags["SHADOW_FILLED"] == "True"  # shadows on, by default for one date
    assert not (used == SHADOW).any()
    replaced = (used != CLEAR) & (used != NODATA)
    untouched = valid & (ndimage.distance_transform_edt(~replaced) > LocalFillParams().ring)
    for left in (water, dark & near):
        assert (left & untouched).sum() > 500
        np.testing.assert_array_equal(kept[:, left & untouched], dn[:, left & untouched])


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


def removal(tmp: Path, model: str = DEFAULT_MODEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled sample as ``remove`` runs it with ``model`` and every other default: its
    input, output (float32 [13, H, W]) and the mask's classes."""
    sample = ROOT / "examples" / "data"
    out, mask = tmp / "out.tif", tmp / "mask.tif"
    remove_scene(sample / "s2.tif", sample / "s1.tif", out, outputs=OutputOptions(mask_out=mask),
                 engine=EngineOptions(model=model), quiet=True)
    with rasterio.open(sample / "s2.tif") as ds:
        seen = ds.read().astype(np.float32)
    with rasterio.open(out) as ds, rasterio.open(mask) as m:
        return seen, ds.read().astype(np.float32), m.read(1)


@pytest.fixture(scope="module")
def bundled_removal(tmp_path_factory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bundled sample as ``remove`` runs it by default: its input, output (float32
    [13, H, W]) and the mask's shadow pixels."""
    seen, written, classes = removal(tmp_path_factory.mktemp("bundled"))
    return seen, written, classes == SHADOW


def test_no_restored_edge_of_the_bundled_sample_is_darker_or_bluer_than_its_land(
        bundled_removal):
    """The bundled sample as ``remove`` runs it by default: no filled pixel darker in B02, B03
    or B04 than the land's 0.5th percentile, nor bluer (B02 / B04) than its bluest pixel
    (the veil of its cloud edges unmixed with a white cloud left hundreds of dark blue specks).
    The land is what the input shows off the clouds: the pixels kept, and the shadowed ones
    the output relights, as seen."""
    seen, written, shadow = bundled_removal
    filled = (written != seen).any(axis=0)
    assert 0.2 < filled.mean() < 0.8 and (filled & shadow).sum() > 0.8 * shadow.sum() > 1000
    land, restored = seen[1:4, ~filled | shadow], written[1:4, filled]  # B02, B03, B04
    darkest = np.percentile(land, 0.5, axis=1)[:, None]
    assert not (restored < darkest).any()
    bluest = (land[0] / land[2]).max()
    assert not (restored[0] > bluest * restored[2]).any()


@pytest.mark.parametrize("model", [DEFAULT_MODEL, "cloudfree-fillnet", "cloudfree-fillnet-fast"])
def test_no_filled_cloud_pixel_of_the_bundled_sample_is_out_of_its_clear_lands_bounds(
        model, tmp_path):
    """The bundled sample as ``remove`` runs it with each model: no filled pixel (the shadows
    relit aside) darker in a land band than the scene's clear land's ``land_bounds``, nor
    bluer (B02 / B04). The network's corrections of its fill left 126 pixels of
    ``cloudfree-fillnet`` darker in B06 to B8A (on the benchmark's scenes, thousands of dark
    and blue-black specks); its fill is now held as the restored land is."""
    seen, written, classes = removal(tmp_path, model)
    filled = (written != seen).any(axis=0) & (classes != SHADOW)
    bounds = land_bounds(seen / 10000, classes == CLEAR, BANDS)
    assert filled.sum() > 0.3 * filled.size
    out = written[:, filled]
    darkest = 10000 * np.array(bounds.darkest, np.float32)[:, None]
    assert darkest[[BANDS.index(b) for b in LAND_BANDS]].min() > 0
    assert not (out < darkest - 0.5).any()  # within the rounding to DN
    assert not (out[BANDS.index("B02")] > bounds.bluest * out[BANDS.index("B04")] + 1).any()


def test_the_bundled_samples_thin_cloud_is_restored_without_dark_specks_or_veil(
        bundled_removal):
    """The bundled sample as ``remove`` runs it by default, its cloud pixels (the shadows
    relit aside): none darker in B02, B03 and B04 at once than the darkest 2 % of the land kept
    (the dark blue-black specks along the bright cores, where a bluish veil was taken off as a
    white one), and none hazier (HOT, B02 - B04 / 2) than the haziest pixel kept (the veil of a
    bright wisp left on, or blended back by the feather)."""
    seen, written, shadow = bundled_removal
    filled = (written != seen).any(axis=0)
    cloud, land = written[:, filled & ~shadow], seen[:, ~filled]
    assert cloud.shape[1] > 0.3 * filled.size
    darkest = np.percentile(land[1:4], 2, axis=1)[:, None]  # B02, B03, B04
    assert not (cloud[1:4] < darkest).all(axis=0).any()
    assert (cloud[1] - cloud[3] / 2).max() <= (land[1] - land[3] / 2).max()


def test_the_bundled_samples_feather_gives_no_veil_back(bundled_removal):
    """The bundled sample as ``remove`` runs it by default: the outer 2 px of its filled
    region (the feather, the shadows relit aside) no hazier (HOT, B02 - B04 / 2) than the land
    kept. Eased in against the veiled pixels as seen, 44 % of them were hazier than the land's
    95th percentile and their median 34 DN above the land's; the feather now eases the fill in
    against the land restored under the veil."""
    seen, written, shadow = bundled_removal
    filled = (written != seen).any(axis=0)
    feather = filled & (ndimage.distance_transform_edt(filled) < 2.5) & ~shadow
    assert feather.sum() > 3000
    hot = written[1, feather] - written[3, feather] / 2
    land = seen[1, ~filled] - seen[3, ~filled] / 2
    assert np.mean(hot > np.percentile(land, 95)) < 0.2
    assert abs(np.median(hot) - np.median(land)) < 10


def test_the_land_bounds_counted_window_by_window_are_the_whole_images_percentiles(land):
    """The bounds ``remove`` counts over the scene in its first pass: the same whatever windows
    the land is counted in, and numpy's percentiles of all its clear pixels to a DN."""
    refl, valid, _ = land
    histogram = LandHistogram(BANDS)
    for rows in (slice(0, 64), slice(64, 200), slice(200, N)):
        histogram.add(refl[:, rows], valid[rows])
    bounds = histogram.bounds()
    assert bounds == land_bounds(refl, valid, BANDS)
    seen = refl[:, valid]
    for band, name in enumerate(BANDS):
        want = np.percentile(seen[band], DARK_PERCENTILE) if name in LAND_BANDS else 0
        assert bounds.darkest[band] == pytest.approx(want, abs=1e-4), name
    ratio = seen[BANDS.index("B02")] / seen[BANDS.index("B04")]
    assert bounds.bluest == pytest.approx(np.percentile(ratio, BLUE_PERCENTILE), abs=1e-3)
