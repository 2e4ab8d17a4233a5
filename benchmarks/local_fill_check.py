"""The local fill of this checkout against that of another git revision: largest difference in DN.

    python benchmarks/local_fill_check.py               # against main: samples, 1024^2 mosaic
    python benchmarks/local_fill_check.py --ref HEAD~3 --size 2048
    python benchmarks/local_fill_check.py --timing --size 2048   # CPU of both, the same chunks

On the real samples (the SEN12MS-CR cloudy images, their own clouds; the Sen1Floods11 chip with
a disk over its water and the land around), ``fill_image_locally`` of each revision; on the
mirrored mosaic of the bundled sample (as ``remove_speed.py`` builds it), the whole output of
``remove --model median-fill`` (the local fill with no network) with each revision's
``local_fill`` in the pipeline. The promise: at most 1 DN anywhere.

With ``--timing``, one ``remove --model median-fill`` of the mosaic instead, in which every call
of the local fill and of the haze step (``haze.dehaze``, in the restoration) runs both
revisions' functions on the same chunk, one after the other on the same thread: their CPU
seconds summed over the chunks (``time.thread_time``; PyTorch, where a revision uses it, and
OpenBLAS on that one thread), and their largest differences (the fill in DN, the haze step's
restored land in DN and its weight).
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: CPU on the caller

import numpy as np
import rasterio
from remove_pipeline import ROOT, make_scene

DATA = ROOT.parent / "shared" / "data"


def revision_module(ref: str, name: str = "local_fill") -> types.ModuleType:
    """``cloudfree/{name}.py`` as it is at git revision ``ref``, loaded as a module."""
    path = f"cloudfree/{name}.py"
    source = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"{name}_{ref}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{ref}:{path}", "exec"), module.__dict__)
    return module


def samples() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, reflectance, cloud, valid, S1 dB) of every real sample."""
    from cloudfree.io.sentinel2 import open_sentinel2
    from cloudfree.mask.classify import CLOUD, classify

    sen12 = DATA / "sen12mscr"
    floods = DATA / "sen1floods11"
    cases = [("summer_19 (own clouds)", sen12 / "ROIs1868_summer_19_p30_s2_cloudy.tif",
              sen12 / "ROIs1868_summer_19_p30_s1.tif"),
             ("winter_112 (own haze)", sen12 / "ROIs2017_winter_112_p797_s2_cloudy.tif",
              sen12 / "ROIs2017_winter_112_p797_s1.tif"),
             ("floods chip (disk)", floods / "Spain_7370579_S2Hand.tif",
              floods / "Spain_7370579_S1Hand.tif")]
    out = []
    for name, s2_path, s1_path in cases:
        with open_sentinel2(s2_path) as s2:
            refl, valid = s2.read()
        with rasterio.open(s1_path) as ds:
            s1 = ds.read().astype(np.float32)
        cloud = classify(refl, valid)[0] == CLOUD
        if "disk" in name:
            y, x = np.ogrid[: cloud.shape[0], : cloud.shape[1]]
            cloud = (y - 300) ** 2 + (x - 250) ** 2 <= 60**2
        out.append((name, refl, cloud, valid, s1))
    return out


def mosaic_output(s2: Path, s1: Path, out: Path, fill) -> np.ndarray:
    """The DN `remove --model median-fill` writes with ``fill`` as the local fill."""
    rs = importlib.import_module("cloudfree.pipeline.remove")
    real = rs.local_fill
    rs.local_fill = fill
    try:
        rs.remove_scene(s2, s1, out, model="median-fill", overwrite=True, quiet=True)
    finally:
        rs.local_fill = real
    with rasterio.open(out) as ds:
        return ds.read().astype(np.int32)


class Twin:
    """A function of two revisions called on the same arguments: the second's result returned,
    each one's CPU seconds summed and the largest difference of their results kept
    (``differences(args, old result, new result)``)."""

    def __init__(self, old, new, differences) -> None:
        self.old, self.new, self.differences = old, new, differences
        self.seconds, self.worst, self.calls = [0.0, 0.0], None, 0

    def __call__(self, *args):
        results = []
        for i, function in enumerate((self.old, self.new)):
            start = time.thread_time()
            results.append(function(*args))
            self.seconds[i] += time.thread_time() - start
        self.calls += 1
        if results[0] is not None:
            diff = self.differences(args, *results)
            self.worst = diff if self.worst is None else np.maximum(self.worst, diff)
        return results[1]


