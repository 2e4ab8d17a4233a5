"""The whole `cloudfree remove` output of this checkout against that of another git revision.

    python benchmarks/remove_equality.py                 # against main: 2048^2 mosaic, median-fill
    python benchmarks/remove_equality.py --ref HEAD~3 --size 1024 --model cloudfree-fillnet
    python benchmarks/remove_equality.py --series SERIES --references 16 --temporal
    python benchmarks/remove_equality.py --bundled-series --size 1024
    python benchmarks/remove_equality.py --bundled-series --repeated --size 1024
    python benchmarks/remove_equality.py --sample floods --size 1024
    python benchmarks/remove_equality.py --bands l2a10
    python benchmarks/remove_equality.py --untrained dsen2cr:small --size 1024

Both revisions run `remove --s2 S2 --s1 S1 -o OUT --model NAME` with every other default (the
S1 co-registration included) in fresh processes, each on its own package (the revision's
``cloudfree/`` unpacked with ``git archive``), on the mirrored mosaic of the bundled sample that
``remove_speed.py`` times (``--sample floods``: of the Sen1Floods11 chip instead; ``--bands
l2a10``: its ten bands of an L2A product, as ``remove_speed.py --bands`` writes them), on the CPU;
``--untrained ARCH:PRESET`` gives a network of seeded untrained weights (``--checkpoint``)
instead of ``--model``, for the paths of the networks that are not bundled. Printed: the
largest difference in DN over every band and pixel, the share of pixels where any band differs
at all and by more than 1 DN, and the 99th percentile of the changed pixels' largest
difference. The promise of a change made for speed: at most 1 DN anywhere (exit status 1
beyond it).

With ``--series``, the scene is ``reference_memory.py``'s instead (a mosaic of the pool's
SEN12MS-CR-TS series with a real cloud pasted), run as ``remove --reference R1 ... RK``
(``--temporal``: with ``--temporal-mask``), without S1; with ``--bundled-series``,
``reference_speed.py``'s (the bundled five-date series mirrored, its four other dates as the
references; ``--repeated``: repeated instead, so that the target's clouds cast their shadows,
which the mirrored mosaics' do not), run the same way.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from reference_memory import scenes
from reference_speed import make_scenes
from remove_pipeline import ROOT, SAMPLES, unpack, untrained_checkpoint
from remove_speed import MISSING
from remove_speed import scene as single_date_scene


def remove_output(package: Path, s2: Path, inputs: list[str], out: Path, model: list[str]
                  ) -> np.ndarray:
    """The DN `remove` writes when ``package`` is the cloudfree imported; ``inputs``: the
    options giving the other inputs, ``model`` those giving the model."""
    env = {**os.environ, "PYTHONPATH": str(package)}
    subprocess.run([sys.executable, "-m", "cloudfree", "remove", "--s2", str(s2), *inputs,
                    "-o", str(out), *model, "--device", "cpu", "--quiet", "--overwrite"],
                   check=True, env=env, cwd=package)
    with rasterio.open(out) as ds:
        return ds.read().astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="git revision to compare with")
    parser.add_argument("--size", type=int, default=2048, help="mosaic size")
    parser.add_argument("--model", default="median-fill")
    parser.add_argument("--untrained", metavar="ARCH:PRESET",
                        help="an untrained network of this architecture and preset (seeded "
                             "weights) instead of --model")
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="bundled",
                        help="the single-date mosaic's sample")
    parser.add_argument("--bands", choices=sorted(MISSING), default="l1c",
                        help="the single-date mosaic's bands (l2a10: an L2A product's ten)")
    parser.add_argument("--series", type=Path,
                        help="reference_memory.py's scene of this series, with references")
    parser.add_argument("--references", type=int, default=16, help="with --series: how many")
    parser.add_argument("--bundled-series", action="store_true",
                        help="reference_speed.py's scene (the bundled series), with references")
    parser.add_argument("--repeated", action="store_true",
                        help="with --bundled-series: repeated, not mirrored (shadows cast)")
    parser.add_argument("--temporal", action="store_true",
                        help="with a series: --temporal-mask")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.series is None and not args.bundled_series:
            s2, s1 = single_date_scene(folder, args.size, args.sample, args.bands)
            inputs = ["--s1", str(s1)]
            scene = ", ".join([args.model] + [x for x in (args.sample, args.bands)
                                              if x not in ("bundled", "l1c")])
        else:
            s2, refs = make_scenes(folder, args.size, not args.repeated) \
                if args.bundled_series else \
                scenes(args.series, folder, args.size, args.references)
            inputs = [a for r in refs for a in ("--reference", str(r))] + \
                ["--temporal-mask"] * args.temporal
            scene = f"{args.model}, {len(refs)} references{', temporal' * args.temporal}" \
                f"{', repeated' * args.repeated}"
        model = ["--model", args.model]
        if args.untrained:
            model = ["--checkpoint", str(untrained_checkpoint(folder,
                                                              *args.untrained.split(":")))]
            scene = scene.replace(args.model, f"untrained {args.untrained}")
        old = remove_output(unpack(args.ref, folder / "ref"), s2, inputs, folder / "old.tif",
                            model)
        new = remove_output(ROOT, s2, inputs, folder / "new.tif", model)
    diff = np.abs(old - new).max(axis=0)
    pixels = diff.size
    changed = diff[diff > 0]
    p99 = int(np.percentile(changed, 99)) if changed.size else 0
    print(f"| mosaic | model | largest difference (DN) | pixels changed | pixels > 1 DN "
          f"| 99th percentile of the changed (DN) |\n"
          f"|---|---|---|---|---|---|\n"
          f"| {args.size}^2 x {len(old)} bands | {scene} | {diff.max()} | "
          f"{(diff > 0).sum() / pixels:.4%} | {(diff > 1).sum() / pixels:.4%} | {p99} |")
    worst = int(diff.max())
    print(f"\nlargest difference {worst} DN against {args.ref}: "
          f"{'within' if worst <= 1 else 'BEYOND'} 1 DN")
    sys.exit(0 if worst <= 1 else 1)


if __name__ == "__main__":
    main()
