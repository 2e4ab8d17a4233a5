"""Metadata that is not what it should be: non-numeric offsets and baselines (.SAFE metadata,
GeoTIFF tags, STAC items) and malformed STAC fields. Each is one line naming the file, the field
and what to do, exit code 1 and no output; the inputs are built from the real samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import SUMMER_S2, one_line_error
from s2_builders import (
    coarsen_like_l1c,
    read_stack,
    write_band_folder,
    write_safe,
    write_stac_item,
    write_stack,
)

from cloudfree.io.sentinel2 import BANDS

SIZE = 120
OFFSET_ADVICE = ("not a number; correct it, or give the radiometric offset: --offset 0 "
                 "(processing baseline before 04.00) or --offset 1000 (04.00 and later)")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, dict]:
    """A folder, the summer scene's top-left stack, the same at native resolutions, its grid."""
    data, profile = read_stack(SUMMER_S2, SIZE)
    return tmp_path_factory.mktemp("metadata"), data, coarsen_like_l1c(data), profile


def _safe(root: Path, l1c, profile, edit) -> Path:
    safe = write_safe(root / "S2A_MSIL1C_20220301T000000_N0400.SAFE", l1c, profile, offset=1000)
    metadata = safe / "MTD_MSIL1C.xml"
    metadata.write_text(edit(metadata.read_text()))
    return safe


def _tagged(root: Path, data, profile, **tags) -> Path:
    path = write_stack(root / "tagged.tif", data, profile, descriptions=BANDS)
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(**tags)
    return path


def _item(root: Path, l1c, profile, properties=None, edit=None) -> Path:
    files = write_band_folder(root / "assets", l1c, profile, BANDS)
    with rasterio.open(files / "B02.tif") as ds:
        bbox = tuple(ds.bounds)
    item = write_stac_item(root / "item.json", {b: files / f"{b}.tif" for b in BANDS}, bbox,
                           properties or {})
    if edit is not None:
        found = json.loads(item.read_text())
        edit(found)
        item.write_text(json.dumps(found))
    return item


def _no_offsets(text: str) -> str:
    return re.sub(r"<RADIO_ADD_OFFSET[^>]*>[^<]*</RADIO_ADD_OFFSET>", "", text)


CASES = {
    "safe RADIO_ADD_OFFSET": (
        lambda root, d, l1c, p: _safe(root, l1c, p, lambda t: t.replace(">-1000<", ">abc<")),
        lambda s: f"{s}/MTD_MSIL1C.xml: RADIO_ADD_OFFSET is \"abc\""),
    "safe PROCESSING_BASELINE": (
        lambda root, d, l1c, p: _safe(root, l1c, p,
                                      lambda t: _no_offsets(t).replace("04.00", "N/A")),
        lambda s: f"{s}/MTD_MSIL1C.xml: PROCESSING_BASELINE is \"N/A\""),
    "tag PROCESSING_BASELINE": (
        lambda root, d, l1c, p: _tagged(root, d, p, PROCESSING_BASELINE="N/A"),
        lambda s: f"{s}: tag PROCESSING_BASELINE is \"N/A\""),
    "tag RADIO_ADD_OFFSET": (
        lambda root, d, l1c, p: _tagged(root, d, p, RADIO_ADD_OFFSET_B02="abc"),
        lambda s: f"{s}: tag RADIO_ADD_OFFSET_B02 is \"abc\""),
    "tag non-finite": (
        lambda root, d, l1c, p: _tagged(root, d, p, RADIO_ADD_OFFSET="nan"),
        lambda s: f"{s}: tag RADIO_ADD_OFFSET is \"nan\""),
    "stac s2:processing_baseline": (
        lambda root, d, l1c, p: _item(root, l1c, p, {"s2:processing_baseline": "N/A"}),
        lambda s: f"{s}: s2:processing_baseline is \"N/A\""),
}


@pytest.mark.parametrize("case", CASES)
def test_non_numeric_offset_metadata_is_one_line_and_offset_gets_past_it(sample, tmp_path, cli,
                                                                         case):
    _, data, l1c, profile = sample
    make, where = CASES[case]
    s2 = make(tmp_path, data, l1c, profile)
    out = tmp_path / "out" / "mask.tif"
    out.parent.mkdir()
    result = cli("mask", s2, "-o", out)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == f"Error: {where(s2)}, {OFFSET_ADVICE}"
    assert list(out.parent.iterdir()) == []
    # what the error advises runs: the offset given, the metadata are not needed
    result = cli("mask", s2, "-o", out, "--offset", "1000", "-q")
    assert result.exit_code == 0, result.output


