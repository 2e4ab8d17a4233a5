"""Thin-cloud terms for `cloudfree mask`: tuned on half the pairs, scored on the rest.

    python scripts/extract_mask_pairs.py CLONE_OF_Oriolac/cloud-removal pairs/
    python benchmarks/mask_thin_cloud.py pairs/{high_cp,low_cp,ok,residual,series}

Truth, zones and scores are those of ``benchmarks/mask_quality.py``. The pairs are split by scene
before anything is measured: every patch of one SEN12MS-CR scene (``ROIs1970_fall_136``, ...) and
the whole SEN12MS-CR-TS series stay on one side. Held out: the series, ``summer_135``,
``fall_85``, ``winter_102`` and the residual triplets 2266, 316, 4065, 4294, 746 (every other one
by name); the rest tunes. Each term is added to the default cloud (a pixel is cloud when the
default says so or the term does); ``score`` is the default's score (0 where HOT <= 0 or snow):
- ``grow``: the cloud grown by up to ``steps`` px (8-connected) into ``score > low``;
- ``coherent``: ``score > low`` where the ``k`` x ``k`` mean of the score exceeds ``mean``;
- ``hot_excess``: ``score > low`` where HOT (3x3 mean) exceeds its ``k`` x ``k`` minimum by ``dh``
  (haze raises blue over red against the clearest pixels nearby);
- ``cirrus``: B10 (3x3 mean) above its ``k`` x ``k`` minimum by ``t``, HOT > 0, not snow (a
  relative test: the fall patches carry B10 near 0.04 on their clear dates);
- ``hot_margin``: ``score > low`` where HOT > ``h`` (a lower threshold for blue-raised pixels);
- ``near``: ``score > low`` within ``n`` px of the default cloud (a lower threshold bounded in
  distance, not in connected steps as ``grow``);
- ``blue_excess``: ``score > low`` where B02 (3x3 mean) exceeds its ``k`` x ``k`` minimum by
  ``db`` (the score is B02's ramp on nearly all the thin cloud it misses: a thin cloud raises
  blue above the clearest land near it, a haze all over does not).
Per term, the setting kept is the one with the best IoU on the tuning half among those that raise
its recall by at least 0.0005 and keep every clear twin of it and the clear scene under 5 % cloud;
only that setting is scored on the held-out half.

With ``--blend A [A ...]`` each setting is scored on the pairs made thin at each blend (the
cloudy date blended into its twin as ``mask_quality.py --blend`` does: clear + A * (cloudy -
clear), a real cloud at a fraction of its depth, against the same truth) and the setting kept is
the one with the best mean IoU over the blends that raises it above the default's, under the same
clear-land guards, first among those that beat the default at every blend (it is printed at each
blend, and marked where none of the family does).
First, for the default at each blend, where its misses sit: how many of them the score alone found
(above the threshold before the mask's rules) and the mask's rules took off (each rule turned off
in turn: the HOT test, the snow test, the bright-land test with the lone specks), by the score,
and by distance to the default's cloud. With ``--judged`` a term's pixels must also pass the
mask's bright-land test and its lone specks, judged as inside the mask (the term added to the
cloud before those rules), as the default's pixels do. ``--terms`` scores only the families
named. ``--half tuning`` scores the tuning half alone (the held-out half is scored once, at the
end).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mask_quality import CLEAR_SCENE, Pair, blended, halves, load_pairs, pairs_parser, scene
from scipy import ndimage

from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.bright_land import bright_land, specks
from cloudfree.mask.classify import CLOUD, MaskParams, classify, raw_score

MAX_CLEAR = 0.05
Term = Callable[["Features"], np.ndarray]


class Features:
    """The default's cloud and score, HOT, B02, B10 and the snow test of one image, computed
    once."""

    def __init__(self, refl: np.ndarray) -> None:
        classes, score = classify(refl, None, MaskParams())
        band = {b: refl[BANDS.index(b)] for b in ("B02", "B03", "B04", "B10", "B11")}
        self.cloud = classes == CLOUD
        self.score = np.nan_to_num(score)
        self.hot = band["B02"] - 0.5 * band["B04"] - 0.08
        self.blue = band["B02"]
        self.b10 = band["B10"]
        total = band["B03"] + band["B11"]
        self.snowy = np.divide(band["B03"] - band["B11"], total, out=np.zeros_like(total),
                               where=total > 0) >= 0.6
        self._distance: np.ndarray | None = None
        self._free: np.ndarray | None = None
        self.refl = refl

    def judged(self, term: np.ndarray) -> np.ndarray:
        """The pixels of ``term`` that the mask's bright-land test and lone specks leave cloud,
        judged with the cloud before those rules (``land=False``), as inside the mask."""
        if self._free is None:
            self._free = classify(self.refl, None, MaskParams(land=False))[0] == CLOUD
        union = term | self._free
        valid = np.ones(union.shape, bool)
        bands = {b: self.refl[i] for i, b in enumerate(BANDS)}
        union &= ~bright_land(bands, union, self.score, valid)
        return term & union & ~specks(union, valid)

    @property
    def distance(self) -> np.ndarray:
        """Distance (px) to the default's cloud (the image's diagonal where it has none)."""
        if self._distance is None:
            self._distance = (ndimage.distance_transform_edt(~self.cloud) if self.cloud.any()
                              else np.full(self.cloud.shape, float(np.hypot(*self.cloud.shape))))
        return self._distance


def local_excess(x: np.ndarray, k: int) -> np.ndarray:
    smooth = ndimage.uniform_filter(x, 3, mode="reflect")
    return smooth - ndimage.minimum_filter(smooth, k, mode="reflect")


def grow(low: float, steps: int) -> Term:
    return lambda f: ndimage.binary_dilation(f.cloud, np.ones((3, 3), bool), steps,
                                             mask=f.score > low)


def coherent(low: float, k: int, mean: float) -> Term:
    return lambda f: (f.score > low) & (ndimage.uniform_filter(f.score, k, mode="reflect") > mean)


def hot_excess(low: float, k: int, dh: float) -> Term:
    return lambda f: (f.score > low) & (local_excess(f.hot, k) > dh)


def cirrus(k: int, t: float) -> Term:
    return lambda f: (local_excess(f.b10, k) > t) & ~f.snowy & (f.hot > 0)


def hot_margin(low: float, h: float) -> Term:
    return lambda f: (f.score > low) & (f.hot > h)


def near(low: float, n: int) -> Term:
    return lambda f: (f.score > low) & (f.distance <= n)


def blue_excess(low: float, k: int, db: float) -> Term:
    return lambda f: (f.score > low) & (local_excess(f.blue, k) > db)


def candidates() -> dict[str, list[tuple[str, Term]]]:
    """Each family's grid of settings, by the name printed."""
    grid = itertools.product
    return {
        "grow": [(f"low={a} steps={b}", grow(a, b))
                 for a, b in grid((0.06, 0.1, 0.14, 0.17), (1, 3, 8, 30))],
        "coherent": [(f"low={a} k={b} mean={c}", coherent(a, b, c))
                     for a, b, c in grid((0.08, 0.12, 0.16), (9, 25), (0.15, 0.2, 0.25))],
        "hot_excess": [(f"low={a} k={b} dh={c}", hot_excess(a, b, c))
                       for a, b, c in grid((0.0, 0.1, 0.14, 0.17), (9, 15, 25, 41, 81),
                                           (0.02, 0.025, 0.03, 0.035, 0.04, 0.06))],
        "cirrus": [(f"k={a} t={b}", cirrus(a, b))
                   for a, b in grid((15, 41), (0.003, 0.006, 0.01, 0.02))],
        "hot_margin": [(f"low={a} h={b}", hot_margin(a, b))
                       for a, b in grid((0.05, 0.1, 0.15), (0.01, 0.02, 0.04, 0.06))],
        "near": [(f"low={a} n={b}", near(a, b))
                 for a, b in grid((0.06, 0.1, 0.14, 0.17), (2, 5, 10, 20, 40))],
        "blue_excess": [(f"low={a} k={b} db={c}", blue_excess(a, b, c))
                        for a, b, c in grid((0.1, 0.14, 0.17, 0.19), (41, 81, 121),
                                            (0.03, 0.04, 0.06, 0.08, 0.1))],
    }


