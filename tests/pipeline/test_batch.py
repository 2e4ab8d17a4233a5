"""`cloudfree batch` on folders built from the real samples: isolation, resume, pairing, Dask."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import (
    FLOODS_S1,
    FLOODS_S2,
    SUMMER_S1,
    SUMMER_S2,
    WINTER_CLEAR,
    WINTER_S1,
    WINTER_S2,
    cloudfree_process,
    one_line_error,
)

from cloudfree.io.discovery import date_from_tags, date_from_text, discover

GOOD = ("floods", "summer", "winter")


def link(folder: Path, name: str, target: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).symlink_to(target)
    return folder / name


@pytest.fixture
def scenes(tmp_path) -> Path:
    """Scene folders from the real pairs, and one whose S2 is a text file."""
    root = tmp_path / "scenes"
    for name, s2, s1 in (("floods", FLOODS_S2, FLOODS_S1), ("summer", SUMMER_S2, SUMMER_S1),
                         ("winter", WINTER_S2, WINTER_S1)):
        link(root / name, s2.name, s2)
        link(root / name, s1.name, s1)
    link(root / "corrupt", "corrupt_s1.tif", SUMMER_S1)
    (root / "corrupt" / "corrupt_s2.tif").write_text("not a GeoTIFF\n")
    return root


def report_rows(path: Path) -> dict[str, dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return {r["scene"]: r for r in csv.DictReader(f)}
    return {r["scene"]: r for r in json.loads(path.read_text())["scenes"]}


def pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_a_batch_that_writes_nothing_leaves_no_folder_it_made(scenes, tmp_path, cli):
    for name in GOOD:
        shutil.rmtree(scenes / name)  # only the corrupt scene is left
    out = tmp_path / "new" / "out"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "-q")
    assert result.exit_code == 1
    assert "Error: 1 of 1 scene(s) failed: corrupt" in result.stderr
    assert not (tmp_path / "new").exists()  # made by the run, both: removed
    out.mkdir(parents=True)  # a folder that was there before is kept, empty or not
    assert cli("batch", scenes, "-o", out, "--command", "mask", "-q").exit_code == 1
    assert out.is_dir() and not any(out.iterdir())


def test_corrupt_scene_is_reported_the_others_finish(scenes, tmp_path, cli):
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--jobs", "2",
                 "--report", report)
    assert result.exit_code == 1
    assert "batch: 3 ok, 1 failed, 0 skipped" in result.stdout
    assert "Error: 1 of 4 scene(s) failed: corrupt" in result.stderr
    assert "Traceback" not in result.output
    rows = report_rows(report)
    assert rows["corrupt"]["status"] == "failed"
    assert "corrupt_s2.tif is not a raster GDAL can read" in rows["corrupt"]["error"]
    assert not (out / "corrupt_mask.tif").exists()
    for name in GOOD:
        assert rows[name]["status"] == "ok" and rows[name]["error"] == ""
        assert (out / f"{name}_mask.tif").is_file()
    assert rows["summer"]["cloud_fraction"] > 0.2 > rows["floods"]["cloud_fraction"]
    assert json.loads(report.read_text())["counts"]["ok"] == 3


def test_resume_redoes_nothing_finished(scenes, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("batch", scenes, "-o", out, "--command", "mask", "-q").exit_code == 1
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(stamps) == [f"{n}_mask.tif" for n in GOOD]

    report = tmp_path / "resume.csv"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--resume", "--report", report)
    assert "batch: 0 ok, 1 failed, 3 skipped" in result.stdout
    rows = report_rows(report)
    assert {n: rows[n]["status"] for n in GOOD} == dict.fromkeys(GOOD, "skipped")
    assert rows["corrupt"]["status"] == "failed"  # failed scenes are tried again
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    # Without --resume or --overwrite existing outputs are refused before any scene runs, with
    # the way out in the command's words; nothing is written, not even the report.
    report = tmp_path / "again.csv"
    again = cli("batch", scenes, "-o", out, "--command", "mask", "--report", report)
    assert (again.exit_code, one_line_error(again)) == (2, (
        f"Error: 3 output(s) exist in {out} (floods_mask.tif, summer_mask.tif, winter_mask.tif): "
        "pass --resume to skip their scenes or --overwrite to replace them"))
    assert not report.exists()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    # remove's mask beside its output is one of them (--masks), and --overwrite replaces them
    again = cli("batch", scenes, "-o", out, "--masks", "-q")
    assert again.exit_code == 2 and "3 output(s) exist" in one_line_error(again)
    again = cli("batch", scenes, "-o", out, "--command", "mask", "--overwrite", "-q")
    assert again.exit_code == 1  # the corrupt scene
    assert all(p.stat().st_mtime_ns > stamps[p.name] for p in out.iterdir())


def flat_folder(folder: Path) -> Path:
    """Sen1Floods11 and SEN12MS-CR rasters together, with dates in names or tags."""
    link(folder, "S2_20190918_spain.tif", FLOODS_S2)
    link(folder, "S1_20190301_spain.tif", FLOODS_S1)  # same footprint, months earlier
    shutil.copy(FLOODS_S1, folder / "spain_vv_vh.tif")
    with rasterio.open(folder / "spain_vv_vh.tif", "r+") as ds:
        ds.update_tags(ACQUISITION_DATE="2019-09-17T18:03:42")
    link(folder, WINTER_S2.name, WINTER_S2)
    link(folder, WINTER_S1.name, WINTER_S1)
    link(folder, SUMMER_S1.name, SUMMER_S1)  # no Sentinel-2 over it
    return folder


def test_flat_folder_pairs_by_footprint_then_date(tmp_path):
    found = discover(flat_folder(tmp_path / "flat"))
    pairs = {s.s2.name: s.s1.name for s in found.scenes}
    assert pairs == {"S2_20190918_spain.tif": "spain_vv_vh.tif", WINTER_S2.name: WINTER_S1.name}
    unpaired = {p.name for p in found.problems if p.status == "unpaired"}
    assert unpaired == {"S1_20190301_spain.tif", SUMMER_S1.name}
    assert len(found.problems) == 2


def test_flat_folder_batch_lists_unpaired_files(tmp_path, cli):
    flat = flat_folder(tmp_path / "flat")
    out, report = flat / "out", tmp_path / "report.json"  # the output folder is not a scene
    result = cli("batch", flat, "-o", out, "--command", "mask", "--report", report)
    assert result.exit_code == 0, result.output
    assert "2 unpaired file(s)" in result.stdout
    assert f"{SUMMER_S1.name}: unpaired" in result.stderr
    rows = report_rows(report)
    assert rows[SUMMER_S1.name]["status"] == "unpaired"
    assert Path(rows["S2_20190918_spain"]["s1"]).name == "spain_vv_vh.tif"
    assert {p.name for p in out.iterdir()} == {
        "S2_20190918_spain_mask.tif", f"{WINTER_S2.stem}_mask.tif"}
    again = cli("batch", flat, "-o", out, "--command", "mask", "--resume")
    assert "batch: 0 ok, 0 failed, 2 skipped" in again.stdout


def test_equal_candidates_are_ambiguous_not_guessed(tmp_path, cli):
    folder = tmp_path / "flat"
    link(folder, "winter_s2.tif", WINTER_S2)
    link(folder, "a_s1.tif", WINTER_S1)
    link(folder, "b_s1.tif", WINTER_S1)
    found = discover(folder)
    assert found.scenes == []
    why = ("ambiguous: a_s1.tif, b_s1.tif overlap winter_s2.tif equally and dates do not decide "
           "which is its Sentinel-1")
    advice = "keep one of them in the folder, or put each pair in a scene folder of its own"
    assert {(p.name, p.status, p.error) for p in found.problems} == {
        ("winter_s2", "failed", f"{why}: {advice}"),
        *((name, "unpaired", f"{why}, so none of them is used: {advice}")
          for name in ("a_s1.tif", "b_s1.tif"))}
    assert discover(folder, need_s1=False).scenes[0].s1 is None
    # the default model runs the scene without S1; the S1 files say why they are not used
    result = cli("batch", folder, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "1 ok, 0 failed, 0 skipped; 2 unpaired" in result.stdout
    assert f"cloudfree: b_s1.tif: unpaired: {why}, so none of them is used" in result.stderr


def test_scene_folder_patterns(tmp_path):
    folder = tmp_path / "scenes" / "winter"
    for path in (WINTER_S2, WINTER_CLEAR, WINTER_S1):
        link(folder, path.name, path)
    link(tmp_path / "scenes" / "summer", SUMMER_S2.name, SUMMER_S2)  # "ROIs1868" matches *s1*
    link(tmp_path / "scenes" / "summer", SUMMER_S1.name, SUMMER_S1)
    found = discover(tmp_path / "scenes")
    assert [s.name for s in found.scenes] == ["summer"]
    assert found.scenes[0].s1.name == SUMMER_S1.name
    assert "ambiguous: 2 S2 files" in found.problems[0].error
    assert "--s2-pattern" in found.problems[0].error
    found = discover(tmp_path / "scenes", s2_pattern="*_cloudy.tif")
    assert {s.name: s.s2 for s in found.scenes}["winter"].name == WINTER_S2.name


def test_an_s2_pattern_that_finds_no_scene_is_refused_before_any_work(scenes, tmp_path, cli):
    """A pattern that matches the S2 of no scene folder is a usage mistake (exit 2), not a
    failed scene per folder; one that matches in some folders runs those, the others fail.
    An empty folder has no scenes: exit 1, as a folder that does not exist."""
    out = tmp_path / "out"
    for extra in ([], ["--report", tmp_path / "run.json"]):
        result = cli("batch", scenes, "-o", out, "--command", "mask", "--s2-pattern",
                     "*_L2A.tif", *extra)
        assert (result.exit_code, one_line_error(result)) == (2, (
            f"Error: --s2-pattern '*_L2A.tif' matches no S2 file in the 4 scene folder(s) of "
            f"{scenes}: set it to a glob their S2 files' names match (case-insensitive), or "
            "give the folder that holds the scenes"))
        assert result.stdout == "" and list(tmp_path.iterdir()) == [scenes]
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--s2-pattern", "*cloudy*",
                 "-q")
    assert result.exit_code == 1 and "batch: 2 ok, 2 failed" in result.stdout
    assert one_line_error(result) == (
        "Error: 2 of 4 scene(s) failed: corrupt, floods (all: no S2 file matching '*cloudy*' "
        "(set --s2-pattern))")
    assert sorted(p.name for p in out.iterdir()) == ["summer_mask.tif", "winter_mask.tif"]
    (tmp_path / "empty").mkdir()
    result = cli("batch", tmp_path / "empty", "-o", tmp_path / "out2")
    assert (result.exit_code, one_line_error(result)) == (1, (
        f"Error: no scenes in {tmp_path / 'empty'}: no scene folders, no S1/S2 rasters"))
    assert not (tmp_path / "out2").exists()


def test_an_s1_pattern_that_finds_no_s1_for_a_network_is_refused_before_any_work(
        scenes, tmp_path, cli):
    out = tmp_path / "out"
    result = cli("batch", scenes, "-o", out, "--model", "cloudfree-fillnet-fast",
                 "--s1-pattern", "*_vv.tif")
    assert (result.exit_code, one_line_error(result)) == (2, (
        f"Error: --s1-pattern '*_vv.tif' matches no S1 file in the 4 scene folder(s) of "
        f"{scenes}, and the model needs one: set it to a glob their S1 files' names match "
        "(case-insensitive), or give a model that runs without S1"))
    assert not out.exists()
    # the default model runs without S1: the same pattern is no mistake there (the scenes run;
    # winter's S1, ROIs2017..._s1.tif, matching no S1 pattern, is then a second S2 candidate)
    result = cli("batch", scenes, "-o", out, "--s1-pattern", "*_vv.tif", "-q")
    assert result.exit_code == 1 and "batch: 2 ok, 2 failed" in result.stdout, result.output
    assert sorted(p.name for p in out.iterdir()) == ["floods.tif", "summer.tif"]


def test_dates_from_names_and_tags():
    assert str(date_from_text("S1A_IW_GRDH_1SDV_20190917T180342_20190917T180407")) == "2019-09-17"
    assert date_from_text("Spain_7370579_S1Hand") is None
    assert date_from_text("x_20191340_y") is None  # not a date
    assert str(date_from_tags({"TIFFTAG_DATETIME": "2024:01:01 00:00:00",
                               "ACQUISITION_DATE": "2019-09-18"})) == "2019-09-18"


@pytest.mark.parametrize("args, message", [
    (["--report", "r.txt"], "name it .json or .csv"),
    (["--model", "x"], "--model x: only for --command remove"),
    (["--masks"], "--masks: only for --command remove"),
    (["--resume", "--overwrite"], "pick one"),
    (["--dask-scheduler", ""], "--dask-scheduler '' is empty: give the scheduler's address"),
])
def test_usage_errors(scenes, tmp_path, args, message, cli):
    result = cli("batch", scenes, "-o", tmp_path / "out", "--command", "mask", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_box_that_misses_every_scene_is_refused_before_any_scene(scenes, tmp_path, cli):
    shutil.rmtree(scenes / "corrupt")  # an unreadable scene leaves the box to each scene
    out = tmp_path / "out"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--bbox", 0, 0, 1, 1)
    assert result.exit_code == 2
    assert one_line_error(result) == (
        "Error: the box meets none of the 3 scenes; the first: --bbox 0 0 1 1 lies outside "
        f"{scenes / 'floods' / FLOODS_S2.name}, which covers -0.7818936233 38.08281883 "
        "-0.7358998808 38.12881257 in EPSG:4326: give a box that overlaps it")
    assert not out.exists()
    # a box that meets one scene runs them all: the others fail, each with its line
    with rasterio.open(WINTER_S2) as ds:
        box = ds.bounds
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--bbox", *box)
    assert result.exit_code == 1 and "2 of 3 scene(s) failed: floods, summer" in result.stderr
    assert "summer: failed: --bbox " in result.stderr  # in the command's words
    assert [p.name for p in out.iterdir()] == ["winter_mask.tif"]


def test_no_thin_is_for_mask_only(scenes, tmp_path, cli):
    result = cli("batch", scenes, "-o", tmp_path / "out", "--command", "remove", "--no-thin")
    assert result.exit_code == 2 and "--no-thin: only for --command mask" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, code, message", [
    (["--model", "nope"], 2, "no bundled model 'nope'"),
    (["--device", "tpu"], 2, "--device tpu must be auto, cpu, cuda or cuda:N"),
    (["--model", "cloudfree-fillnet", "--tile", "17"], 2, "--tile 17 is not a multiple of 8"),
    (["--precision", "fp16", "--device", "cpu"], 2, "--precision fp16 needs a GPU"),
    (["--checkpoint", "nowhere.pt"], 1, "checkpoint nowhere.pt does not exist"),
])
def test_a_model_that_cannot_run_is_refused_once_before_any_scene(scenes, tmp_path, args, code,
                                                                   message, cli):
    result = cli("batch", scenes, "-o", tmp_path / "out", *args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code and len(lines) == 1
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_outputs_that_cannot_be_written_are_refused_before_any_scene(scenes, tmp_path, cli,
                                                                   monkeypatch):
    (tmp_path / "afile").write_text("a file\n")
    result = cli("batch", scenes, "-o", tmp_path / "out", "--command", "mask", "--stac",
                 tmp_path / "afile")
    assert (result.exit_code, result.stderr) == (2, f"Error: cannot write the STAC catalog in "
                                                    f"{tmp_path / 'afile'}: {tmp_path / 'afile'} "
                                                    "is a file, not a folder\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(
        path, mode))  # as a read-only mount (root may write where chmod says no)
    result = cli("batch", scenes, "-o", tmp_path / "out", "--command", "mask", "--report",
                 locked / "r.json")
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write report "
                                                    f"{locked / 'r.json'}: folder {locked} is "
                                                    "not writable\n")
    assert not (tmp_path / "out").exists() and not any(locked.iterdir())
    monkeypatch.undo()
    result = cli("batch", scenes, "-o", tmp_path / "out", "--command", "mask", "--report",
                 tmp_path / "out" / "r.json")  # in the output folder that batch makes
    assert result.exit_code == 1  # the corrupt scene
    rows = json.loads((tmp_path / "out" / "r.json").read_text())["scenes"]
    assert sorted(r["status"] for r in rows) == ["failed", "ok", "ok", "ok"]


def test_an_output_folder_the_system_refuses_is_one_line_and_nothing_left(scenes, tmp_path,
                                                                           cli, monkeypatch):
    out = tmp_path / "new" / "out"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):  # as a folder the system will not let us write in
        if self == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = cli("batch", scenes, "-o", out, "--command", "mask")
    assert (result.exit_code, one_line_error(result)) == (1, (
        f"Error: cannot make the output folder {out}: permission denied; give a folder you can "
        "write to, or make it first"))
    assert list(tmp_path.iterdir()) == [scenes]  # "new", made on the way, is removed


def test_missing_folder_and_missing_dask(tmp_path, monkeypatch, cli):
    result = cli("batch", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "does not exist" in result.stderr
    flat = flat_folder(tmp_path / "flat")
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = cli("batch", flat, "-o", tmp_path / "out", "--command", "mask",
                 "--dask-scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 1 and 'pip install "cloudfree[dask]"' in result.stderr


@pytest.fixture
def junk_server():
    """The address of a TCP server that answers every connection with an HTTP error page,
    not Dask's protocol."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed
                return
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 8)

    threading.Thread(target=answer, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_a_bad_dask_scheduler_is_one_line_before_any_output(tmp_path, monkeypatch, cli,
                                                            junk_server):
    """A scheduler file that is not one, a scheduler that is not there and a server that is not
    a scheduler: one line within seconds, and no output folder made."""
    pytest.importorskip("distributed")
    monkeypatch.setattr("cloudfree.pipeline.batch.DASK_CONNECT_S", 1)
    scenes, out = flat_folder(tmp_path / "flat"), tmp_path / "out"
    garbage = tmp_path / "scheduler.json"
    garbage.write_bytes(b"\x00garbage{")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    for scheduler, message in [
        (garbage, f"Dask scheduler file {garbage} holds no scheduler address (JSON with "
                  '"address"): give the file the scheduler wrote (--scheduler-file) or its '
                  "address"),
        (free, f"cannot reach the Dask scheduler {free}: Timed out trying to connect to {free} "
               "after 1 s"),
        (junk_server, f"{junk_server} answered, but not as a Dask scheduler: check the address"),
    ]:
        result = cli("batch", scenes, "-o", out, "--command", "mask", "--dask-scheduler",
                     scheduler)
        assert result.exit_code == 1
        assert one_line_error(result) == f"Error: {message}"
        assert not out.exists()


def test_a_missing_dask_scheduler_file_is_one_line_not_a_wait(tmp_path):
    pytest.importorskip("distributed")
    scenes, out = flat_folder(tmp_path / "flat"), tmp_path / "out"
    proc = cloudfree_process("batch", scenes, "-o", out, "--dask-scheduler",
                             tmp_path / "none.json")
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert stderr == f"Error: Dask scheduler file {tmp_path / 'none.json'} does not exist\n"
    assert not out.exists()


def test_dask_cluster_gives_the_same_outputs_as_local_jobs(scenes, tmp_path, cli):
    distributed = pytest.importorskip("distributed")
    local, remote = tmp_path / "local", tmp_path / "dask"
    assert cli("batch", scenes, "-o", local, "--command", "mask", "-q").exit_code == 1
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        report = tmp_path / "dask.json"
        result = cli("batch", scenes, "-o", remote, "--command", "mask", "--report", report,
                     "--dask-scheduler", cluster.scheduler_address)
    assert result.exit_code == 1 and "failed: corrupt" in result.stderr
    assert report_rows(report)["corrupt"]["status"] == "failed"
    for name in GOOD:
        assert np.array_equal(pixels(local / f"{name}_mask.tif"),
                              pixels(remote / f"{name}_mask.tif"))


def test_remove_passes_options_through_and_isolates_failures(scenes, tmp_path, cli):
    import torch

    from cloudfree.inference.checkpoint import save_checkpoint
    from cloudfree.networks import build

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "small.pt", build("dsen2cr", "small").eval(), tile=128)
    for name in ("floods", "summer"):
        shutil.rmtree(scenes / name)
    out, report = tmp_path / "out", tmp_path / "report.json"
    result = cli("batch", scenes, "-o", out, "--checkpoint", checkpoint, "--device", "cpu",
                 "--tile", "128", "--batch-size", "2", "--report", report, "-q")
    assert result.exit_code == 1 and "1 of 2 scene(s) failed: corrupt" in result.stderr
    rows = report_rows(report)
    assert rows["winter"]["status"] == "ok", rows["winter"]["error"]
    assert rows["winter"]["cloud_fraction"] is not None
    with rasterio.open(out / "winter.tif") as ds, rasterio.open(WINTER_S2) as src:
        assert (ds.count, ds.shape, ds.crs) == (13, src.shape, src.crs)


