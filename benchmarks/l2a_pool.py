"""`mask` and `remove` on the pool's L2A-style inputs (BigEarthNet patches, WorldCereal series).

    python scripts/build_l2a_pool.py --sdist ... --worldcereal ... --clouds ... DEST
    python benchmarks/l2a_pool.py DEST [--every N] [--detail] [--no-bigearthnet]
        [--no-temporal-mask] [--half even|odd] [--harder two-clouds|far-dates]
    python benchmarks/l2a_pool.py DEST --no-bigearthnet --half odd --single 2

BigEarthNet (six L2A patches, 120 px, folders of per-band files, each with its S1): ``mask``, and
``remove`` without S1 and with it; what each finds and fills (there is no truth and no second
date of a place, so no ``--reference``).

WorldCereal (12 monthly L2A composites of one place, B02-B08, B11, B12, each with S1): ``mask``
on every month; then each clear month with the real cloud of one of the pool's cloudy patches
pasted in (every clear month with every donor; ``--half`` keeps the clear months at even or
odd places in time order: settings are tuned on the odd ones and scored on the even ones, held
out by date) is filled by

- ``median fill``: ``remove`` without S1 (the default for this band set: median-fill's local
  fill from the clear pixels nearby);
- ``median fill + S1``: the same with the month's S1 (nearby pixels that match in S1);
- ``naive mean``: the naive fill given the true cloud: each other month, where cloudfree's own
  mask finds it clear, fitted to the target by a least-squares line per band on the target's
  truly clear pixels, and the fitted months averaged at each pasted pixel (``naive mean
  (raw)``: the same months unfitted, the plain mean);
- ``sketch``: what a reference fit coping with near-total cloud could give, for comparison
  only (``sketch_fill``: lines fitted on the pixels clear by the unbuffered mask, the months
  weighted by their lines' residuals and days apart);
- ``--reference``: ``remove --reference`` with every other month (no S1; its defaults: the
  other dates judge the target's clouds), and, to show what the cloud buffer costs the fit on
  a 100 px image, the same with ``--buffer 0``; with ``--no-temporal-mask``, also ``remove
  --reference --no-temporal-mask`` (the target's own mask); with ``--true-mask``, also the
  same given the true cloud as its mask (``with_true_mask``; the summary table only);

scored by PSNR (reflectance clipped to [0, 1], all nine bands) on the pasted pixels. ``--harder``
makes harder cases of the same targets (``--half`` still applies): ``two-clouds`` pastes each
donor's cloud together with the next donor's (in name order; unions covering more than
``MOST_CLOUD`` of the image are left out), ``far-dates`` leaves the months next to the target out
of the references (the nearest then lie two months or more away in the crop cycle). Each case gets
a row (cloud share, truly clear pixels, pixels our mask leaves clear and the share of the pasted
cloud it finds, the scores, the best single fitted month); a case where ``--reference`` misses
median fill + 2 dB or the naive mean gets per-month diagnostics below it (``--detail``: every
case): the month's clear share, the pixels it shares clear with the target (truly; by our masks, as
the reference fill counted them), the naive line's RMS residual, the PSNR of that month alone on
the cloud it sees, and the pixels ``--reference`` filled from it.

``--single N`` runs instead, per WorldCereal case and per single reference (the ``N`` months
nearest the target on each side that their own mask finds at least half clear),
``remove --reference`` with that month alone, stage by stage (``SINGLE_STAGES``: the default;
without the thin-cloud restoration; without it and the carried residual, i.e. the fits'
prediction as it is; with the target's own mask, ``--no-temporal-mask``), and reports on the
true cloud, where the month fills: the mean signed error per band (DN) and the RMSE
(reflectance), beside the RMSE and blue and NIR error of the month fitted by a least-squares
line per band on the pixels the final mask (the default run's) calls clear and the month's own
mask too (one clean reference's fill should be as good as that line); then the mean
over the cases of each.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import code_version
import numpy as np
import rasterio
from metrics import psnr

from cloudfree.core.errors import CloudfreeError
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLOUD, NODATA, SHADOW, MaskParams, classify
from cloudfree.pipeline import remove
from cloudfree.pipeline.mask import mask_scene
from cloudfree.pipeline.options import OutputOptions, ReferenceOptions, split_options
from cloudfree.pipeline.remove import remove_scene

#: Fewest pixels a date must share clear with the target's truly clear ones to be fitted.
MIN_SHARED = 20
#: Most of the image two pasted clouds may cover together (``--harder two-clouds``).
MOST_CLOUD = 0.95
#: Fewest valid pixels (share of the image) for a month to be given as a reference
#: (``months_with_data``).
MIN_VALID = 0.5


def reflectance(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open_sentinel2(path) as s2:
        return s2.read()


def attempt(run, *args, **kwargs) -> tuple[dict | None, str]:
    """``run(*args, **kwargs)``'s summary and a one-line outcome (its error when it fails);
    ``remove_scene``'s options are given by name."""
    started = time.perf_counter()
    options = {"overwrite": True, **kwargs}
    try:
        summary = run(*args, quiet=True, **(split_options(options) if run is remove_scene
                                            else options))
    except CloudfreeError as exc:
        return None, f"error: {exc}"
    return summary, f"ok ({time.perf_counter() - started:.1f} s)"


