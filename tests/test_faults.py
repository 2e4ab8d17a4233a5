"""Fault injection: failed writes, stop signals, killed runs and hostile inputs, on real data.

A failed write must never look like success, and every stop must leave nothing behind: each test
checks the exit code, the one-line message and the files left in the output folder.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from helpers import (
    ROOT,
    SUMMER_S1,
    SUMMER_S2,
    cloudfree_process,
    leftovers,
    mosaic,
    wait_for_partial,
)

from cloudfree.core.errors import UsageError
from cloudfree.core.stop import ORPHAN_GRACE_S, note_stop_signals, stop_requested, stops_held
from cloudfree.coregister.s1_to_s2 import coregister_file
from cloudfree.output import publish
from cloudfree.output.atomic import atomic_output, output_set, partial_path, verify_raster

MODEL = ROOT / "cloudfree" / "models" / "cloudfree-fillnet.pt"


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# --- 1. a failed write fails the command -------------------------------------------------------

@pytest.mark.parametrize("command, limit_kb", [
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2], 600),
    (["mask", SUMMER_S2], 3),
    (["coregister", "--s1", SUMMER_S1, "--s2", SUMMER_S2], 390),
])
def test_write_beyond_the_file_size_limit_fails_and_leaves_nothing(tmp_path, command, limit_kb):
    out = tmp_path / "out.tif"
    proc = cloudfree_process(*command, "-o", out, "--quiet",
                             limits={resource.RLIMIT_FSIZE: limit_kb * 1024})
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert last_line(stderr) == (f"Error: cannot write {out}: File too large; nothing was "
                                 "written there")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_second_output_keeps_the_first_from_appearing(tmp_path):
    out, mask = tmp_path / "r.tif", tmp_path / "m.tif"  # the small mask fits, the image not
    proc = cloudfree_process("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "--s1-aligned",
                             "-o", out, "--mask-out", mask, "--quiet",
                             limits={resource.RLIMIT_FSIZE: 600 * 1024})
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert last_line(stderr) == (f"Error: cannot write {out}: File too large; nothing was "
                                 "written there")
    assert list(tmp_path.iterdir()) == []


def test_verify_refuses_a_truncated_geotiff(tmp_path):
    with rasterio.open(SUMMER_S2) as ds:
        data, crs, transform = ds.read(), ds.crs, ds.transform
    path = tmp_path / "s2.tif"  # a COG: its directory comes first, so a cut file still opens
    with rasterio.open(path, "w", driver="COG", width=256, height=256, count=13, dtype="uint16",
                       crs=crs, transform=transform, compress="deflate") as out:
        out.write(data)
    profile = {"width": 256, "height": 256, "count": 13}
    verify_raster(path, profile)  # the whole file passes
    with pytest.raises(Exception, match="13 band.* instead of 256x256 px, 12"):
        verify_raster(path, {**profile, "count": 12})
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(Exception, match=r"does not read back \(block .* is cut off\)"):
        verify_raster(path, profile)


# --- 2. stop signals clean up; stale partials of killed runs are removed ------------------------

@pytest.fixture
def slow_scene(tmp_path):
    """A 768 x 768 mosaic of the real summer S2 and S1, and an empty output folder."""
    scene = tmp_path / "scene"
    scene.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    return mosaic(SUMMER_S2, scene / "s2.tif", 3), mosaic(SUMMER_S1, scene / "s1.tif", 3), out


def test_sigterm_mid_remove_exits_143_and_leaves_nothing(slow_scene):
    s2, s1, out = slow_scene
    proc = cloudfree_process("remove", "--s2", s2, "--s1", s1, "--s1-aligned", "-o",
                             out / "r.tif", "--batch-size", "1", "--quiet")
    wait_for_partial(out, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert last_line(stderr) == "Interrupted (SIGTERM); no output written."
    assert list(out.iterdir()) == []


@pytest.fixture(scope="module")
def big_s2(tmp_path_factory):
    """A 2048 x 2048 mosaic of the real summer scene: seconds to mask by 256 px windows."""
    return mosaic(SUMMER_S2, tmp_path_factory.mktemp("big") / "s2.tif", 8)


def test_a_stop_as_the_partial_output_appears_removes_it(tmp_path, monkeypatch):
    """The tests stop a run the moment its partial output appears: a signal handled right after
    the file was made (simulated) left it behind."""
    made = Path.touch

    def touch_then_stop(self, *args, **kwargs) -> None:
        made(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "touch", touch_then_stop)
    with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "o.tif", False):
        pass
    assert list(tmp_path.iterdir()) == []


def test_sigint_mid_mask_exits_130_and_leaves_nothing(tmp_path, big_s2):
    proc = cloudfree_process("mask", big_s2, "-o", tmp_path / "m.tif", "--block", "256",
                             "--quiet")
    wait_for_partial(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert last_line(stderr) == "Interrupted (SIGINT); no output written."
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("after", ["cloudfree.output.atomic.publish",
                                   "cloudfree.cli.commands.note_stops_after_work"])
def test_a_stop_once_the_outputs_are_in_place_says_they_are_kept_and_is_not_0(tmp_path, after):
    """A SIGTERM just after the outputs were put in place (still in the command, or while the
    interpreter shuts down) keeps them, says so, and exits 143: not 0, not 'no output'."""
    module, name = after.rsplit(".", 1)
    out, score = tmp_path / "m.tif", tmp_path / "s.tif"
    code = (f"import os, signal, {module} as m\n"
            f"real = m.{name}\n"
            f"def then_stop(*args, **kwargs):\n"
            f"    result = real(*args, **kwargs)\n"
            f"    os.kill(os.getpid(), signal.SIGTERM)\n"
            f"    return result\n"
            f"m.{name} = then_stop\n"
            f"from cloudfree.cli.commands import main\n"
            f"main(['mask', {str(SUMMER_S2)!r}, '-o', {str(out)!r}, '--score', {str(score)!r},"
            f" '--quiet'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 143, proc.stderr
    assert last_line(proc.stderr) == f"Interrupted (SIGTERM); {score}, {out} complete and kept."
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "s.tif"]
    with rasterio.open(out) as ds:
        assert ds.read(1).shape == (256, 256)


def test_a_stop_as_the_command_exits_says_the_outputs_are_kept(tmp_path):
    """A SIGTERM among the exit handlers, after the one that says a stop (while the interpreter
    shuts down, a fraction of a second after the result line), is said as one a moment earlier:
    before, it killed the process with no word. Simulated: an exit handler registered as the
    outputs are put in place (so run after the command's own) sends it."""
    out = tmp_path / "m.tif"
    program = ("import atexit, os, signal, sys\n"
               "import cloudfree.output.atomic as m\n"
               "real = m.publish\n"
               "def then_stop_at_exit(*args, **kwargs):\n"
               "    atexit.register(os.kill, os.getpid(), signal.SIGTERM)\n"
               "    return real(*args, **kwargs)\n"
               "m.publish = then_stop_at_exit\n"
               "from cloudfree.cli.launch import main\n"
               "main()\n")
    proc = subprocess.run([sys.executable, "-c", program, "mask", SUMMER_S2, "-o", out,
                           "--quiet"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr == f"Interrupted (SIGTERM); {out} complete and kept.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]


def test_a_program_that_ran_the_cli_in_process_still_gets_its_ctrl_c(tmp_path):
    """After the command, a stop while the program goes on raises there (and the process does
    not exit 130 at its end for it)."""
    code = ("import os, signal, time\n"
            "from click.testing import CliRunner\n"
            "from cloudfree.cli.commands import main\n"
            f"r = CliRunner().invoke(main, ['mask', {str(SUMMER_S2)!r}, '-o',"
            f" {str(tmp_path / 'm.tif')!r}, '-q'])\n"
            "assert r.exit_code == 0, r.output\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(5)\n"
            "except KeyboardInterrupt:\n"
            "    print('raised')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stdout) == (0, "raised\n"), proc.stderr


def test_partial_of_a_killed_run_is_removed_by_the_next_one(tmp_path, big_s2, cli):
    out = tmp_path / "m.tif"
    proc = cloudfree_process("mask", big_s2, "-o", out, "--block", "256", "--quiet")
    wait_for_partial(tmp_path, proc)
    proc.kill()  # SIGKILL: no clean-up possible
    proc.communicate(timeout=60)
    stale = list(tmp_path.iterdir())  # the partial output, and its overviews made so far
    assert [p.suffix for p in stale].count(".tif") == 1, stale
    live = partial_path(out)  # of this test's own process: alive, so only reported
    live.write_bytes(b"being written")
    result = cli("mask", SUMMER_S2, "-o", out)
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale) and live.exists() and out.exists()
    for path in stale:
        assert f"removed {path}, left by an interrupted run (process {proc.pid})" \
            in result.stderr
    assert f"{live}: partial output of process {os.getpid()}" in result.stderr


def test_sighup_mid_mask_exits_129_and_leaves_nothing(tmp_path, big_s2):
    proc = cloudfree_process("mask", big_s2, "-o", tmp_path / "m.tif", "--block", "256",
                             "--quiet")
    wait_for_partial(tmp_path, proc)
    proc.send_signal(signal.SIGHUP)  # the terminal or SSH session closed
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 129, stderr
    assert last_line(stderr) == "Interrupted (SIGHUP); no output written."
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_scratch_files_of_a_run_killed_in_the_cog_step_are_removed_by_the_next(tmp_path, big_s2):
    args = ("mask", big_s2, "-o", tmp_path / "m.tif", "--score", tmp_path / "s.tif")
    proc = cloudfree_process(*args, "--quiet")
    deadline = time.monotonic() + 120
    while not any(".cog" in p.name for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the COG step did not start"
        time.sleep(0.002)
    proc.kill()  # SIGKILL in the COG step: its copy or GDAL's overviews are left
    proc.communicate(timeout=60)
    stale = sorted(p.name for p in tmp_path.iterdir())
    assert any(".partial.tif.cog" in name for name in stale), stale
    rerun = cloudfree_process(*args)
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "s.tif"]
    for name in stale:
        assert f"removed {tmp_path / name}, left by an interrupted run (process {proc.pid})" \
            in stderr


@pytest.mark.slow
def test_batch_jobs_2_interrupted_reports_what_finished(tmp_path):
    scenes = tmp_path / "scenes"
    for name, n in (("a_small", 1), ("b_large", 8)):
        (scenes / name).mkdir(parents=True)
        mosaic(SUMMER_S2, scenes / name / "s2.tif", n)
    out, report = tmp_path / "out", tmp_path / "run.json"
    proc = cloudfree_process("batch", scenes, "-o", out, "--command", "mask", "--jobs", "2",
                             "--report", report, "--quiet", start_new_session=True)
    deadline = time.monotonic() + 240
    while not ((out / "a_small_mask.tif").exists() and leftovers(out)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130
    assert last_line(stderr) == ("Interrupted (SIGINT); 1 scene(s) finished before the stop "
                                 f"(outputs in {out}), 1 stopped with no output left behind.")
    assert "Traceback" not in stderr and "leaked" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_small_mask.tif"]
    rows = {r["scene"]: r["status"] for r in json.loads(report.read_text())["scenes"]}
    assert rows == {"a_small": "ok", "b_large": "interrupted"}


def _stop_noted_at_start() -> int | None:
    note_stop_signals()
    return stop_requested()


def test_a_stop_while_a_batch_worker_starts_is_noted_not_a_traceback():
    """A Ctrl-C that reaches a worker still importing (a slow start) waits until the worker
    notes stops; before, it broke the import with a KeyboardInterrupt traceback."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        with stops_held():
            future = pool.submit(_stop_noted_at_start)  # spawns the worker
        for worker in multiprocessing.active_children():
            os.kill(worker.pid, signal.SIGINT)
        assert future.result(timeout=120) == signal.SIGINT


@pytest.mark.parametrize("stop, name, code", [
    ("raise KeyboardInterrupt", "SIGINT", 130),  # as Python's SIGINT handler does
    ("os.kill(os.getpid(), signal.SIGTERM)", "SIGTERM", 143),  # ended with no word
    ("os.kill(os.getpid(), signal.SIGHUP); raise ImportError('broken')", "SIGHUP", 129),
])
def test_a_stop_while_the_command_loads_is_one_line(tmp_path, stop, name, code):
    """A stop in the half second the CLI's imports take (simulated: importing
    cloudfree.cli.commands meets it; a native import may turn it into an error of its own) ends
    with one line, not the import's traceback or nothing."""
    program = ("import os, signal, sys\n"
               "class Stop:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'cloudfree.cli.commands':\n"
               f"            {stop}\n"
               "sys.meta_path.insert(0, Stop())\n"
               "from cloudfree.cli.launch import main\n"
               "main()\n")
    out = tmp_path / "mask.tif"
    proc = subprocess.run([sys.executable, "-c", program, "mask", SUMMER_S2, "-o", out],
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == code
    assert proc.stderr == f"Interrupted ({name}) while starting; nothing was done.\n"
    assert not out.exists()


# --- 3. two runs for one output: exactly one wins -------------------------------------------------

@pytest.mark.slow
def test_second_of_two_concurrent_removes_keeps_the_first_output(slow_scene, cli):
    s2, s1, out = slow_scene
    slow = cloudfree_process("remove", "--s2", s2, "--s1", s1, "--s1-aligned", "-o",
                             out / "r.tif", "--mask-out", out / "m.tif", "--batch-size", "1",
                             "--quiet")
    wait_for_partial(out, slow)  # both checked that r.tif is free; the slow one is writing
    fast = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", out / "r.tif", "-q")
    assert fast.exit_code == 0, fast.output
    first = (out / "r.tif").read_bytes()
    _, stderr = slow.communicate(timeout=300)
    assert slow.returncode == 2, stderr
    assert last_line(stderr) == (f"Error: output {out / 'r.tif'} appeared while this run was "
                                 "writing it (another run?): kept it, and wrote none of the "
                                 "outputs; pass --overwrite to replace it")
    assert (out / "r.tif").read_bytes() == first  # the 256 px output of the fast run
    assert sorted(p.name for p in out.iterdir()) == ["r.tif"]  # m.tif of the set did not appear


@pytest.mark.parametrize("way", ["link", "renameat2", "check then rename"])
def test_an_output_that_appears_meanwhile_is_kept_unless_overwrite(tmp_path, monkeypatch, way):
    if way != "link":  # a file system without hard links
        def no_link(src, dst):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(os, "link", no_link)
        assert publish._renameat2() is not None  # Linux with glibc 2.28+
    if way == "check then rename":  # nor renameat2
        monkeypatch.setattr(publish, "_renameat2", lambda: None)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    with pytest.raises(UsageError, match="b.json appeared while this run was writing it"), \
            output_set(overwrite=False) as together:
        for path in (first, second):
            with atomic_output(path, False, together=together) as tmp:
                tmp.write_text("ours\n")
        second.write_text("theirs\n")  # another run finished first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
    assert second.read_text() == "theirs\n"
    with output_set(overwrite=True) as together:
        with atomic_output(second, True, together=together) as tmp:
            tmp.write_text("ours\n")
        second.write_text("theirs again\n")  # replaced: --overwrite was given
    assert second.read_text() == "ours\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]
    with atomic_output(first, False) as tmp:  # a single output, when nothing is in the way
        tmp.write_text("ours\n")
    assert first.read_text() == "ours\n" and len(list(tmp_path.iterdir())) == 2


# --- 4. train does not overwrite a run; a bad state is one line ---------------------------------

def test_train_refuses_an_existing_run_and_a_bad_state(tmp_path, cli):
    shutil.copy(MODEL, tmp_path / "last.pt")
    state = tmp_path / "train_state.pt"
    torch.save({"epoch": 1}, state)
    result = cli("train", tmp_path, "--out", tmp_path)
    assert result.exit_code == 2
    assert last_line(result.stderr) == (f"Error: {tmp_path} already holds a training run "
                                        "(last.pt, train_state.pt): pass --resume to continue "
                                        "it or --overwrite to start over")
    result = cli("train", tmp_path, "--out", tmp_path, "--resume")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: training state {state} lacks epoch, step or optimizer: "
                             "not a train_state.pt written by cloudfree train\n")
    state.write_bytes(state.read_bytes()[:100])
    result = cli("train", tmp_path, "--out", tmp_path, "--resume")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: training state {state} is truncated or corrupt "
                             "(incomplete archive)\n")
    assert cli("train", tmp_path, "--out", tmp_path, "--resume", "--overwrite").exit_code == 2


def test_train_resume_refuses_another_arch_or_preset(tmp_path, cli):
    shutil.copy(MODEL, tmp_path / "last.pt")  # fillnet, paper preset
    torch.save({"epoch": 1}, tmp_path / "train_state.pt")
    for option, value, theirs in (("--arch", "glfcr", "fillnet"), ("--preset", "small", "paper")):
        result = cli("train", tmp_path, "--out", tmp_path, "--resume", option, value)
        assert result.exit_code == 2
        assert result.stderr == (f"Error: {tmp_path} holds a fillnet run (preset paper), which "
                                 f"{option} {value} cannot continue: resume it with {option} "
                                 f"{theirs}, or start the new run in another folder\n")
    # the run's own arch and preset, given or not, pass on to reading the training state
    for given in ([], ["--arch", "fillnet", "--preset", "paper"]):
        result = cli("train", tmp_path, "--out", tmp_path, "--resume", *given)
        assert result.exit_code == 1 and "lacks epoch, step or optimizer" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "train_state.pt"]


# --- 5. NaN is nodata in float input --------------------------------------------------------------

@pytest.fixture(scope="module")
def float_s2(tmp_path_factory):
    """The real summer scene as float32 DN with a 50 x 50 NaN hole and no declared nodata."""
    path = tmp_path_factory.mktemp("nan") / "s2_float.tif"
    mosaic(SUMMER_S2, path, 1, "float32")
    with rasterio.open(path, "r+") as ds:
        data = ds.read()
        data[:, 100:150, 100:150] = np.nan
        ds.write(data)
        assert ds.nodata is None
    return path


def test_nan_in_float_s2_is_nodata_and_does_not_spread(tmp_path, float_s2, cli):
    out, mask = tmp_path / "r.tif", tmp_path / "m.tif"
    result = cli("remove", "--s2", float_s2, "--s1", SUMMER_S1, "-o", out, "--mask-out", mask)
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as ds, rasterio.open(mask) as m:
        filled, classes = ds.read(), m.read(1)
        assert np.isnan(ds.nodata)
    assert np.isnan(filled).any(axis=0).sum() == 2500
    assert np.isnan(filled[:, 100:150, 100:150]).all()
    assert (classes == 255).sum() == 2500 and (classes[100:150, 100:150] == 255).all()


def test_all_nan_s2_is_refused(tmp_path, float_s2, cli):
    path = shutil.copy(float_s2, tmp_path / "nan.tif")
    with rasterio.open(path, "r+") as ds:
        ds.write(np.full((ds.count, ds.height, ds.width), np.nan, np.float32))
    result = cli("mask", path, "-o", tmp_path / "m.tif")
    assert result.exit_code == 1
    assert last_line(result.stderr) == f"Error: {path}: every pixel is nodata; nothing to mask"
    assert not (tmp_path / "m.tif").exists()


# --- 6. corrupt data inside a readable file names the file ---------------------------------------

def corrupt(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with one strip's compressed bytes overwritten (it still opens)."""
    shutil.copy(src, dst)
    with rasterio.open(dst) as ds:
        middle = f"0_{ds.height // ds.block_shapes[0][0] // 2}"
        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{middle}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{middle}", "TIFF", bidx=1))
    with open(dst, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)
    return dst


def test_corrupt_s2_and_s1_are_named(tmp_path, cli):
    s2 = corrupt(SUMMER_S2, tmp_path / "s2_bad.tif")
    s1 = corrupt(SUMMER_S1, tmp_path / "s1_bad.tif")
    result = cli("mask", s2, "-o", tmp_path / "m.tif")
    assert result.exit_code == 1
    assert last_line(result.stderr).startswith(f"Error: Sentinel-2 input {s2}: data unreadable")
    result = cli("coregister", "--s1", s1, "--s2", SUMMER_S2, "-o", tmp_path / "c.tif")
    assert result.exit_code == 1
    assert last_line(result.stderr).startswith(f"Error: Sentinel-1 input {s1}: data unreadable")
    assert leftovers(tmp_path) == [] and not (tmp_path / "c.tif").exists()


def test_batch_reports_the_corrupt_file_and_counts_scenes_only(tmp_path, cli):
    scenes = tmp_path / "scenes"
    (scenes / "bad").mkdir(parents=True)
    corrupt(SUMMER_S2, scenes / "bad" / "s2.tif")
    shutil.copy(SUMMER_S1, scenes / "bad" / "s1.tif")
    shutil.copy(SUMMER_S2, scenes / "loose_s2.tif")  # a file beside scene folders: ignored
    report = tmp_path / "run.json"
    result = cli("batch", scenes, "-o", tmp_path / "out", "--command", "mask", "--report", report,
                 "-v")
    assert result.exit_code == 1
    assert last_line(result.stderr) == "Error: 1 of 1 scene(s) failed: bad"
    assert f"cloudfree: {scenes / 'bad' / 's2.tif'}: no band names" in result.stderr
    rows = {r["scene"]: r for r in json.loads(report.read_text())["scenes"]}
    assert rows["loose_s2.tif"]["status"] == "ignored"
    assert f"Sentinel-2 input {scenes / 'bad' / 's2.tif'}: data unreadable" in rows["bad"]["error"]


# --- 7. two outputs on one path, invalid creation options, tiny ONNX tiles -----------------------

@pytest.mark.parametrize("args, message", [
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", "{x}", "--mask-out", "{x}"],
     "Error: the output and the mask output are the same file {x}: give each its own path"),
    (["mask", SUMMER_S2, "-o", "{x}", "--score", "{x}"],
     "Error: the mask output and the score output are the same file {x}: give each its own "
     "path"),
    (["mask", SUMMER_S2, "-o", "{x}", "--co", "COMPRESS=NOPE"],
     "Error: --co COMPRESS=NOPE: 'NOPE' is an unexpected value for COMPRESS creation option of "
     "type string-select; see https://gdal.org/drivers/raster/gtiff.html#creation-options"),
    (["mask", SUMMER_S2, "-o", "{x}", "--co", "FLAVOUR=SWEET"],
     "Error: --co FLAVOUR=SWEET: driver GTiff does not support creation option FLAVOUR; see "
     "https://gdal.org/drivers/raster/gtiff.html#creation-options"),
    (["export-onnx", "-c", MODEL, "-o", "{x}", "--tile", "8"],
     "Error: Invalid value for '--tile': 8 is not in the range 16<=x<=8192."),
    (["export-onnx", "--model", "cloudfree-fillnet", "-o", "{x}"],
     "Error: --output {x}: an ONNX model is written; give a .onnx path"),
    (["mask", SUMMER_S2, "-o", "{x}", "--threshold", "nan"],  # NaN passes every bound
     "Error: Invalid value for '--threshold': 'nan' is not a number."),
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", "{x}", "--ndsi-threshold", "NaN"],
     "Error: Invalid value for '--ndsi-threshold': 'NaN' is not a number."),
    (["coregister", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", "{x}", "--max-shift", "nan"],
     "Error: Invalid value for '--max-shift': 'nan' is not a number."),
    (["train", SUMMER_S2, "-o", "{x}", "--lr", "nan"],
     "Error: Invalid value for '--lr': 'nan' is not a number."),
    (["remove", "--s2", SUMMER_S2, "-o", "{x}", "--model", "median-fill", "--s1-aligned"],
     "Error: --s1-aligned needs --s1 PATH: there is no Sentinel-1 to take as aligned"),
    (["mask", "", "-o", "{x}"], "Error: Invalid value for 'SCENE': an empty path."),
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", "{x}", "--reference", " "],
     "Error: Invalid value for '--reference': an empty path."),
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", "{x}", "--device", "cuda:x"],
     "Error: --device cuda:x must be auto, cpu, cuda or cuda:N"),
    (["train", SUMMER_S2.parent, "-o", "{x}", "--device", "tpu"],
     "Error: --device tpu must be auto, cpu, cuda or cuda:N"),
])
def test_conflicting_or_invalid_output_options_are_refused(tmp_path, args, message, cli):
    x = tmp_path / "x.tif"
    result = cli(*[str(a).replace("{x}", str(x)) for a in args])
    assert result.exit_code == 2
    assert last_line(result.stderr) == message.replace("{x}", str(x))
    assert list(tmp_path.iterdir()) == []


