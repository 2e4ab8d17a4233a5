"""Inputs over HTTP(S): STAC items and COGs served on 127.0.0.1 by a server that answers byte
ranges and counts what it sends (``range_server.py``); no other network is used."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from helpers import WINTER_S1, WINTER_S2, mask_cloud, mosaic, one_line_error
from range_server import RangeServer
from rasterio.windows import Window
from s2_builders import coarsen_like_l1c, write_band_folder, write_stac_item

from cloudfree.cli.commands import default_output
from cloudfree.core.errors import CloudfreeError
from cloudfree.core.paths import Url, as_url
from cloudfree.io import remote
from cloudfree.io.sentinel2 import BANDS, open_sentinel2


def _cogs(folder: Path, block: int) -> Path:
    """Every GeoTIFF in ``folder`` rewritten as a COG of ``block`` px tiles."""
    for path in sorted(folder.glob("*.tif")):
        tmp = path.with_suffix(".cog")
        rasterio.shutil.copy(path, tmp, driver="COG", BLOCKSIZE=block, COMPRESS="DEFLATE")
        tmp.replace(path)
    return folder


def _item(folder: Path, data: np.ndarray, profile: dict, block: int) -> Path:
    """``folder``/item.json of per-band COGs (native resolutions) of a 13-band stack, cut to
    whole 60 m pixels."""
    size = min(data.shape[1:]) // 6 * 6
    files = _cogs(write_band_folder(folder / "assets", coarsen_like_l1c(
        data[:, :size, :size]), profile, BANDS), block)
    with rasterio.open(files / "B02.tif") as ds:
        bbox = tuple(ds.bounds)
    return write_stac_item(folder / "item.json", {b: files / f"{b}.tif" for b in BANDS}, bbox,
                           {"s2:product_type": "S2MSI1C"})


@pytest.fixture(scope="module")
def served(tmp_path_factory, pasted_cloud):
    """A server of: ``item.json`` (the real cumulus pasted on the clear winter patch, per-band
    COGs), the winter patch's other date (``reference.tif``) and S1 (``s1.tif``) as COGs, a
    1020 px item of 256 px tiles (``big/item.json``), a text file and a PNG; the local paths
    too."""
    root = tmp_path_factory.mktemp("served")
    item = _item(root, pasted_cloud["image"], pasted_cloud["profile"], 64)
    for src, name in ((WINTER_S2, "reference.tif"), (WINTER_S1, "s1.tif")):
        rasterio.shutil.copy(src, root / name, driver="COG", BLOCKSIZE=64, COMPRESS="DEFLATE")
    tiled = mosaic(pasted_cloud["target"], root / "tiled.tif", 4)
    with rasterio.open(tiled) as ds:
        data, profile = ds.read(), {"crs": ds.crs, "transform": ds.transform}
    tiled.unlink()
    (root / "big").mkdir()
    big_item = _item(root / "big", data, profile, 256)
    (root / "notes.txt").write_text("not a STAC item\n")
    (root / "quicklook.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with RangeServer(root, tmp_path_factory.mktemp("log") / "requests.jsonl") as server:
        yield {"server": server, "url": server.url, "root": root, "item": item,
               "big": big_item}


def _tif_gets(server: RangeServer) -> list[dict]:
    return [r for r in server.requests if r["method"] == "GET" and ".tif" in r["path"]]


def test_url_names_and_the_gdal_name_keep_the_url_whole():
    url = as_url("https://example.com/a//b/T31_B02.tif?sig=x%2Fy&se=2")
    assert isinstance(url, Url) and url == "https://example.com/a//b/T31_B02.tif?sig=x%2Fy&se=2"
    assert (url.name, url.stem, url.suffix) == ("T31_B02.tif", "T31_B02", ".tif")
    assert remote.names_raster(url) and not remote.names_raster(as_url("http://h/items/S2B_1"))
    assert remote.shown(remote.gdal_path(url)) == url
    assert remote.base_name(remote.gdal_path(url)) == "T31_B02.tif"
    assert as_url(Path("http://h/x.tif")) is None and as_url("scene.tif") is None


def test_the_default_output_of_a_url_goes_to_the_current_folder():
    assert default_output(as_url("https://h/a/S2B_31UFU.json?t=1"), "_mask") == \
        Path("S2B_31UFU_mask.tif")
    assert default_output(as_url("https://h/items/S2B_31UFU"), "_cloudfree") == \
        Path("S2B_31UFU_cloudfree.tif")


def test_requests_that_may_pass_are_retried_then_named(served, monkeypatch):
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    server, url = served["server"], served["url"]
    server.reset()
    with open_sentinel2(f"{url}/item.json?fail=2") as s2, \
            open_sentinel2(f"{url}/reference.tif?fail=2") as ref:  # the JSON fetch, then GDAL
        assert s2.bands == BANDS and ref.width == 256

    def statuses(path: str) -> list[int]:
        return [r["status"] for r in server.requests if r["path"] == path]

    assert statuses("/item.json?fail=2") == [503, 503, 200]
    assert statuses("/reference.tif?fail=2")[:3] == [503, 503, 200]
    with pytest.raises(CloudfreeError) as failed:
        open_sentinel2(f"{url}/item.json?fail=9")
    assert str(failed.value) == (f"Sentinel-2 input {url}/item.json?fail=9: the server answers "
                                 "HTTP 503 Service Unavailable; check the URL and the server")
    assert statuses("/item.json?fail=9") == [503] * 4  # 3 retries


def test_a_window_of_a_remote_item_fetches_only_its_blocks(served):
    server = served["server"]
    files = sorted((served["big"].parent / "assets").glob("*.tif"))
    total = sum(p.stat().st_size for p in files)
    server.reset()
    with open_sentinel2(f"{served['url']}/big/item.json") as s2, \
            open_sentinel2(served["big"]) as local:
        assert (s2.kind, s2.width, s2.bands) == ("stac", 1020, BANDS)
        window = Window(256, 512, 256, 256)
        far, valid = s2.read(window)
        assert np.array_equal(far, local.read(window)[0]) and valid.all()
    gets = _tif_gets(server)
    assert gets and all(r["range"] and r["status"] == 206 for r in gets)
    assert {r["path"] for r in gets} == {f"/big/assets/{p.name}" for p in files}
    # the window is 1 of 16 tiles of a 10 m band, 1 of 4 of a 20 m band and the one tile of a
    # 60 m band: about 12 % of the bytes, headers included
    assert server.sent < 0.15 * total, (server.sent, total)


def test_remove_reads_an_item_a_reference_and_s1_over_http_as_from_disk(served, cli, tmp_path):
    url, root = served["url"], served["root"]
    outs = {}
    for where, s2, ref, s1 in (
            ("local", served["item"], root / "reference.tif", root / "s1.tif"),
            ("http", f"{url}/item.json", f"{url}/reference.tif", f"{url}/s1.tif")):
        outs[where] = tmp_path / f"{where}.tif"
        served["server"].reset()
        result = cli("remove", "--s2", s2, "--reference", ref, "--s1", s1,
                     "-o", outs[where], "--json")
        assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["input"] == f"{url}/item.json" and summary["s1"] == f"{url}/s1.tif"
    assert summary["pixels_by_source"]["references"] > 1000
    gets = _tif_gets(served["server"])
    assert gets and all(r["range"] for r in gets)  # byte ranges, never a whole file
    with rasterio.open(outs["local"]) as a, rasterio.open(outs["http"]) as b:
        assert np.array_equal(a.read(), b.read())
        local_tags, tags = a.tags(), b.tags()
    assert tags["INPUT_S2"] == f"{url}/item.json" and tags["INPUT_S1"] == f"{url}/s1.tif"
    assert tags["ACQUISITION_DATETIME"] == local_tags["ACQUISITION_DATETIME"] is not None
    assert json.loads(tags["REFERENCES"])[0]["path"] == f"{url}/reference.tif"


def test_mask_of_an_item_by_url_is_the_local_items(served, cli, tmp_path):
    outs = [tmp_path / "local.tif", tmp_path / "http.tif"]
    for item, out in zip((served["item"], f"{served['url']}/item.json"), outs, strict=True):
        result = cli("mask", item, "-o", out)
        assert result.exit_code == 0, result.output
    with rasterio.open(outs[0]) as a, rasterio.open(outs[1]) as b:
        assert np.array_equal(a.read(), b.read()) and mask_cloud(a.read(1)).mean() > 0.2
        assert b.tags()["INPUT_S2"] == f"{served['url']}/item.json"


@pytest.mark.parametrize("probability", [False, True])
def test_remove_takes_a_mask_over_http_as_from_disk(served, cli, tmp_path, probability):
    url, root = served["url"], served["root"]
    name = "given_probability.tif" if probability else "given_mask.tif"  # the server's: one each
    assert cli("mask", served["item"], "-o", root / name).exit_code == 0
    read_as = ()
    if probability:  # its cloud as a probability of 0.8, the rest 0.1, read from 0.5
        with rasterio.open(root / name) as ds:
            cloud, profile = ds.read(1) == 1, ds.profile
        with rasterio.open(root / name, "w", **(profile | {"dtype": "float32",
                                                        "nodata": None})) as ds:
            ds.write(np.where(cloud, 0.8, 0.1).astype(np.float32), 1)
        read_as = ("--mask-in-threshold", "0.5")
    outs = {}
    for where, s2, mask in (("local", served["item"], root / name),
                            ("http", f"{url}/item.json", f"{url}/{name}")):
        outs[where] = tmp_path / f"{where}.tif"
        served["server"].reset()
        result = cli("remove", "--s2", s2, "--mask-in", mask, "-o", outs[where], *read_as)
        assert result.exit_code == 0, result.output
    assert any(name in r["path"] for r in _tif_gets(served["server"]))
    with rasterio.open(outs["local"]) as a, rasterio.open(outs["http"]) as b:
        assert np.array_equal(a.read(), b.read()) and b.tags()["MASK_SOURCE"] == "given mask"
    result = cli("remove", "--s2", f"{url}/item.json", "--mask-in", f"{url}/no_such_mask.tif",
                 "-o", tmp_path / "none.tif", *read_as)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "no_such_mask.tif" in result.output and not (tmp_path / "none.tif").exists()


def test_item_hrefs_may_be_absolute_urls_and_a_cog_url_may_carry_a_query(served, tmp_path):
    url = served["url"]
    text = served["item"].read_text().replace('"assets/', f'"{url}/assets/')
    assert text.count(f'"{url}/assets/') == len(BANDS)
    (served["root"] / "absolute.json").write_text(text)
    (tmp_path / "absolute.json").write_text(text)  # a local item of remote files
    with open_sentinel2(served["item"]) as local:
        expected = local.read()[0]
        for item in (f"{url}/absolute.json", tmp_path / "absolute.json"):
            with open_sentinel2(item) as s2:
                assert np.array_equal(s2.read()[0], expected)
    with open_sentinel2(f"{url}/reference.tif?token=a%2Fb&x=1") as s2, \
            open_sentinel2(WINTER_S2) as local:
        assert s2.path.name == "reference.tif"
        assert np.array_equal(s2.read()[0], local.read()[0])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case, expected", [
    ("closed", "connection refused; check the host and port, and that the server is up"),
    ("missing item", "the server answers HTTP 404 Not Found; check the URL"),
    ("not json", "is not JSON (it begins 'not a STAC item'); give the URL of a STAC item"),
    ("missing band", "the server answers HTTP 404 Not Found; check the URL"),
    ("missing s1", "the server answers HTTP 404 Not Found; check the URL"),
    ("image", "is image/png, not a STAC item; a URL is read as a raster when its path ends "
              "in .tif, .tiff, .jp2, .vrt"),
    ("no ranges", "the server does not answer byte ranges, which reading without a download "
                  "needs; download the file and give its path"),
])
def test_unreachable_or_wrong_urls_fail_in_one_line_leaving_no_file(
        served, cli, tmp_path, monkeypatch, case, expected):
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")  # the retries, quickly
    url, s1 = served["url"], []
    broken = tmp_path / "site"
    if case == "missing band":  # an item whose B03 is not on the server
        shutil.copytree(served["item"].parent / "assets", broken / "assets")
        shutil.copy(served["item"], broken / "item.json")
        (broken / "assets" / "B03.tif").unlink()
    s2, named = {"closed": (f"http://127.0.0.1:{_closed_port()}/item.json",) * 2,
                 "missing item": (f"{url}/missing.json",) * 2,
                 "not json": (f"{url}/notes.txt",) * 2,
                 "missing band": (None, None),
                 "missing s1": (f"{url}/item.json", f"{url}/nothing/s1.tif"),
                 "image": (f"{url}/quicklook.png",) * 2,
                 "no ranges": (f"{url}/reference.tif?noranges",) * 2}[case]
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    if case == "missing band":
        with RangeServer(broken, tmp_path / "log.jsonl") as server:
            s2, named = f"{server.url}/item.json", f"band B03 {server.url}/assets/B03.tif"
            result = cli("remove", "--s2", s2, "-o", out_folder / "out.tif")
    else:
        if case == "missing s1":
            s1 = ["--s1", named]
        result = cli("remove", "--s2", s2, *s1, "-o", out_folder / "out.tif")
    assert result.exit_code == 1
    line = one_line_error(result)
    assert line.startswith("Error: ") and named in line and expected in line, line
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(out_folder.iterdir()) == []


def test_a_url_is_refused_where_a_folder_is_needed(cli, tmp_path):
    result = cli("batch", "http://127.0.0.1:1/scenes/", "-o", tmp_path / "out")
    assert result.exit_code != 0
    assert "is a URL; give a local folder (a URL cannot be listed)" in one_line_error(result)
