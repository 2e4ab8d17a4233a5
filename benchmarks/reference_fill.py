"""`remove --reference` on the pool's SEN12MS-CR-TS series: real clouds over clear dates.

    python scripts/extract_ts_series.py CLONE_OF_Oriolac_cloud-removal SERIES
    python benchmarks/reference_fill.py --series SERIES --half odd [--every N]
        [--kinds pasted thin ...] [--json out.json]

The series is 30 dates of one 256 px patch (``../shared/docs/DATA.md``). With the mask
``remove`` uses by default (score, 5 px buffer), dates with less than ``CLEAR_MAX`` cloud are the
clear targets and dates with ``DONOR_MIN`` to ``DONOR_MAX`` cloud are the donors. The donor's
cloud is where its own mask (score, no buffer) says cloud: the true mask of the case. Every
other date of the series (overcast ones and the donor included) is a reference; no S1. Each
(target, donor) pair gives one case of each kind (``KINDS``):

- ``pasted``: the donor's own pixels pasted over its cloud (the cloud and its look are real);
- ``thin``: the donor's cloud blended over the target at a share of 0.15-0.3 (thin cloud);
- ``haze``: the whole target blended at ``HAZE`` with the donor's median cloud spectrum (every
  pixel is the true mask);
- ``hazy reference``: as ``pasted``, with the reference nearest in date hazy all over (blended
  at ``HAZE`` with the donor's cloud spectrum);
- ``shifted reference``: as ``pasted``, with the reference nearest in date shifted by 1-3 px;
- ``shadowed``: as ``pasted``, with the donor's cloud shadows cast on the target too: where
  ``remove``'s mask of the donor alone says shadow (dark, and where its clouds cast it), each
  band of the target is darkened as the donor's shadows are against its clear land (the
  ratio of their medians), fading over a penumbra ``PENUMBRA`` px wide (a Gaussian) outside
  them; the true mask is the cloud and every pixel darkened by more than ``CAST_MIN``. Only
  donors whose mask finds shadows give such cases.

``--half`` keeps the clear targets at even or odd places in time order: settings are tuned on
one half and the other is reported, held out by date. ``--size 100`` first crops every date to
its central 100 x 100 pixels (the small images of an independent check). ``--bands B02 B03 ...``
gives ``remove`` (and scores) only those bands of the cloudy target and of every reference, as
GeoTIFFs naming their bands (``--bands l2a``: the ten bands of an L2A product, without B01, B09
and B10); the cases (targets, donors, true masks) and the naive mean's clear dates are still
chosen on all 13 bands, so the cases are the same. Scored on reflectance clipped to [0, 1], all
the bands given, by PSNR on the true mask and on the whole image:

- ``median fill``: ``remove --model median-fill``, through the real ``remove_scene``;
- ``naive mean, true mask``: the independent check's naive baseline (``naive_temporal``): the
  mean of the clear dates only (less than ``CLEAR_MAX`` cloud by the default mask, as the
  targets), each mapped per band by one least-squares line fitted on the truly clear target
  pixels, over the TRUE mask (a whole-date haze leaves none to fit on: the dates as they are);
- ``--reference``: ``remove --reference R1 ... R29``, the default (with ``--temporal-mask``:
  ``remove --reference R1 ... R29 --temporal-mask``), which on these 13-band dates
  is the temporal mask (the dates judge the clouds, ``cloudfree/dates/temporal_mask.py``); its
  mask's IoU against the true mask is reported
  beside the single-date mask's, with the share of pixels outside the true mask kept exactly
  and its seconds per reference, and its PSNR on the ring ``RING`` px inside the true cloud's
  edge, where a veil left in or a wisp beside the fill shows;
- ``--reference, single-date mask``: ``remove --reference --no-temporal-mask``;
- with ``--ablations [WORD ...]``, ``--reference`` with one part turned off or on (``ABLATIONS``:
  all, or those whose names hold a WORD; ``--ablations fringe``: today's mask without the
  veiled fringe it grows into at a cloud's edge; ``--ablations restoration``: the dates' fill
  without the restoration of thin cloud; ``--ablations dehaze``: the reverse, with a
  whole-date haze taken off, ``remove --reference --dehaze``, ``dates/dehaze.py``;
  ``--ablations shadow``: the target's cloud shadows left as they are, and filled without the
  penumbra the dates find around them);
- with ``--by-distance``, the error of ``--reference`` in B02 (DN) by distance from the clear
  land inside the true mask (``DISTANCES``), pooled over the cases whose temporal mask finds
  the cloud (IoU of at least ``FOUND_IOU``) and over the others: whether a veil left in sits at
  a cloud's edge or over the cloud missed;
- for each pasted case below the median fill + 3 dB, two ceilings that use the hidden truth:
  the best single reference with each band's line fitted on the truth under the cloud, and
  all references together regressed on one half of the truth under the cloud and scored on
  the other half, both ways.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import code_version
import numpy as np
import rasterio
from metrics import psnr
from rasterio.windows import Window
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_series_sample import cut  # noqa: E402

from cloudfree.dates import dehaze, joint_fit, temporal_mask  # noqa: E402
from cloudfree.dates import fill as reference_fill  # noqa: E402
from cloudfree.io.sentinel2 import BANDS, open_sentinel2  # noqa: E402
from cloudfree.mask.classify import CLEAR, CLOUD, SHADOW, MaskParams, classify  # noqa: E402
from cloudfree.pipeline import remove  # noqa: E402
from cloudfree.pipeline.options import (  # noqa: E402
    EngineOptions,
    OutputOptions,
    ReferenceOptions,
)
from cloudfree.pipeline.remove import remove_scene  # noqa: E402

#: Cloud fractions (default mask) of clear targets and of cloud donors.
CLEAR_MAX, DONOR_MIN, DONOR_MAX = 0.02, 0.05, 0.95
REMOVE_MASK = MaskParams(buffer=5)
#: ``--reference`` with one part turned off: row name, module, setting, value that disables it.
ABLATIONS = [("--reference, no agreement check", reference_fill, "AGREEMENT", None),
             ("--reference, single dates only", joint_fit, "KEPT", 0),
             ("--reference, no fringe", temporal_mask, "FRINGE", 0),
             ("--reference, no restoration of thin cloud", remove, "restore_dates",
              lambda *args, **kwargs: None),
             ("--reference --dehaze", dehaze, "BY_DEFAULT", True),
             ("--reference, shadows left", remove, "SHADOW_WITH_DATES", False),
             ("--reference, no shadow penumbra", temporal_mask, "SHADOW_GROW", 0)]
#: Upper ends (px) of the bands of distance from the clear land of ``--by-distance`` (the last
#: band takes the rest), and the IoU from which a case's cloud counts as found there.
DISTANCES, FOUND_IOU = (1.5, 3.0, 6.0), 0.9
#: Width (px) of the ring just inside each true cloud scored on its own (``psnr_ring``): the
#: cloud's edge, where a veil left in or a wisp beside the fill shows.
RING = 3.0
#: ``--bands l2a``: the bands of an L2A product.
L2A_BANDS = tuple(b for b in BANDS if b not in ("B01", "B09", "B10"))


def series(folder: Path) -> list[Path]:
    """The dates of the series in time order (the ImgNo of SEN12MS-CR-TS names)."""
    files = folder.glob("s2_*_ImgNo_*.tif")
    return sorted(files, key=lambda p: int(re.search(r"ImgNo_(\d+)_", p.name).group(1)))


def read(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reflectance, DN and the GeoTIFF profile of a date."""
    with open_sentinel2(path) as s2:
        refl, _ = s2.read()
    with rasterio.open(path) as ds:
        return refl, ds.read(), ds.profile


