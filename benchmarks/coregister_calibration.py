"""Calibration of the co-registration decision on real S1/S2 pairs, as markdown tables.

Every real pair (the ../shared/data samples, and with ``--pairs`` the training-pool pairs written
by scripts/extract_coregister_pairs.py) gets its S1 moved by known offsets, whole and fractional,
uniform in [-9.9, 9.9] px on each axis, by translating its geotransform; ``coregister_to_grid``
then estimates the shift against the S2, for each search range (``--max-shift``). A pair is not
perfectly aligned itself, so the error of an estimate is measured against the applied offset
plus the pair's own shift (the median of estimate minus offset over its accepted copies; a
cloudy pair takes its clear twin's; a pair with none accepted is taken as aligned). Offsets
that put the total beyond the search range must not be applied. Each S1 is also put on the
grid of every other location's S2 (both cropped to a common size): a wrong partner, which must
never get a shift.

Per search range, the sweep gives what each decision rule (least significance, largest
disagreement of the window's halves; see cloudfree/coregister/shift_estimation.py) would have
accepted; the library's rule (``RULE``) is chosen from it. "Significance only" is the former rule.

    python benchmarks/coregister_calibration.py [--pairs DIR] [--max-shift 5 10 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from cloudfree.coregister.s1_to_s2 import coregister_to_grid
from cloudfree.coregister.shift_estimation import RULE, Rule, decide
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import open_sentinel2

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
CLOUDY = "_cloudy"
SIGNIFICANCES = (5.5, 6.0, 6.5, 7.0)
DISAGREEMENTS = (1.5, 3.0, float("inf"))


@dataclass
class Case:
    """One estimate: the pair, the applied offset, the estimate and its evidence."""

    pair: str
    offset: tuple[float, float]
    estimate: tuple[float, float]
    significance: float
    disagreement: float | None  # of the halves, px (None: no estimate)
    applied: bool

    def accepted(self, rule: Rule, max_shift: float) -> bool:
        return self.disagreement is not None and not decide(
            self.significance, self.disagreement, *self.estimate, max_shift, rule)


def location(name: str) -> str:
    """Pairs of one place (two dates, or one S1 with two S2) are never wrong partners."""
    name = name.removesuffix(CLOUDY)
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


def estimate(s1: Path, s2, pair: str, offset: tuple[float, float], max_shift: float) -> Case:
    with coregister_to_grid(s1, s2, InputOptions(max_shift=max_shift), quiet=True,
                            evidence=True) as result:
        (w,) = result.estimate.estimates  # pairs up to 768 px are one window
        return Case(pair, offset, (w.dx, w.dy), w.significance,
                    w.evidence.disagreement if w.evidence else None, result.applied)


def displaced(name: str, s1: Path, s2: Path, moves: np.ndarray, max_shift: float,
              tmp: Path) -> list[Case]:
    with open_sentinel2(s2) as scene:
        return [estimate(write_s1(s1, tmp / f"{name}_{i}.tif", dx, dy, scene.transform), scene,
                         name, (dx, dy), max_shift) for i, (dx, dy) in enumerate(moves)]


def wrong_partners(found: dict[str, tuple[Path, Path]], max_shift: float,
                   tmp: Path) -> list[Case]:
    cases = []
    for (a, (s1, _)), (b, (_, s2)) in itertools.permutations(found.items(), 2):
        if location(a) == location(b) or a.endswith(CLOUDY):  # its S1 is the clear pair's
            continue
        with rasterio.open(s1) as one, rasterio.open(s2) as two:
            width, height = min(one.width, two.width), min(one.height, two.height)
        cropped = crop(s2, tmp / "wrong_s2.tif", width, height)
        with rasterio.open(cropped) as ds:
            grid = (ds.crs, ds.transform)
        relabelled = crop(s1, tmp / "wrong_s1.tif", width, height, grid)
        with open_sentinel2(cropped) as scene:
            cases.append(estimate(relabelled, scene, f"{a} on {b}", (0.0, 0.0), max_shift))
    return cases


def own_shift(cases: list[Case]) -> np.ndarray | None:
    """The pair's own misregistration: median of estimate minus offset over its accepted cases;
    None when none was accepted (its refused estimates do not measure it)."""
    use = [c for c in cases if c.applied]
    return np.median([np.subtract(c.estimate, c.offset) for c in use], axis=0) if use else None


@dataclass
class Scored:
    """A case with what it is (structure, no structure, cloudy, wrong) and its error (px)."""

    case: Case
    kind: str
    reachable: bool  # the total displacement is within the search range
    error: float


def score(by_pair: dict[str, list[Case]], wrong: list[Case], max_shift: float) -> list[Scored]:
    scored = [Scored(c, "wrong", True, float("inf")) for c in wrong]
    for name, cases in by_pair.items():
        own = own_shift(by_pair.get(name.removesuffix(CLOUDY), cases))
        own = np.zeros(2) if own is None else own  # never measured: taken as aligned
        kind = "no structure" if name in NO_STRUCTURE else \
            "cloudy" if name.endswith(CLOUDY) else "structure"
        for c in cases:
            total = np.add(c.offset, own)
            scored.append(Scored(c, kind, bool(np.max(np.abs(total)) <= max_shift),
                                 float(np.hypot(*np.subtract(c.estimate, total)))))
    return scored


def accepted(items: list[Scored], rule: Rule, max_shift: float) -> str:
    """How many of the items the rule accepts, of how many."""
    return f"{sum(x.case.accepted(rule, max_shift) for x in items)}/{len(items)}"


def sweep_table(scored: list[Scored], max_shift: float) -> list[str]:
    """Per rule: structured cases corrected, errors, and what must not be shifted."""
    used = RULE
    rules = [Rule(s, d) for s in SIGNIFICANCES for d in DISAGREEMENTS]
    structure = [x for x in scored if x.kind == "structure" and x.reachable]
    cloudy = [x for x in scored if x.kind == "cloudy" and x.reachable]
    blank = [x for x in scored if x.kind == "no structure"]  # reachable or not: never shifted
    wrong = [x for x in scored if x.kind == "wrong"]
    beyond = [x for x in scored if not x.reachable and x.kind in ("structure", "cloudy")]
    lines = ["| least significance | halves disagree by at most px | structure: corrected within "
             "0.5 px | accepted with error > 0.5 px | RMSE of accepted px | no structure "
             "accepted | cloudy: accepted (error > 1 px) | wrong partners accepted | beyond "
             "range accepted |", "|---" * 9 + "|"]
    for rule in sorted({*rules, used}, key=lambda r: (r.significance, r.disagreement)):
        err = np.array([x.error for x in structure if x.case.accepted(rule, max_shift)])
        good = int(np.sum(err <= 0.5))
        cloudy_err = [x.error for x in cloudy if x.case.accepted(rule, max_shift)]
        limit = "-" if np.isinf(rule.disagreement) else f"{rule.disagreement:g}"
        mark = " (used)" if rule == used else " (significance only)" if (
            rule.significance == 7.0 and np.isinf(rule.disagreement)) else ""
        rmse = f"{np.sqrt(np.mean(err ** 2)):.2f}" if err.size else "-"
        lines.append(
            f"| {rule.significance:g}{mark} | {limit} | {good}/{len(structure)} "
            f"({good / len(structure):.1%}) | {err.size - good} | {rmse} | "
            f"{accepted(blank, rule, max_shift)} | {len(cloudy_err)}/{len(cloudy)} "
            f"({sum(e > 1 for e in cloudy_err)}) | {accepted(wrong, rule, max_shift)} | "
            f"{accepted(beyond, rule, max_shift)} |")
    return lines


def pair_table(scored: list[Scored], sizes: dict[str, str]) -> list[str]:
    """Per pair, with the library's rule: own shift, significance, applied, errors."""
    lines = ["| pair | size | content | own shift (x, y) px | significance | halves disagree "
             "px (median) | applied | RMSE of applied px | max px | within 0.5 px |",
             "|---" * 10 + "|"]
    names = dict.fromkeys(x.case.pair for x in scored if x.kind != "wrong")
    for name in names:
        rows = [x for x in scored if x.case.pair == name]
        reachable = [x for x in rows if x.reachable]
        err = np.array([x.error for x in reachable if x.case.applied])
        cloudy = name.endswith(CLOUDY)
        own = None if cloudy else own_shift([x.case for x in rows])
        sig = [x.case.significance for x in rows]
        spread = [x.case.disagreement for x in rows if x.case.disagreement is not None]
        stats = [f"{np.sqrt(np.mean(err ** 2)):.2f}", f"{err.max():.2f}",
                 f"{np.mean(err <= 0.5):.0%}"] if err.size else ["-", "-", "-"]
        content = NO_STRUCTURE.get(name, "cloudy" if name.endswith(CLOUDY) else "structure")
        lines.append(f"| {name} | {sizes[name]} | {content} | "
                     + ("(clear twin's)" if cloudy else "(none accepted)" if own is None
                        else f"({own[0]:+.2f}, {own[1]:+.2f})")
                     + f" | {min(sig):.1f}-{max(sig):.1f} | "
                     + (f"{np.median(spread):.1f}" if spread else "-")
                     + f" | {err.size}/{len(reachable)} | " + " | ".join(stats) + " |")
    return lines


