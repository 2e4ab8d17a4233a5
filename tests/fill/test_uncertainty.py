"""`remove --uncertainty-out`: the expected error of every filled pixel, on real scenes.

The case with a truth: the real summer cumulus (the summer pixels its mask calls cloud) pasted
over the real clear winter SEN12MS-CR patch; the clear patch is the truth, the hazy winter
image of the same place another date.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import ROOT, SUMMER_S1, SUMMER_S2, WINTER_CLEAR, WINTER_S1, WINTER_S2
from s2_builders import write_stack
from scipy import ndimage

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.fill.uncertainty import (
    FEW_CLEAR,
    FROM_DATES,
    SigmaModel,
    UncertaintyBlock,
    local_spread,
)
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, MaskParams, classify
from cloudfree.output.preview import LEGEND
from cloudfree.pipeline.options import FillOptions, OutputOptions, ReferenceOptions
from cloudfree.pipeline.remove import remove_scene


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


@pytest.fixture(scope="module")
def pasted(tmp_path_factory, pasted_cloud):
    """The cumulus over the clear patch (``pasted_cloud``, with a nodata corner of 20 x 30 px),
    and its truth."""
    folder = tmp_path_factory.mktemp("uncertainty")
    image = pasted_cloud["image"].copy()
    image[:, :20, :30] = 0
    target = write_stack(folder / "target_20171201.tif", image, pasted_cloud["profile"],
                         nodata=0)
    return {"folder": folder, "target": target,
            "truth": pasted_cloud["truth"].astype(np.float32), "cloud": pasted_cloud["cloud"]}


@pytest.fixture(scope="module")
def one_date(pasted):
    """``remove`` with S1 and every default, with the uncertainty, mask and preview."""
    folder = pasted["folder"]
    out, sigma, mask = folder / "out.tif", folder / "sigma.tif", folder / "mask.tif"
    summary = remove_scene(pasted["target"], WINTER_S1, out, inputs=InputOptions(s1_aligned=True),
                           outputs=OutputOptions(uncertainty_out=sigma, mask_out=mask,
                                                 preview=folder / "p.png"),
                           quiet=True)
    return {"out": out, "sigma": sigma, "mask": mask, "summary": summary}


def test_uncertainty_is_a_float32_cog_on_the_output_grid(one_date):
    with rasterio.open(one_date["sigma"]) as ds, rasterio.open(one_date["out"]) as out:
        assert (ds.count, ds.shape, ds.crs, ds.transform) == (13, out.shape, out.crs,
                                                              out.transform)
        assert ds.dtypes == ("float32",) * 13 and np.isnan(ds.nodata)
        assert ds.descriptions == tuple(f"sigma_{b}" for b in out.descriptions)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.tags()["UNITS"] == "DN"
    assert one_date["summary"]["uncertainty_out"] == str(one_date["sigma"])


def test_zero_where_kept_nan_at_nodata_positive_where_filled(pasted, one_date):
    sigma, out, image = (read(p)[0] for p in (one_date["sigma"], one_date["out"],
                                              pasted["target"]))
    nodata = (image == 0).all(0)
    assert nodata.sum() == 20 * 30
    assert np.isnan(sigma[:, nodata]).all() and not np.isnan(sigma[:, ~nodata]).any()
    kept = (sigma == 0).all(0) & ~nodata
    assert (out[:, kept] == image[:, kept]).all()  # 0: the pixel as observed
    filled = ~kept & ~nodata
    assert (sigma[:, filled] > 0).all() and np.isfinite(sigma[:, filled]).all()
    changed = (out != image).any(0) & ~nodata
    assert (changed <= filled).all() and changed.sum() > 0.9 * pasted["cloud"].sum()


def test_sigma_grows_with_the_distance_to_clear_land(one_date):
    sigma, classes = read(one_date["sigma"])[0], read(one_date["mask"])[0][0]
    filled = (sigma > 0).all(0)
    distance = ndimage.distance_transform_edt(classes != CLEAR)
    near, far = filled & (distance <= 4), filled & (distance >= 20)
    assert near.sum() > 500 and far.sum() > 500
    for band in (1, 3, 7):  # B02, B04, B08
        assert np.median(sigma[band, far]) > 1.3 * np.median(sigma[band, near])


def errors_within(sigma: np.ndarray, out: np.ndarray, truth: np.ndarray,
                  where: np.ndarray) -> tuple[float, float]:
    error = np.abs(out[:, where].astype(np.float32) - truth[:, where])
    return float((error <= sigma[:, where]).mean()), float((error <= 2 * sigma[:, where]).mean())


def test_errors_of_the_filled_cloud_mostly_within_sigma(pasted, one_date):
    sigma, out = read(one_date["sigma"])[0], read(one_date["out"])[0]
    cloud = pasted["cloud"] & (sigma > 0).all(0)
    one, two = errors_within(sigma, out, pasted["truth"], cloud)
    assert 0.45 < one < 0.9 and 0.8 < two <= 1, (one, two)


def test_fill_from_another_date_is_more_certain_and_within_sigma(pasted, one_date, tmp_path):
    out, sigma = tmp_path / "out.tif", tmp_path / "sigma.tif"
    summary = remove_scene(pasted["target"], None, out,
                           dates=ReferenceOptions(references=[WINTER_S2]),
                           outputs=OutputOptions(uncertainty_out=sigma,
                                                 source_out=tmp_path / "src.tif"),
                           quiet=True)
    assert summary["pixels_by_source"]["references"] > 0.9 * pasted["cloud"].sum()
    dated = read(sigma)[0]
    source = read(tmp_path / "src.tif")[0][0]
    from_ref = pasted["cloud"] & (source == 1)
    assert np.isfinite(dated[:, from_ref]).all() and (dated[:, from_ref] > 0).all()
    single = read(one_date["sigma"])[0]
    assert np.median(dated[:, from_ref]) < np.median(single[:, from_ref])
    one, two = errors_within(dated, read(out)[0], pasted["truth"], from_ref)
    assert 0.45 < one <= 1 and 0.8 < two <= 1, (one, two)


SERIES = ROOT / "examples" / "data" / "series"


@dataclass(frozen=True)
class Recording(SigmaModel):
    """The shipped sigma model, keeping the blocks it is asked about."""

    blocks: list[UncertaintyBlock] = field(default_factory=list)

    def sigma(self, block: UncertaintyBlock) -> np.ndarray:
        self.blocks.append(block)
        return super().sigma(block)


def from_series(target: Path, references: list[str], model: SigmaModel | None = None
                ) -> dict[str, np.ndarray]:
    """``remove`` of ``target`` with the bundled series' dates ``references`` (month-day):
    its output, sigma and source map (written beside the target)."""
    paths = {name: target.parent / f"{len(references)}_{name}.tif"
             for name in ("out", "sigma", "source")}
    remove_scene(target, None, paths["out"],
                 fill=FillOptions(uncertainty_model=model),
                 dates=ReferenceOptions(references=[SERIES / f"s2_2018-{r}.tif"
                                                    for r in references]),
                 outputs=OutputOptions(uncertainty_out=paths["sigma"],
                                       source_out=paths["source"], overwrite=True), quiet=True)
    return {name: read(path)[0] for name, path in paths.items()}


def series_case(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The real cloud of the series' 5 July pasted over its clear 25 June: the target, its
    truth and the cloud."""
    with open_sentinel2(SERIES / "s2_2018-07-05.tif") as s2:
        cloud = classify(s2.read()[0], None, MaskParams())[0] == CLOUD
    donor = read(SERIES / "s2_2018-07-05.tif")[0]
    truth, profile = read(SERIES / "s2_2018-06-25.tif")
    target = write_stack(folder / "s2_2018-06-25.tif", np.where(cloud, donor, truth), profile)
    return target, truth, cloud


