"""The local fill of this checkout against that of another git revision: largest difference in DN.

    python benchmarks/local_fill_check.py               # against main: samples, 1024^2 mosaic
    python benchmarks/local_fill_check.py --ref HEAD~3 --size 2048

On the real samples (the SEN12MS-CR cloudy images, their own clouds; the Sen1Floods11 chip with
a disk over its water and the land around), ``fill_image_locally`` of each revision; on the
mirrored mosaic of the bundled sample (as ``remove_speed.py`` builds it), the whole output of
``remove --model median-fill`` (the local fill with no network) with each revision's
``local_fill`` in the pipeline. The promise: at most 1 DN anywhere.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import rasterio
from remove_pipeline import ROOT, make_scene

DATA = ROOT.parent / "shared" / "data"


def revision_module(ref: str) -> types.ModuleType:
    """``cloudfree/local_fill.py`` as it is at git revision ``ref``, loaded as a module."""
    source = subprocess.run(["git", "show", f"{ref}:cloudfree/local_fill.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"local_fill_{ref}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{ref}:cloudfree/local_fill.py", "exec"), module.__dict__)
    return module


def samples() -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, reflectance, cloud, valid, S1 dB) of every real sample."""
    from cloudfree.masking import CLOUD, classify
    from cloudfree.sentinel2 import open_sentinel2

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
    rs = importlib.import_module("cloudfree.remove_scene")  # the package exports a function
    real = rs.local_fill
    rs.local_fill = fill
    try:
        rs.remove_scene(s2, s1, out, model="median-fill", overwrite=True, quiet=True)
    finally:
        rs.local_fill = real
    with rasterio.open(out) as ds:
        return ds.read().astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--size", type=int, default=1024, help="mosaic size (0: none)")
    args = parser.parse_args()
    from cloudfree import local_fill as new

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
