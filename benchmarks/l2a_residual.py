"""What carrying the target's residual into the fill (``local_residual.py``) gives, by setting.

    python benchmarks/l2a_residual.py DEST [--half odd] [--harder two-clouds|far-dates]
        [--sigma 1 2 4] [--shrink 0.005 0.02 0.05]

On the WorldCereal cases of ``benchmarks/l2a_pool.py`` (the same ``--half`` and ``--harder``),
``remove --reference`` with every other month, without the carried residual, with it at each
``--sigma`` x ``--shrink``, and at the defaults with one guard or none (the blue test, the
margins of the 20 and 60 m bands); per setting the mean PSNR on the pasted cloud, the worst
case, the mean and extremes of its change against no residual, and the closest case over
median fill.
"""

from __future__ import annotations

import argparse
import importlib
from functools import partial
from itertools import product
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from l2a_pool import print_sweep, sweep

from cloudfree.dates import residual as local_residual

removal = importlib.import_module("cloudfree.pipeline.remove")
HAZE, MARGIN, SIGMA, SHRINK = (local_residual.HAZE, local_residual.MARGIN, local_residual.SIGMA,
                               local_residual.SHRINK)


GUARDS = {"blue": "the blue test only", "margins": "the margins only", "none": "none"}


def set_carry(sigma: float | None, shrink: float, guards: str = "both") -> None:
    """Carry with this sigma and shrink (None: no residual carried) and these guards: "both",
    "blue" (no margins), "margins" (no blue test) or "none"."""
    local_residual.SIGMA, local_residual.SHRINK = sigma or 1.0, shrink
    local_residual.HAZE = HAZE if guards in ("both", "blue") else np.inf
    local_residual.MARGIN = MARGIN if guards in ("both", "margins") else dict.fromkeys(MARGIN, 0)
    local_residual.REACH = int(local_residual.TRUNCATE * (sigma or 1.0) + 0.5)
    local_residual.CONTEXT = removal.CONTEXT = local_residual.REACH + max(
        local_residual.MARGIN.values())
    removal.carry_residual = local_residual.carry_residual if sigma else lambda *args: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="DEST of scripts/build_l2a_pool.py")
    parser.add_argument("--half", choices=("even", "odd"), default="odd")
    parser.add_argument("--harder", choices=("two-clouds", "far-dates"))
    parser.add_argument("--sigma", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--shrink", type=float, nargs="+", default=[0.005, 0.02, 0.05])
    args = parser.parse_args()
    settings = [(None, 0.0, "both"), *((sigma, shrink, "both") for sigma, shrink in
                                       product(args.sigma, args.shrink)),
                *((SIGMA, SHRINK, guards) for guards in ("blue", "margins", "none"))]
    with TemporaryDirectory() as tmp:
        base, scores = sweep(args.root, args.half, args.harder,
                                [partial(set_carry, *s) for s in settings], Path(tmp))
    print_sweep("residual carried", [
        "none" if sigma is None else f"sigma {sigma:g} px, shrink {shrink:g}" + (
            "" if guards == "both" else f", guards: {GUARDS[guards]}")
        for sigma, shrink, guards in settings], base, scores)


if __name__ == "__main__":
    main()
