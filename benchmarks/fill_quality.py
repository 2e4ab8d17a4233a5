"""The fill's base, haze ring and feather on every real triplet of the pool, scene by scene.

    python benchmarks/fill_quality.py --data DATA [--fillnet CHECKPOINT] [--json out.json]
    python benchmarks/fill_quality.py --data DATA --loso RUNS [--pasted] [--json out.json]

DATA is the set built by ``scripts/build_training_set.py``; every real SEN12MS-CR triplet in it
is read, from both splits (the 10 residual triplets below ID 4400 and winter_112). Each goes
through the real ``remove_scene`` (GeoTIFFs in a temporary folder, default mask) with:

- ``median-fill`` on the scene median base with an 8 px feather (the former default),
- ``median-fill`` on the local base (``--fill local``: S1-aware local fill and haze ring),
- ``cloudfree-fillnet`` on each base (the bundled network, or ``--fillnet``; the bundled one
  was trained on every scene here, so only ``--loso`` holds scenes out), unbounded, with its
  correction bounded to 50 % or 25 % of the base (the latter shrinking with the local fill's
  support, as ``remove`` runs it), and to 25 % everywhere (as before that support term),
- the same with shadows filled too (``--shadow``),
- ``loso``: for each scene, the ``median-fill`` setting (base x feather, shadows) with the best
  mean PSNR on the other scenes (leave-one-scene-out cross-validation).

With ``--pasted``, the truth is of the same date instead: each triplet's cloud-free image gets
the real cloud of another triplet of the pool (one with 5-70 % cloud, turned by 90 degrees),
blended as ``clear + a * (cloudy - clear)`` with the opacity ``a`` rising with the cloud's score
(``training/simulate.py``: cores hide the land, edges let it through), and is filled back; scored
the same way (inside the mask of the blended image). ``benchmarks/one_date_quality.py`` does the
same over every clear S1/S2 image of the pool, with shadows.

With ``--loso RUNS`` (the folds of ``scripts/train_loso.py``), each candidate network of RUNS
(``RUNS/<arch>-<preset>/<scene>/last.pt``) runs as ``remove`` runs the bundled network (local
base, feather 2, correction bounded to 25 % of the base, less where the local fill has support),
bounded to 25 % everywhere, and unbounded, on each triplet with
the checkpoint of the fold that held that scene out (checked in its metadata;
unfinished folds are left out), beside the former base and ``median-fill`` on the local base.

Scores against the cloud-free image (reflectance clipped to [0, 1], 13 bands): PSNR over the
image, inside the cloud mask and on the ring 1-10 px outside it; SSIM and the correlation of
gradient magnitudes with the truth inside the mask (structure). Means, and wins against the
former default and against ``median-fill`` on the local base, over the triplets with cloud
(those on whose cloudy image ``remove``'s mask finds cloud: 8 with today's mask, 10 before the
bright-land test's rules for sand and for land dim at 443 nm; ``one_date_quality.py`` says which).
Last (not with ``--loso``), each triplet's PSNR inside the mask beside that of its cloudy image's
own clear land (``FAR`` px or more from the mask) against the cloud-free image, which is of
another date.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import rasterio
import torch
from metrics import psnr, ssim
from remove_quality import write_inputs  # puts scripts/ on the path for train_default
from scipy import ndimage
from train_default import MASK, has_cloud, real_triplets, triplet_records
from train_loso import run_epochs

from cloudfree.fill import local as local_fill
from cloudfree.inference.checkpoint import load_checkpoint
from cloudfree.mask.classify import MaskParams, classify
from cloudfree.pipeline.options import split_options
from cloudfree.pipeline.remove import remove_scene
from cloudfree.training.datasets import LoadedSample, cloud_mask
from cloudfree.training.simulate import opacity, overlay

#: The bundled network the ``fillnet`` settings run (``--fillnet`` or ``--loso``: a checkpoint).
FILLNET = "cloudfree-fillnet"
#: name -> remove options
SETTINGS = {
    "median base, feather 8": {"model": "median-fill", "fill_method": "median", "feather": 8},
    "median base, feather 2": {"model": "median-fill", "fill_method": "median", "feather": 2},
    "local base, feather 8": {"model": "median-fill", "fill_method": "local", "feather": 8,
                              "restoring": None},
    "local base, feather 2": {"model": "median-fill", "fill_method": "local", "feather": 2,
                              "restoring": None},
    "local base, feather 2, shadows": {"model": "median-fill", "fill_method": "local",
                                       "feather": 2, "restoring": None,
                                       "mask_params": MaskParams(buffer=5, shadow=True)},
    # the network named: remove's default model is median-fill, which has none
    "fillnet, median base, feather 8": {"model": FILLNET, "fill_method": "median",
                                        "feather": 8, "max_correction": None},
    "fillnet, local base, feather 2": {"model": FILLNET, "fill_method": "local", "feather": 2,
                                       "max_correction": None, "restoring": None},
    "fillnet, local base, f2, correction <= 50 %": {
        "model": FILLNET, "fill_method": "local", "feather": 2, "max_correction": 0.5,
        "restoring": None},
    "fillnet, local base, f2, correction <= 25 %": {
        "model": FILLNET, "fill_method": "local", "feather": 2, "max_correction": 0.25,
        "restoring": None},
    # the bound without the support term: 25 % of the base wherever the fill has land
    "fillnet, local base, f2, correction <= 25 % everywhere": {
        "model": FILLNET, "fill_method": "local", "feather": 2, "max_correction": 0.25,
        "support_scale": math.inf, "restoring": None},
    # thin cloud and haze taken off (and shadows relit, with --shadow) where the land shows
    "local base, feather 2, restored": {"model": "median-fill", "fill_method": "local",
                                        "feather": 2},
}
BASELINE = "median base, feather 8"
LOCAL = "local base, feather 2"
#: The settings ``--loso`` runs every candidate network in: as ``remove`` runs the bundled one
#: (correction bounded to 25 % of the base, less where the local fill has land of its kind
#: near), as the bound was before that, and unbounded.
FOLD_SETTINGS = {"": "fillnet, local base, f2, correction <= 25 %",
                 ", 25 % everywhere": "fillnet, local base, f2, correction <= 25 % everywhere",
                 ", unbounded": "fillnet, local base, feather 2"}
CANDIDATES = [name for name in SETTINGS if not name.startswith("fillnet")]
RING = 10
#: Clear land this far from the mask (past the haze ring and the local fill's source ramp) shows
#: how far the cloudy date itself is from the cloud-free one.
FAR = 15
#: remove's default (``median-fill`` on the local base, haze restored), for the last table.
DEFAULT = "local base, feather 2, restored"


def run(folder: Path, s2: Path, s1: Path, options: dict) -> np.ndarray:
    """``remove`` with these options and every other default (``support_scale``: the local
    fill's constant of that name, patched for this run); reflectance [13, H, W]."""
    out = folder / "output.tif"
    options = dict(options)
    scale = options.pop("support_scale", local_fill.SUPPORT_SCALE)
    with mock.patch.object(local_fill, "SUPPORT_SCALE", scale):
        remove_scene(s2, s1, out, quiet=True, **split_options(
            {"s1_aligned": True, "overwrite": True, "device": "cpu", **options}))
    with rasterio.open(out) as ds:
        return ds.read().astype(np.float32) / 10000


def gradient_correlation(pred: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    """Mean over bands of the correlation of Sobel gradient magnitudes inside ``where``."""
    out = []
    for p, t in zip(pred, truth, strict=True):
        gp, gt = (np.hypot(ndimage.sobel(x, 0), ndimage.sobel(x, 1))[where] for x in (p, t))
        out.append(0.0 if gp.std() < 1e-9 or gt.std() < 1e-9 else np.corrcoef(gp, gt)[0, 1])
    return float(np.mean(out))


def scores(pred: np.ndarray, truth: np.ndarray, cloud: np.ndarray, valid: np.ndarray) -> dict:
    """PSNR (image, mask, ring), SSIM and gradient correlation inside the mask."""
    pred, truth = np.clip(pred, 0, 1), np.clip(truth, 0, 1)
    inside = cloud & valid
    away = ndimage.distance_transform_edt(~cloud)
    ring = (away > 0) & (away <= RING) & valid
    return {"psnr": psnr(pred, truth, valid), "psnr_mask": psnr(pred, truth, inside),
            "psnr_ring": psnr(pred, truth, ring),
            "ssim_mask": ssim(pred, truth, inside),
            "grad_mask": gradient_correlation(pred, truth, inside)}


def date_gap(cloudy: np.ndarray, truth: np.ndarray, cloud: np.ndarray,
             valid: np.ndarray) -> float:
    """PSNR of the cloudy image against the cloud-free one on its clear land ``FAR`` px or more
    from the mask (NaN under 1000 pixels): the two dates differ there too, so no fill of the
    cloudy date can be expected to score much above it."""
    far = valid & (ndimage.distance_transform_edt(~cloud) > FAR)
    if far.sum() < 1000:
        return float("nan")
    return psnr(np.clip(cloudy, 0, 1), np.clip(truth, 0, 1), far)


def date_table(rows: list[dict]) -> None:
    """Each triplet's fill inside the mask beside its cloudy date's own clear land."""
    print(f"\n{'triplet':>36} split cover  clear land  in mask: former base / default")
    for r in rows:
        print(f"{r['name']:>36} {r['split']:>5} {r['cover']:4.0f}% {r['date_gap']:10.2f} "
              f"{r[BASELINE]['psnr_mask']:17.2f} / {r[DEFAULT]['psnr_mask']:.2f}")


def loso(rows: list[dict]) -> None:
    """Adds ``loso``: each scene's result under the candidate best on the other scenes."""
    for i, row in enumerate(rows):
        others = [r for j, r in enumerate(rows) if j != i]
        best = max(CANDIDATES, key=lambda n: np.mean([r[n]["psnr"] for r in others]))
        row["loso"] = {**row[best], "chosen": best}


def wins(rows: list[dict], name: str, against: str) -> int:
    """Triplets on which ``name`` scores a higher PSNR than ``against``."""
    return sum(r[name]["psnr"] > r[against]["psnr"] + 1e-6 for r in rows)


def table(rows: list[dict], group: str, names: list[str]) -> None:
    """Means of the settings ``names`` over ``rows``, gain and wins against the former default,
    wins against ``median-fill`` on the local base."""
    base = [r[BASELINE]["psnr"] for r in rows]
    print(f"\n{group + ' triplets':>34}  PSNR  mask  ring  SSIMm gradm  gain  wins  vs local"
          f"  (n={len(rows)})")
    for name in names:
        mean = {k: np.nanmean([r[name][k] for r in rows]) for k in rows[0][name]
                if k != "chosen"}
        gain = np.mean([r[name]["psnr"] for r in rows]) - np.mean(base)
        n = len(rows)
        print(f"{name:>34} {mean['psnr']:5.2f} {mean['psnr_mask']:5.2f} {mean['psnr_ring']:5.2f}"
              f" {mean['ssim_mask']:.3f} {mean['grad_mask']:.3f} {gain:+.2f}"
              f" {wins(rows, name, BASELINE):>2}/{n} {wins(rows, name, LOCAL):>5}/{n}")


def with_checkpoint(options: dict, checkpoint: Path) -> dict:
    """A ``fillnet`` setting's options with ``checkpoint`` in place of the bundled network."""
    return {**options, "model": None, "checkpoint": checkpoint}


def fold_settings(runs: Path, scene: str) -> dict[str, dict]:
    """The baselines and, per candidate of ``runs`` whose fold without ``scene`` is finished,
    that fold's network in each of ``FOLD_SETTINGS``."""
    out = {BASELINE: SETTINGS[BASELINE], LOCAL: SETTINGS[LOCAL]}
    for folder in sorted(p.parent for p in runs.glob(f"*/{scene}")):
        done, asked = run_epochs(folder / scene)
        if done == 0 or done < asked:
            print(f"{folder.name}: the fold without {scene} is unfinished ({done}/{asked} "
                  "epochs), left out")
            continue
        checkpoint = folder / scene / "last.pt"
        if scene not in load_checkpoint(checkpoint).metadata.get("holdout", []):
            raise SystemExit(f"{checkpoint} was not trained without {scene}")
        for suffix, setting in FOLD_SETTINGS.items():
            out[folder.name + suffix] = with_checkpoint(SETTINGS[setting], checkpoint)
    return out


def fold_tables(rows: list[dict]) -> None:
    """One table per set of scenes the candidates were scored on: baselines, then candidates."""
    groups: dict[tuple[str, ...], list[str]] = {}
    candidates = [n for r in rows for n in r["settings"] if n not in (BASELINE, LOCAL)]
    for name in dict.fromkeys(candidates):
        groups.setdefault(tuple(r["name"] for r in rows if name in r), []).append(name)
    for scenes, names in groups.items():
        table([r for r in rows if r["name"] in scenes], "held-out", [BASELINE, LOCAL, *names])


def pasted(samples: list[LoadedSample]) -> list[LoadedSample]:
    """Each sample's cloud-free image under the real cloud of a donor, turned by 90 degrees and
    blended by its opacity: the cloudy input of a same-date truth (``--pasted``). The donors are
    the samples with 5-70 % cloud, and sample i takes donor i (cyclically), or the next one when
    that is itself."""
    donors = [s for s in samples if 0.05 < s.cloud[s.valid].mean() < 0.7]
    out = []
    for i, sample in enumerate(samples):
        donor = next(d for d in donors[i % len(donors):] + donors if d is not sample)
        alpha = np.rot90(opacity(classify(donor.cloudy, donor.valid)[1]))
        blended = overlay(sample.clear, np.rot90(donor.cloudy, axes=(1, 2)), alpha)
        cloudy = np.where(sample.valid[None], blended, sample.clear)
        out.append(dataclasses.replace(sample, cloudy=cloudy,
                                       cloud=cloud_mask(cloudy, sample.valid, MASK)))
    return out


def score_triplets(data: Path, settings_of: Callable[[str], dict[str, dict]],
                   same_date: bool = False) -> list[dict]:
    """One row per real triplet with cloud (both splits): its scores in every setting that
    ``settings_of(scene)`` names, under the setting's name; ``settings`` lists the names.
    ``same_date``: each triplet's cloud-free image under a pasted real cloud (:func:`pasted`)."""
    records, samples = [], []
    every = triplet_records([data])
    for record, sample in zip(every, real_triplets(every), strict=True):
        if not has_cloud(sample):
            print(f"{record['id']}: no cloud under remove's mask, skipped")
            continue
        records.append(record)
        samples.append(sample)
    if same_date:
        samples = pasted(samples)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for record, sample in zip(records, samples, strict=True):
            cloud = sample.cloud.astype(bool)
            s2, s1 = write_inputs(folder, sample)
            settings = settings_of(record["scene"])
            row = {"name": record["id"], "split": record["split"],
                   "cover": round(100 * float(cloud[sample.valid].mean()), 1),
                   "date_gap": date_gap(sample.cloudy, sample.clear, cloud, sample.valid),
                   "settings": list(settings)}
            for name, options in settings.items():
                row[name] = scores(run(folder, s2, s1, options), sample.clear, cloud,
                                   sample.valid)
            rows.append(row)
            print(f"{row['name']:>36} {row['split']:>5} {row['cover']:5.1f}% " + " ".join(
                f"{row[n]['psnr']:.2f}" for n in settings), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    networks = parser.add_mutually_exclusive_group()
    networks.add_argument("--fillnet", type=Path,
                          help="a fillnet checkpoint instead of the bundled")
    networks.add_argument("--loso", type=Path, metavar="RUNS", help="score train_loso.py's folds")
    parser.add_argument("--pasted", action="store_true",
                        help="score on real clouds pasted over each triplet's cloud-free image")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    if args.loso:
        rows = score_triplets(args.data, lambda scene: fold_settings(args.loso, scene),
                              args.pasted)
        fold_tables(rows)
    else:
        settings = {name: with_checkpoint(options, args.fillnet)
                    if args.fillnet and name.startswith("fillnet") else options
                    for name, options in SETTINGS.items()}
        rows = score_triplets(args.data, lambda scene: settings, args.pasted)
        loso(rows)
        for group in ("all", "val"):
            table([r for r in rows if group == "all" or r["split"] == group], group,
                  [*SETTINGS, "loso"])
        print("loso chose:", ", ".join(f"{r['name']}: {r['loso']['chosen']}" for r in rows))
        date_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
