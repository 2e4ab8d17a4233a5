"""Calibration of the co-registration reliability test on real S1/S2 pairs, as markdown tables.

Every real pair (the ../shared/data samples, and with ``--pairs`` the training-pool pairs written
by scripts/extract_coregister_pairs.py) gets its S1 moved by known offsets, whole and fractional,
uniform in [-9.9, 9.9] px on each axis, by translating its geotransform; ``coregister_to_grid``
then estimates the shift against the S2. A pair is not perfectly aligned itself, so the error of
an estimate is measured against the applied offset plus the pair's own shift (the median of
estimate minus offset over its accepted copies). Offsets that put the total beyond --max-shift
must not be applied. Each S1 is also put on the grid of every other location's S2 (both cropped
to a common size): a wrong partner, which must never get a shift. The sweep table gives, for
each significance threshold, what the decision would have accepted; the library's threshold
(``SIGNIFICANCE_MIN``) is chosen from it.

    python benchmarks/coregister_calibration.py [--pairs DIR] [--offsets 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from cloudfree.coregister import coregister_to_grid
from cloudfree.sentinel2 import open_sentinel2
from cloudfree.shift_estimation import SIGNIFICANCE_MIN

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = {
    "winter_clear": ("sen12mscr/ROIs2017_winter_112_p797_s1.tif",
                     "sen12mscr/ROIs2017_winter_112_p797_s2_cloudfree.tif"),
    "winter_hazy": ("sen12mscr/ROIs2017_winter_112_p797_s1.tif",
                    "sen12mscr/ROIs2017_winter_112_p797_s2_cloudy.tif"),
    "summer_cumulus": ("sen12mscr/ROIs1868_summer_19_p30_s1.tif",
                       "sen12mscr/ROIs1868_summer_19_p30_s2_cloudy.tif"),
    "floods_spain": ("sen1floods11/Spain_7370579_S1Hand.tif",
                     "sen1floods11/Spain_7370579_S2Hand.tif"),
}
#: Pairs without visible common structure, judged by eye before any estimate: they must get no
#: shift, and are left out of the "corrected" rate.
NO_STRUCTURE = {
    "summer_cumulus": "half under cumulus",
    "dsen2cr_ROIs1158_spring_101_30": "open water",
    "dsen2cr_ROIs1158_spring_101_31": "open water",
    "dsen2cr_ROIs1158_spring_101_32": "open water",
}
MAX_SHIFT = 10.0
THRESHOLDS = (5.0, 6.0, 7.0, 8.0, 9.0, 10.0)


@dataclass
class Case:
    """One estimate: the pair, the applied offset, the estimate and its significance."""

    pair: str
    offset: tuple[float, float]
    estimate: tuple[float, float]
    significance: float
    applied: bool


def location(name: str) -> str:
    """Pairs of one place (two dates, or one S1 with two S2) are never wrong partners."""
    return name.rsplit("_", 1)[0] if name.startswith(("ssl4eo", "winter")) else name


def pairs(folder: Path | None) -> dict[str, tuple[Path, Path]]:
    found = {name: (DATA / s1, DATA / s2) for name, (s1, s2) in SAMPLES.items()}
    if folder is not None:
        found |= {p.name: (p / "s1.tif", p / "s2.tif") for p in sorted(folder.iterdir())
                  if (p / "s1.tif").exists()}
    return found


def write_s1(src: Path, dst: Path, dx: float, dy: float, s2_transform) -> Path:
    """Copy of S1 with its georeferencing moved by (dx, dy) S2 pixels."""
    with rasterio.open(src) as ds:
        profile, data, names = ds.profile, ds.read(), ds.descriptions
    east = dx * s2_transform.a + dy * s2_transform.b
    north = dx * s2_transform.d + dy * s2_transform.e
    profile["transform"] = rasterio.Affine.translation(east, north) * profile["transform"]
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = names
    return dst


def crop(src: Path, dst: Path, width: int, height: int, grid=None) -> Path:
    """The top-left width x height of a raster, optionally relabelled onto another grid."""
    window = Window(0, 0, width, height)
    with rasterio.open(src) as ds:
        profile, data, names = ds.profile, ds.read(window=window), ds.descriptions
        transform = window_transform(window, ds.transform)
    profile.update(width=width, height=height, transform=transform)
    if grid is not None:
        profile.update(crs=grid[0], transform=grid[1])
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = names
    return dst


def estimate(s1: Path, s2) -> tuple[tuple[float, float], float, bool]:
    with coregister_to_grid(s1, s2, quiet=True, max_shift=MAX_SHIFT) as result:
        (window,) = result.estimate.estimates  # pairs up to 768 px are one window
        return (window.dx, window.dy), window.significance, result.applied


def displaced(name: str, s1: Path, s2: Path, moves: np.ndarray, tmp: Path) -> list[Case]:
    with open_sentinel2(s2) as scene:
        cases = []
        for i, (dx, dy) in enumerate(moves):
            moved = write_s1(s1, tmp / f"{name}_{i}.tif", dx, dy, scene.transform)
            shift, significance, applied = estimate(moved, scene)
            cases.append(Case(name, (dx, dy), shift, significance, applied))
    return cases


def wrong_partners(found: dict[str, tuple[Path, Path]], tmp: Path) -> list[Case]:
    cases = []
    for (a, (s1, _)), (b, (_, s2)) in itertools.permutations(found.items(), 2):
        if location(a) == location(b):
            continue
        with rasterio.open(s1) as one, rasterio.open(s2) as two:
            width, height = min(one.width, two.width), min(one.height, two.height)
        cropped = crop(s2, tmp / "wrong_s2.tif", width, height)
        with rasterio.open(cropped) as ds:
            grid = (ds.crs, ds.transform)
        relabelled = crop(s1, tmp / "wrong_s1.tif", width, height, grid)
        with open_sentinel2(cropped) as scene:
            shift, significance, applied = estimate(relabelled, scene)
        cases.append(Case(f"{a} on {b}", (0.0, 0.0), shift, significance, applied))
    return cases


def own_shift(cases: list[Case]) -> np.ndarray:
    """The pair's own misregistration: median of estimate minus offset over accepted cases."""
    use = [c for c in cases if c.applied] or cases
    return np.median([np.subtract(c.estimate, c.offset) for c in use], axis=0)


