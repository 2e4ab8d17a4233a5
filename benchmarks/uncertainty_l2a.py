"""Does ``remove --uncertainty-out`` hold on an L2A-style series, with few or partly overcast dates?

    python scripts/build_l2a_pool.py --sdist ... --worldcereal ... --clouds ... DEST
    python benchmarks/uncertainty_l2a.py DEST [--every N] [--json OUT]

How the calibration ``remove`` ships (``uncertainty.py``) holds on the pool's WorldCereal series,
per run, cloud and band: monthly L2A composites of one place, nine bands
(B02-B08, B11, B12), each with its S1. Each clear month with the real cloud of one of the pool's
cloudy patches pasted in (the cases of ``l2a_pool.py``: 10 months x 7 clouds) is filled by
``remove`` with the month's S1 and no other date, and by ``remove --reference`` (no S1) with
the defaults, given the nearest 1, 2, 4 and 8 other months that hold data, all 9 of them, and a
mix of 4: the 2 nearest months as they are and the 2 next nearest partly overcast, another
patch's cloud pasted over one half of each (left or top, in turn; ``OVERCAST_MIX``: pasted
whole, 69-94 % of the image, such a month is too cloudy to be used). Per run and kind of fill
(from the dates; the single-date fill where no date is clear), over every filled pixel of the
pasted cloud and every band: the share of errors within 1 and 2 sigma of the sigma ``remove``
wrote, the RMS error and the median sigma (DN); and over the whole pasted cloud the share left
as seen (sigma 0). The months at even and odd places in time order are reported apart. The
single-date fills are held out from the calibration (fitted on L1C scenes); the fills from
other dates are not: ``uncertainty.py --l2a`` takes these runs into its fit, and gives their
held-out figures (each half of the months predicted by a fit on the other). Then the same
every month by the
pasted cloud's share of the image (under 80 %, 80 % or more); per pasted cloud, with 4 dates
and with one date, beside the medians of |error|, sigma and the RMS residual of the dates'
fits (the term that carries their quality); and per band.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from l2a_pool import pasted_reference_sets, pasted_series, read
from uncertainty import run

from cloudfree.fill.uncertainty import FROM_DATES, KEPT, SINGLE_DATE_FILL, UncertaintyBlock

#: Sets of references by label: the nearest N months that hold data (0: all of them).
NEAREST = (1, 2, 4, 8, 0)
#: The partly overcast set: this many nearest months as they are, then this many next nearest
#: with another patch's cloud pasted over half of them (``l2a_pool.half_overcast``).
OVERCAST_MIX = (2, 2)
#: The run with the month's S1 and no other date.
ONE_DATE = "one date with S1 (no reference)"
#: The kinds of fill: from the dates, and the single-date fill.
KINDS = ("from the dates", "single-date fill")
#: DN per unit reflectance of the series.
DN = 10000.0
#: The cases by the pasted cloud's share of the image.
COVERS = ("under 80 %", "80 % or more")
#: The wanted shares of errors within 1 and 2 sigma (the project's goal bands).
WANTED = ((0.58, 0.78), (0.88, 0.98))


def assemble(blocks: list[UncertaintyBlock], shape: tuple[int, int]
             ) -> tuple[np.ndarray, np.ndarray]:
    """The kind of each pixel [H, W] and the RMS residual of the dates' fits there [C, H, W]
    (reflectance; NaN where no date lent) from the blocks ``remove`` wrote."""
    kind = np.full(shape, KEPT, np.uint8)
    residual = np.full((len(blocks[0].bands), *shape), np.nan, np.float32)
    for block in blocks:
        at = (slice(block.row, block.row + block.kind.shape[0]),
              slice(block.col, block.col + block.kind.shape[1]))
        kind[at] = block.kind
        if block.dates is not None:
            residual[(slice(None), *at)] = np.sqrt(block.dates.residual)
    return kind, residual


def tally(error: np.ndarray, sigma: np.ndarray, residual: np.ndarray, where: np.ndarray
          ) -> dict[str, np.ndarray]:
    """Per band, over the pixels ``where`` [H, W]: their number, those within 1 and 2 sigma, the
    squared error; and the sigmas, errors and the fits' residuals (DN) themselves (for
    medians)."""
    e, s = np.abs(error[:, where]), sigma[:, where]
    return {"n": np.full(len(e), e.shape[1]), "one": (e <= s).sum(1), "two": (e <= 2 * s).sum(1),
            "sq": (e.astype(np.float64) ** 2).sum(1), "sigmas": s.ravel(), "errors": e.ravel(),
            "residuals": residual[:, where].ravel() * DN}


def summary(runs: list[dict], **select: str) -> dict | None:
    """The figures of the ``runs`` whose fields match ``select`` (a months' half of "all" takes
    both), every band pooled and per band; None where they filled nothing."""
    chosen = [r for r in runs if all(r[k] == v or (k, v) == ("months", "all")
                                     for k, v in select.items())]
    n = sum(r["n"] for r in chosen)
    if not chosen or not n.sum():
        return None
    one, two, sq = (sum(r[k] for r in chosen) for k in ("one", "two", "sq"))
    return {**select, "n": int(n.sum()), "within_1": float(one.sum() / n.sum()),
            "within_2": float(two.sum() / n.sum()), "rms": float((sq.sum() / n.sum()) ** 0.5),
            "median_sigma": float(np.median(np.concatenate([r["sigmas"] for r in chosen]))),
            "by_band": {"within_1": (one / np.maximum(n, 1)).round(3).tolist(),
                        "within_2": (two / np.maximum(n, 1)).round(3).tolist()}}


def report(runs: list[dict], kept: dict[tuple[str, str], list[int]], bands: tuple[str, ...]
           ) -> list[dict]:
    """Print the tables (by half of the months, by the pasted cloud's cover, by band); return
    the first table's rows."""
    labels = list(dict.fromkeys(r["references"] for r in runs))
    rows = []
    print("\n| months | references | fill | filled values | within 1 sigma | within 2 sigma "
          "| RMS error (DN) | median sigma (DN) | pasted cloud kept as seen |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for half in ("odd", "even", "all"):
        for label in labels:
            left = [v for (h, la), v in kept.items() if la == label and half in (h, "all")]
            share = sum(v[0] for v in left) / max(sum(v[1] for v in left), 1)
            for kind in KINDS:
                row = summary(runs, months=half, references=label, fill=kind)
                if row is None:
                    continue
                rows.append(row | {"kept": share})
                print(f"| {half} | {label} | {kind} | {row['n']} | {row['within_1']:.3f} | "
                      f"{row['within_2']:.3f} | {row['rms']:.0f} | {row['median_sigma']:.0f} | "
                      f"{share:.3f} |")
    print("\nEvery month, by the pasted cloud's share of the image:\n\n"
          "| references | fill | cloud | filled values | within 1 sigma | within 2 sigma | "
          "RMS error (DN) | median sigma (DN) |\n|---|---|---|---|---|---|---|---|")
    for label in (ONE_DATE, *labels[1:]):
        kind = KINDS[1] if label == ONE_DATE else KINDS[0]
        for cover in COVERS:
            row = summary(runs, references=label, fill=kind, cover=cover)
            if row is not None:
                print(f"| {label} | {kind} | {cover} | {row['n']} | {row['within_1']:.3f} | "
                      f"{row['within_2']:.3f} | {row['rms']:.0f} | {row['median_sigma']:.0f} |")
    print("\nEvery month, by the pasted cloud (its share of the image), with 4 dates and with one "
          "date and S1 (medians in DN):\n\n| cloud | references | within 1 / 2 sigma | |error| "
          "| sigma | the fits' residual |\n|---|---|---|---|---|---|")
    for cloud in sorted({r["cloud"] for r in runs}, key=lambda c: c[-5:]):
        for label in ("4 dates", ONE_DATE):
            kind = KINDS[1] if label == ONE_DATE else KINDS[0]
            chosen = [r for r in runs if r["cloud"] == cloud and r["references"] == label
                      and r["fill"] == kind]
            row = summary(chosen)
            if row is None:
                continue
            residual = np.concatenate([r["residuals"] for r in chosen])
            print(f"| {cloud} | {label} | {row['within_1']:.2f} / {row['within_2']:.2f} | "
                  f"{np.median(np.concatenate([r['errors'] for r in chosen])):.0f} | "
                  f"{row['median_sigma']:.0f} | "
                  + ("" if kind == KINDS[1] else f"{np.nanmedian(residual):.0f}") + " |")
    print("\nEvery month, within 1 / 2 sigma by band:\n\n| references | fill | "
          + " | ".join(bands) + " |\n" + "|---" * (len(bands) + 2) + "|")
    for label in (ONE_DATE, *labels[1:]):
        kind = KINDS[1] if label == ONE_DATE else KINDS[0]
        row = summary(runs, references=label, fill=kind)
        if row is not None:
            cells = [f"{a:.2f} / {b:.2f}" for a, b in zip(row["by_band"]["within_1"],
                                                          row["by_band"]["within_2"], strict=True)]
            print(f"| {label} | {kind} | " + " | ".join(cells) + " |")
    print(f"\nWanted: {WANTED[0][0]:.2f}-{WANTED[0][1]:.2f} within 1 sigma, "
          f"{WANTED[1][0]:.2f}-{WANTED[1][1]:.2f} within 2.")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="the folder build_l2a_pool.py wrote")
    parser.add_argument("--every", type=int, default=1, help="every Nth case only")
    parser.add_argument("--json", type=Path, help="write the first table's figures here too")
    args = parser.parse_args()
    root = args.dest / "worldcereal"
    pasted = root / "pasted"
    months, cases, donors, halves = pasted_series(root, args.every)
    with rasterio.open(months[0]) as ds:
        bands = ds.descriptions
    runs: list[dict] = []
    kept: dict[tuple[str, str], list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for number, case in enumerate(cases, 1):
            month = root / f"{case.name[:13]}.tif"
            truth = read(month)
            with rasterio.open(case.with_name(f"{case.stem}_cloud.tif")) as ds:
                cloud = ds.read(1) > 0
            cover = COVERS[int(cloud.mean() >= 0.8)]
            cloud_label = f"{case.stem[-4:]} ({cloud.mean():.0%})"
            given = {ONE_DATE: [], **pasted_reference_sets(month, case.stem[14:], months,
                                                           donors, pasted, work, NEAREST,
                                                           OVERCAST_MIX)}
            for label, refs in given.items():
                started = time.perf_counter()
                s1 = None if refs else root / f"s1_{month.stem[3:]}.tif"
                recorder, _, output, sigma = run(case, s1, work, references=refs)
                source, residual = assemble(recorder.blocks, cloud.shape)
                half = halves[month.stem]
                for kind, code in zip(KINDS, (FROM_DATES, SINGLE_DATE_FILL), strict=True):
                    runs.append({"months": half, "references": label, "fill": kind,
                                 "cover": cover, "cloud": cloud_label,
                                 **tally(output - truth, sigma, residual,
                                         (source == code) & cloud)})
                left = kept.setdefault((half, label), [0, 0])
                left[0] += int((cloud & (source == KEPT)).sum())
                left[1] += int(cloud.sum())
                print(f"{number}/{len(cases)} {case.stem}, {label}: "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
    rows = report(runs, kept, bands)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