def test_one_reference_is_less_certain_than_three_and_both_are_calibrated(tmp_path):
    # the references are the nearest other date, then the three others
    target, truth, cloud = series_case(tmp_path)
    runs = {len(dates): from_series(target, dates)
            for dates in (["06-10"], ["06-10", "07-20", "07-30"])}
    both = cloud & np.logical_and.reduce([(r["source"][0] >= 1) & (r["source"][0] < 200)
                                          for r in runs.values()])
    assert both.sum() > 0.9 * cloud.sum() > 2000
    for band in (1, 3, 7):  # B02, B04, B08
        assert np.median(runs[1]["sigma"][band, both]) > 1.3 * np.median(
            runs[3]["sigma"][band, both])
    for run in runs.values():  # the wanted coverage: 58-78 % within 1 sigma, 88-98 % within 2
        one, two = errors_within(run["sigma"], run["out"], truth.astype(np.float32), both)
        assert 0.58 <= one <= 0.78 and 0.88 <= two <= 0.98, (one, two)


def test_a_lone_reference_widens_sigma_by_its_fitted_factor(tmp_path):
    # a lone date errs with heavier tails: remove tells the model the run had one reference,
    # and its sigma is that of the same terms with more dates times the fitted factor
    target, truth, cloud = series_case(tmp_path)
    model = SigmaModel.load()
    recording = Recording(model.single_date, model.reference)
    run = from_series(target, ["06-10"], recording)
    lone = model.reference.coefficients[model.reference.features.index("lone_reference")]
    assert lone != 0
    dated = [b for b in recording.blocks if (b.kind == FROM_DATES).any()]
    assert dated and all(b.references == 1 for b in dated)
    for block in dated:
        where = block.kind == FROM_DATES
        ratio = model.sigma(block)[:, where] / model.sigma(replace(block, references=2))[:, where]
        assert np.allclose(ratio, np.exp(lone), rtol=1e-4)
    # and the widened sigma still covers the errors of the real cloud as wanted
    filled = cloud & (run["source"][0] >= 1) & (run["source"][0] < 200)
    one, two = errors_within(run["sigma"], run["out"], truth.astype(np.float32), filled)
    assert 0.58 <= one <= 0.78 and 0.88 <= two <= 0.98, (one, two)