def classes(refl: np.ndarray, params: MaskParams = REMOVE_MASK) -> np.ndarray:
    return classify(refl, None, params)[0]


def date_of(name: str) -> str:
    """The date in a SEN12MS-CR-TS file name."""
    return re.search(r"\d{4}-\d\d-\d\d", name).group(0)


#: Fewest truly clear target pixels for the naive baseline's lines (fewer: the dates as they are).
NAIVE_MIN_FIT = 1000


def clear_dates(refs: list[np.ndarray]) -> list[np.ndarray]:
    """The references ``remove``'s default mask (score, 5 px buffer) finds less than
    ``CLEAR_MAX`` cloud in: the clear dates, as the clear targets are chosen."""
    return [ref for ref in refs if (classes(ref) == CLOUD).mean() < CLEAR_MAX]


def naive_temporal(cloudy: np.ndarray, truth_mask: np.ndarray, refs: list[np.ndarray]
                   ) -> np.ndarray:
    """The independent check's naive baseline: the mean of the clear dates (``clear_dates``),
    each mapped per band by one least-squares line fitted on the pixels clear in the TRUE
    target mask and in the date's own mask, over the true mask. A pixel a clear date's own
    mask calls cloud is left out of the mean there (all of them count where none is clear);
    without ``NAIVE_MIN_FIT`` truly clear target pixels (a whole-date haze) the dates are
    taken as they are."""
    target_clear = ~truth_mask
    total, count = np.zeros_like(cloudy), np.zeros(cloudy.shape[1:])
    plain = np.zeros_like(cloudy)
    dates = clear_dates(refs)
    for ref in dates:
        clear = classes(ref) == CLEAR
        both = clear & target_clear
        adjusted = ref.astype(np.float64)
        if both.sum() >= NAIVE_MIN_FIT:
            for b in range(len(ref)):
                gain, offset = np.polyfit(ref[b][both], cloudy[b][both], 1)
                adjusted[b] = gain * ref[b] + offset
        total += np.where(clear, adjusted, 0)
        count += clear
        plain += adjusted
    estimate = np.where(count > 0, total / np.maximum(count, 1), plain / max(len(dates), 1))
    return np.where(truth_mask, estimate, cloudy)


