"""`cloudfree batch --stac`: a STAC catalog of real sample outputs that validates and loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from helpers import FLOODS_S1, FLOODS_S2, SUMMER_S1, SUMMER_S2, WINTER_S1, WINTER_S2
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation import validate_dict
from rio_cogeo.cogeo import cog_validate

from cloudfree.inference.bundled import DEFAULT_MODEL
from cloudfree.io.sentinel2 import BANDS
from cloudfree.output.stac import SENTINEL2_FIRST


def scene(root: Path, name: str, s2: Path, s1: Path, s2_name: str = "s2.tif",
          s1_name: str = "s1.tif") -> None:
    (root / name).mkdir(parents=True)
    (root / name / s2_name).symlink_to(s2)
    (root / name / s1_name).symlink_to(s1)


def items(stac: Path) -> dict[str, pystac.Item]:
    catalog = pystac.Catalog.from_file(str(stac / "catalog.json"))
    return {item.id: item for item in catalog.get_items(recursive=True)}


@pytest.fixture(scope="module")
def removed(tmp_path_factory, cli) -> tuple[Path, Path, dict]:
    """batch remove --masks --stac over the floods pair (dated names, 2019-09-18) and winter."""
    root = tmp_path_factory.mktemp("stac")
    scene(root / "scenes", "floods", FLOODS_S2, FLOODS_S1, "S2B_20190918_s2.tif",
          "S1A_20190917_s1.tif")
    scene(root / "scenes", "winter", WINTER_S2, WINTER_S1)
    out, stac, report = root / "out", root / "stac", root / "run.json"
    result = cli("batch", root / "scenes", "-o", out, "--masks", "--stac", stac,
                 "--report", report, "-q")
    assert result.exit_code == 0, result.output
    rows = {r["scene"]: r for r in json.loads(report.read_text())["scenes"]}
    return out, stac, rows


def test_catalog_and_items_validate_against_the_stac_schemas(removed):
    _, stac, _ = removed
    # Against the core STAC 1.1 schemas pystac ships; the extension schemas are online only.
    validate_dict(json.loads((stac / "catalog.json").read_text()), extensions=[])
    found = items(stac)
    assert sorted(found) == ["floods", "winter"]
    for item in found.values():
        validate_dict(json.loads(Path(item.self_href).read_text()), extensions=[])
        assert {a.href[:3] for a in item.assets.values()} == {"../"}  # relative: movable


def test_items_carry_footprint_time_and_provenance(removed):
    out, stac, rows = removed
    found = items(stac)
    floods, winter = found["floods"], found["winter"]
    with rasterio.open(FLOODS_S2) as ds:  # EPSG:4326 already
        assert floods.bbox == pytest.approx(list(ds.bounds), abs=1e-9)
    with rasterio.open(WINTER_S2) as ds:
        west, south, east, north = winter.bbox
        assert 0 < east - west < 0.1 and 0 < north - south < 0.1  # 2.56 km in degrees
        assert ProjectionExtension.ext(winter).code == f"EPSG:{ds.crs.to_epsg()}"
        assert ProjectionExtension.ext(winter).shape == [ds.height, ds.width]
    assert floods.datetime.isoformat() == "2019-09-18T00:00:00+00:00"
    start, end = winter.common_metadata.start_datetime, winter.common_metadata.end_datetime
    assert winter.datetime is None and start == SENTINEL2_FIRST and end is not None
    props = floods.properties
    assert props["cloudfree:cloud_fraction"] == pytest.approx(rows["floods"]["cloud_fraction"],
                                                             abs=1e-6)
    assert props["cloudfree:inputs"]["s2"].endswith("floods/S2B_20190918_s2.tif")
    assert props["cloudfree:model"] == DEFAULT_MODEL
    assert len(props["cloudfree:model_sha256"]) == 64
    assert props["cloudfree:s1_shift_applied"] is True
    assert len(props["cloudfree:s1_shift_px"]) == 2
    with rasterio.open(out / "floods.tif") as ds:
        assert props["cloudfree:s1_shift_px"] == [float(ds.tags()["COREGISTER_SHIFT_X_PX"]),
                                                  float(ds.tags()["COREGISTER_SHIFT_Y_PX"])]


def test_assets_load_with_band_information(removed):
    out, stac, _ = removed
    item = items(stac)["floods"]
    image, mask = item.assets["image"], item.assets["mask"]
    assert image.media_type == pystac.MediaType.COG and "data" in image.roles
    assert "cloud" in mask.roles
    assert [b.name for b in EOExtension.ext(image).bands] == list(BANDS)
    assert EOExtension.ext(image).bands[3].common_name == "red"
    raster = RasterExtension.ext(image).bands
    assert len(raster) == 13 and raster[0].scale == 1e-4 and raster[0].data_type == "int16"
    classes = {c.value: c.name for c in ClassificationExtension.ext(mask).classes}
    assert classes[1] == "cloud" and classes[255] == "nodata"
    assert 4 not in classes  # remove's mask has no thin cloud class
    for key, name in (("image", "floods.tif"), ("mask", "floods_mask.tif")):
        href = item.assets[key].get_absolute_href()
        assert cog_validate(href, quiet=True)[:2] == (True, [])
        with rasterio.open(href) as a, rasterio.open(out / name) as b:
            assert np.array_equal(a.read(), b.read())


def test_resume_adds_to_the_catalog(tmp_path, cli):
    scenes, out, stac = tmp_path / "scenes", tmp_path / "out", tmp_path / "stac"
    scene(scenes, "summer", SUMMER_S2, SUMMER_S1)
    assert cli("batch", scenes, "-o", out, "--command", "mask", "--stac", stac,
               "-q").exit_code == 0
    first = items(stac)["summer"]
    assert first.properties["cloudfree:command"] == "mask" and list(first.assets) == ["mask"]
    classes = {c.value: c.name for c in ClassificationExtension.ext(first.assets["mask"]).classes}
    assert classes[4] == "thin_cloud" and classes[1] == "cloud"  # mask's own class of thin cloud
    scene(scenes, "winter", WINTER_S2, WINTER_S1)
    again = cli("batch", scenes, "-o", out, "--command", "mask", "--stac", stac, "-q")
    assert again.exit_code == 2 and "pass --resume to add to it" in again.stderr
    assert not (out / "winter_mask.tif").exists()
    resumed = cli("batch", scenes, "-o", out, "--command", "mask", "--stac", stac, "--resume",
                  "-q")
    assert resumed.exit_code == 0 and "1 ok, 0 failed, 1 skipped" in resumed.stdout
    found = items(stac)
    assert sorted(found) == ["summer", "winter"]
    assert found["summer"].to_dict()["properties"] == first.to_dict()["properties"]
