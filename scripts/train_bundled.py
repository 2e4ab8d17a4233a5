"""Train the bundled model ``cloudfree-small`` on ../shared/data and score it on held-out data.

    python scripts/train_bundled.py --out /tmp/bundled [--epochs 12] [--install]

Data (all real; SEN12MS-CR and Sen1Floods11, both CC-BY 4.0):
- Sen1Floods11 Spain_7370579 (clear S2, S1 warped onto the S2 grid): columns 0-351 train,
  columns 384-511 held out (a 32-px gap keeps the network's receptive field off the held-out block).
- SEN12MS-CR ROIs1868_summer_19_p30 (cloudy, no clear partner): rows 0-127 give the training cloud
  fields, and their clear pixels are a second training scene (loss only on pixels the mask calls
  clear, 3-px buffer); rows 128-255 give the held-out cloud fields, never seen in training.
- SEN12MS-CR ROIs2017_winter_112_p797: a real cloudy/cloud-free pair, held out entirely.

Held-out test set: the 4 held-out 128x128 Spain patches under the 2 held-out cloud fields
(8 samples) plus the winter pair, written in the flat layout and scored by ``cloudfree evaluate``'s
library function. Fixed seeds; CPU, 2 threads, about 15 minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from cloudfree.bundled import MODELS_DIR
from cloudfree.checkpoint import save_checkpoint
from cloudfree.engines import open_engine
from cloudfree.masking import MaskParams, classify
from cloudfree.training.datasets import cloud_mask, read_reflectance, read_s1_db
from cloudfree.training.evaluate import evaluate_folder, table, write_csv, write_json
from cloudfree.training.loop import TrainConfig, prepare, train
from cloudfree.training.simulate import CloudField, Scene, SimulatedClouds, opacity, simulate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPAIN_S2 = DATA / "sen1floods11" / "Spain_7370579_S2Hand.tif"
SPAIN_S1 = DATA / "sen1floods11" / "Spain_7370579_S1Hand.tif"
SUMMER = str(DATA / "sen12mscr" / "ROIs1868_summer_19_p30_{}.tif")
WINTER = str(DATA / "sen12mscr" / "ROIs2017_winter_112_p797_{}.tif")
TRAIN_COLS, TEST_COLS = slice(0, 352), slice(384, 512)
TRAIN_ROWS, TEST_ROWS = slice(0, 128), slice(128, 256)
PATCH = 128
CONFIG = TrainConfig(arch="dsen2cr", preset="small", loss="l1", batch_size=8, crop=64, lr=1e-3,
                     schedule="cosine", clip=1.0, device="cpu", seed=0)
SAMPLES_PER_EPOCH = 800


def spain() -> Scene:
    """The Spain scene with its S1 resampled (bilinear) onto the S2 grid."""
    clear, valid = read_reflectance(SPAIN_S2)
    with rasterio.open(SPAIN_S2) as s2, rasterio.open(SPAIN_S1) as s1:
        db = np.full((2, s2.height, s2.width), np.nan, np.float32)
        reproject(s1.read(out_dtype=np.float32), db, src_transform=s1.transform,
                  src_crs=s1.crs, src_nodata=np.nan, dst_transform=s2.transform,
                  dst_crs=s2.crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return Scene(clear, db, valid & np.isfinite(db).all(0))


def summer() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Summer cloudy reflectance, S1 dB, valid mask and cloud score."""
    cloudy, valid = read_reflectance(SUMMER.format("s2_cloudy"))
    _, score = classify(cloudy, valid)
    return cloudy, read_s1_db(SUMMER.format("s1")), valid, score