class Scorer:
    """Scores of the default cloud or a term on pairs, with the images' features cached by
    pair, blend and date."""

    def __init__(self, clear_scene: tuple[np.ndarray, np.ndarray], judged: bool) -> None:
        self.clear_scene = clear_scene
        self.judged = judged
        self.cache: dict[tuple, Features] = {}

    def features(self, key: tuple, refl: np.ndarray) -> Features:
        if key not in self.cache:
            self.cache[key] = Features(refl)
        return self.cache[key]

    def evaluate(self, term: Term | None, pairs: list[Pair], blend: float) -> dict[str, float]:
        """Pooled scores as in mask_quality (the pairs made thin at ``blend``); clear false
        alarms."""
        def mask(f: Features) -> np.ndarray:
            if term is None:
                return f.cloud
            return f.cloud | (f.judged(term(f)) if self.judged else term(f))

        counts = {zone: np.zeros(3, np.int64) for zone in ("all", "thick", "edge", "rest")}
        clear = []
        for pair in blended(pairs, blend):
            found, truth = mask(self.features((pair.name, blend), pair.cloudy)), pair.truth
            for zone, where in {"all": np.ones_like(truth), **pair.zones()}.items():
                counts[zone] += [(found & truth & where).sum(), (found & ~truth & where).sum(),
                                 (~found & truth & where).sum()]
            clear.append(float(mask(self.features((pair.name, "clear"), pair.clear)).mean()))
        refl, valid = self.clear_scene
        tp, fp, fn = counts["all"]
        return {"iou": tp / (tp + fp + fn), "precision": tp / max(tp + fp, 1),
                "recall": tp / max(tp + fn, 1),
                "rest_iou": counts["rest"][0] / counts["rest"].sum(),
                "edge_iou": counts["edge"][0] / counts["edge"].sum(),
                "clear_mean": float(np.mean(clear)), "clear_max": float(np.max(clear)),
                "clear_over": int(np.sum(np.array(clear) > MAX_CLEAR)),
                "clear_scene": float(mask(self.features(("scene",), refl))[valid].mean())}

    def over_blends(self, term: Term | None, pairs: list[Pair],
                    blends: list[float]) -> dict[float, dict[str, float]]:
        return {blend: self.evaluate(term, pairs, blend) for blend in blends}


