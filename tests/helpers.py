"""Plain helpers the tests import: paths to the real sample data in ../shared/data, and
``cloudfree`` run in a child process. Fixtures live in ``conftest.py``."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SEN12 = DATA / "sen12mscr"
FLOODS = DATA / "sen1floods11"

SUMMER_S2 = SEN12 / "ROIs1868_summer_19_p30_s2_cloudy.tif"
SUMMER_S1 = SEN12 / "ROIs1868_summer_19_p30_s1.tif"
WINTER_S2 = SEN12 / "ROIs2017_winter_112_p797_s2_cloudy.tif"
WINTER_CLEAR = SEN12 / "ROIs2017_winter_112_p797_s2_cloudfree.tif"
WINTER_S1 = SEN12 / "ROIs2017_winter_112_p797_s1.tif"
FLOODS_S2 = FLOODS / "Spain_7370579_S2Hand.tif"
FLOODS_S1 = FLOODS / "Spain_7370579_S1Hand.tif"


def cloudfree_process(*args, limits: dict[int, int] | None = None, **popen) -> subprocess.Popen:
    """``python -m cloudfree ARGS`` in a child process, with resource ``limits`` (RLIMIT_* to
    bytes) set in it."""
    def limit() -> None:
        for which, value in limits.items():
            resource.setrlimit(which, (value, value))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cloudfree", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit if limits else None, **popen)
