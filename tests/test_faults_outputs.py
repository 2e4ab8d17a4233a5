"""Faults around the paths and outputs of every command: symbolic link loops, dangling links,
FIFOs, immutable files, outputs that appear meanwhile, memory limits and stops. Each test checks
the exit code, the one-line message, and what is left in the output folder."""

from __future__ import annotations

import importlib
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import rasterio
import torch
from helpers import SEN12, SUMMER_S1, SUMMER_S2, WINTER_S2, cloudfree_process, one_line_error

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.output import atomic, publish
from cloudfree.output.atomic import output_set

COREGISTER = ["coregister", "--s1", SUMMER_S1, "--s2", SUMMER_S2]


def scene_folder(root: Path) -> Path:
    """A batch input: one scene folder holding the summer sample's S2 and S1."""
    scene = root / "scenes" / "a"
    scene.mkdir(parents=True)
    for src in (SUMMER_S2, SUMMER_S1):
        shutil.copy(src, scene / src.name)
    return root / "scenes"


# --- symbolic link loops, dangling links -------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["mask", SUMMER_S2, "-o", "{loop}"],
    ["mask", SUMMER_S2, "-o", "{out}", "--score", "{loop}"],
    ["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", "{out}", "--mask-out", "{loop}"],
    [*COREGISTER, "-o", "{loop}"],
    [*COREGISTER, "-o", "{out}", "--report", "{loop}"],
    ["evaluate", SEN12, "--model", "median-fill", "--report", "{loop}"],
    ["batch", "{scenes}", "-o", "{outs}", "--command", "mask", "--report", "{loop}"],
])
def test_an_output_that_is_a_symlink_loop_is_an_existing_output(tmp_path, args, cli):
    loop = tmp_path / ("loop.json" if "--report" in args else "loop.tif")
    loop.symlink_to(loop.name)
    names = {"loop": loop, "out": tmp_path / "out.tif", "outs": tmp_path / "outs",
             "scenes": scene_folder(tmp_path) if "{scenes}" in args else ""}
    result = cli(*[str(a).format(**names) for a in args])
    assert result.exit_code == 2, result.output
    assert one_line_error(result).endswith(f"{loop} exists (a symbolic link loop): pass "
                                           "--overwrite" + (" (or --resume)" if "batch" in args
                                                            else "") + " to replace it")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [loop.name] + (["scenes"] if "batch" in args else []))


@pytest.mark.parametrize("args", [
    ["train", SEN12, "--epochs", 1, "-o", "{loop}"],
    ["batch", "{scenes}", "-o", "{loop}", "--command", "mask"],
    ["batch", "{scenes}", "-o", "{outs}", "--command", "mask", "--stac", "{loop}"],
])
def test_a_folder_output_that_is_a_symlink_loop_is_refused_before_any_work(tmp_path, args, cli):
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    names = {"loop": loop, "outs": tmp_path / "outs", "scenes": scene_folder(tmp_path)}
    result = cli(*[str(a).format(**names) for a in args])
    assert result.exit_code == 2, result.output
    assert f"{loop} is a symbolic link loop" in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop", "scenes"]


@pytest.mark.parametrize("make, problem", [
    (lambda p: p.symlink_to(p.name), "is a symbolic link loop"),
    (lambda p: p.symlink_to("nowhere.tif"), "is a dangling symbolic link to nowhere.tif"),
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a regular file"),
])
@pytest.mark.parametrize("role", ["s2", "s1", "reference", "checkpoint"])
def test_inputs_that_lead_nowhere_or_never_end_are_named(tmp_path, make, problem, role, cli):
    bad = tmp_path / ("bad.pt" if role == "checkpoint" else "bad.tif")
    make(bad)
    s2, s1 = (bad if role == "s2" else SUMMER_S2), (bad if role == "s1" else SUMMER_S1)
    extra = {"reference": ["--reference", bad], "checkpoint": ["-c", bad]}.get(role, [])
    result = cli("remove", "--s1", s1, "--s2", s2, "-o", tmp_path / "out.tif", *extra)
    assert result.exit_code == 1, result.output
    assert f"{bad} {problem}" in one_line_error(result)
    assert not (tmp_path / "out.tif").exists()