def row(half: str, name: str, blend: float, r: dict[str, float]) -> str:
    return (f"| {half} | {name} | {blend:g} | {r['iou']:.3f} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['edge_iou']:.3f} | {r['rest_iou']:.3f} | "
            f"{r['clear_mean']:.1%} / {r['clear_max']:.1%} ({r['clear_over']} over 5 %) | "
            f"{r['clear_scene']:.1%} |")


#: Bins of the raw score and of the distance to the default's cloud the misses are counted in.
SCORE_BINS = (0, 0.05, 0.1, 0.15, 0.2, 1)
DISTANCE_BINS = (0, 3, 10, 30, np.inf)
#: The mask's rules, each turned off in turn to see which misses it takes off.
RULES = {"HOT test": MaskParams(hot=False), "snow test": MaskParams(ndsi_threshold=1.0),
         "bright land and specks": MaskParams(land=False)}


def spans(bins: tuple[float, ...], counts: np.ndarray) -> str:
    """Each bin's share of ``counts``, by its bounds."""
    total = max(int(counts.sum()), 1)
    return ", ".join(f"{lo:g}-{hi:g}: {n / total:.1%}" if np.isfinite(hi) else
                     f"over {lo:g}: {n / total:.1%}"
                     for lo, hi, n in zip(bins[:-1], bins[1:], counts, strict=True))


