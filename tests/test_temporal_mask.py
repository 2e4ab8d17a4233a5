"""Other dates judge the clouds (``temporal_mask.py``): thin cloud the single date misses, a
reference hazy all over, clear pixels kept, a shifted reference registered, the warnings.

The scenes: the real clear winter SEN12MS-CR patch is the truth. The target has the real summer
cumulus blended over it at a quarter of its strength (thin cloud: the single-date score sees
little of it). The references are other dates built from the truth (another illumination, a
level 300 DN higher) and the real hazy winter image of the place.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from conftest import SUMMER_S2, WINTER_CLEAR, WINTER_S2
from scipy import ndimage

from cloudfree.masking import CLEAR, CLOUD, MaskParams, classify
from cloudfree.reference_fill import OBSERVED
from cloudfree.remove_scene import remove_scene
from cloudfree.sentinel2 import open_sentinel2

#: Share of the summer cloud blended over the truth.
THIN = 0.25


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile


def write(path, data, profile):
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(data, 1, 65535).astype(np.uint16))
    return path


@pytest.fixture(scope="module")
def dates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("temporal")
    with open_sentinel2(SUMMER_S2) as s2:
        cloud = classify(s2.read()[0], None, MaskParams())[0] == CLOUD
    summer = read(SUMMER_S2)[0].astype(np.float64)
    truth, profile = read(WINTER_CLEAR)
    truth = truth.astype(np.float64)
    thin = write(folder / "target_20171201.tif",
                 np.where(cloud, (1 - THIN) * truth + THIN * summer, truth), profile)
    refs = [write(folder / "ref_20171121.tif", truth * 1.04, profile),
            write(folder / "ref_20171211.tif", truth + 300, profile),
            write(folder / "ref_20171221.tif", truth * 0.97 + 100, profile)]
    hazy = write(folder / "hazy_20171203.tif", read(WINTER_S2)[0], profile)
    return {"folder": folder, "cloud": cloud, "truth": truth, "profile": profile,
            "thin": thin, "refs": refs, "hazy": hazy}


def test_the_dates_find_thin_cloud_the_single_date_misses(dates, cli):
    out = dates["folder"] / "thin_mask.tif"
    result = cli("mask", dates["thin"], "--reference", dates["refs"][0], "--reference",
                 dates["refs"][1], "--reference", dates["refs"][2], "-o", out, "--json",
                 "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [r["used"] for r in summary["references"]] == [True] * 3
    found = read(out)[0][0] == CLOUD
    single = classify(read(dates["thin"])[0].astype(np.float32) / 10000, None,
                      MaskParams())[0] == CLOUD
    cloud = dates["cloud"]
    iou = (found & cloud).sum() / (found | cloud).sum()
    single_iou = (single & cloud).sum() / (single | cloud).sum()
    print(iou, single_iou)
    assert single_iou < 0.5 and iou > 0.8, (iou, single_iou)