def test_batch_runs_an_onnx_model_as_remove_does(scenes, tmp_path, cli):
    onnx = tmp_path / "fillnet.onnx"
    assert cli("export-onnx", "--model", "cloudfree-fillnet", "-o", onnx).exit_code == 0
    for name in ("floods", "winter", "corrupt"):
        shutil.rmtree(scenes / name)
    result = cli("batch", scenes, "-o", tmp_path / "out", "--onnx", onnx, "-q")
    assert result.exit_code == 0, result.output
    single = tmp_path / "single.tif"
    assert cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "--onnx", onnx, "-o", single,
               "-q").exit_code == 0
    batched = pixels(tmp_path / "out" / "summer.tif")
    assert np.array_equal(batched, pixels(single))
    with rasterio.open(tmp_path / "out" / "summer.tif") as ds:
        assert ds.tags()["MODEL"] == str(onnx)


def test_an_onnx_tile_far_larger_than_every_scene_is_refused_before_any_scene(tmp_path, cli):
    """As ``remove`` refuses it for one scene (exit 2, no file); where the scenes differ in
    size, one the tile suits runs and the others fail on their own."""
    onnx = tmp_path / "big.onnx"
    assert cli("export-onnx", "--model", "cloudfree-fillnet", "--tile", 1024, "-o",
               onnx).exit_code == 0
    first = ("this ONNX model runs 1024 px tiles only, 16 times the pixels of the 256x256 px "
             "scene: export it again with a smaller tile (cloudfree export-onnx --tile 256), or "
             "run its checkpoint (--checkpoint PATH), which takes any tile")
    same, out = tmp_path / "same", tmp_path / "out"
    for name, s2, s1 in (("a_summer", SUMMER_S2, SUMMER_S1), ("b_winter", WINTER_S2, WINTER_S1)):
        link(same / name, s2.name, s2)
        link(same / name, s1.name, s1)
    result = cli("batch", same, "-o", out, "--onnx", onnx)
    assert (result.exit_code, one_line_error(result)) == (2, (
        "Error: this ONNX model's 1024 px tiles are far too large for each of the 2 scenes; "
        f"the first: {first}"))
    assert result.stdout == "" and not out.exists()
    shutil.rmtree(same / "b_winter")  # the 512 px scene: 4 times its pixels, which runs
    link(same / "b_floods", "x_s2.tif", FLOODS_S2)
    link(same / "b_floods", "x_s1.tif", FLOODS_S1)
    report = tmp_path / "run.json"
    result = cli("batch", same, "-o", out, "--onnx", onnx, "--report", report, "-q")
    assert result.exit_code == 1 and "batch: 1 ok, 1 failed" in result.stdout
    rows = report_rows(report)
    assert (rows["a_summer"]["status"], rows["a_summer"]["error"]) == ("failed", first)
    assert rows["b_floods"]["status"] == "ok" and sorted(p.name for p in out.iterdir()) == [
        "b_floods.tif"]