def timing(ref: str, size: int) -> None:
    """CPU seconds of both revisions' local fill and haze step on the chunks of one run."""
    import torch

    torch.set_num_threads(1)
    rs, restore = (importlib.import_module(f"cloudfree.{m}") for m in ("remove_scene", "restore"))
    from cloudfree.fill import local as local_fill
    from cloudfree.io.sentinel2 import BANDS
    from cloudfree.mask import haze

    old_fill, old_haze = revision_module(ref), revision_module(ref, "haze")
    fill = Twin(lambda *a: old_fill.local_fill(*a[:6]), lambda *a: local_fill.local_fill(*a[:6]),
                lambda _, a, b: np.array([np.abs(a[0] - b[0]).max() * 1e4,
                                          np.abs(a[1] - b[1]).max()]))

    def land(args, result):  # the restored land, given or (as the veil's opacity) unveiled
        (rows, cols), veil, _ = result
        bands = args[5] if len(args) > 5 else BANDS
        return veil if veil.ndim == 3 else haze.unveil(args[0][:, rows, cols], veil, bands)

    dehaze = Twin(old_haze.dehaze, haze.dehaze,
                  lambda args, a, b: np.array([np.abs(land(args, a) - land(args, b)).max() * 1e4,
                                               np.abs(a[2] - b[2]).max()]))
    real = rs.local_fill, restore.dehaze
    rs.local_fill, restore.dehaze = fill, dehaze
    try:
        with tempfile.TemporaryDirectory() as tmp:
            s2, s1 = make_scene(Path(tmp), size)
            rs.remove_scene(s2, s1, Path(tmp) / "out.tif", model="median-fill", quiet=True)
    finally:
        rs.local_fill, restore.dehaze = real
    print(f"mosaic {size}^2, remove --model median-fill, CPU seconds on the same chunks\n"
          f"| step | calls | {ref} | this checkout | ratio | largest difference |\n"
          "|---|---|---|---|---|---|")
    for name, twin, units in (("local fill", fill, "DN, support"),
                              ("haze step", dehaze, "DN, weight")):
        (a, b), worst = twin.seconds, twin.worst
        print(f"| {name} | {twin.calls} | {a:.2f} | {b:.2f} | {b / a:.2f} | "
              f"{worst[0]:.4f}, {worst[1]:.2g} ({units}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--size", type=int, default=1024, help="mosaic size (0: none)")
    parser.add_argument("--timing", action="store_true",
                        help="CPU seconds of both revisions' local fill and haze step instead")
    args = parser.parse_args()
    if args.timing:
        timing(args.ref, args.size or 2048)
        return
    from cloudfree.fill import local as new

    old = revision_module(args.ref)
    print("| input | filled pixels | largest difference (DN) | pixels > 1 DN |\n"
          "|---|---|---|---|")
    worst = 0.0
    for name, refl, cloud, valid, s1 in samples():
        a, region = old.fill_image_locally(refl, cloud, valid, s1)
        b, _ = new.fill_image_locally(refl, cloud, valid, s1)
        diff = np.abs(a - b) * 1e4  # reflectance to DN
        worst = max(worst, float(diff.max()))
        print(f"| {name} | {int(region.sum())} | {diff.max():.3f} | "
              f"{int((diff > 1).any(0).sum())} |")
    if args.size:
        with tempfile.TemporaryDirectory() as tmp:
            s2, s1 = make_scene(Path(tmp), args.size)
            a = mosaic_output(s2, s1, Path(tmp) / "old.tif", old.local_fill)
            b = mosaic_output(s2, s1, Path(tmp) / "new.tif", new.local_fill)
        diff = np.abs(a - b)
        worst = max(worst, float(diff.max()))
        print(f"| mosaic {args.size}^2, remove --model median-fill | (whole output) | "
              f"{diff.max()} | {int((diff > 1).any(0).sum())} |")
    print(f"\nlargest difference {worst:.3f} DN against {args.ref}: "
          f"{'within' if worst <= 1 else 'BEYOND'} 1 DN")
    sys.exit(0 if worst <= 1 else 1)


if __name__ == "__main__":
    main()
