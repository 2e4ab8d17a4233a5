"""Plain helpers the tests import: paths to the real sample data in ../shared/data,
``cloudfree`` run in a child process, partial outputs, mosaics of the samples and training
layouts. Fixtures live in ``conftest.py``; Sentinel-2 input builders in ``s2_builders.py``."""

from __future__ import annotations

import csv
import inspect
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio

from cloudfree.io.rasters import within_scene
from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import CLOUD, THIN, MaskParams, classify

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
#: Side of the ``native_stack`` fixture's scene (px).
NATIVE_SIZE = 120


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


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def mosaic(src: Path, dst: Path, n: int, dtype: str | None = None) -> Path:
    """The real sample tiled n x n times (uncompressed, quick to write), on the sample's grid."""
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    data = np.tile(data, (1, n, n)).astype(dtype or data.dtype)
    profile.update(width=data.shape[2], height=data.shape[1], compress=None, tiled=False,
                   blockysize=16, dtype=data.dtype)
    profile.pop("predictor", None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def wait_for_partial(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not leftovers(folder):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no partial output appeared"
        time.sleep(0.05)


#: The winter triplet by kind.
WINTER = {"s1": WINTER_S1, "s2_cloudy": WINTER_S2, "s2": WINTER_CLEAR}


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def flat_layout(root: Path, copies: int) -> Path:
    """s1/, s2_cloudy/, s2_cloudfree/ with ``copies`` names for the winter triplet."""
    for kind, folder in (("s1", "s1"), ("s2_cloudy", "s2_cloudy"), ("s2", "s2_cloudfree")):
        (root / folder).mkdir(parents=True)
        for i in range(copies):
            (root / folder / f"winter{i}.tif").symlink_to(WINTER[kind])
    return root


def one_line_error(result) -> str:
    """The last line a CLI run (click's ``Result``) wrote on stderr: its one-line error, with
    no traceback."""
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = result.stderr.strip().splitlines()
    assert lines, result.output
    return lines[-1]


def documented_parameters(obj) -> set[str]:
    """Names listed as ``name : type`` under the numpydoc Parameters heading of ``obj``."""
    doc = inspect.getdoc(obj) or ""
    assert "Parameters\n----------" in doc, obj
    section = doc.split("Parameters\n----------", 1)[1].split("\n\n")[0]
    return {line.split(" : ")[0] for line in section.splitlines()
            if " : " in line and not line.startswith(" ")}


def mask_cloud(classes: np.ndarray) -> np.ndarray:
    """The cloud of a ``cloudfree mask`` output: its cloud (1) and thin cloud (4) classes."""
    return np.isin(classes, (CLOUD, THIN))


def classify_scene(refl: np.ndarray, valid: np.ndarray | None = None,
                   params: MaskParams = MaskParams(), bands: tuple[str, ...] = BANDS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The classes and score of a whole image [C, H, W] (``valid`` [H, W]: all where None) as
    ``mask`` and ``remove`` read a scene: with nothing but no data beyond its edge."""
    pad = params.context
    pads = ((pad, pad), (pad, pad))
    padded = np.pad(refl, ((0, 0), *pads), mode="symmetric")
    mirrored = np.pad(np.ones(refl.shape[1:], bool) if valid is None else valid, pads,
                      mode="symmetric")
    classes, score = classify(padded, mirrored, params, bands,
                              inside=within_scene(mirrored, pads))
    return classes[pad:-pad, pad:-pad], score[pad:-pad, pad:-pad]


def land_vapour(image: np.ndarray, land: np.ndarray, floor: float = 0.1) -> float:
    """B09 / B8A summed over the ``land`` pixels of ``image`` [13, H, W] (L1C order) whose B8A
    exceeds ``floor`` (reflectance; 1000 for DN): the air's water vapour over the land."""
    b8a = image[BANDS.index("B8A")].astype(np.float64)
    land = land & (b8a > floor)
    return float(image[BANDS.index("B09"), land].sum() / b8a[land].sum())


def in_scene_air(cloud: np.ndarray, scale: float) -> np.ndarray:
    """A cloud's bands [13, ...] with B09 times ``scale`` (float32): the land's water vapour
    (``land_vapour``) of the scene it is laid over against that of its own image, as a cloud in
    that air shows at 945 nm (``bright_land.vapour_land``)."""
    out = cloud.astype(np.float32)
    out[BANDS.index("B09")] *= scale
    return out
