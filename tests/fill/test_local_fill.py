"""The local, S1-aware fill and the haze ring of `remove`, on real scenes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from helpers import (
    FLOODS,
    FLOODS_S1,
    FLOODS_S2,
    SUMMER_S1,
    SUMMER_S2,
    WINTER_CLEAR,
    WINTER_S1,
)
from rasterio.windows import Window
from scipy import ndimage

from cloudfree.fill import local as local_fill_module
from cloudfree.fill.local import (
    CLASS_STEP,
    COARSE_WEIGHT,
    FALLBACK_WEIGHT,
    KIN_SOURCES,
    LAND_IN_WATER,
    MIN_MEMBERSHIP,
    SUPPORT_SCALE,
    WATER_NDWI,
    WATER_VV,
    CoarseGrid,
    LocalFillParams,
    correction_bound,
    haze_region,
    local_fill,
    membership,
    s1_classes,
    smooth_s1,
    source_weight,
    unshaded,
)
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.bright_land import SEED_STEPS, seed_reach
from cloudfree.mask.classify import CLEAR, CLOUD, SHADOW, MaskParams, classify
from cloudfree.pipeline.options import EngineOptions, FillOptions, OutputOptions, split_options
from cloudfree.pipeline.remove import remove_scene

B08, B11 = 7, 11  # band indices in L1C order (B8A is ninth)
RADIUS = 14


@pytest.fixture(scope="module")
def floods():
    """The Sen1Floods11 chip (DN), its water label and the brightest real cloud of summer_19."""
    with rasterio.open(FLOODS_S2) as ds:
        s2, profile = ds.read(), ds.profile
    with rasterio.open(FLOODS / "Spain_7370579_LabelHand.tif") as ds:
        water = ds.read(1) == 1
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    score = classify(refl, valid)[1]
    cloud = refl[:, *np.unravel_index(np.nanargmax(score), score.shape)]  # reflectance
    return s2, profile, water, cloud


def disk_at(shape, centre, radius):
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2


def deepest(label: np.ndarray) -> tuple[int, int]:
    """The pixel of ``label`` farthest from its edge."""
    depth = ndimage.distance_transform_edt(label)
    return tuple(int(i) for i in np.unravel_index(depth.argmax(), depth.shape))


def cloud_over(tmp_path, floods, over: str) -> tuple:
    """The chip with the opaque cloud pasted over the middle of its water or its land:
    (path, the cloud's disk, the pixels of that surface)."""
    s2, profile, water, cloud = floods
    surface = water if over == "water" else ~water
    centre = deepest(surface)
    assert ndimage.distance_transform_edt(surface)[centre] > RADIUS, "the test needs room"
    disk = disk_at(water.shape, centre, RADIUS)
    cloudy = np.where(disk[None], np.rint(cloud * 10000).astype(s2.dtype)[:, None, None], s2)
    path = tmp_path / f"cloudy_{over}.tif"
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(cloudy)
    return path, disk, surface


def removed(path, out, **options) -> np.ndarray:
    remove_scene(path, FLOODS_S1, out, quiet=True,
                 **split_options({"s1_aligned": True, "device": "cpu", **options}))
    with rasterio.open(out) as ds:
        return ds.read().astype(np.float64)


@pytest.mark.parametrize(("over", "model"), [
    ("water", "median-fill"), ("land", "median-fill"), ("land", "cloudfree-fillnet"),
    ("water", "cloudfree-fillnet"),
])
@pytest.mark.slow
def test_opaque_cloud_over_water_is_filled_with_water_and_over_land_with_land(
        tmp_path, floods, over, model):
    s2 = floods[0]
    path, disk, surface = cloud_over(tmp_path, floods, over)
    # the pasted disk is one spectrum with a sharp rim and no parallax, which the bright-land
    # test takes in part for land (a real cloud shows parallax): the test is of the fill
    params = MaskParams(buffer=5, land=False)
    result = removed(path, tmp_path / "out.tif", model=model, mask_params=params)
    want = s2[:, disk].mean(axis=1)  # what the cloud hides: the chip is cloud-free
    got = result[:, disk].mean(axis=1)
    for band in (B08, B11):
        assert abs(got[band] - want[band]) < 0.3 * want[band], (over, band, got[band],
                                                                 want[band])
    other = np.median(s2[:, ~surface], axis=1)  # the other surface's values
    assert abs(got[B08] - want[B08]) < abs(got[B08] - other[B08])
    away = away_from_clouds(path, params)
    assert np.array_equal(result[:, away], s2[:, away])


def test_water_under_a_wide_opaque_cloud_stays_as_dark_as_the_water_in_nir_and_swir(
        tmp_path, floods):
    """A cloud over the river and its banks: the clear water left is mostly brighter, mixed
    with land at the edges; the water classes of S1 draw on the clear pixels that look like
    water."""
    s2, profile, water, cloud = floods
    disk = disk_at(water.shape, deepest(water), 40)
    assert (disk & ~water).sum() > 500  # the banks are under it too
    path = tmp_path / "cloudy.tif"
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.where(disk[None], np.rint(cloud * 10000).astype(s2.dtype)[:, None, None],
                          s2))
    result = removed(path, tmp_path / "out.tif")
    under = disk & water
    for band in (B08, B11):
        want = np.median(s2[band, under])
        assert abs(np.median(result[band, under]) / want - 1) < 0.35, band