def test_scenes_whose_outputs_would_be_one_file_are_refused_before_any_work(tmp_path, cli):
    """``x_s2.tif`` and ``x_s2.TIF`` were written to one output (one lost with --overwrite)."""
    flat = tmp_path / "flat"
    tif, upper = link(flat, "x_s2.tif", SUMMER_S2), link(flat, "x_s2.TIF", WINTER_S2)
    out = tmp_path / "out"
    for extra in ([], ["--overwrite"]):
        result = cli("batch", flat, "-o", out, "--command", "mask", *extra)
        assert (result.exit_code, result.stderr) == (1, (
            f"Error: {upper} and {tif} would both be written to {out / 'x_s2_mask.tif'} (each "
            "output is named by its scene, whatever the case of its letters); rename one of "
            "them or move it to another folder\n"))
        assert not out.exists()
    folders = tmp_path / "folders"  # scene folders named alike but for case
    link(folders / "Summer", SUMMER_S2.name, SUMMER_S2)
    link(folders / "summer", WINTER_S2.name, WINTER_S2)
    result = cli("batch", folders, "-o", out, "--command", "mask")
    assert result.exit_code == 1 and "would both be written to" in result.stderr
    assert not out.exists()


def test_a_report_the_stac_catalog_would_replace_is_refused_before_any_work(scenes, tmp_path,
                                                                            cli):
    out = tmp_path / "out"
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--stac", out, "--report",
                 out / "catalog.json")
    assert (result.exit_code, result.stderr) == (2, (
        f"Error: report {out / 'catalog.json'} is the STAC catalog's file: the catalog would "
        "replace it; give the report another name or folder\n"))
    assert not out.exists()
    stac = tmp_path / "stac"  # an earlier catalog's folder of scene summer's item
    (stac / "summer").mkdir(parents=True)
    result = cli("batch", scenes, "-o", out, "--command", "mask", "--stac", stac, "--report",
                 stac / "summer" / "summer.json")
    assert (result.exit_code, result.stderr) == (2, (
        f"Error: report {stac / 'summer' / 'summer.json'} is the STAC item of scene summer: "
        "the catalog would replace it; give the report another name or folder\n"))
    assert not out.exists() and not any((stac / "summer").iterdir())
