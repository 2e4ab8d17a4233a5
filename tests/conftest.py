"""Shared test fixtures: the CLI runner, the ``cloudfree`` log. Paths to the sample data and
plain helpers are in ``helpers.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner, Result
from helpers import NATIVE_SIZE, SUMMER_S2, WINTER_CLEAR, in_scene_air, land_vapour
from s2_builders import coarsen_like_l1c, read_stack

from cloudfree.cli.commands import main
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLOUD, MaskParams, classify

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


@pytest.fixture(scope="session")
def pasted_cloud(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The real summer cumulus (the summer pixels its single-date mask calls cloud, B09 in the
    winter's air: ``in_scene_air``) pasted over the real clear winter SEN12MS-CR patch, built
    once for the session and written as ``target_20171201.tif`` with the clear patch's
    profile. Keys: ``target`` (that file), ``image`` (its DN), ``cloud`` (the pasted pixels),
    ``summer`` (the summer DN), ``truth`` (the clear patch's DN) and ``profile``; the arrays are
    read-only, copy them to change them."""
    folder = tmp_path_factory.mktemp("pasted")
    with open_sentinel2(SUMMER_S2) as s2:
        cloud = classify(s2.read()[0], None, MaskParams())[0] == CLOUD
    with rasterio.open(SUMMER_S2) as ds:
        summer = ds.read()
    with rasterio.open(WINTER_CLEAR) as ds:
        truth, profile = ds.read(), ds.profile
    # the cloud's B09 in the winter's air, as a cloud there shows at 945 nm
    air = land_vapour(truth, np.ones_like(cloud), 1000) / land_vapour(summer, ~cloud, 1000)
    image = np.where(cloud, np.round(in_scene_air(summer, air)).astype(summer.dtype), truth)
    target = folder / "target_20171201.tif"
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(image)
    for array in (cloud, summer, truth, image):
        array.setflags(write=False)
    return {"target": target, "image": image, "cloud": cloud, "summer": summer, "truth": truth,
            "profile": profile}


@pytest.fixture(scope="session")
def native_stack() -> tuple[np.ndarray, dict]:
    """The summer scene's top-left ``NATIVE_SIZE`` px as a 13-band stack with each band at its
    native resolution (the 20 and 60 m bands coarsened as L1C stores them), and its grid."""
    data, profile = read_stack(SUMMER_S2, NATIVE_SIZE)
    return coarsen_like_l1c(data), profile
