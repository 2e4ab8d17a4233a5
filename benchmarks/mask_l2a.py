"""`cloudfree mask` on L2A band sets: the pool's cloudy / clear L1C pairs without B01, B09 and B10,
at top-of-atmosphere levels and brought down to surface levels as L2A's are.

    python benchmarks/mask_l2a.py pairs/{high_cp,low_cp,ok,residual,series} --l2a DEST \
        [--half tuning|held-out] [--grid]

The pairs, their truth (cloud where the cloudy date is more than 0.05 brighter than its clear twin
in the mean of B02-B04), zones and scores are those of ``benchmarks/mask_quality.py``, and so is
the by-scene split (``--half``, default the tuning half). The pool holds no real L2A cloud with a
truth, so the L1C pairs stand in for it, two ways:

- ``top of atmosphere``: the L2A band set (B02-B08, B8A, B11, B12: B01, B09 and B10 dropped) as
  the files hold it;
- ``surface levels``: the same bands as an atmospheric correction leaves them, emulated: a
  dark-object subtraction (Chavez 1988) takes off the path radiance, then a division by a typical
  two-way transmittance (``TRANSMITTANCE``) restores what the air dims. In each visible band
  (B01-B04) both dates of a pair are lowered by the same offset, floored at 0, and divided: the
  offset brings the clear twin's 1st percentile to the dark level of the pool's real L2A images
  (``DEST``: the WorldCereal months and BigEarthNet patches of ``scripts/build_l2a_pool.py``; per
  band, the median of their 1st percentiles). The truth, a difference of the two dates, is
  unchanged. Longer bands are left as they are (their path radiance is small). ``with B01``:
  the 12-band L2A set (B10 dropped) at surface levels.

Each set is scored with the mask as it is (``with the veiled edges``, ``classify.veiled_edges``)
and without its growth of veiled edges (``without``), beside the full L1C mask. False alarms: the
cloud found on the clear twins (the same set and levels), on the clear Sen1Floods11 scene of
../shared/data (its own 1st percentiles for the offsets) and on the pool's real L2A images as
they are (mean and worst; all have under 0.3 % cloud but the snowy BigEarthNet patch of 4
February 2018, 2.8 %).

``--grid`` (tuning half only): the settings of ``classify.EDGE_*`` tried, each scored on the
surface-level set and the top-of-atmosphere set; the one kept is the best IoU at surface levels
among those that keep, against the mask without the veiled edges, the top-of-atmosphere IoU
within 0.005, the cloud on the clear L1C scene (its bright roofs, top of atmosphere) and the
real L2A images' mean cloud within 0.1 point, and the land taken for cloud beside a cloud
within 3 points: ``town_beside_cloud``, the summer sample's cumulus pasted (where the full L1C
mask finds it, so with no veil around it) beside the Sen1Floods11 chip's village, at top of
atmosphere. The tables give that share too, at each set's levels.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import code_version
import numpy as np
from mask_quality import (
    CLEAR_SCENE,
    DATA,
    Pair,
    halves,
    load_pairs,
    ours,
    s2cloudless,
    score,
)
from rasterio.windows import Window

from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask import classify as classify_module
from cloudfree.mask.classify import CLOUD, MaskParams, classify

#: Bands an L2A product of the ten-band sets lacks, and those of every L2A product.
L2A_10, L2A_12 = ("B01", "B09", "B10"), ("B10",)
#: The cumulus pasted beside a village (``town_beside_cloud``): the summer sample's window and
#: the Sen1Floods11 chip's, 120 px.
SUMMER = DATA / "sen12mscr" / "ROIs1868_summer_19_p30_s2_cloudy.tif"
CUMULUS, VILLAGE, TOWN_SIZE = (48, 0), (100, 100), 120
#: Bands lowered to surface levels.
VISIBLE = ("B01", "B02", "B03", "B04")
#: A typical two-way (sun to ground to sensor, direct and diffuse) transmittance of a clear
#: atmosphere in each visible band, which atmospheric correction divides by once it has taken
#: off the path radiance: approximate values for a sun about 35 degrees from the zenith, a nadir
#: view, Rayleigh scattering (optical depths 0.24, 0.15, 0.09 and 0.045 at 443, 490, 560 and
#: 665 nm; Bodhaine et al. 1999) and an aerosol optical depth near 0.15 (not fitted to anything).
TRANSMITTANCE = {"B01": 0.74, "B02": 0.80, "B03": 0.86, "B04": 0.90}
GRID = {"EDGE_BOX": (21, 31), "EDGE_HOT": (0.01, 0.02, 0.03, 0.04),
        "EDGE_BLUE": (0.03, 0.04, 0.05),
        "EDGE_GROW": (10, 15), "EDGE_SHARE": (0.5, 0.7)}
NAMES = {"EDGE_BOX": "box", "EDGE_HOT": "HOT", "EDGE_BLUE": "blue", "EDGE_GROW": "grow",
         "EDGE_SHARE": "share"}


def band_arguments(parser: argparse.ArgumentParser, sets: dict[str, tuple[str, ...]],
                   bands_help: str) -> None:
    """``--bands`` (a key of ``sets``: the bands each leaves out) and ``--surface DEST`` (an
    L2A band set at surface levels, ``lowered`` to the dark levels of the L2A pool ``DEST``)."""
    parser.add_argument("--bands", choices=tuple(sets), default="l1c", help=bands_help)
    parser.add_argument("--surface", type=Path, metavar="DEST",
                        help="with an L2A band set: at surface levels, brought to the dark "
                             "levels of the real L2A images of build_l2a_pool.py's DEST")


def surface_levels(parser: argparse.ArgumentParser,
                   args: argparse.Namespace) -> dict[str, float] | None:
    """The dark levels ``--surface`` asks for (``dark_levels``; None without it); a usage error
    where the band set is L1C's."""
    if args.surface and args.bands == "l1c":
        parser.error("--surface: give an L2A band set with --bands")
    return dark_levels(real_l2a(args.surface)) if args.surface else None


