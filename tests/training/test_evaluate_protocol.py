"""``cloudfree evaluate --mask-method / --ssim``: the detector that bins and GLF-CR's SSIM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import SUMMER_S1, SUMMER_S2, WINTER_CLEAR

from cloudfree.mask.classify import MaskParams
from cloudfree.training.datasets import cloud_mask, read_reflectance


def summer_layout(root):
    """Flat layout of the summer cumulus (30 % cloud) with the winter clear image as stand-in
    target: the summer scene has no clear twin, and these tests check the binning and the SSIM
    variant, not the reconstruction."""
    for folder, path in (("s1", SUMMER_S1), ("s2_cloudy", SUMMER_S2),
                         ("s2_cloudfree", WINTER_CLEAR)):
        (root / folder).mkdir(parents=True)
        (root / folder / "summer.tif").symlink_to(path)
    return root


@pytest.fixture(scope="module")
def reports(tmp_path_factory, cli) -> dict[tuple[str, str], dict]:
    root = tmp_path_factory.mktemp("evaluate")
    data = summer_layout(root / "data")
    out = {}
    for method, ssim in (("score", "valid"), ("dsen2cr", "official")):
        path = root / f"{method}_{ssim}.json"
        result = cli("evaluate", str(data), "--model", "median-fill",
                     "--mask-method", method, "--ssim", ssim,
                     "--report", str(path), "-q")
        assert result.exit_code == 0, result.output
        out[method, ssim] = json.loads(path.read_text())
    return out


def _summer_cover(report: dict) -> float:
    return next(r["cloud_cover"] for r in report["rows"] if "summer" in r["name"])


@pytest.mark.parametrize("method", ["score", "dsen2cr"])
def test_cloud_cover_comes_from_the_chosen_detector(reports, method):
    report = next(r for (m, _), r in reports.items() if m == method)
    assert report["protocol"]["mask_method"] == method
    reflectance, valid = read_reflectance(SUMMER_S2)
    expected = 100 * cloud_mask(reflectance, valid, MaskParams(method=method))[valid].mean()
    assert _summer_cover(report) == pytest.approx(expected, abs=0.01)


def test_the_detectors_bin_differently_and_official_ssim_is_reported(reports):
    score, official = reports["score", "valid"], reports["dsen2cr", "official"]
    assert _summer_cover(score) != _summer_cover(official)
    assert official["protocol"]["ssim"] == "official"
    ssim = [r["ssim"] for r in official["rows"] if r["method"] == "cloudy_input"]
    valid = [r["ssim"] for r in score["rows"] if r["method"] == "cloudy_input"]
    assert not np.allclose(ssim, valid, atol=1e-4)
    assert all(0 < s <= 1 for s in ssim)