def test_a_reference_with_a_non_numeric_baseline_is_skipped_not_fatal(sample, tmp_path, cli):
    """In ``batch --references`` such a neighbour fails itself only; the others skip it."""
    _, data, _, profile = sample
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_stack(scenes / "S2_20220301_a.tif", data, profile, descriptions=BANDS)
    write_stack(scenes / "S2_20220306_b.tif", data + 5, profile, descriptions=BANDS)
    bad = write_stack(scenes / "S2_20220303_c.tif", data + 3, profile, descriptions=BANDS)
    with rasterio.open(bad, "r+") as ds:
        ds.update_tags(PROCESSING_BASELINE="N/A")
    out = tmp_path / "out"
    result = cli("batch", scenes, "-o", out, "--references", 1, "--report", tmp_path / "r.json",
                 "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    report = {r["scene"]: r for r in json.loads((tmp_path / "r.json").read_text())["scenes"]}
    assert {name: r["status"] for name, r in report.items()} == {
        "S2_20220301_a": "ok", "S2_20220306_b": "ok", "S2_20220303_c": "failed"}
    assert report["S2_20220303_c"]["error"] == \
        f"{bad}: tag PROCESSING_BASELINE is \"N/A\", {OFFSET_ADVICE}"
    assert sorted(p.name for p in out.iterdir()) == ["S2_20220301_a.tif", "S2_20220306_b.tif"]


def _eo_ints(item):
    item["assets"]["B02"]["eo:bands"] = [1, 2, 3]
    item["assets"]["image"] = item["assets"].pop("B02")


def _eo_more(item):
    item["assets"]["image"] = item["assets"].pop("B02")
    item["assets"]["image"]["eo:bands"] = [{"name": "B02"}, {"name": "B10"}]
    del item["assets"]["B10"]


def _raster_dict(item):
    item["assets"]["B03"]["raster:bands"] = {"scale": 0.0001}


def _string_scale(item):
    for asset in item["assets"].values():
        asset["raster:bands"] = [{"scale": "abc", "offset": -0.1}]


def _eo_name_int(item):
    item["assets"]["B02"]["eo:bands"] = [{"name": 2}]
    item["assets"]["image"] = item["assets"].pop("B02")


STAC_CASES = {
    "eo:bands of ints": (_eo_ints, "asset 'image': eo:bands is [1, 2, 3], not a list of "
                         'objects, one per band of the file (such as {"name": "B02"}); correct '
                         "the item"),
    "eo:bands beyond the file": (_eo_more, "eo:bands names B10 as band 2 of B02.tif, which "
                                 "has 1; correct the item's eo:bands"),
    "raster:bands not a list": (_raster_dict, "asset 'B03': raster:bands is {\"scale\": "
                                "0.0001}, not a list of objects, one per band of the file "
                                '(such as {"scale": 0.0001}); correct the item'),
    "string scale": (_string_scale, "asset 'B01': raster:bands scale is \"abc\", not a "
                     "number; correct the item"),
    "eo:bands name a number": (_eo_name_int, "asset 'image': eo:bands gives the name 2, not a "
                               'band name such as "B02" or "blue"; correct the item'),
}


@pytest.mark.parametrize("case", STAC_CASES)
def test_malformed_stac_fields_are_one_line(sample, tmp_path, cli, case):
    _, _, l1c, profile = sample
    edit, message = STAC_CASES[case]
    item = _item(tmp_path, l1c, profile, edit=edit)
    out = tmp_path / "out" / "mask.tif"
    out.parent.mkdir()
    result = cli("mask", item, "-o", out)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == f"Error: {item}: {message}"
    assert list(out.parent.iterdir()) == []


def test_numbers_written_as_text_in_raster_bands_are_read(sample, tmp_path):
    from cloudfree.io.sentinel2 import open_sentinel2

    _, _, l1c, profile = sample

    def as_text(item):
        for asset in item["assets"].values():
            asset["raster:bands"] = [{"scale": "0.0001", "offset": "-0.1"}]

    with open_sentinel2(_item(tmp_path, l1c, profile, edit=as_text)) as s2:
        assert s2.offset == 1000 and s2.scaling == (pytest.approx(0.0001), pytest.approx(-0.1))


def test_one_bad_stac_item_does_not_stop_a_batch(sample, tmp_path, cli):
    """The bad item fails alone; its asset files stay its own (no scene of their own), and
    the other scene is done."""
    _, data, l1c, profile = sample
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    _item(scenes, l1c, profile, edit=_string_scale)
    write_stack(scenes / "S2_20220301_a.tif", data, profile, descriptions=BANDS)
    out = tmp_path / "out"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--report",
                 tmp_path / "r.json", "-q")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    report = {r["scene"]: r for r in json.loads((tmp_path / "r.json").read_text())["scenes"]}
    assert {name: r["status"] for name, r in report.items()} == {
        "item": "failed", "S2_20220301_a": "ok"}
    assert report["item"]["error"] == f"{scenes / 'item.json'}: {STAC_CASES['string scale'][1]}"
    assert sorted(p.name for p in out.iterdir()) == ["S2_20220301_a_mask.tif"]