def l2a_paths(dest: Path) -> list[Path]:
    """The pool's real L2A images: WorldCereal months, BigEarthNet patches (folders)."""
    return (sorted((dest / "worldcereal").glob("s2_*.tif"))
            + sorted(p for p in (dest / "bigearthnet").glob("S2*_*") if p.is_dir()))


def real_l2a(dest: Path) -> list[tuple[str, np.ndarray, np.ndarray, tuple[str, ...]]]:
    """(name, reflectance, valid, bands) of the pool's real L2A images (WorldCereal months with
    data, BigEarthNet patches)."""
    out = []
    for path in l2a_paths(dest):
        with open_sentinel2(path) as s2:
            refl, valid = s2.read()
            if valid.mean() >= 0.5:
                out.append((path.name, refl, valid, s2.bands))
    if not out:
        raise SystemExit(f"no L2A images under {dest}/worldcereal or {dest}/bigearthnet")
    return out


def dark_levels(images: list) -> dict[str, float]:
    """Per visible band, the median over ``images`` of their 1st percentile."""
    levels = {}
    for band in VISIBLE:
        found = [np.percentile(refl[bands.index(band)][valid], 1)
                 for _, refl, valid, bands in images if band in bands]
        levels[band] = float(np.median(found))
    return levels


def lowered(image: np.ndarray, by: np.ndarray) -> np.ndarray:
    """``image`` [13, H, W] at surface levels: its visible bands lowered by ``by`` (``offsets``),
    floored at 0, and divided by their ``TRANSMITTANCE``."""
    out = image.copy()
    for band in VISIBLE:
        i = BANDS.index(band)
        out[i] = np.maximum(out[i] - by[i], 0) / TRANSMITTANCE[band]
    return out


