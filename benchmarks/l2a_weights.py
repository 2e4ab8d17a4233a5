"""What each date and group of dates gives `remove --reference`'s fill, and other weightings of it.

    python benchmarks/l2a_weights.py DEST --half odd [--harder two-clouds|far-dates]
        [--detail CASE ...]

On the WorldCereal cases of ``benchmarks/l2a_pool.py`` (same ``--half`` and ``--harder``),
``remove --reference`` runs as that script runs it, and every prediction its fill adds up (each
date's, through its line, and each fitted group's, with their residual variances and time
factors) is recorded on the way (``reference_fill._accumulate`` wrapped). The recorded
predictions are then combined again under the cloud with other weights:

- ``as weighed``: the fill's own weights, without the agreement check (which drops a date at
  a pixel after the sum);
- ``power 2``, ``power 1``, ``equal``: (1e-4 / residual variance) ** 2, ** 1, ** 0, times the
  same time factor and edge ramp (``weights.WEIGHT_POWER`` is 4);
- ``dates only``, ``groups only``: the fill's weights on the single dates alone, or on the
  fitted groups (pairs and the group of the clear nearest dates) alone; ``dates only, equal,
  no days apart``: the single dates' predictions averaged as the naive mean averages its own;
- ``heterogeneity``: a variance shared by all predictions added to each one's residual variance
  before weighing, the between-prediction variance beyond what their residuals explain
  (DerSimonian and Laird, Controlled Clinical Trials 7, 1986: per pixel and band, (Q - (k - 1))
  / (S1 - S2 / S1), Q the inverse-variance weighted squared deviations of the k predictions,
  S1 and S2 the sums of their weights and squared weights, at least 0), its median over the
  filled pixels per band;
- ``block CV``: each prediction weighed by the error it makes on the target's clear pixels
  when fitted without them (10 px blocks in four folds; a least-squares line per band for a
  date, a ridge regression as ``joint_fit`` fits it for a group, both on the pixels clear in the
  target by its mask without the buffer and in its dates), instead of its residual variance.

Scored by PSNR on the pasted cloud (all nine bands, as ``l2a_pool.py``), against median fill
and the naive mean (``l2a_pool.py``'s columns). ``--detail CASE`` (a case's name as the table
prints it, e.g. ``2021-08-01_ROIs1970_fall_s2_cloudy_136_p280``) prints, for that case, each
prediction's share of the weight under the cloud, its residual variance and its PSNR alone on
the cloud pixels it fills.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from l2a_pool import (
    WORK_HELP,
    clear_dates,
    fitted_dates,
    naive_mean,
    other_months,
    reflectance,
    work_folder,
    worldcereal_cases,
)
from metrics import psnr

import cloudfree.dates.fill as reference_fill
from cloudfree.dates import similar_pixels
from cloudfree.dates.joint_fit import RIDGE, JointFit
from cloudfree.dates.weights import VARIANCE_UNIT, WEIGHT_POWER
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLOUD, NODATA, SHADOW, classify
from cloudfree.pipeline.options import OutputOptions, ReferenceOptions
from cloudfree.pipeline.remove import remove_scene

BLOCK, FOLDS = 10, 4
UNIT = VARIANCE_UNIT
#: The predictions recorded while a fill runs: dates (one, or a group's), whether a group,
#: prediction [bands, h, w], residual variance [bands, h, w], factor [h, w], taken [h, w].
RECORDED: list[tuple] = []
_accumulate, _predict = reference_fill._accumulate, JointFit.predict
_group: list[tuple[int, ...]] = []


def _recording_predict(self: JointFit, dates: list[np.ndarray]) -> np.ndarray:
    _group.append(self.dates)
    return _predict(self, dates)


def _recording_accumulate(index, prediction, variance, factor, take, *args, **kwargs):
    group = _group.pop() if _group else None
    RECORDED.append((group or (index,), group is not None, prediction.copy(), variance.copy(),
                     np.broadcast_to(np.asarray(factor, np.float32), take.shape).copy(),
                     take.copy()))
    return _accumulate(index, prediction, variance, factor, take, *args, **kwargs)


reference_fill._accumulate = _recording_accumulate
JointFit.predict = _recording_predict
#: the weighted predictions alone: the share of the similar pixels (``similar_pixels.py``) is
#: blended in after their sum, and is left out here so that ``as weighed`` is that sum
similar_pixels.SIMILAR = None


def combine(parts: list[tuple], weigh: Callable, base: np.ndarray) -> np.ndarray:
    """The recorded predictions averaged with ``weigh(variance, factor, group)`` where taken;
    ``base`` where none is."""
    total = np.zeros(base.shape)
    weights = np.zeros(base.shape)
    for _, group, pred, variance, factor, take in parts:
        w = weigh(variance, factor, group) * take[None]
        total += w * pred
        weights += w
    return np.where(weights > 0, total / np.where(weights > 0, weights, 1), base)


def heterogeneity(parts: list[tuple], where: np.ndarray) -> np.ndarray:
    """The DerSimonian-Laird between-prediction variance per band, its median over ``where``."""
    s1, s2, sp, spp = (np.zeros(parts[0][2].shape) for _ in range(4))
    k = np.zeros(where.shape)
    for _, _, pred, variance, _, take in parts:
        w = take[None] / variance
        s1 += w
        s2 += w * w
        sp += w * pred
        spp += w * pred * pred
        k += take
    ok = where & (k >= 2)
    s1, s2, sp, spp = (a[:, ok] for a in (s1, s2, sp, spp))
    tau = np.maximum(0, (spp - sp * sp / s1 - (k[ok] - 1)) / (s1 - s2 / s1))
    return np.median(tau, axis=1)


def block_cv(dates: list[np.ndarray], target: np.ndarray, fit: np.ndarray, group: bool
             ) -> np.ndarray:
    """Per band, the mean squared error of the prediction on ``fit`` pixels held out by blocks
    (``BLOCK`` px, ``FOLDS`` folds), fitted on the others."""
    rows, cols = np.indices(fit.shape)
    fold = (rows // BLOCK % 2) * 2 + cols // BLOCK % 2
    error, count = np.zeros(len(target)), 0
    for k in range(FOLDS):
        train, test = fit & (fold != k), fit & (fold == k)
        if train.sum() < 30 or not test.any():
            continue
        y = target[:, train].T.astype(np.float64)
        if group:
            a = np.concatenate([d[:, train].T for d in dates] + [np.ones((len(y), 1))], 1)
            penalty = RIDGE * len(y) * np.eye(a.shape[1])
            penalty[-1, -1] = 0
            coef = np.linalg.solve(a.T @ a + penalty, a.T @ y)
            b = np.concatenate([d[:, test].T for d in dates] + [np.ones((test.sum(), 1))], 1)
            pred = b @ coef
        else:
            pred = np.stack([np.polyval(np.polyfit(dates[0][i][train], y[:, i], 1),
                                        dates[0][i][test]) for i in range(len(target))], 1)
        error += ((pred - target[:, test].T) ** 2).sum(0)
        count += test.sum()
    return error / max(count, 1)


def power(p: float) -> Callable:
    return lambda variance, factor, group: factor * (UNIT / variance) ** p


def case_scores(case: Path, others: list[Path], month: Path, work: Path, detail: bool
                ) -> dict[str, float]:
    with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
        cloud = ds.read(1) > 0
    truth, _ = reflectance(month)
    cloudy, _ = reflectance(case)
    scores = {}
    remove_scene(case, None, work / "o.tif", outputs=OutputOptions(overwrite=True), quiet=True)
    scores["median fill"] = psnr(reflectance(work / "o.tif")[0], truth, cloud)
    RECORDED.clear()
    summary = remove_scene(case, None, work / "o.tif", dates=ReferenceOptions(references=others),
                           outputs=OutputOptions(overwrite=True, mask_out=work / "m.tif"),
                           quiet=True)
    out = reflectance(work / "o.tif")[0]
    scores["--reference"] = psnr(out, truth, cloud)
    dates = clear_dates(others)
    scores["naive mean"] = psnr(naive_mean(cloudy, fitted_dates(truth, ~cloud, dates), cloud)[0],
                                truth, cloud)
    h, w = cloud.shape  # the fill's strips reach beyond the image (mirrored): cropped
    parts = [(d, g, p[:, :h, :w], v[:, :h, :w], f[:h, :w], t[:h, :w])
             for d, g, p, v, f, t in RECORDED]
    with rasterio.open(work / "m.tif") as ds:
        filled = np.isin(ds.read(1), (CLOUD, SHADOW)) & cloud
    tau = heterogeneity(parts, filled)
    variants = {"as weighed": (parts, power(WEIGHT_POWER)),
                "power 2": (parts, power(2)), "power 1": (parts, power(1)),
                "equal": (parts, power(0)),
                "dates only": (parts, lambda v, f, g: (not g) * power(4)(v, f, g)),
                "groups only": (parts, lambda v, f, g: g * power(4)(v, f, g)),
                "dates only, equal, no days apart": (parts, lambda v, f, g: (not g) * (
                    f > 0) + 0 * v),
                "heterogeneity": ([(d, g, p, v + tau[:, None, None], f, t)
                                   for d, g, p, v, f, t in parts], power(4))}
    with open_sentinel2(case) as s2:
        refl, valid = s2.read()
        target_clear = ~np.isin(classify(refl, valid, bands=s2.bands)[0], (CLOUD, SHADOW, NODATA))
    by_index = {r["index"]: dates[Path(r["path"])] for r in summary["references"]}
    cv = [block_cv([by_index[i][0] for i in d], cloudy, target_clear & np.logical_and.reduce(
        [by_index[i][1] for i in d]), g) for d, g, *_ in parts]
    variants["block CV"] = ([(d, g, p, np.broadcast_to(e[:, None, None], v.shape), f, t)
                             for (d, g, p, v, f, t), e in zip(parts, cv, strict=True)],
                            power(4))
    for name, (recorded, weigh) in variants.items():
        scores[name] = psnr(combine(recorded, weigh, out), truth, cloud)
    if detail:
        names = {r["index"]: Path(r["path"]).stem[3:10] for r in summary["references"]}
        weights = [power(4)(v, f, g) * t[None] for _, g, _, v, f, t in parts]
        total = sum(weights)
        print(f"|   {case.stem[3:]}: prediction | share of the weight | residual variance | "
              "block CV error | PSNR alone on the cloud it fills |")
        for share, (d, _, p, v, _, t), e in sorted(
                zip([(w[:, filled] / total[:, filled]).mean() for w in weights], parts, cv,
                    strict=True), key=lambda row: -row[0]):
            alone = psnr(p, truth, t & cloud) if (t & cloud).any() else float("nan")
            print(f"|   {' + '.join(names[i] for i in d)} | {share:.1%} | {v[:, t].mean():.2e} "
                  f"| {e.mean():.2e} | {alone:.2f} |")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="DEST of scripts/build_l2a_pool.py")
    parser.add_argument("--work", type=Path, help=WORK_HELP)
    parser.add_argument("--half", choices=("even", "odd"), required=True)
    parser.add_argument("--harder", choices=("two-clouds", "far-dates"))
    parser.add_argument("--detail", nargs="*", default=[], help="cases to print per prediction")
    args = parser.parse_args()
    args.work = work_folder(args.work, "l2a_weights")
    root = args.root / "worldcereal"
    months = sorted(root.glob("s2_*.tif"))
    cases = worldcereal_cases(root, args.half, args.harder, args.work)
    rows = []
    for case in cases:
        month = root / f"{case.name[:13]}.tif"
        others = other_months(months, month, args.harder)
        scores = case_scores(case, others, month, args.work, case.stem[3:] in args.detail)
        if not rows:
            print("| case | " + " | ".join(scores) + " |\n" + "|---" * (len(scores) + 1) + "|")
        rows.append(scores)
        print(f"| {case.stem[3:]} | " + " | ".join(f"{v:.2f}" for v in scores.values()) + " |",
              flush=True)
    base = np.array([r["median fill"] for r in rows])
    naive = np.array([r["naive mean"] for r in rows])
    print(f"\n{len(rows)} cases\n\n| fill | mean dB | worst dB | over median fill: worst | at "
          "least median fill + 2 dB | over the naive mean: worst | at least the naive mean |\n"
          "|---|---|---|---|---|---|---|")
    for name in list(rows[0])[1:]:
        v = np.array([r[name] for r in rows])
        print(f"| {name} | {v.mean():.2f} | {v.min():.2f} | {(v - base).min():+.2f} | "
              f"{(v - base >= 2).sum()} | {(v - naive).min():+.2f} | {(v >= naive).sum()} |")


if __name__ == "__main__":
    main()