def bigearthnet(root: Path, work: Path) -> None:
    print("| BigEarthNet patch | mask from | cloud | snow | remove, no S1 | remove, S1 | "
          "filled, S1 |\n|---|---|---|---|---|---|---|")
    for patch in sorted(p for p in root.iterdir() if p.is_dir() and "MSIL2A" in p.name):
        s1 = root / f"{patch.name}_s1.tif"
        m, _ = attempt(mask_scene, patch, work / "m.tif")
        with rasterio.open(work / "m.tif") as ds:
            source = ds.tags()["MASK_SOURCE"]
        _, plain = attempt(remove_scene, patch, None, work / "r.tif")
        r, with_s1 = attempt(remove_scene, patch, s1, work / "r1.tif")
        filled = f"{r['filled_pixels'] / 120 ** 2:.1%}" if r else "-"
        print(f"| {patch.name} | {source} | {m['cloud_fraction']:.1%} | "
              f"{m['snow_fraction']:.1%} | {plain} | {with_s1} | {filled} |")


def clear_dates(months: list[Path]) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """Each month's reflectance and where it is clear by cloudfree's own mask (valid, neither
    cloud nor shadow): a naive user's clear pixels of the other dates."""
    out = {}
    for month in months:
        with open_sentinel2(month) as s2:
            refl, valid = s2.read()
            classes = classify(refl, valid, bands=s2.bands)[0]
        out[month] = refl, valid & ~np.isin(classes, (CLOUD, SHADOW, NODATA))
    return out


def fitted_dates(target: np.ndarray, known: np.ndarray, dates: dict) -> list[dict]:
    """Per other date: a line per band fitted (least squares) on the pixels where the target
    is truly clear (``known``) and the date clear, its prediction of the whole target, where
    the date is clear, the shared pixel count and the fit's RMS residual."""
    out = []
    for path, (refl, clear) in dates.items():
        shared = known & clear
        entry = {"date": path.stem[3:], "clear": float(clear.mean()), "shared": int(shared.sum()),
                 "clear_map": clear}
        if entry["shared"] < MIN_SHARED:
            out.append(entry | {"pred": None, "rms": float("nan"), "var": None})
            continue
        pred = np.empty_like(refl)
        residual = []
        for b in range(refl.shape[0]):
            x, y = refl[b][shared].astype(np.float64), target[b][shared].astype(np.float64)
            slope, offset = np.polyfit(x, y, 1)
            pred[b] = slope * refl[b] + offset
            residual.append(np.mean((slope * x + offset - y) ** 2))
        out.append(entry | {"pred": pred, "rms": float(np.sqrt(np.mean(residual))),
                            "var": np.array(residual)})
    return out