def write_sample(folder: Path, name: str, cloudy: np.ndarray, clear: np.ndarray,
                 s1_db: np.ndarray, grid: dict) -> None:
    """One triplet in the flat layout on ``grid`` (crs, transform); S2 as uint16 DN."""
    for kind, data in (("s2_cloudy", cloudy), ("s2_cloudfree", clear), ("s1", s1_db)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        out = data if kind == "s1" else np.clip(np.rint(data * 10000), 0, 65535).astype("uint16")
        with rasterio.open(folder / kind / f"{name}.tif", "w", driver="GTiff", width=out.shape[2],
                           height=out.shape[1], count=out.shape[0], dtype=out.dtype,
                           **grid) as ds:
            ds.write(out)


def spain_grid(row: int, col: int) -> dict:
    """CRS and transform of the Spain scene's pixel (row, col) corner."""
    with rasterio.open(SPAIN_S2) as ds:
        return {"crs": ds.crs, "transform": ds.window_transform(Window(col, row, PATCH, PATCH))}


def build_test_set(folder: Path, scene: Scene, cloudy: np.ndarray, score: np.ndarray) -> None:
    """Held-out Spain patches under held-out cloud fields, plus the real winter pair."""
    test_cloudy, test_alpha = cloudy[:, TEST_ROWS], opacity(score[TEST_ROWS])
    for row in range(0, scene.clear.shape[1], PATCH):
        window = (slice(None), slice(row, row + PATCH), TEST_COLS)
        part = Scene(scene.clear[window], scene.s1_db[window], scene.valid[window[1:]])
        for col in range(0, test_cloudy.shape[2], PATCH):
            field = CloudField(test_cloudy[:, :, col:col + PATCH], test_alpha[:, col:col + PATCH])
            sample = simulate(part, field)
            write_sample(folder, f"spain_r{row}_clouds{col}", sample.cloudy, sample.clear,
                         sample.s1_db, spain_grid(row, TEST_COLS.start))
    for kind in ("s1", "s2_cloudy", "s2_cloudfree"):
        shutil.copy(WINTER.format(kind), folder / kind / "winter_112_p797.tif")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--install", action="store_true",
                        help=f"copy the model to {MODELS_DIR} with its held-out metrics")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    scene = spain()
    cloudy, s1_db, valid, score = summer()
    train_scenes = [
        Scene(scene.clear[:, :, TRAIN_COLS], scene.s1_db[:, :, TRAIN_COLS],
              scene.valid[:, TRAIN_COLS]),
        Scene(cloudy[:, TRAIN_ROWS], s1_db[:, TRAIN_ROWS], valid[TRAIN_ROWS]
              & (cloud_mask(cloudy, valid, MaskParams(buffer=3))[TRAIN_ROWS] == 0)),
    ]
    fields = [CloudField(cloudy[:, TRAIN_ROWS], opacity(score[TRAIN_ROWS]))]
    test = args.out / "heldout"
    shutil.rmtree(test, ignore_errors=True)
    build_test_set(test, scene, cloudy, score)

    config = TrainConfig(**{**CONFIG.__dict__, "epochs": args.epochs})
    network, scaling, _ = prepare(config, args.out, resume=False)
    dataset = SimulatedClouds(train_scenes, fields, scaling, config.crop, SAMPLES_PER_EPOCH)
    started = time.time()
    train(network, scaling, dataset, config, args.out / "run")
    minutes = (time.time() - started) / 60

    report = evaluate_folder(test, open_engine(checkpoint=args.out / "run" / "last.pt",
                                               device="cpu"))
    write_json(report, args.out / "heldout.json")
    write_csv(report["rows"], args.out / "heldout.csv")
    print(table(report))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=1))
    print(f"trained {minutes:.1f} min")
    if args.install:
        MODELS_DIR.mkdir(exist_ok=True)
        meta = {"name": "cloudfree-small", "card": "cloudfree-small.md",
                "trained_with": "scripts/train_bundled.py", "train_minutes": round(minutes, 1),
                "heldout": {k: v for k, v in report.items() if k != "rows"}}
        save_checkpoint(MODELS_DIR / "cloudfree-small.pt", network, scaling, metadata=meta)


if __name__ == "__main__":
    main()
