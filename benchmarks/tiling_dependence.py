"""How much `cloudfree remove`'s output depends on `--batch-size` and `--tile`.

    python benchmarks/tiling_dependence.py                 # 1024^2 mosaic, bundled default
    python benchmarks/tiling_dependence.py --model median-fill --size 2048
    python benchmarks/tiling_dependence.py --size 256 --tiles 16 32 64 88 128   # one tile: whole
    python benchmarks/tiling_dependence.py --strip --tiles 16 32 64   # shadows tied to clouds

The local base (`--fill local`, the default) is computed per chunk of tiles, with 64 px of
context around it; its wider scale (a 48 px Gaussian) reaches past that context at a chunk's
edges, and its coarse grids and S1 classes follow the chunk. So a fill depends a little on how
the scene is cut. Each variant here is compared with the same run at the defaults, on the
mosaic of the real sample (`remove_pipeline.py`), for the local base and for the scene-median
base (`--fill median`), where only the network's tiling can differ. Printed per variant: the
share of pixels that differ, their mean and 99th-percentile absolute difference and the
largest one, in DN, and how many pixels of the mask (``--mask-out``) changed class: none
should. The mosaic is mirrored both ways, so its clouds cast their shadows both ways and none
is tied to a cloud (``mask.shadow``); ``--strip`` takes the sample mirrored down the rows only
instead (256 px wide, ``--size`` tall), whose shadows all fall west of their clouds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import code_version
import numpy as np
import rasterio
from remove_pipeline import SAMPLES, make_scene, mosaic

VARIANTS = (["--batch-size", "1"], ["--batch-size", "3"], ["--tile", "128"])


def strip(folder: Path, height: int) -> tuple[Path, Path]:
    """(S2, S1) of the bundled sample mirrored down the rows only, ``height`` px tall."""
    paths = []
    for src in SAMPLES["bundled"]:
        with rasterio.open(src) as ds:
            width = ds.width
        paths.append(mosaic(src, folder / f"strip_{src.name}", height, width))
    return paths[0], paths[1]


def removed(s2: Path, s1: Path, out: Path, model: str, options: list[str]
            ) -> tuple[np.ndarray, np.ndarray]:
    """`cloudfree remove` as a user runs it (no COG step, which changes no value): the output
    and the mask's classes."""
    mask = out.with_name(f"{out.stem}_mask.tif")
    subprocess.run([sys.executable, "-m", "cloudfree", "remove", "--s2", str(s2), "--s1",
                    str(s1), "-o", str(out), "--mask-out", str(mask), "--model", model,
                    "--quiet", "--no-cog", "--overwrite", *options],
                   check=True, capture_output=True, cwd=out.parent,
                   env=code_version.subprocess_env())
    with rasterio.open(out) as ds, rasterio.open(mask) as classes:
        return ds.read().astype(np.int64), classes.read(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--model", default="cloudfree-fillnet", help="a bundled fill model")
    parser.add_argument("--strip", action="store_true",
                        help="the sample mirrored down the rows only, 256 px wide")
    parser.add_argument("--tiles", type=int, nargs="*", default=[],
                        help="also these --tile sizes (at --size 256 the default is one tile)")
    args = parser.parse_args()
    variants = VARIANTS + tuple(["--tile", str(t)] for t in args.tiles)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s2, s1 = strip(folder, args.size) if args.strip else make_scene(folder, args.size)
        scene = f"256 x {args.size} strip" if args.strip else f"{args.size}^2 mosaic"
        print(f"{scene}, {args.model}; against the defaults")
        print(f"{'base':7} {'variant':16} {'changed':>8} {'mean':>6} {'p99':>5} {'max':>5}  (DN)"
              f" {'classes':>7} (px)")
        for base in ("local", "median"):
            default, classes = removed(s2, s1, folder / "default.tif", args.model,
                                       ["--fill", base])
            for variant in variants:
                out, other = removed(s2, s1, folder / "variant.tif", args.model,
                                     ["--fill", base, *variant])
                diff = np.abs(out - default)
                changed = diff.max(axis=0) > 0
                figures = (f"{changed.mean():8.1%} {diff[:, changed].mean():6.1f} "
                           f"{np.percentile(diff[:, changed], 99):5.0f} {diff.max():5d}"
                           if changed.any() else f"{0:8.1%} {'-':>6} {'-':>5} {0:5d}")
                print(f"{base:7} {' '.join(variant):16} {figures} {(other != classes).sum():7d}",
                      flush=True)


if __name__ == "__main__":
    main()
