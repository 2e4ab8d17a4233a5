"""The provenance tags record each input's path absolute and normalised, as the user named it."""

from __future__ import annotations

import json

import rasterio
from helpers import ROOT

SAMPLE = ROOT / "examples" / "data"


def test_input_tags_hold_normalised_absolute_paths_without_following_links(tmp_path, cli,
                                                                            monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "data").symlink_to(SAMPLE)  # a link the user chose: kept, not followed
    monkeypatch.chdir(tmp_path / "sub")
    result = cli("remove", "--s2", "../data/series/../s2.tif", "--s1", "./../data/s1.tif",
                 "-o", tmp_path / "sample.tif")
    assert result.exit_code == 0, result.output
    result = cli("remove", "--s2", "../data/series/../series/s2_2018-07-05.tif",
                 "--reference", "../sub/../data/series/s2_2018-06-25.tif",
                 "-o", tmp_path / "series.tif")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "sample.tif") as ds:
        sample = ds.tags()
    with rasterio.open(tmp_path / "series.tif") as ds:
        series = ds.tags()
    assert sample["INPUT_S2"] == str(tmp_path / "data" / "s2.tif")
    assert sample["INPUT_S1"] == str(tmp_path / "data" / "s1.tif")
    assert series["INPUT_S2"] == str(tmp_path / "data" / "series" / "s2_2018-07-05.tif")
    assert [r["path"] for r in json.loads(series["REFERENCES"])] == [
        str(tmp_path / "data" / "series" / "s2_2018-06-25.tif")]
