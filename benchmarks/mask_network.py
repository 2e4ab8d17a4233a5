"""A per-pixel cloud network against the cloud score, by scene, on real and thin clouds.

    python scripts/extract_mask_pairs.py CLONE_OF_Oriolac/cloud-removal pairs/
    python benchmarks/mask_network.py pairs/{high_cp,low_cp,ok,residual,series}

The candidate that lost: a multilayer perceptron on the 13 L1C reflectances of a pixel (13 -> 16
ReLU -> 1), cloud where its probability exceeds 0.5, with the default's HOT and snow tests on
top. It learns from thin clouds as well as thick ones: each pair's cloudy date is blended into its
clear twin, ``clear + a * (cloudy - clear)`` for ``a`` in ``BLENDS`` (0 is the clear twin, 1 the
real cloudy date): a real cloud at a fraction of its depth over real land, with the truth of
``benchmarks/mask_quality.py`` (cloud where the blend is brighter than the twin by more than 0.05
in the mean of B02-B04). ``SAMPLES`` pixels per blend and pair; binary cross-entropy, Adam (lr
3e-3, batches of 4096, ``EPOCHS`` epochs), one CPU thread, seed 0. ``--hidden 0`` scores a
logistic regression on the 13 bands instead.

Two folds by scene (the split of ``mask_quality.py``): trained on one half, scored on the other,
and the other way round. Scores on the scored half, for the real cloudy dates and for their clouds
made thin (blends 0.25 and 0.15): IoU pooled over the SEN12MS-CR pairs and over the SEN12MS-CR-TS
series (one place, 12 dates), and the mean of the per-scene IoUs of the SEN12MS-CR scenes with
cloud; then the worst cloud fraction on the half's clear twins. Last, each scene's IoU at the
thinnest blend, network / score. About 4 minutes on 2 cores.
"""

from __future__ import annotations

import numpy as np
import torch
from mask_quality import Pair, blended, halves, load_pairs, ours, pairs_parser, scene

from cloudfree.io.sentinel2 import BANDS
from cloudfree.mask.classify import MaskParams, hot_positive

BLENDS = (0.0, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
SCORED_BLENDS = (1.0, 0.25, 0.15)
SAMPLES = 8000
HIDDEN = 16
EPOCHS = 30


def training_pixels(pairs: list[Pair], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reflectances [N, 13] and truths [N] of ``SAMPLES`` pixels per blend of every pair."""
    x, y = [], []
    for a in BLENDS:
        for pair in blended(pairs, a):
            pick = rng.choice(pair.truth.size, SAMPLES, replace=False)
            x.append(pair.cloudy.reshape(len(pair.cloudy), -1).T[pick])
            y.append(pair.truth.ravel()[pick])
    return np.concatenate(x), np.concatenate(y).astype(np.float32)


def train(pairs: list[Pair], hidden: int = HIDDEN, seed: int = 0):
    """The network trained on ``pairs`` (``hidden`` 0: logistic regression on the bands): a
    function of reflectance [13, H, W] -> cloud [H, W]."""
    torch.manual_seed(seed)
    x, y = map(torch.from_numpy, training_pixels(pairs, np.random.default_rng(seed)))
    mean, spread = x.mean(0), x.std(0) + 1e-6
    net = (torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 1))
           if hidden else torch.nn.Linear(x.shape[1], 1))
    optimizer = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 4096):
            batch = order[start:start + 4096]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net((x[batch] - mean) / spread)[:, 0], y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def mask(refl: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            pixels = torch.from_numpy(refl.reshape(len(refl), -1).T.copy())
            cloud = (net((pixels - mean) / spread)[:, 0] > 0).numpy().reshape(refl.shape[1:])
        band = {b: refl[BANDS.index(b)] for b in ("B02", "B03", "B04", "B11")}
        total = band["B03"] + band["B11"]
        snowy = np.divide(band["B03"] - band["B11"], total, out=np.zeros_like(total),
                          where=total > 0) >= 0.6
        return cloud & hot_positive(band) & ~snowy

    return mask


def counts(mask, pairs: list[Pair]) -> dict[str, np.ndarray]:
    """TP, FP, FN of ``mask`` per scene."""
    out: dict[str, np.ndarray] = {}
    for pair in pairs:
        found, truth = mask(pair.cloudy), pair.truth
        out.setdefault(scene(pair.name), np.zeros(3, np.int64))
        out[scene(pair.name)] += [(found & truth).sum(), (found & ~truth).sum(),
                                  (~found & truth).sum()]
    return out


def iou(c: np.ndarray) -> float:
    return float(c[0] / max(c.sum(), 1))


def main() -> None:
    parser = pairs_parser(__doc__)
    parser.add_argument("--hidden", type=int, default=HIDDEN,
                        help="hidden units (0: logistic regression on the 13 bands)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = load_pairs(args.folders)
    split = dict(zip(("tuning", "held out"), halves(pairs), strict=True))
    print("| trained on | scored on | mask | blend | IoU, SEN12MS-CR pairs | per-scene mean "
          "(scenes) | IoU, series | cloud on the clear twins: worst |\n"
          "|---|---|---|---|---|---|---|---|")
    thin: dict[str, dict[str, float]] = {}
    for trained, scored in (("tuning", "held out"), ("held out", "tuning")):
        masks = {"network": train(split[trained], args.hidden),
                 "score (default)": ours(MaskParams())}
        for name, mask in masks.items():
            worst = max(float(mask(p.clear).mean()) for p in split[scored])
            for blend in SCORED_BLENDS:
                per_scene = counts(mask, blended(split[scored], blend))
                if blend == SCORED_BLENDS[-1]:
                    for where, c in per_scene.items():
                        if c[0] + c[2] > 0:
                            thin.setdefault(where, {})[name] = iou(c)
                series = per_scene.pop("series", np.zeros(3))
                with_cloud = [iou(c) for c in per_scene.values() if c[0] + c[2] > 0]
                print(f"| {trained} | {scored} | {name} | {blend} | "
                      f"{iou(sum(per_scene.values())):.3f} | {np.mean(with_cloud):.3f} "
                      f"({len(with_cloud)}) | {f'{iou(series):.3f}' if series.any() else '-'} | "
                      f"{worst:.1%} |", flush=True)
    print(f"\nIoU at blend {SCORED_BLENDS[-1]}, scene by scene (scored when held out): "
          + ", ".join(f"{where} {by['network']:.3f} / {by['score (default)']:.3f}"
                      for where, by in sorted(thin.items())))


if __name__ == "__main__":
    main()