@pytest.mark.slow
def test_the_networks_correction_is_bounded_and_shrinks_with_clear_land_around(tmp_path,
                                                                                floods):
    path, disk, _ = cloud_over(tmp_path, floods, "water")
    inner = ndimage.binary_erosion(disk, iterations=4)  # past the feather: no original in it
    params = MaskParams(buffer=5, land=False)  # the pasted disk shows no parallax (above)
    base = removed(path, tmp_path / "base.tif", model="median-fill", mask_params=params)
    bounded = removed(path, tmp_path / "bounded.tif", model="cloudfree-fillnet",
                      mask_params=params)
    free = removed(path, tmp_path / "free.tif", model="cloudfree-fillnet", max_correction=None,
                   mask_params=params)
    base, bounded, free = base[:, inner], bounded[:, inner], free[:, inner]
    assert (free < 0.6 * base).any()  # unbounded, it darkens water to well under the base
    assert (abs(bounded - base) <= 0.25 * base + 1).all()  # 1 DN of rounding
    # clear water all around this small cloud supports the local fill: the bound shrinks to
    # well under a quarter, and the network still moves the fill within it
    assert (abs(bounded - base) <= 0.15 * base + 1).all()
    assert (abs(bounded - base) > 0.05 * base + 1).any()


def test_the_bound_is_a_quarter_where_nothing_clear_is_near_and_shrinks_with_support():
    bound = correction_bound(np.array([0, SUPPORT_SCALE, 10 * SUPPORT_SCALE]), 0.25)
    np.testing.assert_allclose(bound, [0.25, 0.125, 0.25 / 11], rtol=1e-6)


def river_hole() -> tuple[np.ndarray, ...]:
    """The chip's reflectance, valid pixels, S1, water label and a 40 px hole over its river and
    the land around it."""
    with open_sentinel2(FLOODS_S2) as ds:
        refl, valid = ds.read()
    with rasterio.open(FLOODS_S1) as ds:
        s1 = ds.read()
    with rasterio.open(FLOODS / "Spain_7370579_LabelHand.tif") as ds:
        water = ds.read(1) == 1
    return refl, valid, s1, water, disk_at(water.shape, deepest(water), 40)