def test_a_fifo_as_the_scene_of_mask_is_refused_at_once(tmp_path):
    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    proc = cloudfree_process("mask", fifo, "-o", tmp_path / "m.tif")
    _, stderr = proc.communicate(timeout=120)  # it used to wait for a writer forever
    assert proc.returncode == 1
    assert stderr.strip() == f"Error: Sentinel-2 input {fifo} is a FIFO (named pipe), not a " \
                             "regular file or folder"  # a folder of band files is an input too


def test_a_dangling_link_as_output_exists_before_the_run(tmp_path, cli):
    out = tmp_path / "m.tif"
    out.symlink_to("elsewhere.tif")
    result = cli("mask", SUMMER_S2, "-o", out)
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: output {out} exists (a dangling symbolic link "
                                      "to elsewhere.tif): pass --overwrite to replace it")
    assert os.readlink(out) == "elsewhere.tif"
    assert cli("mask", SUMMER_S2, "-o", out, "--overwrite").exit_code == 0
    assert not out.is_symlink() and rasterio.open(out).count == 1


# --- immutable outputs -------------------------------------------------------------------------

def immutable(path: Path) -> bool:
    """Make ``path`` immutable (root, chattr, a file system with attributes); False if not."""
    done = shutil.which("chattr") and subprocess.run(["chattr", "+i", path],
                                                     capture_output=True).returncode == 0
    return bool(done) and not os.access(path, os.W_OK) or _is_immutable(path)


def _is_immutable(path: Path) -> bool:
    out = subprocess.run(["lsattr", "-d", path], capture_output=True, text=True).stdout
    return "i" in out.split(" ", 1)[0]


@pytest.fixture
def immutable_output(tmp_path):
    """An existing output made immutable (skipped where that cannot be done); undone after."""
    out = tmp_path / "m.tif"
    shutil.copy(WINTER_S2, out)
    if not immutable(out):
        pytest.skip("chattr +i is not possible here (needs root and a file system with it)")
    yield out
    subprocess.run(["chattr", "-i", out], check=True)


def test_replacing_an_immutable_output_names_it_and_the_reason(immutable_output, cli):
    before = immutable_output.read_bytes()
    result = cli("mask", SUMMER_S2, "-o", immutable_output, "--overwrite")
    assert result.exit_code == 1
    assert one_line_error(result) == (
        f"Error: cannot write {immutable_output}: operation not permitted (is the file "
        "immutable or append-only? lsattr shows it); wrote nothing")
    assert immutable_output.read_bytes() == before
    assert [p.name for p in immutable_output.parent.iterdir()] == ["m.tif"]


def test_with_overwrite_a_refused_output_puts_back_those_already_replaced(immutable_output,
                                                                            cli):
    score = immutable_output.with_name("score.tif")
    score.write_bytes(b"old score")
    result = cli("mask", SUMMER_S2, "-o", score, "--score", immutable_output, "--overwrite")
    assert result.exit_code == 1 and "wrote none of the outputs" in one_line_error(result)
    assert score.read_bytes() == b"old score"
    assert sorted(p.name for p in score.parent.iterdir()) == ["m.tif", "score.tif"]


# --- batch -------------------------------------------------------------------------------------

def test_batch_keeps_an_existing_report_unless_overwrite(tmp_path, cli):
    scenes, report = scene_folder(tmp_path), tmp_path / "run.json"
    report.write_text("earlier\n")
    result = cli("batch", scenes, "-o", tmp_path / "outs", "--command", "mask",
                 "--report", report)
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: report {report} exists: pass --overwrite (or "
                                      "--resume) to replace it")
    assert report.read_text() == "earlier\n" and not (tmp_path / "outs").exists()
    result = cli("batch", scenes, "-o", tmp_path / "outs", "--command", "mask",
                 "--report", report, "--overwrite")
    assert result.exit_code == 0, result.output
    assert '"ok": 1' in report.read_text()