def naive_mean(cloudy: np.ndarray, fits: list[dict], cloud: np.ndarray) -> tuple[np.ndarray,
                                                                                  float]:
    """The naive fill given the true mask: at each cloud pixel, the mean of the fitted clear
    dates' predictions (the cloudy value where no date is clear); and the share covered."""
    total = np.zeros_like(cloudy, dtype=np.float64)
    count = np.zeros(cloud.shape)
    for fit in fits:
        if fit["pred"] is not None:
            total += np.where(fit["clear_map"], fit["pred"], 0.0)
            count += fit["clear_map"]
    filled = np.where(count > 0, total / np.maximum(count, 1), cloudy)
    return np.where(cloud, filled, cloudy), float((count[cloud] > 0).mean())


def sketch_fill(cloudy: np.ndarray, fit_clear: np.ndarray, fill: np.ndarray, dates: dict,
                target: date) -> np.ndarray:
    """What a reference fit that copes with near-total cloud could give (a sketch for the
    comparison, not cloudfree's method): each other month fitted to the target by a line per
    band on the pixels both leave clear by cloudfree's mask *without* the buffer, the months
    weighted per band by (1 / the line's residual variance) ** 3 x exp(-days apart / 30), much as
    the reference fill weighs fitted dates; filled where ``fill`` (remove's buffered mask)."""
    total = np.zeros(cloudy.shape)
    weight = np.zeros(cloudy.shape)
    for path, fit in zip(dates, fitted_dates(cloudy, fit_clear, dates), strict=True):
        if fit["pred"] is None:
            continue
        days = abs((date.fromisoformat(path.stem[3:]) - target).days)
        w = (1 / np.maximum(fit["var"], 1e-8)) ** 3 * np.exp(-days / 30)
        w = w[:, None, None] / w.max()
        total += w * np.where(fit["clear_map"], fit["pred"], 0.0)
        weight += w * fit["clear_map"]
    return np.where(fill & (weight > 0), total / np.maximum(weight, 1e-30), cloudy)


def two_clouds(cases: list[Path], work: Path) -> list[Path]:
    """Per target month, each pasted case with the next donor's cloud pasted in too (donors in
    name order, the last with the first): the union of two real clouds, in ``work``; those
    covering more than ``MOST_CLOUD`` of the image are left out."""
    out = []
    by_month: dict[str, list[Path]] = {}
    for case in cases:
        by_month.setdefault(case.name[:13], []).append(case)
    for month_cases in by_month.values():
        for a, b in zip(month_cases, month_cases[1:] + month_cases[:1], strict=True):
            with rasterio.open(a) as ds:
                first, profile = ds.read(), ds.profile
                names = ds.descriptions
            second = rasterio.open(b).read()
            cloud_a, cloud_b = (rasterio.open(c.with_name(f"{c.stem}_cloud.tif")).read(1) > 0
                                for c in (a, b))
            if (cloud_a | cloud_b).mean() > MOST_CLOUD:
                continue
            path = work / f"{a.stem}+{b.stem.rsplit('_', 1)[1]}.tif"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(np.where(cloud_b & ~cloud_a, second, first))
                dst.descriptions = names
            with rasterio.open(path.with_name(f"{path.stem}_cloud.tif"), "w", **(profile | {
                    "count": 1, "dtype": "uint8", "nodata": None})) as dst:
                dst.write((cloud_a | cloud_b).astype(np.uint8), 1)
            out.append(path)
    return out


def with_true_mask(case: Path, cloud: np.ndarray, work: Path) -> Path:
    """A copy of ``case`` in ``work`` with an SCL band of its true cloud (high probability
    cloud there, vegetation elsewhere), which then gives its mask (``remove``'s own buffer
    still applies)."""
    with rasterio.open(case) as ds:
        bands, profile, names = ds.read(), ds.profile, ds.descriptions
    path = work / f"true_mask_{case.name}"
    with rasterio.open(path, "w", **(profile | {"count": len(bands) + 1})) as dst:
        dst.write(np.concatenate([bands, np.where(cloud, 9, 4).astype(bands.dtype)[None]]))
        dst.descriptions = (*names, "SCL")
    return path


