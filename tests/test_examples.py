"""The scripts in examples/ run as a user would run them, on a copy of the bundled sample."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import ROOT, WINTER_S1, WINTER_S2, mask_cloud
from scipy import ndimage

from cloudfree.inference.bundled import DEFAULT_MODEL, bundled_models

EXAMPLES = ROOT / "examples"
needs_model = pytest.mark.skipif(DEFAULT_MODEL not in bundled_models(),
                                 reason=f"bundled model {DEFAULT_MODEL} not installed")


@pytest.fixture
def scenes(tmp_path) -> Path:
    """Two scene folders: the bundled sample and the SEN12MS-CR winter pair."""
    root = tmp_path / "scenes"
    shutil.copytree(EXAMPLES / "data", root / "sample", ignore=shutil.ignore_patterns("series"))
    (root / "winter").mkdir()
    shutil.copy(WINTER_S2, root / "winter" / "s2.tif")
    shutil.copy(WINTER_S1, root / "winter" / "s1.tif")
    return root


def run_example(command: str, *args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a script with the cloudfree of this interpreter first on PATH."""
    env = {**os.environ, "CLOUDFREE_COMMAND": command,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def run_twice(command: str, *args, cwd: Path = ROOT) -> list[subprocess.CompletedProcess]:
    """Run a script twice, as a user reruns it: every example must succeed both times."""
    runs = [run_example(command, *args, cwd=cwd) for _ in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr
    return runs


def stamps(folder: Path) -> dict[str, int]:
    """Modification times (ns) of the files in a folder, by name."""
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


SHELL = ["for_loop.sh", "xargs_parallel.sh",
         pytest.param("gnu_parallel.sh", marks=pytest.mark.skipif(
             shutil.which("parallel") is None, reason="GNU parallel not installed"))]


@pytest.mark.parametrize("script", SHELL)
def test_shell_scripts_mask_every_scene_and_rerun(script, scenes, tmp_path):
    out = tmp_path / "out"
    done = run_example("mask", EXAMPLES / script, scenes, out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.tif")) == ["sample_mask.tif", "winter_mask.tif"]
    assert mask_cloud(read(out / "sample_mask.tif")).mean() > 0.2  # the sample's cumulus
    before = stamps(out)
    again = run_example("mask", EXAMPLES / script, scenes, out)
    assert again.returncode == 0, again.stderr
    assert stamps(out) == before  # nothing redone
    if script != "gnu_parallel.sh":  # GNU parallel's job log already skips what succeeded
        assert sorted(again.stderr.splitlines()) == [
            f"{out}/{name}_mask.tif exists: skipped (delete it to redo {name})"
            for name in ("sample", "winter")]


def test_for_loop_goes_on_after_a_failed_scene(scenes, tmp_path):
    (scenes / "sample" / "s2.tif").write_text("truncated\n")
    out = tmp_path / "out"
    done = run_example("mask", EXAMPLES / "for_loop.sh", scenes, out)
    assert done.returncode == 1 and "failed:" in done.stderr
    assert [p.name for p in out.glob("*.tif")] == ["winter_mask.tif"]
    # mended, a rerun does the failed scene only
    shutil.copy(EXAMPLES / "data" / "s2.tif", scenes / "sample" / "s2.tif")
    winter = stamps(out)["winter_mask.tif"]
    done = run_example("mask", EXAMPLES / "for_loop.sh", scenes, out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.tif")) == ["sample_mask.tif", "winter_mask.tif"]
    assert stamps(out)["winter_mask.tif"] == winter


def test_defaults_read_the_bundled_sample_and_write_beside_the_caller(tmp_path):
    run_twice("mask", EXAMPLES / "for_loop.sh", cwd=tmp_path)
    assert (tmp_path / "cloudfree_out" / "data_mask.tif").is_file()


def test_python_api_mask(scenes, tmp_path):
    for done in run_twice("mask", sys.executable, EXAMPLES / "python_api.py", scenes / "sample",
                          tmp_path / "out"):
        assert "cloud" in done.stdout and (tmp_path / "out" / "s2_mask.tif").is_file()


@needs_model
def test_python_api_and_for_loop_remove(scenes, tmp_path):
    done = run_example("remove", sys.executable, EXAMPLES / "python_api.py", scenes / "sample",
                       tmp_path / "api")
    assert done.returncode == 0, done.stderr
    shutil.rmtree(scenes / "winter")
    run_twice("remove", EXAMPLES / "for_loop.sh", scenes, tmp_path / "loop")
    api, loop = read(tmp_path / "api" / "s2_cloudfree.tif"), read(tmp_path / "loop" / "sample.tif")
    assert api.shape == loop.shape == (13, 256, 256)


@pytest.mark.slow
def test_readme_reference_example_fills_the_cumulus_from_the_other_dates(tmp_path):
    # the README's --reference command on the bundled series, its outputs moved to tmp_path
    text = (ROOT / "README.md").read_text()
    (command,) = re.findall(r"\n    (cloudfree remove --s2 examples/data/series/.*?--overwrite)\n",
                            text, re.S)
    args = shlex.split(command.replace("\\\n", " "))
    outputs = {}
    for flag in ("-o", "--source-out", "--preview"):
        at = args.index(flag) + 1
        outputs[flag] = args[at] = str(tmp_path / args[at])
    done = run_example("remove", *args[:1], *args[1:])
    assert done.returncode == 0, done.stderr
    sources, image = read(Path(outputs["--source-out"]))[0], read(Path(outputs["-o"]))
    source_dates = sources[(sources > 0) & (sources < 254)]
    filled = (sources > 0) & (sources < 255)
    # the cumulus and its shadows: on these 13-band dates the dates judge them by default,
    # closely (0.34 cloud and 0.22 shadow; with --no-temporal-mask the single-date buffer and
    # haze ring make the cloud 0.35, its shadows 0.17)
    assert 0.45 < filled.mean() < 0.65
    assert len(source_dates) > 0.95 * filled.sum()  # nearly all of it from the other dates
    assert set(np.unique(source_dates)) <= {1, 2, 3, 4}
    cloudy = read(EXAMPLES / "data" / "series" / "s2_2018-07-05.tif")
    # clear pixels keep their values beyond the feather (2 px) at the fill's edge
    observed = ndimage.binary_erosion(sources == 0, iterations=3)
    assert (image[:, observed] == cloudy[:, observed]).all()
    # the filled pixels are no longer cloud-bright: blue as dark as the clear part around
    blue = image[1].astype(float)
    assert blue[filled].mean() < 1.2 * blue[observed].mean()
    assert f"{len(source_dates)} pixels from other dates" in done.stdout
    assert Path(outputs["--preview"]).stat().st_size > 0


def test_sample_cloud_cover_is_told_as_mask_and_remove_measure_it(tmp_path, cli):
    """Every page that gives the bundled sample's cloud cover gives what the commands print:
    the mask's share, and the share remove fills with its 5 px buffer."""
    sample = EXAMPLES / "data"
    mask = cli("mask", sample / "s2.tif", "-o", tmp_path / "m.tif", "-q")
    remove = cli("remove", "--s1", sample / "s1.tif", "--s2", sample / "s2.tif",
                 "-o", tmp_path / "r.tif", "-q")
    assert mask.exit_code == 0 and remove.exit_code == 0, mask.output + remove.output
    masked = re.search(r"cloud (\d+\.\d)%", mask.stdout).group(1)
    filled = re.search(r"filled (\d+\.\d)% cloud", remove.stdout).group(1)
    assert (masked, filled) == ("30.3", "42.4")
    for page in ("README.md", "docs/index.md", "docs/guides/inputs.md",
                 "examples/data/README.md"):
        text = " ".join((ROOT / page).read_text().split())
        assert f"{masked} %" in text and f"{filled} %" in text, page
        assert "44 %" not in text and "about a third" not in text, page