def test_an_output_folder_inside_the_scenes_is_no_scene_on_the_next_run(tmp_path, cli):
    scenes = scene_folder(tmp_path)
    assert cli("batch", scenes, "-o", scenes / "outs", "--command", "mask").exit_code == 0
    result = cli("batch", scenes, "-o", scenes / "outs2", "--command", "mask",
                 "--report", tmp_path / "run.csv")
    assert result.exit_code == 0, result.output
    assert "outs: ignored: holds only cloudfree outputs (an earlier run's output folder)" \
        in result.stderr
    assert (scenes / "outs2" / "a_mask.tif").exists()


def test_an_output_folder_beside_paired_files_keeps_them_paired(tmp_path, cli):
    scenes = tmp_path / "pairs"
    scenes.mkdir()
    for src in (SUMMER_S2, SUMMER_S1):
        shutil.copy(src, scenes / src.name)
    assert cli("batch", scenes, "-o", scenes / "outs", "--command", "mask").exit_code == 0
    result = cli("batch", scenes, "-o", scenes / "outs2", "--command", "mask")
    assert result.exit_code == 0, result.output
    assert len(list((scenes / "outs2").glob("*_mask.tif"))) == 1


def test_batch_names_the_overwrite_flag_in_its_error(tmp_path, cli):
    scenes = scene_folder(tmp_path)
    assert cli("batch", scenes, "-o", tmp_path / "outs", "--command", "mask").exit_code == 0
    result = cli("batch", scenes, "-o", tmp_path / "outs", "--command", "mask")
    assert result.exit_code == 2
    assert "pass --resume to skip their scenes or --overwrite to replace them" in result.stderr
    assert "overwrite=True" not in result.stderr and "resume=True" not in result.stderr


def test_publish_refused_midway_leaves_every_output_as_it_was(tmp_path, monkeypatch):
    """A set of outputs is put in place together: a refusal of the second takes back the first
    (the shared mechanism under every command's outputs)."""
    first, second = tmp_path / "a.tif", tmp_path / "b.tif"
    first.write_text("old a")
    rename = os.rename

    def refuse_b(src, dst):
        if Path(dst) == second:
            raise PermissionError(1, "Operation not permitted", str(dst))
        rename(src, dst)

    monkeypatch.setattr(publish.os, "rename", refuse_b)
    refused = f"cannot write {second}: operation not permitted"
    with pytest.raises(CloudfreeError, match=refused), output_set(overwrite=True) as together:
        for path in (first, second):
            tmp = path.with_name(f".{path.stem}.x.partial.tif")
            tmp.write_text("new")
            together.append((tmp, path))
    assert first.read_text() == "old a" and not second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


# --- all outputs of a command, or none ----------------------------------------------------------

def test_coregister_report_that_appears_meanwhile_keeps_the_raster_out_too(tmp_path, monkeypatch,
                                                                            cli):
    out, report = tmp_path / "c.tif", tmp_path / "r.json"
    verify = atomic.verify_raster

    def verify_then_another_run_writes_the_report(path, profile):
        verify(path, profile)
        report.write_text("theirs\n")

    monkeypatch.setattr(atomic, "verify_raster", verify_then_another_run_writes_the_report)
    result = cli(*COREGISTER, "-o", out, "--report", report, "--no-cog", "-q")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert line.startswith(f"Error: output {report} ") and line.endswith("pass --overwrite to "
                                                                         "replace it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert report.read_text() == "theirs\n"


def test_evaluate_report_and_csv_appear_together_or_not_at_all(tmp_path, monkeypatch, cli):
    from cloudfree.training import evaluate

    report, table = tmp_path / "e.json", tmp_path / "e.csv"
    write_csv = evaluate.write_csv

    def another_run_writes_the_csv_first(rows, path, overwrite, together=None):
        write_csv(rows, path, overwrite, together)
        table.write_text("theirs\n")

    monkeypatch.setattr(evaluate, "write_csv", another_run_writes_the_csv_first)
    result = cli("evaluate", SEN12, "--model", "median-fill", "--report", report, "--csv", table)
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: output {table} appeared while this run was "
                                      "writing it (another run?): kept it, and wrote none of the "
                                      "outputs; pass --overwrite to replace it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


# --- export-onnx: memory bounded, no partial --------------------------------------------------

@pytest.mark.slow
def test_export_of_the_largest_tile_traces_small(tmp_path):
    """The default model runs on any size: it is traced small and pinned to the tile, so 8192 px
    (150 GiB traced at full size) exports under a 4 GiB address space."""
    out = tmp_path / "big.onnx"
    proc = cloudfree_process("export-onnx", "--model", "cloudfree-fillnet", "-o", out,
                             "--tile", 8192, limits={resource.RLIMIT_AS: 4 * 2**30})
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    import onnx

    model = onnx.load(str(out))
    shapes = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.input, *model.graph.output)]
    assert shapes == [["batch", 13, 8192, 8192], ["batch", 2, 8192, 8192],
                      ["batch", 1, 8192, 8192], ["batch", 13, 8192, 8192]]
    assert [p.name for p in tmp_path.iterdir()] == ["big.onnx"]


