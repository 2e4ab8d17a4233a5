"""`cloudfree train` throughput: samples per second by architecture, preset and loader processes.

    python benchmarks/train_speed.py                                  # CPU, small settings
    python benchmarks/train_speed.py --device cuda --amp --copies 128 --batch-size 16 \\
        --runs fillnet:small:8 fillnet:paper:8 glfcr:small:8 glfcr:small:0

Data: ``--copies`` links to the real winter triplet of ../shared/data in the flat layout
(``s1/``, ``s2_cloudy/``, ``s2_cloudfree/``), so every run reads, crops and augments real
GeoTIFFs as training does. Each run (``ARCH:PRESET:WORKERS``) trains ``--epochs`` epochs in this
process; the figure is the last epoch's samples per second (``log.csv``), after the first epoch
has paid for start-up. On a GPU, also its mean utilisation over the run (NVML, every 0.1 s).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
import torch
from remove_pipeline import gpu_utilisation

from cloudfree.training.loop import TrainConfig, train_folder

ROOT = Path(__file__).resolve().parents[1]
WINTER = ROOT.parent / "shared" / "data" / "sen12mscr" / "ROIs2017_winter_112_p797"
KINDS = {"s1": "s1", "s2_cloudy": "s2_cloudy", "s2_cloudfree": "s2_cloudfree"}


def flat_copies(root: Path, copies: int) -> Path:
    """``copies`` names for the real winter triplet in the flat layout."""
    for folder, kind in KINDS.items():
        (root / folder).mkdir(parents=True)
        for i in range(copies):
            (root / folder / f"w{i}.tif").symlink_to(f"{WINTER}_{kind}.tif")
    return root


def one_run(data: Path, out: Path, arch: str, preset: str, workers: int, args) -> dict:
    """Train one configuration; its last epoch's samples/s and the mean GPU utilisation."""
    config = TrainConfig(arch=arch, preset=preset, epochs=args.epochs,
                         batch_size=args.batch_size, crop=args.crop, amp=args.amp,
                         device=args.device, workers=workers, quiet=True)
    samples: list[int] = []
    on_gpu = args.device != "cpu" and torch.cuda.is_available()
    if on_gpu:
        with gpu_utilisation(samples):
            train_folder(data, config, out)
    else:
        train_folder(data, config, out)
    with open(out / "log.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    per_epoch = args.copies - args.copies % args.batch_size
    return {"run": f"{arch} {preset}, {workers} workers",
            "samples_per_s": round(per_epoch / float(last["seconds"]), 1),
            "gpu_utilisation": round(float(np.mean(samples)), 1) if samples else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["fillnet:small:0", "glfcr:small:0"],
                        help="ARCH:PRESET:WORKERS")
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    args = parser.parse_args()
    device = (f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
              if args.device != "cpu" and torch.cuda.is_available()
              else f"CPU, {torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {device}; {args.copies} samples per epoch, crop "
          f"{args.crop}, batch {args.batch_size}, amp {args.amp}, epoch {args.epochs} timed")
    print("| run | samples/s | GPU utilisation % |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        data = flat_copies(Path(tmp) / "data", args.copies)
        for i, spec in enumerate(args.runs):
            arch, preset, workers = spec.split(":")
            row = one_run(data, Path(tmp) / f"run{i}", arch, preset, int(workers), args)
            print(f"| {row['run']} | {row['samples_per_s']} | {row['gpu_utilisation'] or '-'} |",
                  flush=True)


if __name__ == "__main__":
    main()