def offsets(clear: np.ndarray, levels: dict[str, float]) -> np.ndarray:
    """Per band, what dark-object subtraction takes off: in the visible bands, what brings the
    clear image's 1st percentile to the L2A dark level once ``lowered`` divides by the
    transmittance; 0 elsewhere."""
    by = np.zeros(len(BANDS), np.float32)
    for band, level in levels.items():
        i = BANDS.index(band)
        by[i] = max(0.0, float(np.percentile(clear[i], 1)) - level * TRANSMITTANCE[band])
    return by


def surface(pairs: list[Pair], levels: dict[str, float]) -> list[Pair]:
    """Both dates of each pair lowered by the offsets of its clear twin."""
    out = []
    for p in pairs:
        by = offsets(p.clear, levels)
        out.append(Pair(p.name, lowered(p.cloudy, by), lowered(p.clear, by)))
    return out


def town_beside_cloud() -> tuple[np.ndarray, np.ndarray]:
    """A village with a cloud beside it: the Sen1Floods11 chip's village and fields (120 px) with
    the summer sample's cumulus pasted in where the full L1C mask finds it (no veil around it:
    what the mask finds beyond it is land); reflectance [13, H, W] and the pasted cloud."""
    with open_sentinel2(CLEAR_SCENE) as s2:
        land = s2.read(Window(*VILLAGE, TOWN_SIZE, TOWN_SIZE))[0]
    with open_sentinel2(SUMMER) as s2:
        cloudy = s2.read(Window(*CUMULUS, TOWN_SIZE, TOWN_SIZE))[0]
    cloud = classify(cloudy, None, MaskParams())[0] == CLOUD
    return np.where(cloud, cloudy, land), cloud


def without(missing: tuple[str, ...]):
    """The default mask on the bands but ``missing``."""
    keep = [i for i, b in enumerate(BANDS) if b not in missing]
    bands = tuple(BANDS[i] for i in keep)
    return lambda refl: classify(refl[keep], None, MaskParams(), bands)[0] == CLOUD


@contextmanager
def edges(**settings: float) -> Iterator[None]:
    """The mask with ``classify.EDGE_*`` set as given (``off=True``: no veiled edges)."""
    if settings.pop("off", False):
        settings["EDGE_SHARE"] = 2.0  # no pixel seeds
    kept = {k: getattr(classify_module, k) for k in settings}
    for k, v in settings.items():
        setattr(classify_module, k, v)
    try:
        yield
    finally:
        for k, v in kept.items():
            setattr(classify_module, k, v)


