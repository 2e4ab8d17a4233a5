"""Training objectives; all work on reflectance-scale tensors (network values / ``s2_factor``).

Every loss is called as ``loss(pred, batch, aux, progress) -> (total, parts)`` where ``batch``
holds ``s2`` (cloudy input), ``target``, ``cloud`` [B,1,H,W] (1 in cloud or shadow) and ``valid``
[B,1,H,W]; ``aux`` is the network's auxiliary output (``kl``, ``gate``) and ``progress`` the
fraction of training done, in [0, 1]. ``parts`` names each term for the log.

- ``l1``: mean absolute error (GLF-CR).
- ``carl``: DSen2-CR's cloud-adaptive regularised L1 (Meraner et al. 2020, eq. 4): cloud pixels
  are compared with the target, clear pixels with the cloudy input, plus lambda = 1 times the
  plain L1 to the target.
- ``cloudaware``: CARF (seed 002) eq. 17-18: W = lambda M + (1 - lambda)(1 - M) with lambda 0.8,
  times 0.5 MSE + 0.5 (1 - SSIM), SSIM taken per pixel from the SSIM map (so the weight applies
  pixel by pixel; the map is 10 px smaller, the weight is cropped to it).
- ``ibhfn``: the IB-HFN joint objective (seed 000 names its terms, not its formulas; ours):
  reconstruction L1 + structure (1 - SSIM) + spectral (1 - mean cosine between spectra, a smooth
  SAM) + contrastive sharpness (L1 between image gradients of prediction and target divided by
  that between prediction and cloudy input: pulled to the clear image's edges, pushed from the
  hazy ones) + beta KL of the bottleneck. Dynamic weighting schedule: reconstruction keeps weight
  1; structure and spectral terms ramp linearly from 0 to 0.5 and 0.1 over the first 30 % of
  training; the contrastive term from 0 to 0.05 over 30-60 %; beta anneals from 0 to 1e-3
  over the first half (KL warm-up, which keeps the bottleneck from collapsing early).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cloudfree.metrics import ssim_map

LossFn = Callable[[torch.Tensor, dict, dict, float], tuple[torch.Tensor, dict[str, float]]]
CLOUD_WEIGHT = 0.8  # lambda of CARF eq. 17
SSIM_HALF = 5  # pixels the 11x11 SSIM window trims from each side


def _masked_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of x over pixels weighted by a [B,1,H,W] weight (band-averaged)."""
    return (x.mean(1, keepdim=True) * weight).sum() / weight.sum().clamp_min(1.0)


def l1(pred: torch.Tensor, batch: dict, aux: dict, progress: float):
    loss = _masked_mean((pred - batch["target"]).abs(), batch["valid"])
    return loss, {"l1": loss.item()}


def carl(pred: torch.Tensor, batch: dict, aux: dict, progress: float):
    """DSen2-CR cloud-adaptive regularised loss."""
    cloud, valid = batch["cloud"], batch["valid"]
    to_target = (pred - batch["target"]).abs()
    adaptive = cloud * to_target + (1 - cloud) * (pred - batch["s2"]).abs()
    loss = _masked_mean(adaptive, valid) + _masked_mean(to_target, valid)
    return loss, {"carl": loss.item()}


def _crop(x: torch.Tensor) -> torch.Tensor:
    return x[..., SSIM_HALF:-SSIM_HALF, SSIM_HALF:-SSIM_HALF]


def cloud_aware(pred: torch.Tensor, batch: dict, aux: dict, progress: float):
    """CARF eq. 17-18."""
    m = batch["cloud"]
    weight = (CLOUD_WEIGHT * m + (1 - CLOUD_WEIGHT) * (1 - m)) * batch["valid"]  # eq. 17
    mse = (pred - batch["target"]).pow(2).mean(1, keepdim=True)
    dissim = 1 - ssim_map(pred, batch["target"]).mean(1, keepdim=True)
    per_pixel = 0.5 * _crop(mse) + 0.5 * dissim  # eq. 18, both weights 0.5
    loss = (per_pixel * _crop(weight)).sum() / _crop(batch["valid"]).sum().clamp_min(1.0)
    return loss, {"cloudaware": loss.item()}


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def _gradient_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    (ay, ax), (by, bx) = _gradients(a), _gradients(b)
    return (ay - by).abs().mean() + (ax - bx).abs().mean()


def _ramp(progress: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, linear between."""
    return min(1.0, max(0.0, (progress - start) / (end - start)))


def ibhfn_weights(progress: float) -> dict[str, float]:
    """The dynamic weighting schedule of the joint objective."""
    return {
        "rec": 1.0,
        "struct": 0.5 * _ramp(progress, 0.0, 0.3),
        "spectral": 0.1 * _ramp(progress, 0.0, 0.3),
        "contrast": 0.05 * _ramp(progress, 0.3, 0.6),
        "kl": 1e-3 * _ramp(progress, 0.0, 0.5),
    }


def ibhfn(pred: torch.Tensor, batch: dict, aux: dict, progress: float):
    """IB-HFN joint objective with its dynamic weighting schedule."""
    target, valid = batch["target"], batch["valid"]
    cos = torch.nn.functional.cosine_similarity(pred, target, dim=1, eps=1e-6).unsqueeze(1)
    terms = {
        "rec": _masked_mean((pred - target).abs(), valid),
        "struct": 1 - ssim_map(pred, target).mean(),
        "spectral": _masked_mean(1 - cos, valid),
        "contrast": _gradient_distance(pred, target)
        / (_gradient_distance(pred, batch["s2"]) + 1e-3),
        "kl": aux.get("kl", pred.new_zeros(())),
    }
    weights = ibhfn_weights(progress)
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) if torch.is_tensor(v) else v for k, v in terms.items()}


LOSSES: dict[str, LossFn] = {"l1": l1, "carl": carl, "cloudaware": cloud_aware, "ibhfn": ibhfn}
