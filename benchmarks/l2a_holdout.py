"""Does the error on the target's own clear pixels tell which fill from other dates is better?

    python benchmarks/l2a_holdout.py DEST --half odd [--harder two-clouds|far-dates]

On the WorldCereal cases of ``benchmarks/l2a_pool.py`` (same ``--half`` and ``--harder``), two
fills from the other months, given the true cloud: **weighted**, each month fitted to the target
by a least-squares line per band on the target's clear pixels (where the month is clear by
cloudfree's mask) and the months weighted per band by (1e-4 / the line's residual variance) **
``weights.WEIGHT_POWER`` x exp(-days apart / the time scale, stretched as
``weights.spread_scale`` stretches it), a stand-in for ``remove --reference`` with one line per band
for the whole image; and **mean**, the fitted months averaged (the benchmark's naive mean).

The question is whether their difference under the cloud (dB, weighted minus mean) can be told
from the target's clear pixels beforehand: the same fills are made with the lines fitted on the
clear pixels less a held-out set and scored on that set, for three kinds of held-out set:

- ``blocks``: 10 px blocks in four folds (each fold held out in turn);
- ``shifted cloud``: the pasted cloud's shape shifted by half the image (four shifts), on the
  clear pixels it then covers (only where that leaves 20 px to score and 20 % to fit);
- ``ring``: the clear pixels within 6 px of the cloud (only where 20 % are left to fit).

Per case: both fills' PSNR under the cloud and each prediction; then, per kind, the rank
correlation (Spearman) of predicted and true differences, and what choosing the mean where the
prediction favours it would gain under the cloud in all.
"""

from __future__ import annotations

import argparse
import math
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from l2a_pool import (
    WORK_HELP,
    clear_dates,
    other_months,
    reflectance,
    work_folder,
    worldcereal_cases,
)
from metrics import psnr
from scipy import ndimage, stats

from cloudfree.dates.weights import MAX_STRETCH, MIN_SPREAD, TIME_SCALE, WEIGHT_POWER

MIN_SHARED = 20
BLOCK, FOLDS, RING = 10, 4, 6


def time_scale(days: list[float]) -> float:
    """TIME_SCALE stretched until the time factors spread over MIN_SPREAD dates' worth (half
    the dates when fewer), as ``weights.spread_scale``."""
    days_ = np.array(days)
    want, scale = min(MIN_SPREAD, len(days_) / 2), TIME_SCALE
    while scale < MAX_STRETCH * TIME_SCALE:
        f = np.exp(-(days_ - days_.min()) / scale)
        if f.sum() ** 2 / (f * f).sum() >= want:
            break
        scale *= 1.05
    return min(scale, MAX_STRETCH * TIME_SCALE)


def fills(truth: np.ndarray, fit: np.ndarray, where: np.ndarray, others: list[tuple]
          ) -> tuple[np.ndarray, np.ndarray]:
    """The weighted and mean fills [bands, n] at the ``where`` pixels, lines fitted on ``fit``;
    ``others``: (reflectance, clear map, time factor) per month."""
    weighted = np.zeros((truth.shape[0], int(where.sum())))
    mean, w_sum, count = weighted.copy(), weighted.copy(), weighted.copy()
    for refl, clear, factor in others:
        both = fit & clear
        if both.sum() < MIN_SHARED:
            continue
        x, y = refl[:, both].astype(np.float64), truth[:, both].astype(np.float64)
        mx, my = x.mean(1, keepdims=True), y.mean(1, keepdims=True)
        gain = ((x - mx) * (y - my)).mean(1, keepdims=True) / np.maximum(
            ((x - mx) ** 2).mean(1, keepdims=True), 1e-10)
        offset = my - gain * mx
        variance = ((gain * x + offset - y) ** 2).mean(1, keepdims=True) + 1e-8
        weight = (1e-4 / variance) ** WEIGHT_POWER * factor
        ok = clear[where][None]
        prediction = gain * refl[:, where] + offset
        weighted += weight * prediction * ok
        w_sum += weight * ok
        mean += prediction * ok
        count += ok
    return weighted / np.maximum(w_sum, 1e-30), mean / np.maximum(count, 1)


