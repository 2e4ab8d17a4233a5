"""Shared test fixtures: the CLI runner, and paths to the real sample data in ../shared/data."""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from cloudfree.cli.commands import main

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

# One thread: two threads on the 2 cores of CI fight each other and run slower.
torch.set_num_threads(1)



@pytest.fixture
def cloudfree_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """``caplog`` holding the ``cloudfree`` logger's records from INFO up, also after a CLI run
    in the same process stopped that logger passing them to the root logger."""
    logger = logging.getLogger("cloudfree")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="cloudfree"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def cli() -> Callable[..., Result]:
    """Run ``cloudfree ARGS...`` in-process (arguments may be paths or numbers)."""
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args])


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