def real_cloud(images: list) -> tuple[float, float]:
    """Mean and worst cloud fraction of the mask on the real L2A images."""
    found = [float((classify(refl, valid, MaskParams(), bands)[0] == CLOUD)[valid].mean())
             for _, refl, valid, bands in images]
    return float(np.mean(found)), float(np.max(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="folders with s2_cloudy/ and s2/ twins")
    parser.add_argument("--l2a", type=Path, required=True,
                        help="the L2A pool of scripts/build_l2a_pool.py (worldcereal/, "
                             "bigearthnet/)")
    parser.add_argument("--half", choices=("tuning", "held-out"), default="tuning")
    parser.add_argument("--grid", action="store_true",
                        help="the settings of the veiled edges tried on the tuning half")
    args = parser.parse_args()
    print(code_version.describe(), flush=True)
    if args.grid and args.half != "tuning":
        parser.error("--grid tunes: it runs on the tuning half only")
    tuning, held_out = halves(load_pairs(args.folders))
    pairs = tuning if args.half == "tuning" else held_out
    images = real_l2a(args.l2a)
    levels = dark_levels(images)
    print(f"{args.half} half: {len(pairs)} pairs; L2A dark levels (median 1st percentile of "
          f"{len(images)} real L2A images): "
          + ", ".join(f"{b} {v:.4f}" for b, v in levels.items()) + "\n")
    with open_sentinel2(CLEAR_SCENE) as s2:
        scene, valid = s2.read()
    low = surface(pairs, levels)
    low_scene = (lowered(scene, offsets(scene, levels)), valid)
    sets = {"top of atmosphere": (pairs, (scene, valid), L2A_10),
            "surface levels": (low, low_scene, L2A_10),
            "surface levels, with B01": (low, low_scene, L2A_12)}
    if args.grid:
        grid(sets, images)
        return
    print("| mask | IoU | precision | recall | cores: recall | edge zone: IoU | rest: IoU | "
          "cloud on the clear twins: mean / worst | cloud on the clear L1C scene | land beside "
          "the pasted cloud taken for cloud | cloud on the real L2A images: mean / worst |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")
    town = {False: town_beside_cloud()}
    town[True] = (lowered(town[False][0], offsets(town[False][0], levels)), town[False][1])
    rows = [("full L1C bands (defaults)", ours(MaskParams()), pairs, (scene, valid), None,
             town[False])]
    for name, (part, clear, missing) in sets.items():
        rows += [(f"L2A bands, {name}, {label}", without(missing), part, clear, off,
                  town[name != "top of atmosphere"])
                 for label, off in (("without the veiled edges", True),
                                    ("with the veiled edges", False))]
    if (masker := s2cloudless()) is not None:
        rows.append(("s2cloudless (all 13 L1C bands)", masker, pairs, (scene, valid), None,
                     town[False]))
    for name, masker, part, clear, off, (beside, pasted) in rows:
        with edges(off=bool(off)):
            r = score(masker, part, clear)
            land = float(masker(beside)[~pasted].mean())
            real = real_cloud(images) if off is not None else None
        tail = f"{real[0]:.2%} / {real[1]:.2%}" if real else "-"
        print(f"| {name} | {r['iou']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['thick_recall']:.3f} | {r['edge_iou']:.3f} | {r['rest_iou']:.3f} | "
              f"{r['clear_mean']:.2%} / {r['clear_max']:.2%} | {r['clear_scene']:.2%} | "
              f"{land:.2%} | {tail} |")


def grid(sets: dict, images: list) -> None:
    """Score each setting of ``GRID`` at surface levels and top of atmosphere; print the one
    kept (module docstring)."""
    toa, toa_clear, missing = sets["top of atmosphere"]
    low, low_clear, _ = sets["surface levels"]
    masker = without(missing)
    beside, pasted = town_beside_cloud()

    def town() -> float:
        return float(masker(beside)[~pasted].mean())

    with edges(off=True):
        base, base_real, base_town = score(masker, toa, toa_clear), real_cloud(images)[0], town()
    print(f"without the veiled edges: top of atmosphere IoU {base['iou']:.3f}, cloud on the "
          f"clear L1C scene {base['clear_scene']:.2%}, land beside the pasted cloud taken "
          f"{base_town:.2%}; real L2A mean cloud {base_real:.2%}\n\n"
          "| setting | surface levels: IoU / precision / recall | top of atmosphere: IoU / "
          "cloud on the clear L1C scene / land beside the pasted cloud | real L2A: mean / worst "
          "|\n|---|---|---|---|")
    best, best_iou = None, -1.0
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        with edges(**setting):
            r, t = score(masker, low, low_clear), score(masker, toa, toa_clear)
            real, land = real_cloud(images), town()
        label = ", ".join(f"{NAMES[k]} {v}" for k, v in setting.items())
        print(f"| {label} | {r['iou']:.3f} / {r['precision']:.3f} / {r['recall']:.3f} | "
              f"{t['iou']:.3f} / {t['clear_scene']:.2%} / {land:.2%} | {real[0]:.2%} / "
              f"{real[1]:.2%} |", flush=True)
        if (t["iou"] >= base["iou"] - 0.005 and t["clear_scene"] <= base["clear_scene"] + 0.001
                and land <= base_town + 0.03 and real[0] <= base_real + 0.001
                and r["iou"] > best_iou):
            best, best_iou = label, r["iou"]
    print(f"\nKept: {best} (surface-level IoU {best_iou:.3f}).")

if __name__ == "__main__":
    main()
