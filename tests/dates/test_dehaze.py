"""A date hazy all over lowered to its references' level (``dates/dehaze.py``), on the bundled
series: 5 July is bluer than its four references over the same clear land."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudfree.dates.dehaze import weighted_median
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLEAR
from cloudfree.pipeline.options import OutputOptions, ReferenceOptions
from cloudfree.pipeline.remove import remove_scene

SERIES = Path(__file__).resolve().parents[2] / "examples" / "data" / "series"
DATES = ("06-10", "06-25", "07-05", "07-20", "07-30")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def run(target: str, folder: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """``remove --dehaze`` of ``target`` with the four other dates: its summary, output DN and
    mask."""
    refs = [SERIES / f"s2_2018-{d}.tif" for d in DATES if d != target]
    out, mask = folder / f"{target}.tif", folder / f"{target}_mask.tif"
    summary = remove_scene(SERIES / f"s2_2018-{target}.tif", None, out,
                           dates=ReferenceOptions(references=refs, dehaze=True),
                           outputs=OutputOptions(mask_out=mask), quiet=True)
    return summary, read(out), read(mask)[0]


@pytest.fixture(scope="module")
def hazy(tmp_path_factory) -> tuple[dict, np.ndarray, np.ndarray]:
    return run("07-05", tmp_path_factory.mktemp("dehaze"))


def test_a_date_hazy_all_over_is_lowered_to_its_references_level(hazy):
    summary, out, mask = hazy
    blue, red, nir = (BANDS.index(b) for b in ("B02", "B04", "B08"))
    refs = np.mean([read(SERIES / f"s2_2018-{d}.tif").mean(axis=(1, 2)) for d in DATES
                    if d != "07-05"], axis=0)
    # before, in the date's own light: 1176 DN in blue, 989 in red against 1053 and 936 (red
    # is lowered by no more than green, 963)
    assert abs(out[blue].mean() - refs[blue]) < 25, (out[blue].mean(), refs[blue])
    assert abs(out[red].mean() - refs[red]) < 35, (out[red].mean(), refs[red])
    removed = summary["haze_removed"]
    assert removed["B01"] > removed["B02"] > 0.008 and removed["B02"] > removed["B03"]
    assert removed["B03"] >= removed["B04"] > 0
    # haze does not darken: the NIR, darker on this date, keeps its level, and so its kept
    # pixels as observed
    observed = read(SERIES / "s2_2018-07-05.tif")
    kept = mask == CLEAR
    assert removed["B08"] == 0 and kept.mean() > 0.4
    assert (out[nir][kept] == observed[nir][kept]).all()


def test_a_clear_date_keeps_its_clear_pixels(tmp_path):
    # 20 July against the others, 5 July's haze among them: not judged hazy
    summary, out, mask = run("07-20", tmp_path)
    kept = mask == CLEAR
    assert summary["haze_removed"] is None
    assert (out[:, kept] == read(SERIES / "s2_2018-07-20.tif")[:, kept]).all()


def test_the_weighted_median_leaves_out_nan():
    values = np.array([[1.0, np.nan], [5.0, np.nan], [2.0, 3.0]])
    assert np.allclose(weighted_median(values, np.array([1.0, 1.0, 1.0])), [2.0, 3.0])
    assert weighted_median(values, np.array([0.1, 5.0, 0.1]))[0] == 5.0


def test_dehaze_needs_references(cli, tmp_path):
    result = cli("remove", "--s2", SERIES / "s2_2018-07-05.tif", "--dehaze", "-o",
                 tmp_path / "out.tif")
    assert result.exit_code == 2 and "--dehaze needs --reference" in result.output


def test_batch_takes_the_haze_off_as_remove_does(cli, tmp_path, hazy):
    out = tmp_path / "out"
    result = cli("batch", SERIES, "-o", out, "--dehaze", "-q")
    assert result.exit_code == 2 and result.output.splitlines()[-1] == (
        "Error: --dehaze needs --references K: the other dates judge each scene's haze")
    assert not out.exists()
    result = cli("batch", SERIES, "-o", out, "--references", 4, "--dehaze", "-q")
    assert result.exit_code == 0, result.output
    # 5 July with its four references, as remove --dehaze gives it
    assert (read(next(out.glob("*2018-07-05*.tif"))) == hazy[1]).all()