def collect(found: dict[str, tuple[Path, Path]], moves: np.ndarray, max_shift: float
            ) -> tuple[dict[str, list[Case]], list[Case]]:
    """Every displaced copy of every pair, and every wrong partner, at one search range."""
    with tempfile.TemporaryDirectory() as folder:
        by_pair = {name: displaced(name, s1, s2, moves, max_shift, Path(folder))
                   for name, (s1, s2) in found.items()}
        return by_pair, wrong_partners(found, max_shift, Path(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, help="folder of pairs from "
                        "scripts/extract_coregister_pairs.py")
    parser.add_argument("--offsets", type=int, default=20, help="offsets per pair")
    parser.add_argument("--max-shift", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every case here")
    args = parser.parse_args()
    logging.getLogger("cloudfree").setLevel(logging.ERROR)
    moves = np.random.default_rng(args.seed).uniform(-9.9, 9.9, (args.offsets, 2))
    moves[: args.offsets // 2] = np.round(moves[: args.offsets // 2])
    found = pairs(args.pairs)
    sizes = {}
    for name, (_, s2) in found.items():
        with rasterio.open(s2) as ds:
            sizes[name] = f"{ds.width}x{ds.height}"
    dump = {}
    for max_shift in args.max_shift:
        start = time.perf_counter()
        by_pair, wrong = collect(found, moves, max_shift)
        scored = score(by_pair, wrong, max_shift)
        print(f"## --max-shift {max_shift:g}\n\n{len(found)} real pairs x {args.offsets} offsets "
              f"(seed {args.seed}); {len(wrong)} wrong partners; "
              f"{time.perf_counter() - start:.0f} s.\n")
        print("\n".join(sweep_table(scored, max_shift)) + "\n")
        if max_shift == 10.0:
            print("\n".join(pair_table(scored, sizes)) + "\n")
        dump[max_shift] = [vars(x.case) | {"kind": x.kind, "error": x.error} for x in scored]
    if args.json:
        args.json.write_text(json.dumps(dump))


if __name__ == "__main__":
    main()
