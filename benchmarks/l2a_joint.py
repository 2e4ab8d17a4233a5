"""Can the other dates fitted jointly beat every single date under the cloud?

    python benchmarks/l2a_joint.py DEST --half odd [--harder two-clouds|far-dates]

On the WorldCereal cases of ``benchmarks/l2a_pool.py`` (same ``--half`` and ``--harder``), fills
from the other months given the true cloud, all fitted on the target's truly clear pixels:

- **weighted** and **mean**: ``l2a_holdout.fills`` (a line per band per month; the months
  weighted as ``remove --reference`` weighs them, or averaged);
- **best month**: the single fitted month that scores best under the cloud (an oracle: no fill
  can know it), and **least residual**: the month whose line fits the clear pixels best;
- **joint, ridge L**: per band, the target regressed on that band of every month at once
  (target_b = sum_d a_d x_db + c), least squares on the pixels clear in the target and in every
  month, with a ridge penalty L x n x |a - a0|^2 towards the weighted fill's own coefficients
  a0 (its weights times the months' gains), so that few clear pixels leave it the weighted fill;
- **joint, all bands, ridge L**: the same on every band of every month (months x bands + 1
  coefficients per target band), the prior a0 the weighted fill's coefficients on the same band.

Scored by PSNR (reflectance clipped to [0, 1], all bands) on the cloud pixels every month sees
clear (the months are at most 0.2 % cloud by cloudfree's mask). Per case a row; then per fill
the mean, the worst, and on how many cases it beats the best single month and the weighted fill.
"""

from __future__ import annotations

import numpy as np
from l2a_holdout import case_inputs, fills, tuning_cases
from metrics import psnr

from cloudfree.dates.weights import WEIGHT_POWER

RIDGES = (1e-5, 1e-4, 1e-3)


def lines(truth: np.ndarray, fit: np.ndarray, others: list[tuple]) -> list[tuple]:
    """Per month: gain, offset [bands] and residual variance of its line per band on ``fit``."""
    out = []
    for refl, clear, _ in others:
        both = fit & clear
        x, y = refl[:, both].astype(np.float64), truth[:, both].astype(np.float64)
        mx, my = x.mean(1), y.mean(1)
        gain = ((x - mx[:, None]) * (y - my[:, None])).mean(1) / np.maximum(x.var(1), 1e-10)
        offset = my - gain * mx
        out.append((gain, offset, ((gain[:, None] * x + offset[:, None] - y) ** 2).mean(1)))
    return out


def prior(others: list[tuple], fitted: list[tuple]) -> np.ndarray:
    """The weighted fill's coefficient of each month per band [months, bands]: its normalised
    weight times its gain."""
    weight = np.array([(1e-4 / (v + 1e-8)) ** WEIGHT_POWER * f
                       for (_, _, f), (_, _, v) in zip(others, fitted, strict=True)])
    weight /= weight.sum(0)
    return weight * np.array([g for g, _, _ in fitted])


def ridge(x: np.ndarray, y: np.ndarray, a0: np.ndarray, strength: float) -> tuple:
    """Coefficients and intercept of y [n] on x [n, k], penalised by strength x n x |a - a0|^2
    (the intercept free)."""
    mx, my = x.mean(0), y.mean()
    xc, yc = x - mx, y - my
    n = len(y)
    a = np.linalg.solve(xc.T @ xc + strength * n * np.eye(x.shape[1]),
                        xc.T @ yc + strength * n * a0)
    return a, my - mx @ a


def joint(truth: np.ndarray, fit: np.ndarray, where: np.ndarray, others: list[tuple],
          a0: np.ndarray, strength: float, all_bands: bool) -> np.ndarray:
    """The joint fill [bands, n] at ``where`` (see the module docstring)."""
    every = fit & np.logical_and.reduce([c for _, c, _ in others])
    stack = np.stack([r for r, _, _ in others]).astype(np.float64)  # [months, bands, h, w]
    months, bands = stack.shape[:2]
    out = np.zeros((bands, int(where.sum())))
    for b in range(bands):
        if all_bands:
            x, at = stack[:, :, every].reshape(months * bands, -1).T, \
                stack[:, :, where].reshape(months * bands, -1).T
            prior_b = np.zeros((months, bands))
            prior_b[:, b] = a0[:, b]
            prior_b = prior_b.ravel()
        else:
            x, at, prior_b = stack[:, b, every].T, stack[:, b, where].T, a0[:, b]
        a, c = ridge(x, truth[b, every].astype(np.float64), prior_b, strength)
        out[b] = at @ a + c
    return out


def main() -> None:
    args, dates, cases = tuning_cases(__doc__.splitlines()[0], "l2a_joint")
    names = ["weighted", "mean", "best month", "least residual"] + [
        f"joint{', all bands' * all_} {s:g}" for all_ in (False, True) for s in RIDGES]
    print("| case | clear px | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
    rows = []
    for case in cases:
        truth, cloud, others = case_inputs(case, dates, args.harder)
        where = cloud & np.logical_and.reduce([c for _, c, _ in others])
        target = truth[:, where]
        weighted, mean = fills(truth, ~cloud, where, others)
        fitted = lines(truth, ~cloud, others)
        singles = [psnr(g[:, None] * r[:, where] + o[:, None], target)
                   for (r, _, _), (g, o, _) in zip(others, fitted, strict=True)]
        least = int(np.argmin([v.mean() for _, _, v in fitted]))
        a0 = prior(others, fitted)
        scores = [psnr(weighted, target), psnr(mean, target), max(singles), singles[least]]
        scores += [psnr(joint(truth, ~cloud, where, others, a0, s, all_), target)
                   for all_ in (False, True) for s in RIDGES]
        rows.append(scores)
        print(f"| {case.stem[3:13]} {case.stem.rsplit('_', 1)[1]} | {int((~cloud).sum())} | "
              + " | ".join(f"{v:.2f}" for v in scores) + " |", flush=True)
    table = np.array(rows)
    print(f"\n{len(rows)} cases\n\n| fill | mean dB | worst dB | above the best month | above the "
          "weighted fill | over the weighted fill: mean / worst |\n|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        v = table[:, i]
        print(f"| {name} | {v.mean():.2f} | {v.min():.2f} | {(v > table[:, 2]).sum()} | "
              f"{(v > table[:, 0]).sum()} | {(v - table[:, 0]).mean():+.2f} / "
              f"{(v - table[:, 0]).min():+.2f} |")


if __name__ == "__main__":
    main()