def test_local_fill_takes_the_clear_pixels_that_match_in_s1():
    """Two S1 classes side by side: each masked pixel gets the mean of its own class."""
    refl, valid, s1, water, hole = river_hole()
    assert (hole & water).sum() > 500 and (hole & ~water).sum() > 500
    filled, support = local_fill(refl, hole, (valid & ~hole).astype(np.float32), s1,
                                 np.median(refl[:, valid], axis=1))
    assert np.array_equal(filled[:, ~hole], refl[:, ~hole])
    # the support is the clear land behind each filled pixel: none off the hole, and more at
    # its rim than at its centre, 40 px from any clear pixel
    assert not support[~hole].any()
    depth = ndimage.distance_transform_edt(hole)
    rim, centre = support[(depth > 0) & (depth <= 3)], support[depth > 35]
    assert np.median(rim) > 0.1 and np.median(rim) > 5 * np.median(centre)
    near = ndimage.binary_dilation(hole, iterations=40) & ~hole & valid
    for label in (water, ~water):
        inside = hole & label & ndimage.binary_erosion(label, iterations=3)
        truth = np.median(refl[B08, near & label])
        assert abs(np.median(filled[B08, inside]) - truth) < 0.3 * truth


def holes_filled(s2, s1, sigmas: tuple[float, ...], radius: int = 20) -> list[float]:
    """RMSE (reflectance) of the local fill of a grid of discs cut out of a clear real scene,
    with each S1 similarity of ``sigmas`` (dB)."""
    with open_sentinel2(s2) as ds:
        refl, valid = ds.read()
    with rasterio.open(s1) as ds:
        s1_db = ds.read()
    hole = np.zeros(valid.shape, bool)
    step = 2 * radius + 20
    for cy in range(radius + 8, valid.shape[0] - radius, step):
        for cx in range(radius + 8, valid.shape[1] - radius, step):
            hole |= disk_at(valid.shape, (cy, cx), radius)
    hole &= valid
    errors = []
    for sigma in sigmas:
        filled, _ = local_fill(refl, hole, (valid & ~hole).astype(np.float32), s1_db,
                               np.median(refl[:, valid], axis=1), LocalFillParams(s1_sigma=sigma))
        errors.append(float(np.sqrt(np.mean(np.square(filled[:, hole] - refl[:, hole])))))
    return errors


def test_the_s1_similarity_fills_farmland_closer_and_keeps_the_floods_classes_whole():
    """The default similarity fills holes in the winter farmland closer than 2 dB did, and
    those in the flooded chip no worse, where 1 dB splits its water and wet fields."""
    default = LocalFillParams().s1_sigma
    farmland, before = holes_filled(WINTER_CLEAR, WINTER_S1, (default, 2.0))
    assert farmland < 0.97 * before
    floods, before, narrow = holes_filled(FLOODS_S2, FLOODS_S1, (default, 2.0, 1.0))
    assert floods <= before and floods < 0.99 * narrow


