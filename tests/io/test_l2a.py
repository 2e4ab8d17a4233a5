"""The inputs users have besides L1C stacks: L2A .SAFE folders (with SCL and BOA_ADD_OFFSET),
band-subset GeoTIFFs, folders of per-band files and STAC items, through mask and remove.

Every scene is built from the real samples: the clear Sen1Floods11 scene with the real clouds of
the SEN12MS-CR summer scene pasted in (where cloudfree's L1C mask finds them), so the truth
under the clouds is known; the clear scene itself, in the same form, is the reference date.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from helpers import FLOODS_S1, FLOODS_S2, ROOT, SUMMER_S2, mask_cloud
from pystac.extensions.raster import RasterExtension
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from s2_builders import (
    L2A_BANDS,
    coarsen_like_l1c,
    write_band_folder,
    write_l2a_safe,
    write_stac_item,
    write_stack,
)
from scipy import ndimage

from cloudfree.io.s2_files import ASSET_KEYS
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import (
    CLEAR,
    CLOUD,
    NODATA,
    SHADOW,
    SNOW,
    THIN,
    MaskParams,
    classify,
)

SIZE = 120  # a multiple of 6: the 60 m bands nest
#: The band subset of the GeoTIFF case, in an order of its own.
SUBSET = ("B04", "B03", "B02", "B08", "B11", "B12")
#: The asset order of the STAC item: one of its own, which outputs keep.
STAC_ORDER = L2A_BANDS[::-1]
OFFSET = 1000
#: GDAL scale and offset of the band-subset GeoTIFF and the STAC item's raster:bands.
SCALING = (0.0001, -0.1)
KEY_OF = {band: key for key, band in ASSET_KEYS.items()}


def _scenes() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Clear and cloudy int16 [13, SIZE, SIZE] stacks (20/60 m bands at native resolution),
    the pasted cloud [SIZE, SIZE] and the grid."""
    with rasterio.open(FLOODS_S2) as ds:
        window = Window(100, 100, SIZE, SIZE)
        clear = ds.read(window=window)
        profile = {"crs": ds.crs, "transform": window_transform(window, ds.transform)}
    with open_sentinel2(SUMMER_S2) as s2:
        refl, valid = s2.read(Window(48, 0, SIZE, SIZE))
        cloudy = s2.read_dn(Window(48, 0, SIZE, SIZE))[0]
    cloud = classify(refl, valid)[0] == CLOUD
    target = np.where(cloud, cloudy.astype(np.int16), clear)
    return coarsen_like_l1c(clear), coarsen_like_l1c(target), cloud, profile


def _scl(cloud: np.ndarray) -> np.ndarray:
    """A scene classification: cloud of high probability where the clouds were pasted, cloud
    shadow, snow, water and no data in corners away from them, vegetation elsewhere."""
    scl = np.where(cloud, 9, 4).astype(np.uint8)
    for value, rows, cols in ((3, slice(100, 110), slice(0, 12)), (11, slice(110, 120),
                              slice(20, 32)), (6, slice(100, 120), slice(60, 80)),
                              (0, slice(110, 120), slice(100, 120))):
        scl[rows, cols] = np.where(cloud[rows, cols], 9, value)
    return scl


def _native_scl(scl: np.ndarray) -> np.ndarray:
    """The SCL as the reader gives it: its 20 m samples replicated onto the 10 m grid."""
    return np.repeat(np.repeat(scl[::2, ::2], 2, 0), 2, 1)


def _write(form: str, folder: Path, data: np.ndarray, profile: dict,
           scl: np.ndarray | None) -> Path:
    """The 13-band stack ``data`` as an input of the given form."""
    folder.mkdir(parents=True)
    if form == "safe":
        name = "S2A_MSIL2A_20220301T105021_N0400_R051_T30TXK_20220301T140000.SAFE"
        return write_l2a_safe(folder / name, data, profile, OFFSET, scl)
    if form == "subset":  # baseline 04.00 DN (+1000) declared by GDAL scale and offset
        dn = (data[[BANDS.index(b) for b in SUBSET]].astype(np.int32) + OFFSET).astype(np.uint16)
        stack = write_stack(folder / "subset.tif", dn, profile, nodata=0, descriptions=SUBSET)
        with rasterio.open(stack, "r+") as ds:
            ds.scales, ds.offsets = ((value,) * len(SUBSET) for value in SCALING)
        return stack
    if form == "folder":
        names = {b: f"T30TXK_20220301T105021_{b}_{10 * (2 if b in ('B8A', 'B11') else 1)}m"
                 for b in L2A_BANDS}
        return write_band_folder(folder / "bands", data, profile, L2A_BANDS, names, scl)
    # STAC: per-band files with baseline 04.00 DN (+1000) and a relative href each
    files = write_band_folder(folder / "assets", (data.astype(np.int32) + OFFSET).astype(
        np.uint16), profile, L2A_BANDS, scl=scl)
    assets = {KEY_OF.get(b, b): files / f"{b}.tif" for b in STAC_ORDER}
    if scl is not None:
        assets["scl"] = files / "SCL.tif"
    with rasterio.open(files / "B02.tif") as ds:
        bbox = tuple(ds.bounds)
    return write_stac_item(folder / "item.json", assets, bbox,
                           {"s2:product_type": "S2MSI2A"}, SCALING)


