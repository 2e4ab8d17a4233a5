"""The command's start-up leaves the modules it imports without using (``launch.DEFERRED``)
unloaded, and they work as ever once used."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from helpers import ROOT

#: ``cloudfree remove --help`` through the command's entry point; prints, once the command is
#: done (the entry point ends the process after the exit handlers registered from its start),
#: which of the deferred modules' insides were loaded.
_HELP = """
import sys
sys.argv = ["cloudfree", "remove", "--help"]
from cloudfree.cli.launch import main
try:
    main()
finally:
    print("loaded:", *(m for m in ("botocore", "numpy.f2py.crackfortran",
                                   "scipy.spatial._ckdtree", "pyproj._geod") if m in sys.modules))
"""

#: What ``cloudfree remove`` imports before its work, deferring as the command's launcher does
#: (``--help`` loads no pipeline); prints which of the deferred modules' insides were loaded.
_REMOVE = """
import sys
from cloudfree.cli.launch import DEFERRED, defer
for name in DEFERRED:
    defer(name)
import cloudfree.cli.commands, cloudfree.pipeline.remove
print("loaded:", *(m for m in ("botocore", "numpy.f2py.crackfortran", "scipy.spatial._ckdtree",
                               "pyproj._geod") if m in sys.modules))
"""

#: The deferred modules used after the start-up, as a library would: each loads then.
_USE = """
import sys
from cloudfree.cli.launch import DEFERRED, defer
for name in DEFERRED:
    defer(name)
import rasterio.session, numpy
assert "numpy.f2py.crackfortran" not in sys.modules
assert callable(numpy.f2py.run_main) and "numpy.f2py.crackfortran" in sys.modules
if rasterio.session.boto3 is not None:  # installed: rasterio's AWS sessions take it
    assert "botocore" not in sys.modules
    import boto3.session
    assert rasterio.session.boto3.Session is boto3.session.Session
    assert "botocore" in sys.modules and sys.modules["boto3"] is boto3
import numpy as np
from cloudfree.coregister.s1_to_s2 import Grid, _metres
from cloudfree.dates.similar_pixels import spatial
from rasterio.crs import CRS
from rasterio.transform import from_origin
assert "scipy.spatial._ckdtree" not in sys.modules and "pyproj._geod" not in sys.modules
assert spatial.cKDTree(np.eye(3)).query([1, 0, 0])[1] == 0  # the similar pixels' search
# a shift on a longitude/latitude grid in metres, geodesic: 0.001 degree of longitude at 45 N
grid = Grid(CRS.from_epsg(4326), from_origin(10, 45.5, 0.001, 0.001), 1000, 1000)
east = _metres(grid, 1, 0)["east"]
assert 78 < east < 80 and "pyproj._geod" in sys.modules, east
print("ok")
"""


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                      "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_help_loads_no_deferred_module():
    out = run(_HELP)
    assert "Usage: cloudfree remove" in out
    assert out.strip().splitlines()[-1] == "loaded:"


def test_remove_imports_no_deferred_module():
    assert run(_REMOVE).strip().splitlines()[-1] == "loaded:"


def test_the_deferred_modules_load_when_used():
    assert run(_USE).strip() == "ok"
    if importlib.util.find_spec("boto3") is None:  # nothing deferred, nothing broken
        assert "botocore" not in run(_HELP)
