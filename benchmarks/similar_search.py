"""The other dates' similar pixels' search on a real series: CPU per pixel and error, by setting.

    python benchmarks/similar_search.py --series SERIES [--approximate 1 2 3] [--neighbours K]
        [--components C] [--stride S] [--rounds 3]

SERIES is the pool's SEN12MS-CR-TS series (``reference_fill.py``; 256 px, 13 bands). Its five
clearest dates (the fewest pixels with B02 above 0.15) stand for a scene: the clearest is the
target, the other four the dates whose pixels alike predict it (``similar_pixels.py``). The
search is fitted on the target's sample grid at every 2nd row and column (16384 pixels,
``SAMPLE``'s most, as in a large scene; ``--stride 4``: every 4th, 4096 pixels) and predicts
the pixels off it, on one thread, in ``--components`` dimensions (``COMPONENTS``).
For each ``APPROXIMATE`` given (the k-d tree's ``eps``): the CPU microseconds per pixel of
``SimilarPixels.predict`` (the median of ``--rounds``, the settings taken in turn in each
round) and its RMS error against the target (reflectance). The pixels predicted lie beside
pixels of the sample, nearer twins than a cloud's pixels find: the errors rank the settings,
they are lower than a fill's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import rasterio

import cloudfree.dates.similar_pixels as similar_pixels
from cloudfree.dates.similar_pixels import SimilarPixels


def clearest(series: Path, count: int = 5) -> list[np.ndarray]:
    """The ``count`` dates [13, h, w] (reflectance) with the fewest bright blue pixels."""
    dates = []
    for path in sorted(series.glob("s2_*.tif")):
        with rasterio.open(path) as src:
            refl = src.read().astype(np.float32) / 10000
        dates.append((float(np.mean(refl[1] > 0.15)), path.name, refl))
    return [refl for _, _, refl in sorted(dates, key=lambda d: d[:2])[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--approximate", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--neighbours", type=int, default=similar_pixels.NEIGHBOURS,
                        help="neighbours averaged (NEIGHBOURS)")
    parser.add_argument("--components", type=int, default=similar_pixels.COMPONENTS,
                        help="dimensions of the search (COMPONENTS)")
    parser.add_argument("--stride", type=int, default=2,
                        help="the sample: every STRIDE-th row and column of the target")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    target, *others = clearest(args.series)
    grid = np.zeros(target.shape[1:], bool)
    grid[::args.stride, ::args.stride] = True
    similar_pixels.COMPONENTS = args.components
    features = np.concatenate([d[:, grid] for d in others]).T
    similar = SimilarPixels.fit(tuple(range(len(others))), features, target[:, grid].T)
    truth = target[:, ~grid]
    similar_pixels.usable_cores = lambda: 1
    similar_pixels.NEIGHBOURS = args.neighbours
    cpu: dict[float, list[float]] = {a: [] for a in args.approximate}
    error = {}
    for _ in range(args.rounds):
        for approximate in args.approximate:
            similar_pixels.APPROXIMATE = approximate
            start = time.process_time()
            predicted = similar.predict(others, ~grid)
            cpu[approximate].append((time.process_time() - start) / predicted.shape[1] * 1e6)
            error[approximate] = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    print(f"{grid.sum()} pixels searched, {(~grid).sum()} predicted, {features.shape[1]} "
          f"features, {similar_pixels.COMPONENTS} components, {similar_pixels.NEIGHBOURS} "
          f"neighbours\n\n| APPROXIMATE | CPU us per pixel | RMS error |\n|---|---|---|")
    for approximate in args.approximate:
        print(f"| {approximate:g} | {statistics.median(cpu[approximate]):.2f} | "
              f"{error[approximate]:.5f} |")


if __name__ == "__main__":
    main()
