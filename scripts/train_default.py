"""Train the bundled models ``cloudfree-fillnet`` and ``cloudfree-fillnet-fast``, and write the
bundled ``median-fill``.

    python scripts/build_training_set.py ... -o DATA       # the set (see its docstring)
    python scripts/train_default.py --data DATA --out RUN --all-splits --preset paper --install
    python scripts/train_default.py --data DATA --out RUN2 --all-splits --preset small --install
    python scripts/train_default.py --data DATA --out RUN [--epochs 30] [--resume]
                                    [--init CHECKPOINT --lr 3e-4]   # fine-tune from weights
    python scripts/train_default.py --data DATA --out RUN --holdout SCENE [--holdout ...]
                                    [--preset paper] [--device cuda --amp] [--workers 2]
                                    [--threads 1] [--samples 400] [--seed 0]   # a held-out fold

The network (``fillnet``; ``paper`` preset for ``cloudfree-fillnet``, ``small`` for
``cloudfree-fillnet-fast``, the two chosen by the leave-one-scene-out folds of
``scripts/train_loso.py``) corrects the classical fill (``cloudfree/fill/median.py``) under the
mask. It is trained with the mask ``remove`` uses by default (score method, 5 px buffer) on:

- real SEN12MS-CR triplets (cloudy, cloud-free, S1): the cloudy image's own mask and fill;
- simulated clouds (``cloudfree.training.simulate``: opaque cores of real cloud radiance,
  translucent edges, cast shadows) from the real cloud fields of the cloudy images (triplets,
  cloudy/clear pairs, the cloudy S1 scene) over the clear S1/S2 scenes (pairs, and the clear
  image of every triplet with its S1).

Without ``--all-splits`` or ``--holdout`` it trains on the set's train split only (an older recipe
of the bundled model); with ``--all-splits``, on both splits (the prior spectrum
is then printed but not checked, as with ``--holdout`` below). The bundled models were trained
so on one H100 (``--device cuda --workers 1 --threads 1``, about 75 s each).

The BigEarthNet pairs are not used: their S2 is L2A (surface reflectance, no B10), not the L1C
that the model reads. The prior spectrum of the fill (``PRIOR_REFLECTANCE``) is the per-band
median of every clear L1C image of the train split; on that split the script refuses to go on
when the package's constant differs. Fixed seeds; CPU, 2 threads. Checkpoints every epoch, so
``--resume`` continues an interrupted run. ``--install`` copies the result into the package, as
``BUNDLED[preset]`` (trained on every scene: with ``--all-splits`` only).

``--holdout SCENE`` (repeatable) trains one fold of a leave-one-scene-out cross-validation
(``scripts/train_loso.py``): on both splits, without any record of the held-out scenes (not
their triplets, nor their images as clear scenes or cloud fields); the checkpoint's metadata
names them. The prior spectrum is then printed but not checked: the network learns to correct
the package's fill, which keeps ``PRIOR_REFLECTANCE``. ``--data`` takes several folders (the
parts of ``scripts/split_training_set.py``). The other options change the recipe above: the
preset, device, AMP, data-loading processes (``TrainConfig.workers``), torch threads and samples
per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cloudfree.fill.median import PRIOR_REFLECTANCE
from cloudfree.inference.bundled import MODELS_DIR
from cloudfree.inference.checkpoint import load_checkpoint, save_checkpoint
from cloudfree.inference.scaling import SCALINGS
from cloudfree.mask.classify import MaskParams, classify
from cloudfree.networks import build, get_architecture
from cloudfree.training.datasets import LoadedSample, cloud_mask, network_arrays, random_view
from cloudfree.training.loop import TrainConfig, prepare, train
from cloudfree.training.simulate import CloudField, Scene, SimulatedClouds, opacity

MASK = MaskParams(buffer=5)  # remove's default mask
CONFIG = TrainConfig(arch="fillnet", preset="small", loss="l1", batch_size=8, crop=64, lr=1e-3,
                     schedule="cosine", clip=1.0, device="cpu", seed=0, epochs=20)
SAMPLES_PER_EPOCH = 400
REAL_SHARE = 0.25  # of the samples of an epoch, views of the real triplets
#: preset -> the bundled model that ``--install`` writes
BUNDLED = {"paper": "cloudfree-fillnet", "small": "cloudfree-fillnet-fast"}


def load_set(data: Path, split: str) -> list[dict]:
    """The records of one split, each with its arrays (``s1``, ``s2_clear``, ``s2_cloudy``)."""
    index = data / "index.json"
    if not index.is_file():
        sys.exit(f"{data}: no index.json; give a set built by scripts/build_training_set.py "
                 "(or its parts, split_training_set.py)")
    records = [r for r in json.loads(index.read_text()) if r["split"] == split]
    for record in records:
        with np.load(data / f"{record['id']}.npz") as arrays:
            record.update({k: arrays[k] for k in arrays.files})
    return records


def training_records(folders: list[Path], holdout: list[str], all_splits: bool = False
                     ) -> list[dict]:
    """The train split of the folders; with ``holdout`` or ``all_splits``, both splits (without
    the held-out scenes)."""
    splits = ("train", "val") if holdout or all_splits else ("train",)
    records = [r for data in folders for split in splits for r in load_set(data, split)]
    if len({r["id"] for r in records}) < len(records):
        sys.exit(f"records repeated across {', '.join(map(str, folders))}")
    unknown = sorted(set(holdout) - {r["scene"] for r in records})
    if unknown:
        sys.exit(f"--holdout: no scene {', '.join(unknown)} in {', '.join(map(str, folders))}")
    return [r for r in records if r["scene"] not in holdout]


def triplet_records(folders: list[Path]) -> list[dict]:
    """The real triplets of both splits (with their arrays)."""
    return [r for data in folders for split in ("train", "val") for r in load_set(data, split)
            if r["kind"] == "triplet"]


def prior_spectrum(records: list[dict]) -> np.ndarray:
    """Per-band median reflectance of every clear L1C image (BigEarthNet's L2A excluded)."""
    images = [r["s2_clear"] for r in records if "s2_clear" in r and not r["bands_missing"]]
    pixels = np.concatenate([im.reshape(13, -1) for im in images], axis=1) / 10000
    return np.round(np.median(pixels, axis=1), 4)


def reflectance(dn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DN [13, H, W] -> reflectance and the valid mask (finite and not all zero)."""
    valid = np.isfinite(dn).all(0) & (np.nan_to_num(dn).sum(0) > 0)
    return np.where(valid[None], np.nan_to_num(dn) / 10000, 0).astype(np.float32), valid


def real_triplets(records: list[dict]) -> list[LoadedSample]:
    """The real cloudy/clear/S1 triplets, masked as ``remove`` masks them."""
    out = []
    for r in records:
        if r["kind"] != "triplet":
            continue
        cloudy, valid = reflectance(r["s2_cloudy"])
        clear, valid_clear = reflectance(r["s2_clear"])
        valid &= valid_clear & np.isfinite(r["s1"]).all(0)
        out.append(LoadedSample(cloudy, clear, r["s1"], valid, cloud_mask(cloudy, valid, MASK)))
    return out


def has_cloud(sample: LoadedSample) -> bool:
    """Whether ``remove``'s mask finds cloud on the sample's valid pixels."""
    return bool((sample.cloud.astype(bool) & sample.valid).any())


def clear_scenes(records: list[dict]) -> list[Scene]:
    """Clear L1C images with their S1: the pairs, and the clear image of every triplet."""
    out = []
    for r in records:
        if r["kind"] in ("pair", "triplet") and not r["bands_missing"]:
            clear, valid = reflectance(r["s2_clear"])
            out.append(Scene(clear, r["s1"], valid & np.isfinite(r["s1"]).all(0)))
    return out


def cloud_fields(records: list[dict]) -> list[CloudField]:
    """Every real cloudy image, with its opacity from the cloud score."""
    out = []
    for r in records:
        if "s2_cloudy" in r and not r["bands_missing"]:
            cloudy, valid = reflectance(r["s2_cloudy"])
            _, score = classify(cloudy, valid)
            out.append(CloudField(cloudy, opacity(score)))
    return out


class TrainingMix(torch.utils.data.Dataset):
    """Views of the real triplets for the first ``REAL_SHARE`` of indices, simulations after."""

    def __init__(self, real: list[LoadedSample], simulated: SimulatedClouds, crop: int,
                 length: int) -> None:
        scaling = simulated.scaling
        self.real = [network_arrays(s, scaling) for s in real]
        self.simulated, self.crop, self.length = simulated, crop, length
        self.n_real = int(length * REAL_SHARE) if real else 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index >= self.n_real:
            return self.simulated[index]
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, ())))
        arrays = self.real[int(rng.integers(len(self.real)))]
        return {k: torch.from_numpy(v) for k, v in
                random_view(arrays, rng, self.crop, 8).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="built by build_training_set (or its parts, split_training_set)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=CONFIG.epochs)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", type=Path, help="start from these weights (a fine-tune)")
    parser.add_argument("--lr", type=float, default=CONFIG.lr)
    parser.add_argument("--preset", default=CONFIG.preset,
                        choices=sorted(get_architecture(CONFIG.arch).presets))
    parser.add_argument("--device", default=CONFIG.device, help="cpu, cuda, cuda:1 or auto")
    parser.add_argument("--amp", action="store_true", help="mixed precision (GPU only)")
    parser.add_argument("--workers", type=int,
                        help="data-loading processes (default: none on CPU, up to 8 on a GPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--samples", type=int, default=SAMPLES_PER_EPOCH,
                        help="samples per epoch")
    parser.add_argument("--holdout", action="append", default=[], metavar="SCENE",
                        help="leave this scene out (repeatable); trains on both splits")
    parser.add_argument("--all-splits", action="store_true",
                        help="train on both splits, every scene (the model chosen by the folds)")
    parser.add_argument("--seed", type=int, default=CONFIG.seed,
                        help="of the weights and the samples (a second draw)")
    parser.add_argument("--install", action="store_true",
                        help=f"copy the trained model and median-fill into {MODELS_DIR}")
    args = parser.parse_args()
    if args.install and (args.holdout or not args.all_splits or args.preset not in BUNDLED):
        parser.error(f"--install ships a model of every scene: with --all-splits and --preset "
                     f"{' or '.join(BUNDLED)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    records = training_records(args.data, args.holdout, args.all_splits)
    what = (f"train and val splits without {', '.join(args.holdout)}" if args.holdout
            else "train and val splits" if args.all_splits else "train split")
    prior = prior_spectrum(records)
    print(f"prior spectrum of the {what}:", prior.tolist())
    if args.holdout or args.all_splits:
        print("(not checked: the network corrects the package's fill, which keeps "
              "cloudfree.fill.median.PRIOR_REFLECTANCE)")
    elif not np.allclose(prior, PRIOR_REFLECTANCE, atol=1e-4):
        sys.exit(f"cloudfree.fill.median.PRIOR_REFLECTANCE differs from the train split's "
                 f"{tuple(prior.tolist())}: update it first")
    config = dataclasses.replace(CONFIG, epochs=args.epochs, lr=args.lr, preset=args.preset,
                                 device=args.device, amp=args.amp, workers=args.workers,
                                 seed=args.seed)
    network, scaling, state = prepare(config, args.out, args.resume)
    if args.init is not None and state is None:
        network.load_state_dict(load_checkpoint(args.init).network.state_dict())
    scenes, fields = clear_scenes(records), cloud_fields(records)
    real = real_triplets(records)
    print(f"{what}: {len(real)} real triplets, {len(scenes)} clear S1/S2 scenes, "
          f"{len(fields)} cloud fields")
    simulated = SimulatedClouds(scenes, fields, scaling, config.crop, args.samples, MASK)
    dataset = TrainingMix(real, simulated, config.crop, args.samples)
    started = time.time()
    train(network, scaling, dataset, config, args.out, state,
          metadata={"data": f"scripts/build_training_set.py ({what})",
                    "holdout": args.holdout, "trained_with": "scripts/train_default.py"})
    print(f"trained {(time.time() - started) / 60:.1f} min")
    if args.install:
        MODELS_DIR.mkdir(exist_ok=True)
        trained, name = load_checkpoint(args.out / "last.pt"), BUNDLED[args.preset]
        save_checkpoint(MODELS_DIR / f"{name}.pt", trained.network, trained.scaling,
                        metadata={"name": name, "card": f"{name}.md",
                                  "trained_with": "scripts/train_default.py --all-splits"})
        save_checkpoint(MODELS_DIR / "median-fill.pt", build("fill"), SCALINGS["glfcr"],
                        metadata={"name": "median-fill", "card": "median-fill.md"})

if __name__ == "__main__":
    main()