# --- 8. clouds with no S1 under them are counted and tagged --------------------------------------

def test_fill_without_s1_is_counted_and_tagged(tmp_path, cli):
    s1 = mosaic(SUMMER_S1, tmp_path / "s1_half.tif", 1, "float32")
    with rasterio.open(s1, "r+") as ds:
        data = ds.read()
        data[:, :, :128] = np.nan  # the S1 covers the right half only
        ds.write(data)
        ds.nodata = float("nan")
    for name, radar in (("full", SUMMER_S1), ("half", s1)):
        result = cli("remove", "--s2", SUMMER_S2, "--s1", radar, "-o", tmp_path / f"{name}.tif",
                     "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        with rasterio.open(tmp_path / f"{name}.tif") as ds:
            tags = ds.tags()
        assert "UNITS" not in tags
        assert int(tags["FILLED_PIXELS"]) == summary["filled_pixels"] > 0
        without = int(tags["FILLED_WITHOUT_S1_PIXELS"])
        assert without == round(summary["filled_without_s1_fraction"] * summary["filled_pixels"])
        if name == "full":
            assert without == 0
        else:
            assert 0 < without < summary["filled_pixels"]
            assert "have no Sentinel-1 under them" in result.stderr


# --- 9. smaller ones ---------------------------------------------------------------------------

def test_one_pixel_scene_and_nan_hole_raise_no_numpy_warning(tmp_path, float_s2):
    path = tmp_path / "s2_1px.tif"
    with rasterio.open(SUMMER_S2) as ds:
        window = rasterio.windows.Window(100, 100, 1, 1)
        profile = {**ds.profile, "width": 1, "height": 1, "blockysize": 1,
                   "transform": ds.window_transform(window)}
        data = ds.read(window=window)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = coregister_file(SUMMER_S1, path, tmp_path / "c.tif", quiet=True)
        assert report["significance"] == 0.0 and report["applied"] is False
        report = coregister_file(SUMMER_S1, float_s2, tmp_path / "n.tif", quiet=True)
        assert report["windows"] == 1 and report["significance"] > 0


# --- 10. no process outlives the run --------------------------------------------------------------

def children(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(map(int, (task / "children").read_text().split()))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_worker_whose_parent_died_before_it_started_exits():
    """A worker told its parent's id, started after that parent died (so its parent is already
    another process), exits at once rather than watching the wrong parent forever."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the parent it was given, already gone
    code = ("import time; from cloudfree.core.stop import exit_with_parent; "
            f"exit_with_parent({gone.pid}); time.sleep(30)")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], timeout=25)
    assert done.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - started < 20


def test_batch_workers_exit_when_the_batch_is_killed(tmp_path):
    """SIGKILL of the batch process, which cannot stop its workers: they notice within
    seconds, stop their scene as SIGTERM would (no partial output left) and exit."""
    scenes = tmp_path / "scenes"
    for name in ("a", "b"):
        (scenes / name).mkdir(parents=True)
        mosaic(SUMMER_S2, scenes / name / "s2.tif", 8)
    out = tmp_path / "out"
    proc = cloudfree_process("batch", scenes, "-o", out, "--command", "mask", "--jobs", "2",
                             "--quiet", start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and leftovers(out)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = children(proc.pid)
    assert len(workers) >= 2  # two workers and multiprocessing's resource tracker
    proc.kill()
    proc.wait()  # not communicate: workers left alive would hold its pipes open
    # a worker's task unwinds at its next window, within the grace it is given (a loaded
    # machine can take more than a few seconds over a window)
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    proc.stdout.close()
    proc.stderr.close()
    assert left == []
    assert leftovers(out) == []


# --- 11. an address-space limit too low to load PyTorch is one line, not a native abort ---------

@pytest.mark.parametrize("command, limit_mb, what", [
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "--model", "cloudfree-fillnet"], 680,
     r"a network model \(PyTorch and the model\)"),  # std::bad_alloc, abort
    (["remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "--model", "cloudfree-fillnet"], 780,
     r"a network model \(PyTorch and the model\)"),  # "libgomp: Thread creation failed", exit 1
    (["train", SUMMER_S2.parent, "--epochs", "1", "--crop", "32"], 680, "PyTorch"),
    (["export-onnx", "--model", "cloudfree-fillnet"], 680, "PyTorch"),
])
def test_too_low_an_address_space_limit_for_pytorch_is_one_line(tmp_path, command, limit_mb,
                                                                 what):
    out = tmp_path / ("out.tif" if command[0] == "remove" else "out")
    proc = cloudfree_process(*command, "-o", out, "--quiet",
                             limits={resource.RLIMIT_AS: limit_mb * 2**20})
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert re.fullmatch(
        rf"Error: out of memory: the address-space limit \(ulimit -v\) of 0\.\d GiB leaves "
        rf"\d+ MiB, and loading {what} takes about \d+ MiB; raise the limit\n", stderr), stderr
    assert list(tmp_path.iterdir()) == []