def misses(pairs: list[Pair], blend: float) -> None:
    """Print where the default's misses sit on ``pairs`` made thin at ``blend``: by the raw
    score (before the rules), the share each rule took off, and by distance to its cloud."""
    by_score, by_distance = np.zeros(len(SCORE_BINS) - 1, np.int64), np.zeros(
        len(DISTANCE_BINS) - 1, np.int64)
    taken = dict.fromkeys(RULES, 0)
    for pair in blended(pairs, blend):
        f = Features(pair.cloudy)
        missed = pair.truth & ~f.cloud
        raw = raw_score({b: pair.cloudy[BANDS.index(b)] for b in ("B01", "B02", "B03", "B04",
                                                                   "B10")})
        by_score += np.histogram(raw[missed], SCORE_BINS)[0]
        by_distance += np.histogram(f.distance[missed], DISTANCE_BINS)[0]
        for rule, params in RULES.items():
            taken[rule] += int((missed & (classify(pair.cloudy, None, params)[0] == CLOUD)).sum())
    total = max(int(by_score.sum()), 1)
    print(f"blend {blend:g}: {by_score.sum()} cloud pixels missed; by the raw score "
          f"{spans(SCORE_BINS, by_score)}; found with the rule off: "
          + ", ".join(f"{k} {v / total:.1%}" for k, v in taken.items())
          + f"; px from the default's cloud: {spans(DISTANCE_BINS, by_distance)}")


def main() -> None:
    parser = pairs_parser(__doc__)
    parser.add_argument("--clear", type=Path, default=CLEAR_SCENE,
                        help="a cloud-free 13-band L1C scene for one more false alarm figure")
    parser.add_argument("--blend", type=float, nargs="+", default=[1.0],
                        help="score the pairs made thin at each of these blends (default 1, the "
                             "pairs themselves); a setting is chosen by its mean IoU over them")
    parser.add_argument("--judged", action="store_true",
                        help="a term's pixels also pass the mask's bright-land test and lone "
                             "specks, as the default's do")
    parser.add_argument("--terms", nargs="+", choices=list(candidates()),
                        help="only these families of terms")
    parser.add_argument("--half", choices=("tuning",),
                        help="score the tuning half alone (no held-out rows)")
    args = parser.parse_args()
    pairs = load_pairs(args.folders)
    tune, held = halves(pairs)
    with open_sentinel2(args.clear) as s2:
        scorer = Scorer(s2.read(), args.judged)
    print(f"tuning half: {len(tune)} pairs of {len({scene(p.name) for p in tune})} scenes; "
          f"held out: {len(held)} pairs of {len({scene(p.name) for p in held})} scenes\n")
    for blend in args.blend:
        misses(tune, blend)
    print("\n| half | mask | blend | IoU | precision | recall | edge zone: IoU | rest: IoU | "
          f"cloud on the clear twins: mean / worst | cloud on {args.clear.stem} |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    parts = (("tuning", tune),) if args.half else (("tuning", tune), ("held out", held))
    base = {half: scorer.over_blends(None, ps, args.blend) for half, ps in parts}
    for half, by_blend in base.items():
        for blend, r in by_blend.items():
            print(row(half, "defaults", blend, r))
    base_iou = np.mean([r["iou"] for r in base["tuning"].values()])
    for family, settings in candidates().items():
        if args.terms and family not in args.terms:
            continue
        best = None
        for name, term in settings:
            by_blend = scorer.over_blends(term, tune, args.blend)
            iou = np.mean([r["iou"] for r in by_blend.values()])
            allowed = (all(r["clear_over"] == 0 and r["clear_scene"] < MAX_CLEAR
                           for r in by_blend.values())
                       and (iou > base_iou + 0.0005 if len(args.blend) > 1 else
                            by_blend[args.blend[0]]["recall"]
                            >= base["tuning"][args.blend[0]]["recall"] + 0.0005))
            every = all(r["iou"] > base["tuning"][b]["iou"] for b, r in by_blend.items())
            if allowed and (best is None or (every, iou) > best[2:4]):
                best = (name, term, every, iou, by_blend)
        if best is None:
            print(f"| tuning | {family}: no setting passes | | | | | | | | | |")
            continue
        name, term, every, _, by_blend = best
        label = f"{family} {name}" + ("" if every else " (not better than the default"
                                      + (" at every blend)" if len(args.blend) > 1 else ")"))
        for blend, r in by_blend.items():
            print(row("tuning", label, blend, r))
        if not args.half:
            for blend, r in scorer.over_blends(term, held, args.blend).items():
                print(row("held out", label, blend, r), flush=True)


if __name__ == "__main__":
    main()