def worldcereal_cases(root: Path, half: str | None, harder: str | None, work: Path
                      ) -> list[Path]:
    """The pasted cases under ``root`` (``DEST/worldcereal``): of the clear months at even or
    odd places in time order (``half``; None: all), each with the next donor's cloud too
    (``harder`` two-clouds, written in ``work``)."""
    cases = sorted(p for p in (root / "pasted").glob("*.tif") if not p.stem.endswith("_cloud"))
    if half:
        targets = sorted({case.name[:13] for case in cases})[half == "odd" :: 2]
        cases = [case for case in cases if case.name[:13] in targets]
    return two_clouds(cases, work) if harder == "two-clouds" else cases


def other_months(months: list[Path], month: Path, harder: str | None) -> list[Path]:
    """The months other than ``month`` (``harder`` far-dates: without the months next to it)."""
    return [p for p in months if p != month and not (
        harder == "far-dates" and abs(months_apart(p, month)) == 1)]


def worldcereal(root: Path, work: Path, every: int, detail: bool, own_mask: bool = False,
                half: str | None = None, harder: str | None = None,
                true_mask: bool = False) -> None:
    months = sorted(root.glob("s2_*.tif"))
    print("\n| WorldCereal month | valid | cloud (mask from the score without B10) |\n"
          "|---|---|---|")
    for month in months:
        m, outcome = attempt(mask_scene, month, work / "m.tif")
        print(f"| {month.stem[3:]} | {1 - m['nodata_fraction']:.0%} | "
              f"{m['cloud_fraction']:.1%} |" if m else f"| {month.stem[3:]} | {outcome} | |")
    dates = clear_dates(months)
    cases = worldcereal_cases(root, half, harder, work)
    rows = []
    print("\n| case | cloud | truly clear px | clear px by our mask (cloud found) | median fill | "
          "--reference | --buffer 0 | naive mean (fitted) | naive mean (raw) | sketch | "
          "best single date |" + " true mask |" * true_mask + "\n" + "|---" * (11 + true_mask)
          + "|")
    for case in cases[::every]:
        month = root / f"{case.name[:13]}.tif"
        s1 = root / f"s1_{case.name[3:13]}.tif"
        others = other_months(months, month, harder)
        with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
            cloud = ds.read(1) > 0
        truth, _ = reflectance(month)
        cloudy, _ = reflectance(case)
        scores, summaries = {}, {}
        runs = [("median fill", None, (), 5, False), ("median fill + S1", s1, (), 5, False),
                ("--reference --buffer 0", None, others, 0, None),
                ("--reference", None, others, 5, None)]  # last: its mask is read below
        if own_mask:
            runs.insert(-1, ("--reference --no-temporal-mask", None, others, 5, False))
        for name, s1_path, refs, buffer, judged in runs:
            summary, outcome = attempt(remove_scene, case, s1_path, work / "o.tif",
                                       references=refs, mask_out=work / "o_mask.tif",
                                       mask_params=MaskParams(buffer=buffer),
                                       temporal_mask=judged)
            scores[name] = psnr(reflectance(work / "o.tif")[0], truth, cloud) if summary \
                else float("nan")
            summaries[name] = summary
            if summary is None:
                print(f"{case.stem} {name}: {outcome}")
        with rasterio.open(work / "o_mask.tif") as ds:  # the --reference run's mask
            flagged = np.isin(ds.read(1), (CLOUD, SHADOW))
        if true_mask:
            summary, outcome = attempt(remove_scene, with_true_mask(case, cloud, work), None,
                                       work / "t.tif", references=others, temporal_mask=False)
            scores["--reference, true mask"] = psnr(reflectance(work / "t.tif")[0], truth,
                                                    cloud) if summary else float("nan")
        fits = fitted_dates(truth, ~cloud, {p: dates[p] for p in others})
        fill, covered = naive_mean(cloudy, fits, cloud)
        scores["naive mean"] = psnr(fill, truth, cloud)
        with open_sentinel2(case) as s2:
            refl, valid = s2.read()
            unbuffered = classify(refl, valid, bands=s2.bands)[0]
        sketch = sketch_fill(cloudy, ~np.isin(unbuffered, (CLOUD, SHADOW, NODATA)), flagged,
                             {p: dates[p] for p in others}, date.fromisoformat(month.stem[3:]))
        scores["sketch: unbuffered fit, weighted"] = psnr(sketch, truth, cloud)
        raw = [(dates[p][0], dates[p][1]) for p in others]
        have = np.stack([c for _, c in raw])
        mean = sum(r * c[None] for r, c in raw) / np.maximum(have.sum(0), 1)[None]
        scores["naive mean (raw)"] = psnr(np.where(cloud & have.any(0), mean, cloudy), truth,
                                          cloud)
        single = {f["date"]: psnr(np.where(cloud & f["clear_map"], f["pred"], cloudy), truth,
                                  cloud & f["clear_map"])
                  for f in fits if f["pred"] is not None and (cloud & f["clear_map"]).any()}
        best = max(single, key=single.get)
        rows.append(scores)
        print(f"| {case.stem[3:]} | {cloud.mean():.0%} | {int((~cloud).sum())} | "
              f"{int((~flagged).sum())} ({(flagged[cloud]).mean():.0%}) | "
              f"{scores['median fill']:.2f} | {scores['--reference']:.2f} | "
              f"{scores['--reference --buffer 0']:.2f} | "
              f"{scores['naive mean']:.2f} | {scores['naive mean (raw)']:.2f} | "
              f"{scores['sketch: unbuffered fit, weighted']:.2f} | "
              f"{best} {single[best]:.2f} |" + (f" {scores['--reference, true mask']:.2f} |"
                                                 if true_mask else ""), flush=True)
        failed = scores["--reference"] < max(scores["median fill"] + 2, scores["naive mean"])
        if detail or failed:
            used = {Path(r["path"]).stem[3:]: r for r in summaries["--reference"]["references"]}
            print(f"|   {'fails' if failed else 'detail'}: naive covers {covered:.0%} of the "
                  "cloud; per date: clear, shared truly clear px (ours: clear in both by our "
                  "masks), fit RMS, PSNR alone on the cloud it sees, filled px |")
            for f in fits:
                ref = used.get(f["date"], {})
                print(f"|   {f['date']} | {f['clear']:.0%} | {f['shared']} "
                      f"({ref.get('common_clear_pixels', '-')}) | {f['rms']:.4f} | "
                      f"{single.get(f['date'], float('nan')):.2f} | "
                      f"{ref.get('filled_pixels', '-')} |")
    names = list(rows[0])
    base = np.array([r["median fill"] for r in rows])
    naive = np.array([r["naive mean"] for r in rows])
    print(f"\n{len(rows)} cases (clear month x pasted cloud)\n\n| fill | PSNR on the pasted cloud, "
          "dB: mean | worst | over median fill: mean / worst | over the naive mean: mean / "
          "worst |\n|---|---|---|---|---|")
    for name in names:
        v = np.array([r[name] for r in rows])
        print(f"| {name} | {v.mean():.2f} | {v.min():.2f} | {(v - base).mean():+.2f} / "
              f"{(v - base).min():+.2f} | {(v - naive).mean():+.2f} / {(v - naive).min():+.2f} |")
    print()
    raw = np.array([r["naive mean (raw)"] for r in rows])
    for name in (n for n in names if n in ("--reference", "--reference --no-temporal-mask")):
        ours = np.array([r[name] for r in rows])
        print(f"{name}: at least median fill + 2 dB on {(ours - base >= 2).sum()}/{len(rows)} "
              f"cases, at least the naive mean on {(ours >= naive).sum()}/{len(rows)} (the raw "
              f"one on {(ours >= raw).sum()}, closest {(ours - raw).min():+.2f} dB)")


