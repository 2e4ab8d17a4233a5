"""Shared test fixtures: the CLI runner, the ``cloudfree`` log. Paths to the sample data and
plain helpers are in ``helpers.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import torch
from click.testing import CliRunner, Result

from cloudfree.cli.commands import main

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