#: The kinds of case: real cloud pasted; a donor's cloud blended thinly over the target (share
#: ``THIN``); the whole date hazy (``HAZE``); the real cloud with the nearest reference hazy all
#: over, or shifted by 1-3 px; the real cloud and its real shadows.
KINDS = ("pasted", "thin", "haze", "hazy reference", "shifted reference", "shadowed")
THIN = (0.15, 0.3)
HAZE = 0.2


def cloud_spectrum(donor: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    """The donor's median cloud reflectance [13, 1, 1]."""
    return np.median(donor[:, cloud], axis=1)[:, None, None]


def write_like(path: Path, refl: np.ndarray, profile: dict) -> Path:
    """Reflectance written back as the series' DN (offset 0, scale 10000)."""
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.clip(np.rint(refl * 10000), 0, 65535).astype(profile["dtype"]))
    return path


def cast_shadows(donor: Path, work: Path) -> np.ndarray:
    """Where [H, W] ``remove``'s mask of ``donor`` alone says cloud shadow (the shadows its
    clouds cast, by its own scene offset)."""
    mask = work / f"shadows_{donor.stem}.tif"
    if not mask.exists():
        remove_scene(donor, None, work / "donor.tif", engine=EngineOptions(model="median-fill"),
                     outputs=OutputOptions(overwrite=True, cog=False, mask_out=mask), quiet=True)
    with rasterio.open(mask) as src:
        return src.read(1) == SHADOW


#: A cast shadow's penumbra (px, the Gaussian's sigma) and the least share of its darkening
#: that counts in the true mask (``shadowed``).
PENUMBRA, CAST_MIN = 1.5, 0.02