def reference_local_fill(refl, fill, source, s1_db, fallback, params=LocalFillParams()):
    """The local fill's sums written out directly with numpy and scipy, class by class: block
    sums onto the coarse grid, scipy's Gaussians, bilinear reads by map_coordinates; in the
    open-water classes, the sources weighted by how much they look like water."""
    f, (height, width) = params.factor, fill.shape
    h, w = -(-height // f), -(-width // f)

    def block_sums(a):
        a = np.pad(a, [(0, 0), (0, h * f - height), (0, w * f - width)])
        return a.reshape(len(a), h, f, w, f).sum((2, 4), dtype=np.float64)

    def bilinear(a, y, x):  # values of a [C, h', w'] at fractional cells, clamped at the edges
        return np.stack([ndimage.map_coordinates(band, [y, x], order=1, mode="nearest")
                         for band in a])

    s1 = smooth_s1(s1_db)
    known = np.isfinite(s1)
    green, nir, swir = refl[2], refl[B08], refl[B11]
    index = np.minimum((green - nir) / (green + nir), (green - swir) / (green + swir))
    water = source * np.clip(index / WATER_NDWI, LAND_IN_WATER, 1)
    stack = block_sums(np.concatenate([refl * source, source[None]]))
    water_stack = block_sums(np.concatenate([refl * water, water[None]]))
    cell_s1 = block_sums(np.where(known, s1, 0)) / block_sums(known.astype(float))
    rows, cols = np.nonzero(fill)
    y = np.clip((rows - (f - 1) / 2) / f, 0, h - 1)
    x = np.clip((cols - (f - 1) / 2) / f, 0, w - 1)
    here = s1[:, rows, cols]
    sums = np.zeros((len(refl) + 1, len(rows)))
    kin = np.zeros_like(sums)  # the window's sources of each pixel's kind
    sigma = params.sigma / f
    for centre in s1_classes(s1[:, fill], CLASS_STEP * params.s1_sigma):
        sources = water_stack if centre[0] < WATER_VV else stack
        coarse = sources * membership(cell_s1, centre, params.s1_sigma)
        near = ndimage.gaussian_filter(coarse, (0, sigma, sigma), mode="constant", truncate=3)
        padded = np.pad(coarse, [(0, 0), (0, -h % 4), (0, -w % 4)])
        small = padded.reshape(len(padded), padded.shape[1] // 4, 4, -1, 4).mean((2, 4))
        small = ndimage.gaussian_filter(small, (0, sigma, sigma), mode="constant", truncate=3)
        # bilinear upsampling by 4 with half-pixel centres, as torch's interpolate does
        sy, sx = np.meshgrid(np.maximum((np.arange(h) + 0.5) / 4 - 0.5, 0),
                             np.maximum((np.arange(w) + 0.5) / 4 - 0.5, 0), indexing="ij")
        far = bilinear(small, sy.ravel(), sx.ravel()).reshape(len(small), h, w)
        mine = membership(here, centre, params.s1_sigma)
        mine = np.where(mine > MIN_MEMBERSHIP, mine, 0)
        sums += bilinear(near + COARSE_WEIGHT * far, y, x) * mine
        kin += coarse.sum(axis=(1, 2))[:, None] * mine
    has_kin = kin[-1] >= KIN_SOURCES
    spectrum = np.where(has_kin, kin[:-1] / np.where(has_kin, kin[-1], 1),
                        np.asarray(fallback)[:, None])
    out = refl.astype(np.float64)
    out[:, rows, cols] = (sums[:-1] + FALLBACK_WEIGHT * spectrum) / (sums[-1] + FALLBACK_WEIGHT)
    return out, sums[-1]


@pytest.mark.parametrize(("read_back_values", "inner"), [(None, False), (2**12, False),
                                                         (None, True)])
def test_local_fill_matches_its_sums_computed_directly_on_a_real_window(monkeypatch,
                                                                        read_back_values, inner):
    """The fill of the summer sample's real clouds (a 150 x 190 window: partial coarse cells on
    both far edges) agrees with the direct computation to well under one DN, also when the
    read-back works through the classes and the quads in many small groups, and with the clouds
    kept off the window's edges (each quad of coarse cells then holds at most one part: the
    edge quads take the pixels beyond the outer cells' centres too)."""
    if read_back_values:
        monkeypatch.setattr(local_fill_module, "READ_BACK_VALUES", read_back_values)
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read(Window(30, 40, 190, 150))
    with rasterio.open(SUMMER_S1) as ds:
        s1 = ds.read(window=Window(30, 40, 190, 150))
    classes, score = classify(refl, valid)
    region = haze_region(classes == CLOUD, score, valid, LocalFillParams())
    assert 0.2 < region.mean() < 0.8
    source = source_weight(refl, region, valid & (classes == CLEAR), LocalFillParams())
    fallback = np.median(refl[:, valid & ~region], axis=1)
    if inner:
        region[:8], region[-8:], region[:, :8], region[:, -8:] = False, False, False, False
    assert CoarseGrid(region.shape, 4, *np.nonzero(region)).one_part_each == inner
    filled, support = local_fill(refl, region, source, s1, fallback)
    expected, expected_support = reference_local_fill(refl, region, source, s1, fallback)
    assert np.abs(filled - expected).max() < 0.05e-4  # reflectance: a twentieth of a DN
    assert np.array_equal(filled[:, ~region], refl[:, ~region])
    np.testing.assert_allclose(support[region], expected_support, rtol=1e-4, atol=1e-6)


def test_local_fill_over_water_matches_its_sums_computed_directly():
    """A hole over the chip's river and its banks: the open-water classes of S1 and the others
    agree with the direct computation."""
    refl, valid, s1, _, hole = river_hole()
    centres = s1_classes(smooth_s1(s1)[:, hole], CLASS_STEP * LocalFillParams().s1_sigma)
    assert (centres[:, 0] < WATER_VV).any() and (centres[:, 0] > WATER_VV).any()
    source = (valid & ~hole).astype(np.float32)
    fallback = np.median(refl[:, valid], axis=1)
    filled, support = local_fill(refl, hole, source, s1, fallback)
    expected, expected_support = reference_local_fill(refl, hole, source, s1, fallback)
    assert np.abs(filled - expected).max() < 0.05e-4
    np.testing.assert_allclose(support[hole], expected_support, rtol=1e-4, atol=1e-6)


def test_smoothed_s1_is_the_mean_of_the_known_values_around():
    """The summer sample's real S1: with no gaps, the 5x5 mean; with a hole, the same far from
    it, the mean of the known values at its edge and NaN in its middle."""
    with rasterio.open(SUMMER_S1) as ds:
        s1 = ds.read().astype(np.float32)
    whole = smooth_s1(s1)
    np.testing.assert_allclose(whole[:, 50, 70], s1[:, 48:53, 68:73].mean(axis=(1, 2)),
                               rtol=1e-5)
    np.testing.assert_allclose(whole[:, 0, 0], s1[:, [0, 0, 0, 1, 2]][:, :, [0, 0, 0, 1, 2]]
                               .mean(axis=(1, 2)), rtol=1e-5)  # the edge values held beyond
    holed = s1.copy()
    holed[:, 100:110, 100:110] = np.nan
    gaps = smooth_s1(holed)
    np.testing.assert_allclose(gaps[:, :90], whole[:, :90], rtol=1e-5, atol=1e-5)
    assert np.isnan(gaps[:, 104:106, 104:106]).all()
    edge = holed[:, 98:103, 98:103]  # the 5x5 around (100, 100): 9 of its values are known
    np.testing.assert_allclose(gaps[:, 100, 100], np.nanmean(edge, axis=(1, 2)), rtol=1e-5)


def test_haze_ring_takes_faint_haze_but_not_land_that_scores_nothing():
    """The ring takes every pixel in its reach that scores as cloud at all: faint haze beside
    the real summer sample's clouds (a score up to 0.05) joins, land in reach scoring 0 never
    does."""
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    classes, score = classify(refl, valid, MaskParams(buffer=5))
    cloud = classes == CLOUD
    local = LocalFillParams()
    added = haze_region(cloud, score, valid, local) & ~cloud
    score = np.nan_to_num(score)
    assert (added & (score <= 0.05)).sum() > 50
    assert not (added & (score <= 0)).any()
    reach = ndimage.distance_transform_edt(~cloud) <= local.ring
    assert (reach & valid & ~cloud & (score <= 0)).any()


def test_haze_ring_joins_only_hazy_pixels_near_clouds():
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    params = MaskParams(buffer=5)
    classes, score = classify(refl, valid, params)
    cloud = classes == CLOUD
    local = LocalFillParams()
    region = haze_region(cloud, score, valid, local)
    added = region & ~cloud
    assert added.any() and (score[added] > local.ring_score).all()
    assert (ndimage.distance_transform_edt(~cloud)[added] <= local.ring).all()
    weight = source_weight(refl, region, valid & (classes == CLEAR), local)
    assert weight[region].max() == 0 and weight.max() == 1
    assert 0 < weight[ndimage.binary_dilation(region) & ~region].max() < 1
    # every hazy pixel within each seed's share of the ring (``seed_reach`` in quarters), and
    # the sources' ramp, as the distance transform has them
    steps = np.ceil(seed_reach(cloud, score, valid) * SEED_STEPS)
    near = np.zeros_like(cloud)
    for step in range(1, SEED_STEPS + 1):
        near |= (ndimage.distance_transform_edt(steps != step)
                 <= -(-local.ring * step // SEED_STEPS))
    np.testing.assert_array_equal(region, cloud | (near & valid & (score > local.ring_score)))
    ramp = np.clip(ndimage.distance_transform_edt(~region) / local.source_ramp, 0, 1)
    lit = unshaded(refl, region, classes == CLEAR)
    np.testing.assert_array_equal(weight, ((classes == CLEAR) * ramp).astype(np.float32) * lit)


def away_from_clouds(path, params: MaskParams = MaskParams(buffer=5)) -> np.ndarray:
    """Pixels farther than the haze ring from remove's cloud mask of ``path`` (``params``:
    its default)."""
    with open_sentinel2(path) as ds:
        refl, valid = ds.read()
    cloud = classify(refl, valid, params)[0] == CLOUD
    return ndimage.distance_transform_edt(~cloud) > LocalFillParams().ring


def test_pixels_away_from_clouds_are_bit_identical_with_the_local_fill(tmp_path):
    out, mask = tmp_path / "o.tif", tmp_path / "m.tif"
    remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(device="cpu"),
                 inputs=InputOptions(s1_aligned=True), outputs=OutputOptions(mask_out=mask),
                 quiet=True)
    with rasterio.open(mask) as ds:  # and from the shadows they cast, relit
        shadow = ds.read(1) == SHADOW
    away = away_from_clouds(SUMMER_S2)
    away &= ndimage.distance_transform_edt(~shadow) > LocalFillParams().ring
    assert shadow.any() and 0.05 < away.mean() < 0.95
    with rasterio.open(out) as ds, rasterio.open(SUMMER_S2) as src:
        assert np.array_equal(ds.read()[:, away], src.read()[:, away])
        assert ds.tags()["FILL_METHOD"] == "local"


def test_median_base_is_still_available(tmp_path):
    out = tmp_path / "o.tif"
    remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(device="cpu", model="median-fill"),
                 fill=FillOptions(fill_method="median"), inputs=InputOptions(s1_aligned=True),
                 quiet=True)
    with rasterio.open(out) as ds:
        assert ds.tags()["FILL_METHOD"] == "median"
    with pytest.raises(Exception, match="fill_method='nearest'"):
        remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "x.tif",
                     fill=FillOptions(fill_method="nearest"))


@pytest.mark.slow
def test_cli_max_correction_none_frees_the_network_and_bad_values_are_refused(tmp_path, floods,
                                                                              cli):
    """0.25 is the default; freed, the network moves its fill of the water by tens of DN (it
    would take B08 under 0.8 of the default's, but the fill is held within the scene's clear
    land, ``restore.hold``)."""
    path, disk, _ = cloud_over(tmp_path, floods, "water")
    inner = ndimage.binary_erosion(disk, iterations=4)
    fills = {}
    for value in ("0.25", "none"):
        out = tmp_path / f"cli_{value}.tif"
        result = cli("remove", "--s2", path, "--s1", FLOODS_S1, "--s1-aligned", "-o", out,
                     "--model", "cloudfree-fillnet", "--max-correction", value, "--quiet")
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as ds:
            fills[value] = ds.read().astype(np.float64)[:, inner]
    default = removed(path, tmp_path / "default.tif", model="cloudfree-fillnet")[:, inner]
    assert np.abs(fills["0.25"] - default).max() <= 1
    assert np.abs(fills["none"] - default).mean(axis=1).max() > 50
    result = cli("remove", "--s2", path, "--s1", FLOODS_S1, "-o", tmp_path / "x.tif",
                 "--max-correction", "-1")
    assert result.exit_code == 2 and "'-1' is not a share >= 0 (such as 0.25) or none" in \
        result.output


def test_the_default_fills_the_forest_of_the_sample_close_to_the_forest_around(tmp_path):
    """The bundled sample's clouds sit in forest: the default's fill stays near the land 10-25 px
    around in red and near infrared (with a fixed bound alone, the network took the
    patches to B04 1.29x and B08 0.80x of that land: reddish-brown blotches)."""
    with rasterio.open(SUMMER_S2) as ds:
        original = ds.read().astype(np.float64)
    out = tmp_path / "out.tif"
    remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(device="cpu"), quiet=True)
    with rasterio.open(out) as ds:
        result = ds.read().astype(np.float64)
    filled = np.abs(result - original).max(axis=0) > 0
    inside = ndimage.distance_transform_edt(filled) > 10
    away = ndimage.distance_transform_edt(~filled)
    land = (away > 10) & (away <= 25)
    assert inside.sum() > 1000 and land.sum() > 1000
    red, nir = (result[b, inside].mean() / original[b, land].mean() for b in (3, B08))
    assert red < 1.2 and nir > 0.83, (red, nir)
    # the penumbra beside the clouds, where they cast their shadows, lends little: the cores
    # keep the NIR and SWIR of that land (its penumbra lent them 0.94 of its B08)
    swir = result[B11, inside].mean() / original[B11, land].mean()
    assert 0.96 < nir < 1.04 and 0.96 < swir < 1.04, (nir, swir)