def errors(cases: list[Case], own: np.ndarray) -> np.ndarray:
    return np.array([np.hypot(*(np.subtract(c.estimate, c.offset) - own)) for c in cases])


def in_range(case: Case, own: np.ndarray) -> bool:
    return bool(np.max(np.abs(np.add(case.offset, own))) <= MAX_SHIFT)


def pair_table(by_pair: dict[str, list[Case]], sizes: dict[str, str]) -> list[str]:
    lines = ["| pair | size | content | own shift (x, y) px | significance | applied | "
             "RMSE of applied px | max px | within 0.5 px |", "|---" * 9 + "|"]
    for name, cases in by_pair.items():
        own = own_shift(cases)
        reachable = [c for c in cases if in_range(c, own)]
        applied = [c for c in reachable if c.applied]
        err = errors(applied, own)
        sig = [c.significance for c in cases]
        stats = [f"{np.sqrt(np.mean(err ** 2)):.2f}", f"{err.max():.2f}",
                 f"{np.mean(err <= 0.5):.0%}"] if applied else ["-", "-", "-"]
        lines.append(f"| {name} | {sizes[name]} | {NO_STRUCTURE.get(name, 'structure')} | "
                     f"({own[0]:+.2f}, {own[1]:+.2f}) | {min(sig):.1f}-{max(sig):.1f} | "
                     f"{len(applied)}/{len(reachable)} | " + " | ".join(stats) + " |")
    return lines


def sweep_table(by_pair: dict[str, list[Case]], wrong: list[Case]) -> list[str]:
    """Per threshold: share of structured cases accepted and right, errors, wrong partners."""
    structured, blank = [], []
    for name, cases in by_pair.items():
        own = own_shift(cases)
        for case, err in zip(cases, errors(cases, own), strict=True):
            if in_range(case, own):
                (blank if name in NO_STRUCTURE else structured).append((case.significance, err))
    lines = ["| threshold | structured: corrected within 0.5 px | accepted with error > 0.5 px | "
             "RMSE of accepted px | no-structure pairs accepted | wrong partners accepted |",
             "|---|---|---|---|---|---|"]
    for t in sorted({*THRESHOLDS, SIGNIFICANCE_MIN}):
        acc = np.array([e for s, e in structured if s >= t])
        good = np.sum(acc <= 0.5)
        rmse = f"{np.sqrt(np.mean(acc ** 2)):.2f}" if acc.size else "-"
        mark = " (used)" if t == SIGNIFICANCE_MIN else ""
        lines.append(f"| {t:g}{mark} | {good}/{len(structured)} ({good / len(structured):.1%}) | "
                     f"{acc.size - good} | {rmse} | {sum(s >= t for s, _ in blank)}/{len(blank)} "
                     f"| {sum(c.significance >= t for c in wrong)}/{len(wrong)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, help="folder of pairs from "
                        "scripts/extract_coregister_pairs.py")
    parser.add_argument("--offsets", type=int, default=20, help="offsets per pair")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("cloudfree").setLevel(logging.ERROR)
    moves = np.random.default_rng(args.seed).uniform(-9.9, 9.9, (args.offsets, 2))
    moves[: args.offsets // 2] = np.round(moves[: args.offsets // 2])
    found = pairs(args.pairs)
    start = time.perf_counter()
    by_pair, sizes = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (s1, s2) in found.items():
            by_pair[name] = displaced(name, s1, s2, moves, Path(folder))
            with rasterio.open(s2) as ds:
                sizes[name] = f"{ds.width}x{ds.height}"
        wrong = wrong_partners(found, Path(folder))
    print(f"{len(found)} real pairs x {args.offsets} offsets (seed {args.seed}), --max-shift "
          f"{MAX_SHIFT:g}; {len(wrong)} wrong partners; threshold {SIGNIFICANCE_MIN:g}.\n")
    print("\n".join(pair_table(by_pair, sizes)) + "\n")
    print("\n".join(sweep_table(by_pair, wrong)) + "\n")
    sig = np.array([c.significance for c in wrong])
    worst = max(wrong, key=lambda c: c.significance)
    print(f"Wrong partners: significance median {np.median(sig):.1f}, 99th percentile "
          f"{np.percentile(sig, 99):.1f}, max {sig.max():.1f} ({worst.pair}); shift applied to "
          f"{sum(c.applied for c in wrong)} of {len(wrong)} (95 % upper bound on the false-accept "
          f"rate {3 / len(wrong):.1%}, rule of three).")
    beyond = [(c, np.max(np.abs(np.add(c.offset, own_shift(cases)))))
              for cases in by_pair.values() for c in cases if not in_range(c, own_shift(cases))]
    applied = [total for c, total in beyond if c.applied]
    print(f"Offsets beyond --max-shift: {len(beyond)}, applied {len(applied)}" +
          (f" (total displacement at most {max(applied):.2f} px)." if applied else "."))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