def cast_on(truth: np.ndarray, donor: np.ndarray, shadow: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """The target ``truth`` under the ``donor``'s ``shadow`` (module docstring,
    ``shadowed``), and where [H, W] it is darkened."""
    clear = classes(donor, MaskParams()) == CLEAR
    ratio = np.median(donor[:, shadow], axis=1) / np.median(donor[:, clear], axis=1)
    share = np.maximum(shadow, ndimage.gaussian_filter(shadow.astype(np.float64), PENUMBRA))
    return truth * (1 - share * (1 - ratio[:, None, None])), share > CAST_MIN


def make_case(kind: str, number: int, target: Path, donor: Path, others: list[Path],
              work: Path) -> tuple[Path, np.ndarray, np.ndarray, list[Path]]:
    """The cloudy target, its truth, its true cloud mask and the references of one case."""
    truth, truth_dn, profile = read(target)
    donor_refl, donor_dn, _ = read(donor)
    cloud = classes(donor_refl, MaskParams()) == CLOUD
    refs = list(others)
    shadowed = truth
    if kind == "shadowed":
        shadowed, cast = cast_on(truth, donor_refl, cast_shadows(donor, work) & ~cloud)
    if kind == "thin":
        share = THIN[0] + (THIN[1] - THIN[0]) * ((number * 0.618) % 1)
        cloudy = np.where(cloud, (1 - share) * truth + share * donor_refl, truth)
    elif kind == "haze":
        cloud = np.ones_like(cloud)
        cloudy = (1 - HAZE) * truth + HAZE * cloud_spectrum(donor_refl, classes(
            donor_refl, MaskParams()) == CLOUD)
    else:
        cloudy = np.where(cloud, donor_refl, shadowed)
    if kind == "shadowed":
        cloud |= cast
    if kind in ("hazy reference", "shifted reference"):
        nearest = min(range(len(refs)), key=lambda i: abs(
            np.datetime64(date_of(refs[i].name)) - np.datetime64(date_of(target.name))))
        ref, _, ref_profile = read(refs[nearest])
        if kind == "hazy reference":
            changed = (1 - HAZE) * ref + HAZE * cloud_spectrum(donor_refl, cloud)
        else:
            step = 1 + number % 3
            changed = ndimage.shift(ref, (0, step, -step), order=1, mode="nearest")
        (work / "refs").mkdir(exist_ok=True)
        refs[nearest] = write_like(work / "refs" / refs[nearest].name, changed, ref_profile)
    cloudy_path = write_like(work / f"cloudy_{target.stem}.tif",
                             np.where(cloud, cloudy, truth), profile)
    del truth_dn, donor_dn
    return cloudy_path, truth, cloud, refs


def blue_by_distance(result: np.ndarray, truth: np.ndarray, pasted: np.ndarray,
                     bands: tuple[str, ...]) -> list[list[float]]:
    """Per band of distance from the clear land (``DISTANCES``) inside ``pasted``: the pixels,
    and the sum and the sum of squares of ``result``'s error in B02 (DN)."""
    error = (result[bands.index("B02")] - truth[bands.index("B02")]) * 10000
    distance = ndimage.distance_transform_edt(pasted)
    edges = (0.0, *DISTANCES, np.inf)
    sums = []
    for low, high in pairwise(edges):
        at = pasted & (distance > low) & (distance <= high)
        sums.append([float(at.sum()), float(error[at].sum()), float((error[at] ** 2).sum())])
    return sums


def distance_table(rows: list[dict]) -> None:
    """The ``--by-distance`` table: B02 bias and RMS by distance from the clear land."""
    edges = (0, *DISTANCES)
    print("\n--reference's error in B02 (DN) by distance from the clear land inside the true "
          "mask, pooled (bias / RMS, pixels):\n")
    print("| cases | " + " | ".join(f"{low:g}-{high:g} px" for low, high in pairwise(edges))
          + f" | over {DISTANCES[-1]:g} px |")
    print("|---|" + "---|" * len(edges))
    for label, found in ((f"temporal mask IoU >= {FOUND_IOU}", True),
                         (f"temporal mask IoU < {FOUND_IOU}", False)):
        part = [r for r in rows if (r["mask_iou"]["temporal (--reference)"] >= FOUND_IOU)
                == found]
        if not part:
            continue
        sums = np.sum([r["blue_by_distance"] for r in part], axis=0)
        print(f"| {label} ({len(part)}) | " + " | ".join(
            f"{total / n:+.0f} / {np.sqrt(squares / n):.0f} ({n:.0f})" if n else "-"
            for n, total, squares in sums) + " |")


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    return float((found & truth).sum() / max((found | truth).sum(), 1))


def band_subset(path: Path, bands: tuple[str, ...], folder: Path) -> Path:
    """The ``bands`` of a 13-band date, as a GeoTIFF in ``folder`` whose band descriptions
    name them."""
    folder.mkdir(exist_ok=True)
    with rasterio.open(path) as src:
        pixels, profile = src.read([BANDS.index(b) + 1 for b in bands]), src.profile
    with rasterio.open(folder / path.name, "w", **{**profile, "count": len(bands)}) as dst:
        dst.write(pixels)
        dst.descriptions = bands
    return folder / path.name


def run_case(kind: str, number: int, target: Path, donor: Path, others: list[Path],
             work: Path, ablations: Sequence[tuple] = (),
             bands: tuple[str, ...] = BANDS, temporal: bool | None = None) -> dict:
    cloudy_path, truth, pasted, refs_paths = make_case(kind, number, target, donor, others,
                                                       work)
    refs = [read(p)[0] for p in refs_paths]
    naive = naive_temporal(read(cloudy_path)[0], pasted, refs)
    if bands != BANDS:
        keep = [BANDS.index(b) for b in bands]
        truth, naive, refs = truth[keep], naive[keep], [r[keep] for r in refs]
        cloudy_path = band_subset(cloudy_path, bands, work / "bands")
        refs_paths = [band_subset(p, bands, work / "bands") for p in refs_paths]
    cloudy = read(cloudy_path)[0]
    results = {}
    median_path = work / "median.tif"
    remove_scene(cloudy_path, None, median_path, engine=EngineOptions(model="median-fill"),
                 outputs=OutputOptions(overwrite=True, cog=False), quiet=True)
    results["median fill"] = read(median_path)[0]
    results["naive mean, true mask"] = naive
    ref_path, mask_path = work / "reference.tif", work / "mask.tif"
    started = time.perf_counter()
    summary = remove_scene(cloudy_path, None, ref_path,
                           dates=ReferenceOptions(references=refs_paths, temporal_mask=temporal),
                           outputs=OutputOptions(overwrite=True, cog=False, mask_out=mask_path),
                           quiet=True)
    seconds = time.perf_counter() - started
    results["--reference"] = read(ref_path)[0]
    remove_scene(cloudy_path, None, ref_path,
                 dates=ReferenceOptions(references=refs_paths, temporal_mask=False),
                 outputs=OutputOptions(overwrite=True, cog=False), quiet=True)
    results["--reference, single-date mask"] = read(ref_path)[0]
    with rasterio.open(mask_path) as src:
        found = src.read(1) == CLOUD
    for name, module, setting, off in ablations:
        kept = getattr(module, setting)
        setattr(module, setting, off)
        try:
            remove_scene(cloudy_path, None, ref_path,
                         dates=ReferenceOptions(references=refs_paths, temporal_mask=True),
                         outputs=OutputOptions(overwrite=True, cog=False), quiet=True)
        finally:
            setattr(module, setting, kept)
        results[name] = read(ref_path)[0]
    whole = np.ones(pasted.shape, bool)
    inside_edge = pasted & (ndimage.distance_transform_edt(pasted) <= RING)
    single = classify(cloudy, None, REMOVE_MASK, bands)[0] == CLOUD
    row = {"kind": kind, "target": target.name, "donor": donor.name,
           "pasted": float(pasted.mean()),
           "temporal_mask": summary["temporal_mask"],
           "haze_removed": summary["haze_removed"],
           "from_references": summary["pixels_by_source"]["references"],
           "seconds_per_reference": seconds / len(refs_paths),
           "mask_iou": {"temporal (--reference)": iou(found, pasted),
                        "single date (score, 5 px buffer)": iou(single, pasted)},
           "clear_kept": float(np.mean(np.all(results["--reference"][:, ~pasted]
                                              == cloudy[:, ~pasted], axis=0)))
           if (~pasted).any() else None,
           "blue_by_distance": blue_by_distance(results["--reference"], truth, pasted, bands)
           if "B02" in bands else None,
           "psnr_pasted": {k: psnr(v, truth, pasted) for k, v in results.items()},
           "psnr_whole": {k: psnr(v, truth, whole) for k, v in results.items()},
           "psnr_ring": {k: psnr(v, truth, inside_edge) for k, v in results.items()}}
    scores = row["psnr_pasted"]
    if kind == "pasted" and scores["--reference"] < scores["median fill"] + 3:
        row["ceilings"] = ceilings(truth, pasted, refs, bands)
    return row


#: Share of the pasted pixels a reference must see clear to enter the ceilings.
CEILING_COVER = 0.97
#: Pixels per regressor below which the all-dates ceiling is not computed (it would overfit).
CEILING_PIXELS = 100


def ceilings(truth: np.ndarray, pasted: np.ndarray, refs: list[np.ndarray],
             bands: tuple[str, ...] = BANDS) -> dict:
    """Upper bounds of temporal fills on one case (references' reflectance ``refs`` in
    ``bands``), from the truth under the pasted cloud."""
    target = truth[:, pasted].T.astype(np.float64)
    dates = []
    for ref in refs:
        if (classify(ref, None, REMOVE_MASK, bands)[0][pasted] == CLEAR).mean() >= CEILING_COVER:
            dates.append(ref[:, pasted].T.astype(np.float64))
    best = -np.inf
    for ref in dates:
        fitted = np.column_stack([np.polyval(np.polyfit(ref[:, b], target[:, b], 1), ref[:, b])
                                  for b in range(target.shape[1])])
        best = max(best, psnr(fitted.T, target.T, np.ones(len(target), bool)))
    joint = None
    if dates:
        design = np.column_stack([*dates, np.ones(len(target))])
        if len(target) >= CEILING_PIXELS * design.shape[1]:
            rows = np.nonzero(pasted)[0]
            half = rows < np.median(rows)
            predicted = np.empty_like(target)
            for fit, apply in ((half, ~half), (~half, half)):
                weights = np.linalg.lstsq(design[fit], target[fit], rcond=None)[0]
                predicted[apply] = design[apply] @ weights
            joint = psnr(predicted.T, target.T, np.ones(len(target), bool))
    return {"dates": len(dates), "best single date, fitted on the truth":
            best if dates else None, "all dates, fitted on the other half": joint}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--every", type=int, default=1,
                        help="only every N-th case (a quick look)")
    parser.add_argument("--half", choices=("even", "odd"),
                        help="only the clear targets at even (0, 2, ...) or odd places in time "
                             "order: tune settings on one half, report the other held out")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, help="only these kinds of case")
    parser.add_argument("--ablations", nargs="*", metavar="WORD",
                        help="also --reference with one part turned off (ABLATIONS): all, or "
                             "those whose names hold one of the WORDs")
    parser.add_argument("--tables", type=Path, metavar="JSON",
                        help="only print the tables by kind and by case of a saved --json run")
    parser.add_argument("--size", type=int,
                        help="crop every date to its central SIZE x SIZE pixels first (small "
                             "images, such as those of an independent check)")
    parser.add_argument("--bands", nargs="+", default=list(BANDS),
                        help="give remove only these bands (l2a: the ten of an L2A product)")
    parser.add_argument("--by-distance", action="store_true",
                        help="also --reference's error in B02 by distance from the clear land, "
                             "split by whether the temporal mask finds the cloud")
    parser.add_argument("--temporal-mask", action="store_true", default=None,
                        help="the --reference column with --temporal-mask whatever the bands "
                             "(default: remove's default for the bands given)")
    args = parser.parse_args()
    print(code_version.describe(), flush=True)
    args.bands = L2A_BANDS if args.bands == ["l2a"] else tuple(args.bands)
    unknown = sorted(set(args.bands) - set(BANDS))
    if unknown:
        parser.error(f"unknown bands {', '.join(unknown)}: give names among {', '.join(BANDS)}")
    if args.tables:
        rows = json.loads(args.tables.read_text())
        return temporal_tables(rows, [k for k in KINDS if any(r["kind"] == k for r in rows)])
    with tempfile.TemporaryDirectory() as crops:
        dates = series(args.series)
        if args.size:
            dates = [crop(p, args.size, Path(crops)) for p in dates]
        run_benchmark(dates, args)


