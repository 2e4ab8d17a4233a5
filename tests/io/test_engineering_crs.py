"""Inputs in an engineering (local) coordinate system: one line naming the input and saying to
reproject it wherever it must be placed on another input's grid, exit code 1 and no output;
built from the real samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import rasterio
from helpers import SUMMER_S1, SUMMER_S2, one_line_error
from rasterio.crs import CRS
from s2_builders import read_stack, write_stack

from cloudfree.io.sentinel2 import BANDS

LOCAL_CS = CRS.from_wkt('LOCAL_CS["arbitrary",UNIT["metre",1],AXIS["Easting",EAST],'
                        'AXIS["Northing",NORTH]]')
REPROJECT = ("has an engineering (local) coordinate system, not a map projection; reproject it "
             "first (gdalwarp -t_srs with the EPSG code of its UTM zone)")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> tuple[Path, Path]:
    """The summer S2 (top-left) and S1 in an engineering coordinate system."""
    root = tmp_path_factory.mktemp("local")
    data, profile = read_stack(SUMMER_S2, 120)
    s2 = write_stack(root / "local_s2.tif", data, {**profile, "crs": LOCAL_CS},
                     descriptions=BANDS)
    with rasterio.open(SUMMER_S1) as ds:
        s1_data, s1_profile = ds.read(), ds.profile
    s1 = root / "local_s1.tif"
    with rasterio.open(s1, "w", **{**s1_profile, "crs": LOCAL_CS}) as dst:
        dst.write(s1_data)
    return s2, s1


@pytest.mark.parametrize(("args", "what"), [
    (("remove", "--s2", SUMMER_S2, "--s1", "S1", "--model", "median-fill"), "Sentinel-1 input S1"),
    (("remove", "--s2", "S2", "--s1", SUMMER_S1, "--model", "median-fill"), "Sentinel-2 input S2"),
    (("coregister", "--s1", "S1", "--s2", SUMMER_S2), "Sentinel-1 input S1"),
    (("coregister", "--s1", SUMMER_S1, "--s2", "S2"), "Sentinel-2 input S2"),
    (("remove", "--s2", SUMMER_S2, "--reference", "S2"), "reference S2"),
])
def test_an_engineering_crs_is_one_line(local, tmp_path, cli, args, what):
    s2, s1 = local
    named = {"S1": s1, "S2": s2}
    out = tmp_path / "out.tif"
    result = cli(*(named.get(a, a) for a in args), "-o", out)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == \
        f"Error: {what.replace('S1', str(s1)).replace('S2', str(s2))} {REPROJECT}"
    assert list(tmp_path.iterdir()) == []


def test_an_engineering_crs_shared_by_s1_and_s2_still_runs(local, tmp_path, cli):
    s2, s1 = local
    result = cli("remove", "--s2", s2, "--s1", s1, "--model", "median-fill", "-o",
                 tmp_path / "out.tif", "-q")
    assert result.exit_code == 0, result.output


def test_batch_discovery_names_an_engineering_crs(local, tmp_path, cli):
    s2, _ = local
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    shutil.copy(s2, scenes / "x_s2.tif")
    shutil.copy(SUMMER_S2, scenes / "y_s2.tif")
    out = tmp_path / "out"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--report",
                 tmp_path / "r.json", "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    report = {r["scene"]: r for r in json.loads((tmp_path / "r.json").read_text())["scenes"]}
    assert report["x_s2"]["error"] == f"input {scenes / 'x_s2.tif'} {REPROJECT}"
    assert report["y_s2"]["status"] == "ok"
    assert sorted(p.name for p in out.iterdir()) == ["y_s2_mask.tif"]