def sweep(root: Path, half: str, harder: str | None, settings: list[Callable[[], None]],
          work: Path) -> tuple[np.ndarray, np.ndarray]:
    """``remove --reference`` with every other month on the WorldCereal cases of ``half`` (and
    ``harder``), once after each of the ``settings`` calls: the median fill's PSNR on the
    pasted cloud [cases] and each setting's [cases, settings]."""
    root = root / "worldcereal"
    months = sorted(root.glob("s2_*.tif"))
    cases = worldcereal_cases(root, half, harder, work)
    base, scores = np.zeros(len(cases)), np.zeros((len(cases), len(settings)))
    for i, case in enumerate(cases):
        month = root / f"{case.name[:13]}.tif"
        others = other_months(months, month, harder)
        with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
            cloud = ds.read(1) > 0
        truth = reflectance(month)[0]
        remove_scene(case, None, work / "o.tif", outputs=OutputOptions(overwrite=True), quiet=True)
        base[i] = psnr(reflectance(work / "o.tif")[0], truth, cloud)
        for j, setting in enumerate(settings):
            setting()
            remove_scene(case, None, work / "o.tif", dates=ReferenceOptions(references=others),
                         outputs=OutputOptions(overwrite=True), quiet=True)
            scores[i, j] = psnr(reflectance(work / "o.tif")[0], truth, cloud)
        print(f"{case.stem[3:]}: median fill {base[i]:.2f}, --reference "
              + ", ".join(f"{s:.2f}" for s in scores[i]), flush=True)
    return base, scores