FORMS = ("safe", "subset", "folder", "stac")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict:
    """Per form: the cloudy target and the clear reference; with the truth and the cloud."""
    clear, target, cloud, profile = _scenes()
    root = tmp_path_factory.mktemp("l2a")
    scl = _scl(cloud)
    out = {"clear": clear, "target": target, "cloud": cloud, "scl": scl}
    for form in FORMS:
        with_scl = scl if form in ("safe", "folder", "stac") else None
        out[form] = (_write(form, root / form / "target", target, profile, with_scl),
                     _write(form, root / form / "reference", clear, profile, None))
    return out


@pytest.mark.parametrize("form", FORMS)
def test_readers_give_the_bands_on_the_10_m_grid(scenes, form):
    path, _ = scenes[form]
    expected = {"safe": L2A_BANDS, "subset": SUBSET, "folder": L2A_BANDS, "stac": STAC_ORDER}
    with open_sentinel2(path) as s2:
        assert s2.bands == expected[form] and (s2.width, s2.height) == (SIZE, SIZE)
        assert s2.level == ("L1C" if form == "subset" else "L2A")
        assert s2.has_scl == (form != "subset")
        assert s2.offset == (0 if form == "folder" else OFFSET)
        assert s2.scaling == (pytest.approx(SCALING) if form in ("subset", "stac") else None)
        refl, valid = s2.read(bands=("B02", "B12"))
    # B12 (20 m) stored at native resolution comes back replicated, the offset removed
    truth = scenes["target"][[1, 12]] / 10000
    np.testing.assert_allclose(refl[:, valid], truth[:, valid], atol=1e-7)
    assert valid.mean() > 0.99