def crop(path: Path, size: int, folder: Path) -> Path:
    """The central ``size`` x ``size`` pixels of a date, as a GeoTIFF in ``folder``."""
    with rasterio.open(path) as src:
        width, height = src.width, src.height
    return cut(path, Window((width - size) // 2, (height - size) // 2, size, size),
               folder / path.name)


def targets_and_donors(dates: list[Path], half: str | None = None
                       ) -> tuple[list[Path], list[Path]]:
    """The clear targets (of one ``half``: ``"even"`` or ``"odd"`` places in time order, or
    all) and the cloud donors of a series."""
    fractions = {p: float((classes(read(p)[0]) == CLOUD).mean()) for p in dates}
    targets = [p for p in dates if fractions[p] < CLEAR_MAX]
    if half:
        targets = targets[half == "odd" :: 2]
    return targets, [p for p in dates if DONOR_MIN <= fractions[p] <= DONOR_MAX]


def run_benchmark(dates: list[Path], args: argparse.Namespace) -> None:
    """The cases of ``dates`` (clear targets x cloud donors x kinds), their table and JSON."""
    targets, donors = targets_and_donors(dates, args.half)
    kinds = args.kinds or KINDS
    ablations = [a for a in ABLATIONS if args.ablations is not None and (
        not args.ablations or any(word in a[0] for word in args.ablations))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # a donor that casts no shadow would repeat its pasted case
        casting = {d for d in donors if "shadowed" in kinds and cast_shadows(d, Path(tmp)).any()}
        cases = [(k, t, d) for t in targets for d in donors for k in kinds
                 if k != "shadowed" or d in casting][:: args.every]
        for i, (kind, target, donor) in enumerate(cases, 1):
            others = [p for p in dates if p != target]
            rows.append(run_case(kind, i, target, donor, others, Path(tmp), ablations,
                                 args.bands, args.temporal_mask))
            print(f"{i}/{len(cases)} {kind}: {target.name} <- {donor.name}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in rows[-1]["psnr_pasted"].items())
                  + f"; IoU {rows[-1]['mask_iou']['temporal (--reference)']:.3f}",
                  file=sys.stderr)
    print(f"{len(targets)} clear targets ({args.half or 'all'}) x {len(donors)} cloud donors x "
          f"{len(kinds)} kinds, every {args.every}: {len(rows)} cases, {len(dates) - 1} "
          f"references each, bands {' '.join(args.bands)}"
          + (", --reference with --temporal-mask" if args.temporal_mask else "") + "\n")
    print("| kind | cases | median fill, dB | naive mean (true mask), dB | --reference, dB | "
          "--reference - naive: mean / worst | --reference - median fill: worst | "
          "mask IoU temporal / single date | clear pixels kept | s per reference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in (*kinds, "all"):
        part = [r for r in rows if kind in ("all", r["kind"])]
        if not part:
            continue
        score = {m: np.array([r["psnr_pasted"][m] for r in part])
                 for m in ("median fill", "naive mean, true mask", "--reference")}
        ious = [np.mean([r["mask_iou"][m] for r in part]) for m in part[0]["mask_iou"]]
        kept = [r["clear_kept"] for r in part if r["clear_kept"] is not None]
        over_naive = score["--reference"] - score["naive mean, true mask"]
        over_median = score["--reference"] - score["median fill"]
        print(f"| {kind} | {len(part)} | {score['median fill'].mean():.2f} | "
              f"{score['naive mean, true mask'].mean():.2f} | {score['--reference'].mean():.2f} "
              f"| {over_naive.mean():+.2f} / {over_naive.min():+.2f} | {over_median.min():+.2f} "
              f"| {ious[0]:.3f} / {ious[1]:.3f} | "
              f"{np.mean(kept) if kept else float('nan'):.3f} | "
              f"{np.mean([r['seconds_per_reference'] for r in part]):.3f} |")
    ours, base, naive = (np.array([r["psnr_pasted"][m] for r in rows]) for m in (
        "--reference", "median fill", "naive mean, true mask"))
    print(f"\n--reference: at least the median fill + 2 dB on {(ours - base >= 2).sum()}/"
          f"{len(rows)} cases, at least the naive mean on {(ours >= naive).sum()}/{len(rows)}, "
          f"below the median fill on {(ours < base).sum()}/{len(rows)}")
    for name, *_ in ablations:
        change = ours - np.array([r["psnr_pasted"][name] for r in rows])
        whole = np.array([r["psnr_whole"]["--reference"] - r["psnr_whole"][name] for r in rows])
        print(f"against {name}: better on {(change > 0.005).sum()}, worse on "
              f"{(change < -0.005).sum()}/{len(rows)} cases (mean {change.mean():+.3f} dB, "
              f"from {change.min():+.2f} to {change.max():+.2f}; whole image "
              f"{whole.mean():+.3f} dB, from {whole.min():+.2f} to {whole.max():+.2f})")
    short = [r for r in rows if "ceilings" in r]
    if short:
        print(f"\nThe {len(short)} pasted cases below the median fill + 3 dB, against ceilings "
              "fitted on the hidden truth (dB on the pasted clouds; - where too few pixels):\n")
        print("| target <- cloud of | pasted | median fill + 3 | --reference | best single date, "
              "fitted on the truth | all dates, fitted on the other half |")
        print("|---|---|---|---|---|---|")
        for r in short:
            cells = [r["ceilings"][k] for k in ("best single date, fitted on the truth",
                                                 "all dates, fitted on the other half")]
            scores = r["psnr_pasted"]
            print(f"| {date_of(r['target'])} <- {date_of(r['donor'])} | {r['pasted']:.0%} | "
                  f"{scores['median fill'] + 3:.2f} | {scores['--reference']:.2f} | "
                  + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")
    temporal_tables(rows, kinds)
    if args.by_distance and all(r["blue_by_distance"] for r in rows):
        distance_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def ring(row: dict) -> float:
    """``--reference``'s PSNR on the ring inside the true cloud's edge (NaN in a JSON saved
    before the benchmark gave it)."""
    return row.get("psnr_ring", {}).get("--reference", float("nan"))


def temporal_tables(rows: list[dict], kinds: list[str]) -> None:
    """The tables of docs/benchmarks/other-dates.md (the temporal mask): by kind and by case,
    PSNR (dB) on the true cloud and the masks' IoU; the temporal mask's on the ring just inside
    the true cloud's edge (``RING``)."""
    methods = ("median fill", "naive mean, true mask", "--reference",
               "--reference, single-date mask")
    masks = ("temporal (--reference)", "single date (score, 5 px buffer)")
    print("\n| kind | cases | median fill | naive mean of the clear dates, true mask | "
          "`--reference --temporal-mask` | `--reference` (single-date mask) | mask IoU, "
          "temporal / single date | clear pixels kept | cases below the median fill |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in (*kinds, "all"):
        part = [r for r in rows if kind in ("all", r["kind"])]
        if not part:
            continue
        score = {m: np.mean([r["psnr_pasted"][m] for r in part]) for m in methods}
        iou_ = [np.mean([r["mask_iou"][m] for r in part]) for m in masks]
        kept = [r["clear_kept"] for r in part if r["clear_kept"] is not None]
        below = sum(r["psnr_pasted"]["--reference"] < r["psnr_pasted"]["median fill"]
                    for r in part)
        print(f"| {kind} | {len(part)} | " + " | ".join(f"{score[m]:.2f}" for m in methods)
              + f" | {iou_[0]:.3f} / {iou_[1]:.3f} | "
              + (f"{np.mean(kept):.3f}" if kept else "-") + f" | {below} | "
              + f"{np.mean([ring(r) for r in part]):.2f} |")
    extra = [m for m in rows[0]["psnr_pasted"] if m not in methods] if rows else []
    if extra:  # the ablations: dB on the true cloud and on the whole image, beside the default
        shown = ("median fill", "--reference", *extra)
        print("\n| kind | cases | " + " | ".join(f"{m}: true cloud / whole image" for m in shown)
              + " |")
        print("|---|---|" + "---|" * len(shown))
        for kind in (*kinds, "all"):
            part = [r for r in rows if kind in ("all", r["kind"])]
            if part:
                print(f"| {kind} | {len(part)} | " + " | ".join(
                    f"{np.mean([r['psnr_pasted'][m] for r in part]):.2f} / "
                    f"{np.mean([r['psnr_whole'][m] for r in part]):.2f}" for m in shown) + " |")
    print("\n| kind | case | cloud | median fill | naive mean | `--reference --temporal-mask` | "
          "`--reference` | IoU temporal / single date | "
          f"`--reference --temporal-mask`, {RING:g} px inside the edge |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {date_of(r['target'])} <- {date_of(r['donor'])} | "
              f"{r['pasted']:.0%} | " + " | ".join(f"{r['psnr_pasted'][m]:.2f}" for m in methods)
              + f" | {r['mask_iou'][masks[0]]:.3f} / {r['mask_iou'][masks[1]]:.3f} | "
              f"{ring(r):.2f} |")


if __name__ == "__main__":
    main()