def squared_error(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float(((np.clip(prediction, 0, 1) - np.clip(truth, 0, 1)) ** 2).sum())


def held_out(cloud: np.ndarray, kind: str) -> list[np.ndarray]:
    """The held-out sets of clear pixels of one kind (see the module docstring)."""
    clear = ~cloud
    h, w = cloud.shape
    if kind == "blocks":
        rows, cols = np.mgrid[:h, :w] // BLOCK
        fold = (7 * rows + 3 * cols) % FOLDS
        sets = [clear & (fold == k) for k in range(FOLDS)]
    elif kind == "shifted cloud":
        sets = [np.roll(cloud, shift, (0, 1)) & clear
                for shift in ((h // 2, 0), (0, w // 2), (h // 2, w // 2), (h // 4, 3 * w // 4))]
    else:
        sets = [ndimage.binary_dilation(cloud, iterations=RING) & clear]
    return [s for s in sets if s.sum() >= MIN_SHARED and (clear & ~s).sum() >= 0.2 * clear.sum()]


KINDS = ("blocks", "shifted cloud", "ring")


def tuning_cases(description: str, name: str) -> tuple[argparse.Namespace, dict, list]:
    """The command line (root, ``--half``, ``--harder``, ``--work``, by default a temporary
    folder named after ``name``), the clear months (reflectance and clear map by cloudfree's
    mask) and the cases."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("root", type=Path, help="DEST of scripts/build_l2a_pool.py")
    parser.add_argument("--half", choices=("even", "odd"), required=True)
    parser.add_argument("--harder", choices=("two-clouds", "far-dates"))
    parser.add_argument("--work", type=Path, help=WORK_HELP)
    args = parser.parse_args()
    args.work = work_folder(args.work, name)
    root = args.root / "worldcereal"
    months = sorted(root.glob("s2_*.tif"))
    dates = {m: d for m, d in clear_dates(months).items() if d[1].mean() > 0.5}
    return args, dates, worldcereal_cases(root, args.half, args.harder, args.work)


def case_inputs(case: Path, dates: dict, harder: str | None
                ) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """A case's truth [bands, h, w], its pasted cloud and the other months (reflectance, clear
    map, time factor; ``far-dates``: without the months next to it)."""
    month = case.parent.parent / f"{case.name[:13]}.tif"
    when = date.fromisoformat(month.stem[3:])
    near = other_months(list(dates), month, harder)
    days = [abs((date.fromisoformat(p.stem[3:]) - when).days) for p in near]
    scale = time_scale(days)
    others = [(*dates[p], math.exp(-d / scale)) for p, d in zip(near, days, strict=True)]
    with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
        cloud = ds.read(1) > 0
    return reflectance(month)[0], cloud, others


def main() -> None:
    args, dates, cases = tuning_cases(__doc__.splitlines()[0], "l2a_holdout")
    print("| case | weighted, dB | mean, dB | weighted - mean | predicted: " +
          " | ".join(KINDS) + " |\n|---|---|---|---|" + "---|" * len(KINDS))
    true, predicted = [], {kind: [] for kind in KINDS}
    for case in cases:
        truth, cloud, others = case_inputs(case, dates, args.harder)
        weighted, mean = fills(truth, ~cloud, cloud, others)
        true.append(psnr(weighted, truth[:, cloud]) - psnr(mean, truth[:, cloud]))
        row = []
        for kind in KINDS:
            errors = np.zeros(2)
            for part in held_out(cloud, kind):
                errors += [squared_error(f, truth[:, part])
                           for f in fills(truth, ~cloud & ~part, part, others)]
            predicted[kind].append(10 * math.log10(errors[1] / errors[0]) if errors[0] else
                                   math.nan)
            row.append(predicted[kind][-1])
        print(f"| {case.stem[3:13]} {case.stem.rsplit('_', 1)[1]} | "
              f"{psnr(weighted, truth[:, cloud]):.2f} | {psnr(mean, truth[:, cloud]):.2f} | "
              f"{true[-1]:+.2f} | " + " | ".join(f"{v:+.2f}" for v in row) + " |", flush=True)
    true_ = np.array(true)
    print(f"\n{len(true_)} cases; the mean better under the cloud on {(true_ < 0).sum()}\n\n"
          "| held out | cases | rank correlation with the true difference | mean chosen on | "
          "gain under the cloud, dB in all |\n|---|---|---|---|---|")
    for kind in KINDS:
        p = np.array(predicted[kind])
        ok = np.isfinite(p)
        rho = stats.spearmanr(p[ok], true_[ok])[0] if ok.sum() > 2 else math.nan
        choose = ok & (p < 0)
        print(f"| {kind} | {ok.sum()} | {rho:.2f} | {choose.sum()} | "
              f"{-true_[choose].sum():+.2f} |")


if __name__ == "__main__":
    main()
