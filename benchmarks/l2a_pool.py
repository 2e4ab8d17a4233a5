"""`mask` and `remove` on the pool's L2A-style inputs (BigEarthNet patches, WorldCereal series).

    python scripts/build_l2a_pool.py --sdist ... --worldcereal ... --clouds ... /work/data/l2a/built
    python benchmarks/l2a_pool.py /work/data/l2a/built [--every N]

BigEarthNet (six L2A patches, 120 px, folders of per-band files, each with its S1): ``mask``, and
``remove`` without S1 and with it; what each finds and fills (there is no truth and no second
date of a place, so no ``--reference``).

WorldCereal (12 monthly L2A composites of one place, B02-B08, B11, B12, each with S1): ``mask``
on every month; then each clear month with the real cloud of one of the pool's cloudy patches
pasted in (split by case: every clear month with every donor; nothing is tuned here) is filled by

- ``median fill``: ``remove`` without S1 (the default for this band set: median-fill's local
  fill from the clear pixels nearby);
- ``median fill + S1``: the same with the month's S1 (nearby pixels that match in S1);
- ``naive mean``: the mean of the other months' values at the pasted pixels (given the true
  cloud), where they have data;
- ``--reference``: ``remove --reference`` with every other month (no S1);

scored by PSNR (reflectance clipped to [0, 1], all nine bands) on the pasted pixels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rasterio

from cloudfree.errors import CloudfreeError
from cloudfree.mask_scene import mask_scene
from cloudfree.remove_scene import remove_scene
from cloudfree.sentinel2 import open_sentinel2


def psnr(pred: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    diff = np.clip(pred, 0, 1)[:, where] - np.clip(truth, 0, 1)[:, where]
    return float(10 * np.log10(1 / max(np.mean(diff.astype(np.float64) ** 2), 1e-10)))


def reflectance(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open_sentinel2(path) as s2:
        return s2.read()


def attempt(run, *args, **kwargs) -> tuple[dict | None, str]:
    """``run(*args, **kwargs)``'s summary and a one-line outcome (its error when it fails)."""
    started = time.perf_counter()
    try:
        summary = run(*args, quiet=True, overwrite=True, **kwargs)
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


def worldcereal(root: Path, work: Path, every: int) -> None:
    months = sorted(root.glob("s2_*.tif"))
    print("\n| WorldCereal month | valid | cloud (mask from the score without B10) |\n"
          "|---|---|---|")
    for month in months:
        m, outcome = attempt(mask_scene, month, work / "m.tif")
        print(f"| {month.stem[3:]} | {1 - m['nodata_fraction']:.0%} | "
              f"{m['cloud_fraction']:.1%} |" if m else f"| {month.stem[3:]} | {outcome} | |")
    cases = sorted(p for p in (root / "pasted").glob("*.tif") if not p.stem.endswith("_cloud"))
    rows = []
    for case in cases[::every]:
        month = root / f"{case.name[:13]}.tif"
        s1 = root / f"s1_{case.name[3:13]}.tif"
        others = [p for p in months if p != month]
        with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
            cloud = ds.read(1) > 0
        truth, _ = reflectance(month)
        scores = {}
        for name, s1_path, refs in (("median fill", None, ()), ("median fill + S1", s1, ()),
                                    ("--reference", None, others)):
            summary, outcome = attempt(remove_scene, case, s1_path, work / "o.tif",
                                       references=refs)
            scores[name] = psnr(reflectance(work / "o.tif")[0], truth, cloud) if summary \
                else float("nan")
            if summary is None:
                print(f"{case.stem} {name}: {outcome}")
        dates = [reflectance(p) for p in others]
        stack = np.stack([d for d, v in dates])
        have = np.stack([v for d, v in dates])
        mean = (stack * have[:, None]).sum(0) / np.maximum(have.sum(0), 1)[None]
        cloudy, _ = reflectance(case)
        scores["naive mean"] = psnr(np.where(cloud & (have.sum(0) > 0), mean, cloudy), truth,
                                    cloud)
        rows.append(scores)
        print(f"{case.stem}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()),
              flush=True)
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
    ours = np.array([r["--reference"] for r in rows])
    print(f"\n--reference: at least median fill + 2 dB on {(ours - base >= 2).sum()}/{len(rows)} "
          f"cases, at least the naive mean on {(ours >= naive).sum()}/{len(rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="DEST of scripts/build_l2a_pool.py")
    parser.add_argument("--work", type=Path, default=Path("/tmp/l2a_pool"))
    parser.add_argument("--every", type=int, default=1, help="only every N-th pasted case")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    bigearthnet(args.root / "bigearthnet", args.work)
    worldcereal(args.root / "worldcereal", args.work, args.every)


if __name__ == "__main__":
    main()