def test_export_whose_trace_cannot_fit_is_refused_before_any_work(tmp_path, monkeypatch):
    from cloudfree.core import memory
    from cloudfree.inference.checkpoint import load_checkpoint, save_checkpoint
    from cloudfree.inference.onnx_export import export_onnx
    from cloudfree.networks import build

    torch.manual_seed(0)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "d.pt", build("dsen2cr", "small"),
                                             tile=64))
    monkeypatch.setattr(memory, "total_memory", lambda: 2**30)
    with pytest.raises(UsageError, match=r"tile=4096 needs about \d+ GiB to export .*this "
                                         r"machine has 1 GiB: give tile=SIZE of at most (\d+)"
                       ) as refused:
        export_onnx(loaded, tmp_path / "d.onnx", 4096, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pt"]
    largest = int(str(refused.value).rsplit(" ", 1)[-1])
    assert 64 <= largest < 4096
    export_onnx(loaded, tmp_path / "d.onnx", largest, overwrite=False)  # the largest one fits
    assert (tmp_path / "d.onnx").stat().st_size > 0


def test_export_onto_an_existing_link_keeps_it_unless_overwrite(tmp_path, cli):
    for target in ("x.onnx", "elsewhere.onnx"):  # a loop, a dangling link
        out = tmp_path / "x.onnx"
        out.unlink(missing_ok=True)
        out.symlink_to(target)
        result = cli("export-onnx", "--model", "cloudfree-fillnet", "-o", out)
        assert result.exit_code == 2
        assert one_line_error(result).startswith(f"Error: output {out} exists (a ")
        assert os.readlink(out) == target


# --- train -------------------------------------------------------------------------------------

def test_train_an_arch_without_weights_is_refused_and_leaves_no_folder(tmp_path, cli):
    result = cli("train", SEN12, "--arch", "fill", "--epochs", 1, "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert one_line_error(result) == ("Error: fill has no weights to train: it is a fixed "
                                      "method, run as it is; choose a network (--arch NAME)")
    assert list(tmp_path.iterdir()) == []


def test_train_onto_a_file_says_it_needs_a_folder(tmp_path, cli):
    (tmp_path / "run").write_text("not a folder")
    result = cli("train", SEN12, "--epochs", 1, "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: output {tmp_path / 'run'} is a file; train "
                                      "writes into a folder: give a folder path")
    result = cli("train", SEN12, "--epochs", 1, "-o", tmp_path / "run" / "deeper")
    assert result.exit_code == 2
    assert one_line_error(result) == (f"Error: output {tmp_path / 'run' / 'deeper'} lies inside "
                                      f"{tmp_path / 'run'}, which is a file, not a folder; train "
                                      "writes into a folder: give a folder path")


@pytest.mark.parametrize("fault", ["truncated", "loss"])
def test_a_failed_train_leaves_no_empty_run_folder(tmp_path, fault, cli):
    data = tmp_path / "data"
    data.mkdir()
    for src in SEN12.glob("ROIs2017_winter_112_p797_*.tif"):
        shutil.copy(src, data / src.name)
    if fault == "truncated":
        cloudy = data / "ROIs2017_winter_112_p797_s2_cloudy.tif"
        cloudy.write_bytes(cloudy.read_bytes()[: cloudy.stat().st_size // 2])
    loss = ["--loss", "ibhfn"] if fault == "loss" else []
    result = cli("train", data, "--epochs", 1, "--crop", 64, "-o", tmp_path / "runs" / "a",
                 *loss)
    assert result.exit_code in (1, 2)
    one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # runs/ too was made here


@pytest.mark.slow
def test_sigterm_mid_train_names_each_kept_file_once(tmp_path):
    run = tmp_path / "run"
    proc = cloudfree_process("train", SEN12, "--epochs", 100000, "--crop", 32, "-o", run, "-q")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        log = run / "log.csv"
        if log.exists() and len(log.read_text().splitlines()) >= 4:  # three epochs saved
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (f"Interrupted (SIGTERM); {run / 'last.pt'}, "
                                               f"{run / 'train_state.pt'} complete and kept.")


def test_sigterm_while_gdal_waits_on_a_fifo_is_143_and_one_line(tmp_path):
    """The scene is a file, but GDAL also reads its sidecar, here a FIFO that never ends: the
    stop that breaks the read off is a stop (143), not a read error."""
    scene = tmp_path / "scene.tif"
    shutil.copy(SUMMER_S2, scene)
    sidecar = tmp_path / "scene.tif.aux.xml"
    os.mkfifo(sidecar)
    proc = cloudfree_process("mask", scene, "-o", tmp_path / "m.tif", "-q")
    writer = None
    while writer is None and proc.poll() is None:  # until the run opens the FIFO to read
        try:
            writer = os.open(sidecar, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    if writer is not None:
        os.close(writer)
    assert proc.returncode == 143, stderr
    assert stderr.strip() == "Interrupted (SIGTERM); no output written."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "scene.tif.aux.xml"]


# --- out of memory -----------------------------------------------------------------------------

@pytest.mark.parametrize("limit_gib", [0.3, 0.6, 1.1])
def test_remove_under_an_address_space_limit_is_one_line_out_of_memory(tmp_path, limit_gib):
    """Under ``ulimit -v`` the failing allocation comes in native code (the loader, GDAL,
    onnxruntime: a traceback, or an abort, 134); a run is refused before its work when the limit
    leaves too little once the model is loaded, and any other failure near the limit is told as
    what it is."""
    out = tmp_path / "r.tif"
    proc = cloudfree_process("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", out, "-q",
                             limits={resource.RLIMIT_AS: int(limit_gib * 2**30)})
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("Error: out of memory")
    assert "ulimit -v" in stderr
    assert list(tmp_path.iterdir()) == []


def test_native_allocation_failures_are_out_of_memory():
    from cloudfree.core.memory import out_of_memory

    with pytest.raises(RuntimeError) as torch_failure:
        torch.empty(2**45)  # 128 TiB: torch's allocator says so in its own RuntimeError
    assert out_of_memory(torch_failure.value)
    assert not out_of_memory(RuntimeError("Chunk and warp failed"))  # no limit in this process


def test_a_stop_that_native_code_turns_into_its_own_error_is_still_a_stop(tmp_path,
                                                                           monkeypatch, cli):
    """A SIGTERM while a library initialises (torch, onnxruntime) comes back as that library's
    ImportError; after a stop request any error is told as the stop (143, one line)."""
    from cloudfree.core import stop as signals

    module = importlib.import_module("cloudfree.pipeline.remove")

    def stopped_while_importing(*args, **kwargs):
        signals._note(signal.SIGTERM, None)  # what the handler records, as the import fails
        raise ImportError("initialization failed")

    monkeypatch.setattr(signals, "_requested", None)  # restored after the test
    monkeypatch.setattr(module, "remove_scene", stopped_while_importing)
    result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", tmp_path / "r.tif")
    assert result.exit_code == 143
    assert one_line_error(result) == "Interrupted (SIGTERM); no output written."
    assert list(tmp_path.iterdir()) == []
