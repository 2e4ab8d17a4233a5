"""Per-band files (.SAFE folders, folders of per-band files) are placed on the scene's grid by
their georeference: a band file shifted from the grid, from elsewhere, of another size or in
another CRS is one line naming it and what differs, exit code 1 and no output; bands whose
grids line up (coarse bands whose size is rounded up to whole pixels, or up to half a pixel
short) are read. The inputs are built from the real samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from helpers import SUMMER_S2, one_line_error
from rasterio.transform import Affine
from s2_builders import coarsen_like_l1c, read_stack, write_band_folder, write_safe

from cloudfree.io.sentinel2 import BANDS, open_sentinel2

ADVICE = "give band files of one scene that cover the same extent, each at its native resolution"


def rewrite(file: Path, transform: Affine | None = None, size: int | None = None,
            crs: str | None = None) -> None:
    """Write ``file`` again (same driver and values) with another transform, crs or with only
    its top-left ``size`` x ``size`` pixels."""
    with rasterio.open(file) as ds:
        profile, data = ds.profile, ds.read()
    if size is not None:
        data = data[:, :size, :size]
        profile.update(width=size, height=size)
    profile.update(transform=transform or profile["transform"], crs=crs or profile["crs"])
    if profile["driver"] == "JP2OpenJPEG":
        profile.update(QUALITY=100, REVERSIBLE="YES")
    file.unlink()
    with rasterio.open(file, "w", **profile) as dst:
        dst.write(data)


def shifted(file: Path, east: float, north: float) -> Affine:
    with rasterio.open(file) as ds:
        return Affine.translation(east, north) * ds.transform


def run_mask(cli, tmp_path, s2) -> tuple[object, Path]:
    out = tmp_path / "out" / "mask.tif"
    out.parent.mkdir()
    return cli("mask", s2, "-o", out), out


def test_a_band_shifted_by_more_than_half_its_pixel_is_refused(native_stack, tmp_path, cli):
    """A B04 50 m east of the grid was read 5 px off."""
    l1c, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS)
    rewrite(folder / "B04.tif", shifted(folder / "B04.tif", 50, 0))
    result, out = run_mask(cli, tmp_path, folder)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (
        f"Error: {folder / 'B04.tif'}: band B04 lies 50 m east of the scene's grid (B02.tif, "
        f"the finest band), more than half its 10 m pixel; {ADVICE}")
    assert list(out.parent.iterdir()) == []


def test_a_band_from_elsewhere_is_refused(native_stack, tmp_path, cli):
    """A 20 m band 50 km away (and 10 km south) was used as if it were there."""
    l1c, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS)
    rewrite(folder / "B11.tif", shifted(folder / "B11.tif", -50_000, -10_000))
    result, out = run_mask(cli, tmp_path, folder)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (
        f"Error: {folder / 'B11.tif'}: band B11 lies 50000 m west and 10000 m south of the "
        f"scene's grid (B02.tif, the finest band), more than half its 20 m pixel; {ADVICE}")
    assert list(out.parent.iterdir()) == []


def test_a_safe_band_of_another_size_is_refused_not_cropped_to(native_stack, tmp_path, cli):
    """A .SAFE whose B02 is 100 x 100 px cropped the output to 100 x 100: the band that
    differs from the other 10 m bands is named."""
    l1c, profile = native_stack
    safe = write_safe(tmp_path / "S2A_MSIL1C_20220301T000000_N0400.SAFE", l1c, profile, 1000)
    b02 = next(safe.glob("GRANULE/*/IMG_DATA/*_B02.jp2"))
    rewrite(b02, size=100)
    result, out = run_mask(cli, tmp_path, safe)
    assert result.exit_code == 1, result.output
    grid = b02.name.replace("B02", "B03")
    assert one_line_error(result) == (
        f"Error: {b02}: band B02 covers 1000 x 1000 m (100 x 100 px of 10 m), not the "
        f"1200 x 1200 m of the scene's grid ({grid}, the finest band), 120 x 120 px; {ADVICE}")
    assert list(out.parent.iterdir()) == []


def test_a_band_in_another_crs_or_of_other_pixels_is_refused(native_stack, tmp_path, cli):
    l1c, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS)
    rewrite(folder / "B05.tif", crs="EPSG:32632")
    result, out = run_mask(cli, tmp_path, folder)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (
        f"Error: {folder / 'B05.tif'}: band B05 is in EPSG:32632, the scene's grid (B02.tif, "
        f"the finest band) in EPSG:32631; {ADVICE}, in one CRS")
    assert list(out.parent.iterdir()) == []
    rewrite(folder / "B05.tif", crs="EPSG:32631",
            transform=Affine(15, 0, profile["transform"].c, 0, -15, profile["transform"].f))
    out.parent.rmdir()
    result, out = run_mask(cli, tmp_path, folder)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (
        f"Error: {folder / 'B05.tif'}: band B05 has pixels of 15 x 15 m, not a whole multiple "
        f"of the 10 x 10 m of the scene's grid (B02.tif, the finest band); {ADVICE}")
    assert list(out.parent.iterdir()) == []


def test_bands_that_line_up_are_read_as_the_stack(tmp_path):
    """A grid of 115 px: the 20 m bands of 58 px (rounded up), the 60 m bands of 19 px (5 m
    short, less than half their pixel; their last pixel stands for the rest), a B05 shifted
    by 5 m (half its pixel): read as the stack they come from."""
    data, profile = read_stack(SUMMER_S2, 120)
    l1c = np.ascontiguousarray(coarsen_like_l1c(data)[:, :115, :115])
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS)
    for band in ("B01", "B09", "B10"):
        rewrite(folder / f"{band}.tif", size=19)
    rewrite(folder / "B05.tif", shifted(folder / "B05.tif", 5, -5))
    with open_sentinel2(folder) as s2:
        assert (s2.width, s2.height) == (115, 115)
        raw, _ = s2.read_dn()
    expected = l1c.copy()
    coarse = [BANDS.index(b) for b in ("B01", "B09", "B10")]
    expected[coarse, 114, :] = expected[coarse, 113, :]
    expected[coarse, :, 114] = expected[coarse, :, 113]
    assert np.array_equal(raw, expected)