#: Per-band darkening of real cloud shadows on the training pool (cloudy over cloud-free, B01..B12
#: with B8A ninth), as ``benchmarks/one_date_quality.py`` measures it: blue kept, NIR and SWIR
#: lose the most.
SHADOW_RATIOS = (1.00, 1.00, 0.92, 0.87, 0.76, 0.64, 0.62, 0.59, 0.56, 0.56, 0.05, 0.34, 0.37)


def test_a_shadow_cast_beside_the_clouds_neither_darkens_nor_blues_their_fill(tmp_path):
    """The bundled sample with its clouds' mask cast 35 px aside as a shadow (the real darkening
    per band) on the clear land: the default fill of the cloud cores keeps its NIR, SWIR and
    blue over red within a few % of the fill without that shadow (a fill lent by the shadowed
    land came out 5 % darker in B08, 9 % in B11 and 2 % bluer)."""
    with rasterio.open(SUMMER_S2) as ds:
        s2, profile = ds.read(), ds.profile
    with open_sentinel2(SUMMER_S2) as ds:
        refl, valid = ds.read()
    cloud = classify(refl, valid)[0] == CLOUD
    cast = np.roll(cloud, 35, axis=0) & (ndimage.distance_transform_edt(~cloud) > 8)
    assert cast.sum() > 3000
    ratios = np.asarray(SHADOW_RATIOS)[:, None, None]
    shaded = np.where(cast[None], np.rint(s2 * ratios), s2).astype(s2.dtype)
    outputs = []
    for name, image in (("lit", s2), ("shaded", shaded)):
        path = tmp_path / f"{name}.tif"
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(image)
        out = tmp_path / f"{name}_out.tif"
        # shadows left dark: what is measured is the fill the shadowed land lends to
        remove_scene(path, SUMMER_S1, out, engine=EngineOptions(device="cpu"),
                     mask_params=MaskParams(buffer=5, shadow=False), quiet=True)
        with rasterio.open(out) as ds:
            outputs.append(ds.read().astype(np.float64))
    filled = np.abs(outputs[0] - s2).max(axis=0) > 0
    core = ndimage.distance_transform_edt(filled) > 10
    assert core.sum() > 10000 and not (core & cast).any()
    lit, dark = (out[:, core].mean(axis=1) for out in outputs)
    ratio = dark / lit
    assert ratio[B08] > 0.965 and ratio[B11] > 0.94, ratio
    assert ratio[1] / ratio[3] < 1.01, ratio  # B02 / B04