def test_fits_resting_on_few_clear_pixels_widen_sigma(tmp_path):
    # remove tells the model the largest share of the scene clear in both the target and a
    # date; under FEW_CLEAR of it sigma widens by the fitted factor
    target, _, cloud = series_case(tmp_path)
    model = SigmaModel.load()
    recording = Recording(model.single_date, model.reference)
    from_series(target, ["06-10", "07-20"], recording)
    dated = [b for b in recording.blocks if (b.kind == FROM_DATES).any()]
    share = dated[0].clear_share
    assert all(b.clear_share == share for b in dated)
    assert FEW_CLEAR < 0.5 < share < 1 - cloud.mean()  # the cloud and its buffer are not clear
    few = model.reference.coefficients[model.reference.features.index("few_clear")]
    assert few > 0.5
    for block in dated:
        where = block.kind == FROM_DATES
        ratio = (model.sigma(replace(block, clear_share=FEW_CLEAR / 2))[:, where]
                 / model.sigma(block)[:, where])
        assert np.allclose(ratio, np.exp(few), rtol=1e-4)


def test_preview_gains_a_confidence_panel(one_date):
    with rasterio.open(one_date["out"].parent / "p.png") as png:
        image = png.read()
    width = (image.shape[2] - 3 * 8) // 4
    assert image.shape[2] == 4 * width + 3 * 8
    panel = image[:, :-LEGEND, 3 * (width + 8):]
    # filled pixels are coloured (no blue), the kept ones are the dimmed input
    coloured = (panel[2] == 0) & (panel[:2].max(0) > 100)
    assert 0.2 < coloured.mean() < 0.8


def test_refusals_leave_nothing_and_overwrite_replaces(pasted, tmp_path, cli):
    out, sigma = tmp_path / "out.tif", tmp_path / "sigma.tif"
    sigma.write_bytes(b"x")
    with pytest.raises(UsageError, match="exists"):
        remove_scene(pasted["target"], None, out, outputs=OutputOptions(uncertainty_out=sigma),
                     quiet=True)
    assert not out.exists() and sigma.read_bytes() == b"x"
    with pytest.raises(UsageError, match="uncertainty output"):
        remove_scene(pasted["target"], None, out, outputs=OutputOptions(uncertainty_out=out),
                     quiet=True)
    result = cli("remove", "--s2", pasted["target"], "-o", out, "--uncertainty-out", sigma,
                 "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert read(sigma)[1]["dtype"] == "float32"


def test_a_failed_run_leaves_no_uncertainty(pasted, tmp_path):
    empty = write_stack(tmp_path / "empty.tif", np.zeros((13, 64, 64), np.uint16),
                        read(WINTER_CLEAR)[1], nodata=0)
    out, sigma = tmp_path / "out.tif", tmp_path / "sigma.tif"
    with pytest.raises(CloudfreeError, match="every pixel is nodata"):
        remove_scene(empty, None, out, outputs=OutputOptions(uncertainty_out=sigma), quiet=True)
    assert list(tmp_path.iterdir()) == [empty]


def test_batch_writes_it_beside_the_image_and_in_the_stac_item(tmp_path, cli):
    scene = tmp_path / "scenes" / "summer"
    scene.mkdir(parents=True)
    (scene / SUMMER_S2.name).symlink_to(SUMMER_S2)
    (scene / SUMMER_S1.name).symlink_to(SUMMER_S1)
    out, stac = tmp_path / "out", tmp_path / "stac"
    result = cli("batch", tmp_path / "scenes", "-o", out, "--uncertainty", "--stac", stac, "-q")
    assert result.exit_code == 0, result.output
    sigma = read(out / "summer_uncertainty.tif")[0]
    assert sigma.shape == (13, 256, 256) and (sigma > 0).any()
    item = json.loads(next(stac.rglob("summer.json")).read_text())
    asset = item["assets"]["uncertainty"]
    assert "uncertainty" in asset["roles"]
    assert asset["href"].endswith("summer_uncertainty.tif")
    assert asset["raster:bands"][0]["unit"] == "DN"
    bad = cli("batch", tmp_path / "scenes", "-o", tmp_path / "m", "--command", "mask",
              "--uncertainty")
    assert bad.exit_code == 2 and "only for" in bad.output


def test_the_shipped_calibration_covers_every_band():
    model = SigmaModel.load()
    for fit in (model.single_date, model.reference):
        assert set(fit.intercept) == set(BANDS)
        assert len(fit.coefficients) == len(fit.features)


def test_local_spread_is_the_spread_of_the_clear_land_around():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 128, 128), np.float32)
    image[:, :, 64:] = rng.normal(0.2, 0.05, (1, 128, 64))  # rough right half, flat left
    clear = np.ones((128, 128), bool)
    clear[40:88, 40:88] = False
    spread = local_spread(image, clear)[0]
    assert spread[64, 8] < 0.005 and 0.04 < spread[64, 120] < 0.06
    assert not np.isnan(spread).any()
    # nothing clear at all: the fallback, not NaN
    assert np.isfinite(local_spread(image, np.zeros_like(clear))).all()
