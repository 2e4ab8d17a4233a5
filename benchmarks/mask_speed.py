"""Benchmark `cloudfree mask` against its code before the speed work and against s2cloudless.

    python benchmarks/mask_speed.py                  # 4096^2 scene
    python benchmarks/mask_speed.py --size 8192 --threads 1 4 --baseline none

The scene is a mosaic of the real SEN12MS-CR summer patch (mirrored, about a third cumulus),
written as a 13-band uint16 tiled deflate GeoTIFF (pixel interleaved). In one run, with default
options: `cloudfree mask` of git revision ``--baseline`` (default 1b64258, the last one before
the speed work; run from a `git archive` of it), then this tree's at each ``--threads`` count
(default: 1 and all usable cores), round after round, each run in a fresh process and timed
inside it (best of ``--repeats``; wall time and the process's CPU time; the output is a COG for
this tree, a plain GeoTIFF for the baseline, which had no COG step); the baseline's mask is
compared bit for bit with this tree's under the same options (``--no-hot``: the HOT test came
later, on purpose).
s2cloudless (its README's settings: threshold 0.4, average_over 4, dilation_size 2, all 13 bands)
runs once on a ``--s2cloudless-size`` crop of the same scene, reading included, since it is
about a hundred times slower. All in Mpx/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from remove_pipeline import ROOT, SAMPLE, mosaic

#: One `mask_scene` in a fresh process, timed inside it (imports excluded); argv = code folder,
#: scene, output, keyword arguments as JSON (``params``: MaskParams fields). Prints wall and CPU s.
RUN = """
import json, sys, time
from cloudfree.pipeline.mask import mask_scene
from cloudfree.mask.classify import MaskParams
kwargs = json.loads(sys.argv[3])
params = MaskParams(**kwargs.pop("params", {}))
wall, cpu = time.perf_counter(), time.process_time()
mask_scene(sys.argv[1], sys.argv[2], params, overwrite=True, quiet=True, **kwargs)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def time_mask(code: Path, scene: Path, out: Path, **kwargs) -> tuple[float, float]:
    """Wall and CPU seconds of one `mask_scene` of the package in ``code``, in its own process."""
    result = subprocess.run([sys.executable, "-c", RUN, str(scene), str(out), json.dumps(kwargs)],
                            cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, check=True,
                            capture_output=True, text=True)
    wall, cpu = map(float, result.stdout.split())
    return wall, cpu


def export(revision: str, folder: Path) -> Path:
    """The ``cloudfree`` package of a git revision, unpacked into ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "cloudfree"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def same_mask(a: Path, b: Path) -> bool:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        return bool(np.array_equal(x.read(), y.read()))


def time_s2cloudless(scene: Path, size: int) -> float:
    """Wall time of s2cloudless on the top-left ``size`` x ``size`` crop, reading included."""
    from s2cloudless import S2PixelCloudDetector

    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2,
                                    all_bands=True)
    start = time.perf_counter()
    with rasterio.open(scene) as ds:
        dn = ds.read(window=Window(0, 0, size, size))
    refl = np.moveaxis(dn, 0, -1)[None].astype(np.float32) / 10000
    detector.get_cloud_masks(refl)
    return time.perf_counter() - start


def main() -> None:
    from cloudfree.core.threads import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--s2cloudless-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, usable_cores()}))
    parser.add_argument("--baseline", default="1b64258", help="git revision, or none")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scene = mosaic(SAMPLE / "s2.tif", tmp / "scene.tif", args.size)
        code = export(args.baseline, tmp) if args.baseline != "none" else None
        for _ in range(args.repeats):
            if code:
                runs.setdefault(f"{args.baseline} (before)", []).append(
                    time_mask(code, scene, tmp / "before.tif"))
            for n in args.threads:
                runs.setdefault(f"--threads {n}", []).append(
                    time_mask(ROOT, scene, tmp / "m.tif", threads=n))
        if code:
            time_mask(ROOT, scene, tmp / "no_hot.tif", params={"hot": False})
            identical = same_mask(tmp / "before.tif", tmp / "no_hot.tif")
        theirs = time_s2cloudless(scene, args.s2cloudless_size)
    theirs_rate = args.s2cloudless_size**2 / theirs / 1e6
    best = {name: min(times) for name, times in runs.items()}
    first_wall = next(iter(best.values()))[0]
    print(f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}")
    print("| cloudfree mask | pixels | wall s | CPU s | Mpx/s | vs first row | vs s2cloudless |")
    print("|---|---|---|---|---|---|---|")
    for name, (wall, cpu) in best.items():
        rate = args.size**2 / wall / 1e6
        print(f"| {name} | {args.size}^2 | {wall:.2f} | {cpu:.2f} | {rate:.2f} | "
              f"{first_wall / wall:.2f}x | {rate / theirs_rate:.0f}x |")
    print(f"| s2cloudless | {args.s2cloudless_size}^2 | {theirs:.2f} | - | {theirs_rate:.3f} | "
          "- | 1x |")
    if code:
        print(f"mask of {args.baseline} and of this tree with --no-hot: "
              f"{'identical' if identical else 'DIFFERENT'} bit for bit")


if __name__ == "__main__":
    main()