def test_scl_gives_the_mask_and_no_scl_the_score(scenes, tmp_path, cli):
    path, _ = scenes["safe"]
    result = cli("mask", path, "-o", tmp_path / "scl.tif", "--buffer", 0)
    assert result.exit_code == 0, result.output
    scl = _native_scl(scenes["scl"])
    expected = np.select([np.isin(scl, (8, 9)), scl == 10, scl == 11, scl == 3, scl == 0],
                         [CLOUD, THIN, SNOW, SHADOW, NODATA], CLEAR)  # 10: thin cirrus
    with rasterio.open(tmp_path / "scl.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), expected)
        assert ds.tags()["MASK_SOURCE"] == "SCL" and ds.tags()["PROCESSING_LEVEL"] == "L2A"
    # water (SCL 6) stays clear, and the score without B10 finds the clouds too
    result = cli("mask", path, "-o", tmp_path / "score.tif", "--no-scl", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["level"] == "L2A" and summary["mask_source"] == "score without B10"
    with rasterio.open(tmp_path / "score.tif") as ds:
        classes = ds.read(1)
        assert ds.tags()["MASK_SOURCE"] == "score without B10"
    cloud = scenes["cloud"]
    assert mask_cloud(classes[cloud]).mean() > 0.95
    assert mask_cloud(classes[~cloud]).mean() < 0.05


def test_boa_add_offset_and_its_override(scenes):
    path, _ = scenes["safe"]
    with open_sentinel2(path) as s2, open_sentinel2(path, "0") as raw:
        assert s2.offset == OFFSET and raw.offset == 0
        np.testing.assert_allclose(raw.read()[0] - s2.read()[0], OFFSET / 10000, atol=1e-6)
    with open_sentinel2(path, level="L1C") as s2:
        assert s2.level == "L1C" and not s2.has_scl


def _check_output(out: Path, source: Path, mask: Path, clear: np.ndarray, cloud: np.ndarray,
                  dn_offset: int) -> float:
    """Bands, order and dtype of the input; clear pixels unchanged; return the mean error of
    the filled cloud against the truth as a share of the cloudy input's."""
    with open_sentinel2(source) as s2, rasterio.open(out) as ds, rasterio.open(mask) as m:
        assert ds.descriptions == s2.bands and ds.dtypes[0] == s2.dtype
        assert int(ds.tags()["RADIOMETRIC_OFFSET"]) == s2.offset == dn_offset
        scale, offset = s2.scaling or (1.0, 0.0)  # GDAL's scale and offset, kept as declared
        assert ds.scales == (pytest.approx(scale),) * ds.count
        assert ds.offsets == (pytest.approx(offset),) * ds.count
        written, before = ds.read(), s2.read_dn(bands=s2.bands)[0]
        # the local fill takes the haze within 10 px of a cloud too: farther, nothing changes
        kept = ndimage.distance_transform_edt(m.read(1) == CLEAR) > 12
        np.testing.assert_array_equal(written[:, kept], before[:, kept])
        truth = clear[[BANDS.index(b) for b in s2.bands]].astype(np.float64) + dn_offset
    deep = cloud & ~np.pad(~cloud, 3, constant_values=False)[3:-3, 3:-3]  # not at the edges
    return (np.abs(written[:, cloud] - truth[:, cloud]).mean()
            / np.abs(before[:, cloud] - truth[:, cloud]).mean()) if deep.any() else 0.0


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.slow
def test_mask_and_remove_with_and_without_s1_and_with_a_reference(scenes, form, tmp_path, cli):
    target, reference = scenes[form]
    offset = 0 if form == "folder" else OFFSET
    result = cli("mask", target, "-o", tmp_path / "mask.tif", "--buffer", 0)
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "mask.tif") as ds:  # the pasted cloud found, little else
        classes, source = ds.read(1), ds.tags()["MASK_SOURCE"]
    assert source == ("score without B10" if form == "subset" else "SCL")
    cloud = scenes["cloud"]
    assert mask_cloud(classes[cloud]).mean() > 0.95 and mask_cloud(classes[~cloud]).mean() < 0.05
    errors = {}
    for name, extra in (("no_s1", ()), ("s1", ("--s1", FLOODS_S1)),
                        ("reference", ("--reference", reference))):
        out, mask = tmp_path / f"{name}.tif", tmp_path / f"{name}_mask.tif"
        result = cli("remove", "--s2", target, *extra, "-o", out, "--mask-out", mask, "-q",
                     "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["model"] == "median-fill"
        # blue and red in these band sets: the other date judges the clouds unless told
        assert summary.get("temporal_mask") is (True if name == "reference" else None)
        errors[name] = _check_output(out, target, mask, scenes["clear"], scenes["cloud"],
                                     offset)
    # every fill is much closer to the truth than the cloud; the clear date is the truth
    assert max(errors.values()) < 0.5
    assert errors["reference"] < 0.1 < min(errors["no_s1"], errors["s1"])


def test_a_network_refuses_an_input_without_its_bands_in_one_line(scenes, tmp_path, cli):
    target, _ = scenes["subset"]
    result = cli("remove", "--s2", target, "--s1", FLOODS_S1, "--model", "cloudfree-fillnet",
                 "-o", tmp_path / "out.tif")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "band B01, B05, B06" in errors[0]
    assert errors[0].endswith("or --model median-fill, which fills any band set")
    assert not (tmp_path / "out.tif").exists()


def test_a_stac_item_with_s3_assets_is_refused_in_one_line(scenes, tmp_path, cli):
    item = scenes["stac"][0]
    text = item.read_text().replace('"assets/B02.tif"', '"s3://bucket/B02.tif"')
    remote = item.parent / "remote.json"
    remote.write_text(text)
    result = cli("mask", remote, "-o", tmp_path / "m.tif")
    assert result.exit_code == 1
    assert "asset s3://bucket/B02.tif is neither an http(s) URL nor a file on this machine" \
        in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_reference_fill_reads_the_targets_band_set(scenes):
    """The reference path takes whatever bands the target has, in its order."""
    from cloudfree.dates.fill import ReferenceFill
    from cloudfree.dates.opening import open_references

    target, reference = scenes["subset"]
    with open_sentinel2(target) as s2:
        fill = ReferenceFill(open_references([reference], s2, MaskParams(buffer=5), None,
                                             quiet=True))
        try:
            block = fill.estimate(0, 0, SIZE, SIZE, scenes["cloud"])
        finally:
            fill.close()
    assert block.values.shape == (len(SUBSET), SIZE, SIZE)
    truth = scenes["clear"][[BANDS.index(b) for b in SUBSET]] / 10000
    covered = block.covered & scenes["cloud"]
    assert covered.sum() > 0.75 * scenes["cloud"].sum()  # less the clear date's own false alarms
    assert np.abs(block.values[:, covered] - truth[:, covered]).mean() < 0.01


def test_stac_eo_bands_of_a_stack_and_display_copies_left_out(scenes, tmp_path):
    """A multi-band asset is read by its ``eo:bands``; a ``visual`` RGB and a ``-jp2`` copy of
    a band (Earth Search's layout) are never opened (here they point at nothing)."""
    stack, _ = scenes["subset"]
    item = json.loads(scenes["stac"][0].read_text())
    item["assets"] = {
        "visual": {"href": "missing_tci.tif", "roles": ["visual"],
                   "eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}]},
        "image": {"href": str(stack), "roles": ["data"],
                  "eo:bands": [{"name": b, "common_name": "x"} for b in SUBSET]},
        "blue-jp2": {"href": "missing_B02.jp2", "roles": ["data"],
                     "eo:bands": [{"name": "B02", "common_name": "blue"}]},
    }
    path = tmp_path / "stack_item.json"
    path.write_text(json.dumps(item))
    with open_sentinel2(path) as s2, open_sentinel2(stack) as direct:
        # the bands of the item come in its own order: here the asset's eo:bands
        assert s2.kind == "stac" and s2.bands == SUBSET
        assert s2.level == "L2A"
        np.testing.assert_array_equal(s2.read_dn(bands=SUBSET)[0], direct.read_dn()[0])


def test_an_l2a_safe_folder_is_placed_and_dated_for_batch(scenes):
    from cloudfree.io.discovery import describe_raster

    found = describe_raster(scenes["safe"][0])
    assert found.role == "s2" and str(found.acquired) == "2022-03-01"
    with open_sentinel2(scenes["safe"][0]) as s2:
        west, south, east, north = found.footprint.bounds
        left, top = s2.transform.c, s2.transform.f  # EPSG:4326, as the sample
        assert abs(west - left) < 1e-6 and abs(north - top) < 1e-6


def test_a_network_writes_the_input_band_order(scenes, tmp_path, cli):
    """A 13-band stack in an order of its own comes out in that order through a network."""
    order = list(range(13))[::-1]
    with rasterio.open(FLOODS_S2) as ds:
        window = Window(100, 100, 64, 64)
        profile = {"crs": ds.crs, "transform": window_transform(window, ds.transform)}
    data = scenes["target"][:, :64, :64]
    stack = write_stack(tmp_path / "reversed.tif", data[order], profile, nodata=0,
                        descriptions=[BANDS[i] for i in order])
    out, mask = tmp_path / "out.tif", tmp_path / "mask.tif"
    result = cli("remove", "--s2", stack, "--s1", FLOODS_S1, "--model", "cloudfree-fillnet",
                 "-o", out, "--mask-out", mask, "-q")
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds, rasterio.open(mask) as m:
        assert ds.descriptions == tuple(BANDS[i] for i in order)
        written = ds.read()
        far = ndimage.distance_transform_edt(m.read(1) == CLEAR) > 12
    assert far.any() and (written[:, far] == data[order][:, far]).all()
    cloud = scenes["cloud"][:64, :64]
    assert (written[:, cloud] != data[order][:, cloud]).any()


def _link(folder: Path, name: str, target: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).symlink_to(target)
    return folder / name


def test_batch_finds_l2a_safe_band_folders_subsets_and_stac_items(scenes, tmp_path, cli):
    """A flat folder of the four forms: each is one scene (the item's assets folder is part
    of the item), run without S1, written in its own band order with its scale and offset."""
    from cloudfree.io.discovery import discover

    flat = tmp_path / "flat"
    for form in FORMS:
        target = scenes[form][0]
        _link(flat, target.name, target)
    _link(flat, "assets", scenes["stac"][0].parent / "assets")  # the item's relative hrefs
    found = discover(flat, need_s1=False)
    assert found.problems == []
    names = {s.name: s.s2.name for s in found.scenes}
    safe = scenes["safe"][0]
    assert names == {safe.stem: safe.name, "subset": "subset.tif", "bands": "bands",
                     "item": "item.json"}
    out, catalog = tmp_path / "out", tmp_path / "catalog"
    result = cli("batch", flat, "-o", out, "--masks", "--stac", catalog, "-q")
    assert result.exit_code == 0, result.output
    assert "batch: 4 ok, 0 failed" in result.stdout
    # the catalog's items give each output's own scale and offset to reflectance
    items = {i.id: i for i in pystac.Catalog.from_file(str(catalog / "catalog.json"))
             .get_items(recursive=True)}
    for name, (scale, offset) in (("subset", SCALING), ("item", SCALING),
                                  ("bands", (0.0001, 0.0))):
        (band, *_) = RasterExtension.ext(items[name].assets["image"]).bands
        assert (band.scale, band.offset) == (pytest.approx(scale), pytest.approx(offset))
    for name, source in names.items():
        with rasterio.open(out / f"{name}.tif") as ds, open_sentinel2(flat / source) as s2, \
                rasterio.open(out / f"{name}_mask.tif") as m:
            assert ds.descriptions == s2.bands and ds.dtypes[0] == s2.dtype
            assert ds.scales[0] == pytest.approx((s2.scaling or (1.0, 0.0))[0])
            written, before = ds.read(), s2.read_dn()[0]
            cloud = scenes["cloud"]
            assert (m.read(1)[cloud] == CLOUD).mean() > 0.95
        truth = scenes["clear"][[BANDS.index(b) for b in s2.bands]].astype(np.float64) \
            + s2.offset
        # the cloud is filled: much closer to the truth than the cloudy input
        assert np.abs(written[:, cloud] - truth[:, cloud]).mean() < \
            0.5 * np.abs(before[:, cloud] - truth[:, cloud]).mean()


def test_scene_folders_take_a_stac_item_or_band_folder_as_their_s2(scenes, tmp_path):
    """In a scene folder the S2 may be a STAC item (its assets beside it) or a band folder."""
    from cloudfree.io.discovery import discover

    root = tmp_path / "scenes"
    item = scenes["stac"][0]
    _link(root / "a", "item.json", item)
    _link(root / "a", "assets", item.parent / "assets")
    _link(root / "a", "vv_vh_s1.tif", FLOODS_S1)
    _link(root / "b", "bands", scenes["folder"][0])
    _link(root / "b", "vv_vh_s1.tif", FLOODS_S1)
    found = discover(root)
    assert found.problems == []
    assert {s.name: (s.s2.name, s.s1.name) for s in found.scenes} == {
        "a": ("item.json", "vv_vh_s1.tif"), "b": ("bands", "vv_vh_s1.tif")}


@pytest.mark.slow
def test_the_inputs_guide_examples_run_as_written(scenes, tmp_path, monkeypatch, cli):
    """Every command of the inputs guide's examples, run as written in a folder holding the
    files it names (built from the real samples), writes its output with the input's bands."""
    text = (ROOT / "docs" / "guides" / "inputs.md").read_text()
    examples = text[text.index("### Examples"):text.index("\n## ", text.index("### Examples"))]
    commands = [shlex.split(line.strip()) for line in examples.splitlines()
                if line.startswith("    cloudfree ")]
    assert len(commands) == 10
    safe = scenes["safe"][0]
    for name, target in ((safe.name, safe),
                         (safe.name.replace("20220301", "20220219"), scenes["safe"][1]),
                         ("s1.tif", FLOODS_S1), ("subset.tif", scenes["subset"][0]),
                         ("bands", scenes["folder"][0]), ("stac", scenes["stac"][0].parent),
                         ("stac_ref", scenes["stac"][1].parent)):
        _link(tmp_path, name, target)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        result = cli(*command[1:])
        assert result.exit_code == 0, (command, result.output)
        source = command[2] if command[1] == "mask" else command[command.index("--s2") + 1]
        with rasterio.open(command[command.index("-o") + 1]) as ds, \
                open_sentinel2(source) as s2:
            assert ds.descriptions == (("cloud_mask",) if command[1] == "mask" else s2.bands)
            assert (ds.width, ds.height) == (SIZE, SIZE)


def test_bands_with_different_gdal_scales_are_refused_in_one_line(scenes, tmp_path, cli):
    stack = tmp_path / "mixed.tif"
    stack.write_bytes(scenes["subset"][0].read_bytes())
    with rasterio.open(stack, "r+") as ds:
        ds.scales = (0.0001,) * (len(SUBSET) - 1) + (0.0002,)
    result = cli("mask", stack, "-o", tmp_path / "m.tif")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert "the bands' GDAL scale and offset differ between bands" in result.output
    assert not (tmp_path / "m.tif").exists()
