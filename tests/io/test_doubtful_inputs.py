"""Inputs that read, but not as meant: a band of reflectance among digital numbers, band
descriptions that name no band, an offset the data does not carry, percent-encoded STAC hrefs.
Each is refused in one line naming the file, or read as meant with a warning; from the real
samples."""

from __future__ import annotations

import json
import shutil

import numpy as np
import rasterio
from helpers import SUMMER_S2, one_line_error
from s2_builders import l1c_safe, read_stack, write_band_folder, write_stac_item, write_stack

from cloudfree.io.sentinel2 import BANDS, open_sentinel2


def test_a_band_of_reflectance_among_digital_numbers_is_refused(native_stack, tmp_path, cli):
    """A float B04 (reflectance 0-1) among uint16 files was read as uint16 zeros: "every pixel
    is nodata"."""
    l1c, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS)
    with rasterio.open(folder / "B04.tif") as ds:
        meta, data = ds.profile, ds.read()
    (folder / "B04.tif").unlink()
    with rasterio.open(folder / "B04.tif", "w", **{**meta, "dtype": "float32"}) as dst:
        dst.write(data.astype(np.float32) / 10000)
    out = tmp_path / "out"
    out.mkdir()
    result = cli("mask", folder, "-o", out / "m.tif")
    assert result.exit_code == 1
    assert one_line_error(result) == (
        f"Error: {folder / 'B04.tif'}: band B04 holds float32 values, B01 and the other bands "
        "uint16: give every band as the same kind of values (digital numbers, or reflectance)")
    assert list(out.iterdir()) == []


def test_band_descriptions_that_name_no_band_are_a_warning(tmp_path, cloudfree_log):
    data, profile = read_stack(SUMMER_S2, 64)
    path = write_stack(tmp_path / "s2.tif", data, profile, descriptions=["foo"] * 13)
    with open_sentinel2(path) as s2:
        assert s2.bands == BANDS
    assert (f"{path}: band descriptions (foo) name no Sentinel-2 band; assuming the 13-band "
            "L1C order B01..B12 (B8A 9th)") in cloudfree_log.text


def test_an_offset_the_data_does_not_carry_is_a_warning(tmp_path, cloudfree_log):
    """--offset 1000 on the summer sample, whose B04 is 26 % below 1000 DN; not a .SAFE of
    baseline 04.00 whose DNs carry the offset."""
    with open_sentinel2(SUMMER_S2, offset=1000):
        pass
    assert (f"{SUMMER_S2}: 26% of B04's pixels are below the radiometric offset of 1000 DN "
            "(negative reflectance): the file may have had it removed already; if so, give "
            "--offset 0 (offset=0)") in cloudfree_log.text
    cloudfree_log.clear()
    with open_sentinel2(SUMMER_S2, offset=0), open_sentinel2(l1c_safe(tmp_path)) as safe:
        assert safe.offset == 1000
    assert "radiometric offset" not in cloudfree_log.text


def test_percent_encoded_stac_hrefs_are_decoded(native_stack, tmp_path):
    l1c, profile = native_stack
    files = write_band_folder(tmp_path / "assets", l1c, profile, BANDS)
    with rasterio.open(files / "B02.tif") as ds:
        bbox = tuple(ds.bounds)
    item = write_stac_item(tmp_path / "item.json", {b: files / f"{b}.tif" for b in BANDS},
                           bbox, {})
    shutil.move(files / "B04.tif", files / "B04 v2.tif")
    found = json.loads(item.read_text())
    found["assets"]["B04"]["href"] = "assets/B04%20v2.tif"
    item.write_text(json.dumps(found))
    with open_sentinel2(item) as s2:
        dn, _ = s2.read_dn(bands=("B04",))
    assert np.array_equal(dn[0], l1c[BANDS.index("B04")])
