"""Quality of `cloudfree remove` on the held-out (validation) split, against the plain fill.

    python benchmarks/remove_quality.py --data DATA [--models cloudfree-fillnet median-fill]
                                        [--json out.json]

DATA is the set built by ``scripts/build_training_set.py``; only its ``val`` split is read.
Every sample goes through the real ``remove_scene`` (GeoTIFFs in a temporary folder, default mask
and options) and is scored against its cloud-free image with ``benchmarks/metrics.py`` (those
of ``cloudfree evaluate``: reflectance clipped to [0, 1], every band, every valid pixel).
Beside the models:

- ``median_fill``: every masked pixel replaced by its band's median over the scene's clear pixels
  (``training.baselines.median_fill``), with the mask ``remove`` uses;
- ``cloudy_input``: the cloudy image unchanged.

Samples: the real triplets of the split (cloudy, cloud-free, S1), and simulated clouds
(``training.simulate``: real cloud fields of the split's cloudy images, opaque cores, shadows)
over the split's clear S1/S2 scenes in 256 px crops. Per-sample rows, then means per kind and per
cloud-cover bin, and how often each model beats the median fill (PSNR).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from metrics import mae, psnr, sam, ssim  # noqa: E402
from train_default import MASK, clear_scenes, cloud_fields, load_set, real_triplets  # noqa: E402

from cloudfree.io.options import InputOptions  # noqa: E402
from cloudfree.io.sentinel2 import BANDS  # noqa: E402
from cloudfree.pipeline.options import EngineOptions, OutputOptions  # noqa: E402
from cloudfree.pipeline.remove import remove_scene  # noqa: E402
from cloudfree.training.baselines import median_fill  # noqa: E402
from cloudfree.training.datasets import LoadedSample  # noqa: E402
from cloudfree.training.evaluate import cover_bin  # noqa: E402
from cloudfree.training.simulate import CloudField, Scene, simulate  # noqa: E402

SIZE = 256
METRICS = {"psnr": psnr, "ssim": ssim, "sam": sam, "mae": mae}
GRID = {"crs": "EPSG:32631", "transform": from_origin(500000, 5000000, 10, 10)}


def samples(data: Path) -> list[tuple[str, str, LoadedSample]]:
    """(name, kind, sample) for the real triplets and the simulations of the val split."""
    records = load_set(data, "val")
    out = [(f"{r['id']}", "real", s) for r, s in
           zip([r for r in records if r["kind"] == "triplet"], real_triplets(records),
               strict=True)]
    fields = [f for f in cloud_fields(records) if min(f.alpha.shape) >= SIZE]
    scenes = [s for s in clear_scenes(records) if min(s.valid.shape) >= SIZE]
    for i, scene in enumerate(scenes):
        crop = (slice(None), slice(0, SIZE), slice(0, SIZE))
        part = Scene(scene.clear[crop], scene.s1_db[crop], scene.valid[crop[1:]])
        for j, field in enumerate(fields):
            rng = np.random.default_rng(1000 * i + j)
            sample = simulate(part, CloudField(field.cloudy[crop], field.alpha[crop[1:]]),
                              1.0, MASK, rng)
            out.append((f"scene{i}_clouds{j}", "simulated", sample))
    return out


def write_inputs(folder: Path, sample: LoadedSample,
                 missing: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The sample's cloudy S2 (uint16 DN, nodata 0) and S1 (dB) as GeoTIFFs on one grid; without
    the bands ``missing`` (an L2A band set), the S2's bands named and tagged L2A."""
    h, w = sample.valid.shape
    keep = [i for i, b in enumerate(BANDS) if b not in missing]
    s2 = np.where(sample.valid[None], np.clip(np.rint(sample.cloudy[keep] * 10000), 1, 65535), 0)
    paths = folder / "s2.tif", folder / "s1.tif"
    profile = {"driver": "GTiff", "width": w, "height": h, **GRID}
    with rasterio.open(paths[0], "w", count=len(keep), dtype="uint16", nodata=0,
                       **profile) as ds:
        ds.write(s2.astype("uint16"))
        if missing:
            ds.descriptions = tuple(BANDS[i] for i in keep)
            ds.update_tags(PROCESSING_LEVEL="L2A")
    with rasterio.open(paths[1], "w", count=2, dtype="float32", **profile) as ds:
        ds.write(np.nan_to_num(sample.s1_db, nan=-30).astype("float32"))
    return paths