def print_sweep(title: str, labels: list[str], base: np.ndarray, scores: np.ndarray) -> None:
    """``sweep``'s table: per setting (``labels``, the first the one others are measured
    against) the mean PSNR, the worst case, the mean and extremes of the change against the
    first, and the closest case over median fill."""
    print(f"\n{len(base)} cases\n\n| {title} | mean dB | worst | change: mean / least / most | "
          "closest over median fill |\n|---|---|---|---|---|")
    for j, label in enumerate(labels):
        change = scores[:, j] - scores[:, 0]
        print(f"| {label} | {scores[:, j].mean():.2f} | {scores[:, j].min():.2f} | "
              f"{change.mean():+.2f} / {change.min():+.2f} / {change.max():+.2f} | "
              f"{(scores[:, j] - base).min():+.2f} |")


#: ``--single``'s stages: name, ``remove_scene`` options, whether the residual of the clear
#: pixels beside the cloud is carried in (``dates/residual.py``).
SINGLE_STAGES = [("default", {}, True),
                 ("no restoration", {"restoring": None}, True),
                 ("fits alone", {"restoring": None}, False),
                 ("--no-temporal-mask", {"temporal_mask": False}, True)]


def line_fitted(ref: np.ndarray, target: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``ref`` mapped onto ``target`` by a least-squares line per band fitted on ``where``."""
    out = np.empty_like(ref, dtype=np.float64)
    for b in range(len(ref)):
        gain, offset = np.polyfit(ref[b][where], target[b][where], 1)
        out[b] = gain * ref[b] + offset
    return out


def single_references(root: Path, work: Path, half: str | None, nearest: int) -> None:
    """``--single``: each case's fill from one reference at a time, stage by stage, against
    the line-fitted reference (see the module docstring)."""
    months = sorted(root.glob("s2_*.tif"))
    dates = clear_dates(months)
    names = [name for name, _, _ in SINGLE_STAGES]
    blue, nir = 0, 6  # B02, B08 among the pool's nine bands
    print("| case | reference | line: RMSE / B02 / B08 error (DN) | "
          + " | ".join(f"{n}: RMSE / mean error per band (DN)" for n in names) + " |\n"
          + "|---" * (3 + len(names)) + "|")
    totals = []
    carry = remove.carry_residual
    for case in worldcereal_cases(root, half, None, work):
        month = root / f"{case.name[:13]}.tif"
        with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
            cloud = ds.read(1) > 0
        truth, _ = reflectance(month)
        at = months.index(month)
        refs = [p for p in months[max(at - nearest, 0): at + nearest + 1]
                if p != month and dates[p][1].mean() >= 0.5]
        for ref in refs:
            cells, row = [], []
            for i, (_, options, residual) in enumerate(SINGLE_STAGES):
                if not residual:
                    remove.carry_residual = lambda *args, **kwargs: None
                try:
                    remove_scene(case, None, work / "o.tif", quiet=True, **split_options(
                        {"references": [ref], "mask_out": work / "o_mask.tif",
                         "source_out": work / "o_src.tif", "overwrite": True, **options}))
                finally:
                    remove.carry_residual = carry
                with rasterio.open(work / "o_src.tif") as ds:
                    sourced = cloud & (ds.read(1) == 1)
                if i == 0:
                    with rasterio.open(work / "o_mask.tif") as ds:
                        clear = ~np.isin(ds.read(1), (CLOUD, SHADOW, NODATA)) & dates[ref][1]
                    where = sourced
                    line = (line_fitted(dates[ref][0], truth, clear) - truth)[:, where]
                    row.append(np.sqrt(np.mean(line ** 2)))
                    cells.append(f"{row[-1]:.4f} / {line[blue].mean() * 1e4:+.0f} / "
                                 f"{line[nir].mean() * 1e4:+.0f}")
                error = (reflectance(work / "o.tif")[0] - truth)[:, where]
                row.append(np.sqrt(np.mean(error ** 2)))
                cells.append(f"{row[-1]:.4f} / " + " ".join(
                    f"{e * 1e4:+.0f}" for e in error.mean(axis=1)))
            totals.append(row)
            print(f"| {case.stem[3:]} | {ref.stem[3:]} | " + " | ".join(cells) + " |",
                  flush=True)
    mean = np.mean(totals, axis=0)
    print(f"\n{len(totals)} fills from one reference: mean RMSE on the true cloud: line-fitted "
          f"reference {mean[0]:.4f}, " + ", ".join(
              f"{n} {v:.4f}" for n, v in zip(names, mean[1:], strict=True)))


def months_apart(a: Path, b: Path) -> int:
    """Months from ``b``'s date to ``a``'s (files named s2_YYYY-MM-DD)."""
    (ya, ma), (yb, mb) = ((int(p.stem[3:7]), int(p.stem[8:10])) for p in (a, b))
    return 12 * (ya - yb) + ma - mb


def read(path: Path) -> np.ndarray:
    """A month's values as they are stored (DN), as float32 [C, H, W]."""
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float32)


