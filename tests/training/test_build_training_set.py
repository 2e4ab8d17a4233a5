"""scripts/build_training_set.py: conventions, checksums, the reserved-data guard, source kinds.

The other sources (git mirrors, the BigEarthNet sdist) are not in CI; these tests use
../shared/data, and git repositories and an sdist made here from its files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import FLOODS_S1, FLOODS_S2, ROOT, SEN12, WINTER_S1, WINTER_S2

sys.path.insert(0, str(ROOT / "scripts"))
import build_training_set as bts  # noqa: E402
import trainset_arrays as arrays  # noqa: E402
import trainset_sources as sources  # noqa: E402

from cloudfree.core.errors import CloudfreeError  # noqa: E402
from cloudfree.io.sentinel2 import BANDS  # noqa: E402


@pytest.fixture(scope="module")
def shared():
    """The samples built from ../shared/data, and the checksums recorded while reading."""
    checked = sources.Checked({}, record=True)
    reader = bts.Reader(sources.open_source(sources.SHARED, SEN12.parent), checked)
    return {s.id: s.finish() for s in bts.shared_samples(reader)}, checked


def test_shared_samples_keep_values_units_and_split(shared):
    samples, checked = shared
    records = {i: s.record() for i, s in samples.items()}
    assert [(r["kind"], r["split"]) for r in records.values()] == [
        ("triplet", "val"), ("cloudy_s1", "train"), ("pair", "val")]
    winter = samples["sen12mscr_ROIs2017_winter_112_p797"]
    assert {k: a.shape for k, a in winter.arrays.items()} == {
        "s1": (2, 256, 256), "s2_cloudy": (13, 256, 256), "s2_clear": (13, 256, 256)}
    with rasterio.open(WINTER_S2) as s2, rasterio.open(WINTER_S1) as s1:
        np.testing.assert_array_equal(winter.arrays["s2_cloudy"], s2.read().astype(np.float32))
        np.testing.assert_array_equal(winter.arrays["s1"], s1.read())
    assert records["sen12mscr_ROIs2017_winter_112_p797"]["crs"] == "EPSG:32631"
    assert len(checked.used) == 7
    path = FLOODS_S2.relative_to(SEN12.parent).as_posix()
    assert checked.used[sources.SHARED, path] == hashlib.sha256(FLOODS_S2.read_bytes()).hexdigest()


def test_spain_bands_are_reordered_by_name_and_nodata_is_nan(shared):
    spain = shared[0]["sen1floods11_Spain_7370579"]
    record = spain.record()
    assert (record["crs"], record["bands_missing"]) == ("EPSG:4326", [])
    with rasterio.open(FLOODS_S2) as ds:
        b8a = ds.read(list(ds.descriptions).index("B8A") + 1).astype(np.float32)
    h, w = record["height"], record["width"]
    b8a[b8a == 0] = np.nan
    np.testing.assert_array_equal(spain.arrays["s2_clear"][BANDS.index("B8A")], b8a[:h, :w])
    with rasterio.open(FLOODS_S1) as ds:
        assert ds.descriptions == ("VV", "VH")
    vv, vh = (np.nanmedian(b) for b in spain.arrays["s1"])
    assert -20 < vv < -3 and -30 < vh < -10 and vh < vv


def test_linear_s1_becomes_db_and_unknown_units_are_refused():
    with rasterio.open(WINTER_S1) as ds:
        db = ds.read()
    np.testing.assert_allclose(arrays.s1_db(10 ** (db / 10), "s1"), db, atol=1e-4)
    with pytest.raises(CloudfreeError, match="cannot tell dB from linear"):
        arrays.s1_db(np.abs(db), "s1")


def test_resampled_edges_are_cropped_to_common_data():
    with rasterio.open(WINTER_S1) as ds:
        raster = arrays.Raster(ds.read(), ds.crs, ds.transform, ds.descriptions)
    shifted = arrays.Grid(raster.crs, raster.transform * Affine.translation(2.5, -1.5), 256, 256)
    moved = arrays.onto(raster, shifted)
    assert np.isnan(moved).any()
    cropped = arrays.crop_to_data({"s1": moved})["s1"]
    # 1.5 px up: row 0 has no data; 2.5 px left: columns 253-255 lack some
    assert np.isnan(moved[:, 0]).all() and np.isnan(moved[:, :, 253]).any()
    np.testing.assert_array_equal(cropped, moved[:, 1:, :253])
    assert np.isfinite(cropped).all()


def test_reserved_samples_and_other_folders_are_refused_before_reading(tmp_path):
    reserved = f"{sources.RESIDUAL}/{sources.RESERVED_FROM}_input.tif"
    checked = sources.Checked({}, record=True)
    folder = sources.open_source(sources.ORIOLAC, tmp_path)
    with pytest.raises(CloudfreeError, match="reserved for independent evaluation"):
        checked.read(folder, reserved)
    with pytest.raises(CloudfreeError, match="outside the training pool"):
        checked.read(folder, "eda/notebooks/imgs/cr/other/x.tif")
    with pytest.raises(CloudfreeError, match="is missing from"):
        checked.read(folder, f"{sources.RESIDUAL}/{bts.RESIDUAL_IDS[-1]}_input.tif")
    assert max(bts.RESIDUAL_IDS) < sources.RESERVED_FROM


def test_checksums_are_enforced_with_one_line_messages():
    source = sources.open_source(sources.SHARED, SEN12.parent)
    path = WINTER_S1.relative_to(SEN12.parent).as_posix()
    digest = hashlib.sha256(WINTER_S1.read_bytes()).hexdigest()
    assert sources.Checked({(sources.SHARED, path): digest}).read(source, path)
    for expected, message in (({(sources.SHARED, path): "0" * 64}, "manifest says 000000000000"),
                              ({}, "is not in the manifest")):
        with pytest.raises(CloudfreeError, match=message) as err:
            sources.Checked(expected).read(source, path)
        assert "\n" not in str(err.value)


def _git(*args, cwd=None):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


def test_work_tree_and_bare_git_read_the_same_files(tmp_path):
    work = tmp_path / "work"
    (work / "a").mkdir(parents=True)
    shutil.copy(WINTER_S1, work / "a" / "s1.tif")
    _git("init", "-q", str(work))
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "x", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(tmp_path / "bare.git"))
    tree = sources.open_source("t", work)
    bare = sources.open_source("t", tmp_path / "bare.git")
    assert (type(tree), type(bare)) == (sources.Folder, sources.BareGit)
    assert tree.list("a") == bare.list("a") == ["a/s1.tif"]
    assert bare.read("a/s1.tif") == tree.read("a/s1.tif") == WINTER_S1.read_bytes()
    with pytest.raises(CloudfreeError, match="a/none.tif is missing"):
        bare.read("a/none.tif")


def test_sdist_nested_archives_are_read_by_member(tmp_path):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:bz2") as tar:
        tar.add(WINTER_S1, arcname="Example/p1/p1_VV.tif")
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/src/Example.tar.bz2")
        info.size = inner.tell()
        inner.seek(0)
        tar.addfile(info, inner)
    source = sources.open_source("sdist", sdist)
    member = "src/Example.tar.bz2/Example/p1/p1_VV.tif"
    assert source.list("src/Example.tar.bz2/Example") == [member]
    assert source.read(member) == WINTER_S1.read_bytes()
    with pytest.raises(CloudfreeError, match="src/Example.tar.bz2/x.tif is missing"):
        source.read("src/Example.tar.bz2/x.tif")
    with pytest.raises(CloudfreeError, match="src/Other.tar.bz2 is missing"):
        source.read("src/Other.tar.bz2/x.tif")


def test_cli_errors_are_one_line_and_leave_outputs_alone(tmp_path, capsys):
    out = tmp_path / "set"
    out.mkdir()
    (out / "index.json").write_text(json.dumps([]))
    common = ["--dsen2cr", str(tmp_path), "--rico", str(tmp_path), "--bigearthnet",
              str(tmp_path), "--shared", str(SEN12.parent)]
    assert bts.main(["--oriolac", str(tmp_path), *common, "-o", str(out)]) == 2
    assert capsys.readouterr().err == (f"Error: {out} exists and is not empty; "
                                       "pass --overwrite to replace it\n")
    fresh = tmp_path / "fresh"
    assert bts.main(["--oriolac", str(tmp_path / "none"), *common, "-o", str(fresh)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: github:Oriolac/cloud-removal: ") and err.count("\n") == 1
    assert not fresh.exists() and (out / "index.json").read_text() == "[]"


def test_committed_manifest_is_in_the_pool_and_split_by_scene():
    manifest = json.loads(bts.MANIFEST.read_text())
    for entry in manifest["files"]:
        sources.refuse_reserved(entry["source"], entry["path"])
    assert len({(f["source"], f["path"]) for f in manifest["files"]}) == len(manifest["files"])
    splits: dict[str, set[str]] = {}
    for sample in manifest["samples"]:
        splits.setdefault(sample["scene"], set()).add(sample["split"])
        names = tuple(sample["shape"])
        assert names == bts.KIND_ARRAYS[sample["kind"]]
    assert all(len(s) == 1 for s in splits.values())
    assert {scene for scene, s in splits.items() if s == {"val"}} == set(bts.VALIDATION_SCENES)


def test_a_build_that_differs_from_the_manifest_is_refused():
    entry = {"id": "a", "scene": "a", "source": sources.SHARED, "kind": "clear", "split": "train",
             "shape": {"s2_clear": [13, 4, 4]}}
    checked = sources.Checked({})
    bts.compare_with_manifest({"samples": [entry]}, [entry], checked)
    with pytest.raises(CloudfreeError, match="sample a: built .*13, 4, 5.* the manifest lists"):
        bts.compare_with_manifest({"samples": [entry]},
                                  [{**entry, "shape": {"s2_clear": [13, 4, 5]}}], checked)
    with pytest.raises(CloudfreeError, match="1 manifest files were not read"):
        bts.compare_with_manifest({"samples": [entry]}, [entry],
                                  sources.Checked({(sources.SHARED, "x.tif"): "0"}))
