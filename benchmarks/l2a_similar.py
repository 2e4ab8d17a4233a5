"""What the target's clear pixels alike in the other dates (``similar_pixels.py``) give, by
their share of the fill.

    python benchmarks/l2a_similar.py DEST [--half odd] [--harder two-clouds|far-dates]
        [--shares 0.2 0.3 0.4 0.5 0.7] [--neighbours 5]

On the WorldCereal cases of ``benchmarks/l2a_pool.py`` (the same ``--half`` and ``--harder``),
``remove --reference`` with every other month, without the similar pixels and with each share
of the fill (``similar_pixels.SIMILAR``) taken from them, searching ``--neighbours`` pixels;
per share the mean PSNR on the pasted cloud, the worst case, the mean and extremes of its
change against none, and the closest case over median fill.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory

from l2a_pool import print_sweep, sweep

from cloudfree.dates import similar_pixels


def set_share(share: float | None) -> None:
    similar_pixels.SIMILAR = share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="DEST of scripts/build_l2a_pool.py")
    parser.add_argument("--half", choices=("even", "odd"), default="odd")
    parser.add_argument("--harder", choices=("two-clouds", "far-dates"))
    parser.add_argument("--shares", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.7])
    parser.add_argument("--neighbours", type=int, default=similar_pixels.NEIGHBOURS)
    args = parser.parse_args()
    similar_pixels.NEIGHBOURS = args.neighbours
    shares = [None, *args.shares]
    with TemporaryDirectory() as tmp:
        base, scores = sweep(args.root, args.half, args.harder,
                                [partial(set_share, share) for share in shares], Path(tmp))
    print_sweep(f"share of the similar pixels ({args.neighbours} neighbours)",
                ["none" if share is None else f"{share:g}" for share in shares], base, scores)


if __name__ == "__main__":
    main()