def pasted_series(root: Path, every: int = 1
                  ) -> tuple[list[Path], list[Path], list[str], dict[str, str]]:
    """Of ``root`` (``DEST/worldcereal``): the months with data (``months_with_data``), every
    ``every``-th pasted case, the cloud donors' names, and each clear month's half by its stem
    ("even" or "odd" place in time order, as ``worldcereal_cases`` splits them)."""
    cases = worldcereal_cases(root, None, None, root)
    targets = sorted({case.name[:13] for case in cases})
    donors = sorted({p.stem[14:-6] for p in (root / "pasted").glob("*_cloud.tif")})
    halves = {t: ("even", "odd")[i % 2] for i, t in enumerate(targets)}
    return months_with_data(root), cases[::every], donors, halves


def months_with_data(root: Path) -> list[Path]:
    """The months of ``root`` (``DEST/worldcereal``) with at least ``MIN_VALID`` valid pixels."""
    out = []
    for month in sorted(root.glob("s2_*.tif")):
        with rasterio.open(month) as ds:
            if (ds.read_masks(1) > 0).mean() >= MIN_VALID:
                out.append(month)
    return out


def pasted_reference_sets(month: Path, donor: str, months: list[Path], donors: list[str],
                          pasted: Path, work: Path, nearest: tuple[int, ...],
                          mix: tuple[int, int]) -> dict[str, list[Path]]:
    """The references of each set, by label, for the case of ``month`` under ``donor``'s cloud:
    the ``nearest`` N other months (0: all of them), and ``mix``: so many nearest months as
    they are, then so many next nearest with another donor's cloud pasted over half of each
    (``half_overcast``, written in ``work``)."""
    others = sorted((m for m in months if m != month),
                    key=lambda m: (abs(months_apart(m, month)), m.name))
    out = {(f"{n} date{'s' * (n > 1)}" if n else f"{len(others)} dates (all)"):
           others[:n] if n else others for n in nearest}
    clear, cloudy = mix
    over = [donors[(donors.index(donor) + 1 + i) % len(donors)] for i in range(cloudy)]
    hidden = [half_overcast(m, pasted / f"{m.stem}_{over[i]}.tif", i % 2, work)
              for i, m in enumerate(others[clear:clear + cloudy])]
    out[f"{clear + cloudy} dates, {cloudy} overcast"] = [*others[:clear], *hidden]
    return out