def run_model(folder: Path, model: str, s2: Path, s1: Path) -> np.ndarray:
    """``remove`` with a bundled model (or a checkpoint file) and every default; reflectance."""
    out = folder / "output.tif"
    source = {"checkpoint": model} if model.endswith(".pt") else {"model": model}
    remove_scene(s2, s1, out, engine=EngineOptions(**source, device="cpu"),
                 inputs=InputOptions(s1_aligned=True), outputs=OutputOptions(overwrite=True),
                 quiet=True)
    with rasterio.open(out) as ds:
        return ds.read().astype(np.float32) / 10000


def score(sample: LoadedSample, outputs: dict[str, np.ndarray]) -> dict[str, dict]:
    """Metrics of every output against the cloud-free image, over its valid pixels."""
    return {n: {k: fn(out, sample.clear, sample.valid) for k, fn in METRICS.items()}
            for n, out in outputs.items()}


def summary(rows: list[dict], methods: list[str], models: list[str]) -> dict:
    """Means per kind and per cover bin, and the share of samples where a model beats the fill."""
    out = {}
    groups = {"all": rows}
    for row in rows:
        groups.setdefault(row["kind"], []).append(row)
        groups.setdefault(f"bin {row['bin']}", []).append(row)
    for group, members in groups.items():
        out[group] = {"n": len(members), **{m: {k: float(np.mean([r[m][k] for r in members]))
                                                for k in METRICS} for m in methods}}
        for model in models:
            wins = sum(r[model]["psnr"] > r["median_fill"]["psnr"] for r in members)
            out[group][f"{model} beats median_fill"] = f"{wins}/{len(members)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["cloudfree-fillnet", "median-fill"])
    parser.add_argument("--kinds", nargs="+", choices=["real", "simulated"],
                        default=["real", "simulated"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    methods = [*args.models, "median_fill", "cloudy_input"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, kind, sample in samples(args.data):
            if kind not in args.kinds:
                continue
            s2, s1 = write_inputs(folder, sample)
            outputs = {m: run_model(folder, m, s2, s1) for m in args.models}
            outputs["median_fill"] = median_fill(sample.cloudy, sample.cloud, sample.valid)
            outputs["cloudy_input"] = sample.cloudy
            cover = 100 * float(sample.cloud[sample.valid].mean()) if sample.valid.any() else 0
            row = {"name": name, "kind": kind, "cover": round(cover, 1), "bin": cover_bin(cover),
                   **score(sample, outputs)}
            rows.append(row)
            print(f"{name:>22} {kind:>9} cover {cover:5.1f}% " + " ".join(
                f"{m} {row[m]['psnr']:.2f}" for m in methods), flush=True)
    report = summary(rows, methods, args.models)
    print(f"\n{'group':>14} {'n':>3} " + " ".join(f"{m:>30}" for m in methods))
    for group, values in report.items():
        cells = " ".join(f"{v['psnr']:7.2f} {v['ssim']:.3f} {v['sam']:5.2f} {v['mae']:.4f}"
                         for v in (values[m] for m in methods))
        wins = " ".join(values[f"{m} beats median_fill"] for m in args.models)
        print(f"{group:>14} {values['n']:>3} {cells}   wins {wins}")
    print("(each cell: PSNR dB, SSIM, SAM deg, MAE reflectance)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": report}, indent=1))


if __name__ == "__main__":
    main()
