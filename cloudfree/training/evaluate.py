"""``cloudfree evaluate``: PSNR, SSIM, SAM, MAE of a model beside two baselines, by cloud cover.

Protocol, after GLF-CR (seed 001 sec. 5.1 and 5.3): each sample's cloud cover is the percentage of
its valid pixels that ``cloudfree.mask.classify`` flags in the cloudy image; samples fall in bins
0-20, 20-40, 40-60, 60-80, 80-100 % (100 % in the last). Metrics (``cloudfree.training.metrics``)
are computed per sample on reflectance clipped to [0, 1] and averaged over samples, overall and per
bin. Invalid pixels (nodata in any input) are set to the target in every reconstruction.

Two choices decide whether figures compare with GLF-CR's tables. The detector: GLF-CR binned with
the cloud-detection flowchart of Meraner et al. (2020), ``MaskParams(method="dsen2cr")``
(``--mask-method dsen2cr``); the default is the CARF score (``score``). The SSIM: GLF-CR's
released code zero-pads and shifts its window (``ssim="official"``, ``--ssim official``); the
default, ``valid``, scores only pixels whose window lies inside the image.

Methods: ``model`` (the network's raw output, as the papers score it), ``model_composite`` (the
output only where the mask finds cloud or shadow, the cloudy input elsewhere: what ``cloudfree
remove`` writes by default, without its feathering), ``cloudy_input`` (the cloudy image as is) and
``median_fill`` (``cloudfree.training.baselines.median_fill``).

CSV columns, one row per sample and method: ``name, cloud_cover, bin, method, psnr, ssim, sam,
mae``. JSON: ``{"samples": n, "overall": {method: {metric: mean, "n": n}}, "bins": {bin: {method:
{...}}}, "rows": [the CSV rows], "protocol": {"mask_method": ..., "ssim": ...}}``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.progress import progress
from cloudfree.fill.median import fill_image
from cloudfree.mask.classify import MaskParams
from cloudfree.output.atomic import atomic_output
from cloudfree.training.baselines import median_fill
from cloudfree.training.datasets import LoadedSample, Sample, load_sample
from cloudfree.training.metrics import METRICS, SSIM_VARIANTS, all_metrics

BINS: tuple[tuple[int, int], ...] = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 100))
METHODS = ("model", "model_composite", "cloudy_input", "median_fill")
COLUMNS = ("name", "cloud_cover", "bin", "method", *METRICS)


def cover_bin(percent: float) -> str:
    """The GLF-CR cloud-cover bin label of a percentage, e.g. ``"20-40"``."""
    for lo, hi in BINS:
        if percent < hi or hi == 100:
            return f"{lo}-{hi}"
    raise AssertionError("unreachable")


def predict_reflectance(engine, sample: LoadedSample) -> np.ndarray:
    """The engine's reconstruction of one sample as reflectance [13, H, W]."""
    scaling = engine.scaling
    cloudy, mask = sample.cloudy, sample.cloud[None]
    if engine.uses_mask:
        cloudy, _ = fill_image(sample.cloudy, sample.cloud > 0, sample.valid)
    s2, s1 = scaling.scale_s2(cloudy), scaling.scale_s1(sample.s1_db)
    h, w = s2.shape[1:]
    if engine.tile is not None and (h, w) != (engine.tile, engine.tile):
        raise CloudfreeError(f"this ONNX model takes {engine.tile}x{engine.tile} inputs only; "
                             f"the samples are {h}x{w}")
    m = engine.size_multiple
    pad = ((0, 0), (0, -h % m), (0, -w % m))
    out = engine.predict(np.pad(s2, pad, mode="reflect")[None],
                         np.pad(s1, pad, mode="reflect")[None],
                         np.pad(mask, pad, mode="reflect")[None])[0, :, :h, :w]
    return scaling.unscale_s2(out)


def score_sample(name: str, sample: LoadedSample, prediction: np.ndarray,
                 ssim: str = "valid") -> list[dict]:
    """One row per method for one sample; ``ssim`` names a
    ``cloudfree.training.metrics.SSIM_VARIANTS``."""
    valid = sample.valid[None]
    target = np.clip(sample.clear, 0, 1)
    cloud = sample.cloud[None] > 0
    recon = {"model": prediction, "model_composite": np.where(cloud, prediction, sample.cloudy),
             "cloudy_input": sample.cloudy,
             "median_fill": median_fill(sample.cloudy, sample.cloud, sample.valid)}
    stacked = np.stack([np.where(valid, np.clip(recon[m], 0, 1), target) for m in METHODS])
    scores = all_metrics(torch.from_numpy(stacked),
                         torch.from_numpy(np.broadcast_to(target, stacked.shape).copy()), ssim)
    cover = 100.0 * float(sample.cloud[sample.valid].mean()) if sample.valid.any() else 0.0
    return [{"name": name, "cloud_cover": round(cover, 2), "bin": cover_bin(cover),
             "method": method, **{k: scores[k][i] for k in METRICS}}
            for i, method in enumerate(METHODS)]


def _means(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for method in METHODS:
        chosen = [r for r in rows if r["method"] == method]
        if chosen:
            out[method] = {k: float(np.mean([r[k] for r in chosen])) for k in METRICS}
            out[method]["n"] = len(chosen)
    return out


def summarise(rows: list[dict]) -> dict:
    """Means overall and per cloud-cover bin (bins without samples left out)."""
    bins = {f"{lo}-{hi}": _means([r for r in rows if r["bin"] == f"{lo}-{hi}"]) for lo, hi in BINS}
    return {"samples": len({r["name"] for r in rows}), "overall": _means(rows),
            "bins": {k: v for k, v in bins.items() if v}, "rows": rows}


def evaluate(samples: Iterable[Sample], engine, params: MaskParams = MaskParams(),
             quiet: bool = False, ssim: str = "valid") -> dict:
    """Score the engine and both baselines on every sample; see the module docstring.

    ``params`` is the cloud mask that bins samples (and drives the composite and the median
    fill); ``ssim`` is ``valid`` or ``official`` (GLF-CR's)."""
    if ssim not in SSIM_VARIANTS:
        raise UsageError(f"unknown SSIM variant {ssim!r} (use {' or '.join(SSIM_VARIANTS)})")
    samples = list(samples)
    rows: list[dict] = []
    for sample in progress(samples, total=len(samples), desc="evaluate", quiet=quiet,
                           unit="sample"):
        loaded = load_sample(sample, params)
        rows += score_sample(sample.name, loaded, predict_reflectance(engine, loaded), ssim)
    return {**summarise(rows), "protocol": {"mask_method": params.method, "ssim": ssim}}


def write_csv(rows: list[dict], path: Path, overwrite: bool,
              together: list[tuple[Path, Path]] | None = None) -> None:
    """One row per sample and method, written atomically (``output.atomic.atomic_output``)."""
    with atomic_output(Path(path), overwrite, together=together) as tmp, \
            open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def table(report: dict) -> str:
    """A markdown table of the overall means (what the model card and README show)."""
    lines = ["| method | PSNR (dB) | SSIM | SAM (deg) | MAE |", "|---|---|---|---|---|"]
    for method, m in report["overall"].items():
        lines.append(f"| {method} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['sam']:.2f} | "
                     f"{m['mae']:.4f} |")
    return "\n".join(lines)
