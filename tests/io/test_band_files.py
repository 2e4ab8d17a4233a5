"""Which file holds which band of a per-band folder or a ``.SAFE`` folder: a band named by two
files, or by a broken symbolic link, is one line naming them, exit code 1 and no output; a
scene classification holding no Sen2Cor class is a warning naming it. The inputs are built
from the real samples."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import NATIVE_SIZE, one_line_error
from s2_builders import write_band_folder, write_l2a_safe

from cloudfree.io.sentinel2 import BANDS, open_sentinel2


def run_mask(cli, tmp_path, s2, *args) -> tuple[object, Path]:
    out = tmp_path / "out" / "mask.tif"
    out.parent.mkdir()
    return cli("mask", s2, "-o", out, *args), out


DUPLICATES = {
    "B01 twice": ("B01.tif", "T31UFU_20220301T000000_B01.tif", "B01"),
    "SCL twice": ("SCL.tif", "scl.tif", "SCL"),
    "B02 beside blue": ("B02.tif", "blue.tif", "B02"),
    "B04 of unsaid and of said resolution": ("B04.tif", "B04_10m.tif", "B04"),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_a_band_named_by_two_files_is_refused_naming_both(native_stack, tmp_path, cli, case):
    """One of them was dropped without a word."""
    l1c, profile = native_stack
    first, second, band = DUPLICATES[case]
    scl = (l1c[1] // 300 % 12).astype(np.uint8)
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS, scl=scl)
    shutil.copy(folder / f"{'SCL' if band == 'SCL' else band}.tif", folder / second)
    if first != f"{band}.tif":
        (folder / f"{band}.tif").rename(folder / first)
    result, out = run_mask(cli, tmp_path, folder)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (f"Error: {folder}: {sorted([first, second])[0]} and "
                                  f"{sorted([first, second])[1]} both hold band {band}; keep "
                                  "one of them, move the other out")
    assert list(out.parent.iterdir()) == []


def test_files_of_one_band_at_two_named_resolutions_take_the_finest(native_stack, tmp_path):
    """As in a product's R10m and R20m folders: not a duplicate."""
    l1c, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS,
                               names={"B02": "B02_10m"})
    write_band_folder(tmp_path / "coarse", l1c[:, ::2, ::2], {
        **profile, "transform": profile["transform"] * profile["transform"].scale(2)},
        ("B02",), names={"B02": "B02_20m"})
    shutil.copy(tmp_path / "coarse" / "B02_20m.tif", folder)
    with open_sentinel2(folder) as s2:
        assert Path(s2.band_sources["B02"][0].name).name == "B02_10m.tif"
        assert (s2.width, s2.height) == (NATIVE_SIZE, NATIVE_SIZE)


def test_a_broken_symbolic_link_is_refused_naming_it(native_stack, tmp_path, cli):
    """It was passed over: 12 bands out of 13, without a word."""
    l1c, profile = native_stack
    folder = write_band_folder(tmp_path / "bands", l1c, profile, BANDS)
    (folder / "B08.tif").unlink()
    (folder / "B08.tif").symlink_to(tmp_path / "gone" / "B08.tif")
    result, out = run_mask(cli, tmp_path, folder)
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (f"Error: {folder / 'B08.tif'}: a symbolic link to "
                                  f"{tmp_path / 'gone' / 'B08.tif'}, which does not exist; "
                                  "correct the link or remove it")
    assert list(out.parent.iterdir()) == []
    os.symlink("nowhere.tif", folder / "notes.tif")  # names no band: passed over, as before
    (folder / "B08.tif").unlink()
    with open_sentinel2(folder) as s2:
        assert len(s2.bands) == 12


def test_a_scene_classification_of_no_sen2cor_class_is_a_warning(native_stack, tmp_path, cli):
    """An SCL holding only values beyond Sen2Cor's classes gave 0 % cloud without a word."""
    l1c, profile = native_stack
    scl = np.full((NATIVE_SIZE, NATIVE_SIZE), 200, np.uint8)
    scl[:10] = 0  # and no data
    safe = write_l2a_safe(tmp_path / "S2A_MSIL2A_20220301T000000_N0400.SAFE", l1c, profile,
                          offset=1000, scl=scl)
    scl_file = next(safe.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
    result, out = run_mask(cli, tmp_path, safe)
    assert result.exit_code == 0, result.output
    warning = (f"cloudfree: {scl_file}: the scene classification (SCL) holds none of Sen2Cor's "
               "classes 1-11 (only 0, 200): the mask from it finds no cloud, shadow or snow; "
               "give the product's own SCL, or --no-scl to mask from the bands")
    assert result.stderr.splitlines() == [warning]
    result = cli("mask", safe, "-o", out, "--overwrite", "--no-scl")  # not read: no warning
    assert result.exit_code == 0 and result.stderr == "", result.output
    scl = (l1c[1] // 300 % 12).astype(np.uint8)  # every class: no warning
    safe = write_l2a_safe(tmp_path / "S2A_MSIL2A_20220302T000000_N0400.SAFE", l1c, profile,
                          offset=1000, scl=scl)
    result = cli("mask", safe, "-o", out, "--overwrite")
    assert result.exit_code == 0 and result.stderr == "", result.output