def half_overcast(month: Path, cloudy: Path, axis: int, work: Path) -> Path:
    """``month`` with the first half of ``cloudy`` (its version under a pasted cloud) along
    ``axis`` (0: the top, 1: the left), written in ``work``."""
    with rasterio.open(month) as clear, rasterio.open(cloudy) as pasted:
        image, profile = clear.read(), clear.profile
        names, tags, over = clear.descriptions, clear.tags(), pasted.read()
    cut = [slice(None)] * 3
    cut[1 + axis] = slice(0, image.shape[1 + axis] // 2)
    image[tuple(cut)] = over[tuple(cut)]
    path = work / f"{month.stem}_half_cloud_{axis}.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        dst.descriptions = names
        dst.update_tags(**tags)
    return path


#: Help of the WorldCereal benchmarks' ``--work``.
WORK_HELP = ("folder for the runs' files (default: a temporary folder of this run's own, "
             "deleted at its end, so that runs at once never share one)")


def work_folder(work: Path | None, name: str) -> Path:
    """``work`` (made where missing), or a temporary folder of this run's own named after
    ``name``, deleted when the interpreter exits."""
    if work is None:
        work = Path(tempfile.mkdtemp(prefix=f"{name}_"))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="DEST of scripts/build_l2a_pool.py")
    parser.add_argument("--work", type=Path, help=WORK_HELP)
    parser.add_argument("--every", type=int, default=1, help="only every N-th pasted case")
    parser.add_argument("--detail", action="store_true",
                        help="per-date diagnostics for every case (default: failing ones)")
    parser.add_argument("--no-bigearthnet", action="store_true")
    parser.add_argument("--no-temporal-mask", action="store_true",
                        help="also --reference --no-temporal-mask on the WorldCereal cases")
    parser.add_argument("--half", choices=("even", "odd"),
                        help="only the clear months at even (0, 2, ...) or odd places in time "
                             "order: tune settings on the odd ones, report the even ones held out")
    parser.add_argument("--true-mask", action="store_true",
                        help="also --reference given the true cloud as the target's mask (an "
                             "SCL band; the dates do not judge it): what the mask costs")
    parser.add_argument("--harder", choices=("two-clouds", "far-dates"),
                        help="harder WorldCereal cases from the same targets: two donors' clouds "
                             "at once (each with the next in name order), or without the months "
                             "next to the target as references")
    parser.add_argument("--single", type=int, metavar="N",
                        help="instead: each WorldCereal case filled from one reference at a "
                             "time (the N nearest mostly clear months on each side), stage by "
                             "stage, against the reference fitted by a line")
    args = parser.parse_args()
    print(code_version.describe(), flush=True)
    args.work = work_folder(args.work, "l2a_pool")
    if args.single:
        return single_references(args.root / "worldcereal", args.work, args.half, args.single)
    if not args.no_bigearthnet:
        bigearthnet(args.root / "bigearthnet", args.work)
    worldcereal(args.root / "worldcereal", args.work, args.every, args.detail,
                args.no_temporal_mask, args.half, args.harder, args.true_mask)


if __name__ == "__main__":
    main()
