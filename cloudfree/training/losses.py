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
- ``ibhfn``: the IB-HFN joint objective. Seed 000 (an abstract) names its terms, not their
  formulas; every formula and weight below is our choice:

  - ``rec``: L1 to the target over valid pixels;
  - ``struct``: 1 - SSIM (``cloudfree.training.metrics.ssim_map``, averaged over bands and pixels);
  - ``spectral``: 1 - cosine between predicted and true spectra, over valid pixels (a smooth SAM);
  - ``contrast`` (contrastive sharpness), on cloud pixels only: with ``d(a, b)`` the mean absolute
    difference of the horizontal and vertical image gradients of ``a`` and ``b`` over the
    gradient pairs that touch a valid cloud pixel (summed over both directions),
    ``d(pred, target) / (d(pred, target) + d(pred, cloudy) + 1e-6)``. Bounded in [0, 1]: 0 when
    the edges are the clear image's, 1 when they are the cloud's; 0 in a patch without cloud, so
    copying a clear input costs nothing;
  - ``gate``: class-balanced binary cross-entropy of the network's clear-sky gate (aux ``gate``)
    against ``1 - cloud`` over valid pixels, clear and cloud pixels each weighing one half, so
    the gate learns to predict clear sky as the paper says it does;
  - ``kl``: the bottleneck's KL (aux ``kl``).

  Dynamic weighting schedule: ``rec`` keeps weight 1 and ``gate`` 0.1; ``struct`` and
  ``spectral`` ramp linearly from 0 to 0.5 and 0.1 over the first 30 % of training;
  ``contrast`` from 0 to 0.05 over 30-60 %; the KL weight beta anneals from 0 to 1e-3 over the
  first half (KL warm-up, which keeps the bottleneck from collapsing early).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cloudfree.core.errors import UsageError
from cloudfree.training.metrics import ssim_map

LossFn = Callable[[torch.Tensor, dict, dict, float], tuple[torch.Tensor, dict[str, float]]]
CLOUD_WEIGHT = 0.8  # lambda of CARF eq. 17
SSIM_HALF = 5  # pixels the 11x11 SSIM window trims from each side
CONTRAST_EPS = 1e-6  # keeps the contrast ratio defined where both distances are 0
BCE_EPS = 1e-6  # gate values are clamped to [eps, 1 - eps] before the logarithms


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


def _pairs(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first and second pixel of every neighbour pair along ``dim``."""
    n = x.shape[dim] - 1
    return x.narrow(dim, 0, n), x.narrow(dim, 1, n)


def _gradient_distance(a: torch.Tensor, b: torch.Tensor, cloud: torch.Tensor,
                       valid: torch.Tensor) -> torch.Tensor:
    """Mean |grad a - grad b| over neighbour pairs of valid pixels touching a cloud pixel, the
    vertical and horizontal means summed."""
    total = a.new_zeros(())
    for dim in (-2, -1):
        (c0, c1), (v0, v1) = _pairs(cloud, dim), _pairs(valid, dim)
        diff = (torch.diff(a, dim=dim) - torch.diff(b, dim=dim)).abs()
        total = total + _masked_mean(diff, torch.maximum(c0, c1) * v0 * v1)
    return total


def contrastive_sharpness(pred: torch.Tensor, target: torch.Tensor, cloudy: torch.Tensor,
                          cloud: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The bounded, cloud-restricted ``contrast`` term of the ``ibhfn`` loss (module docstring)."""
    to_clear = _gradient_distance(pred, target, cloud, valid)
    to_cloudy = _gradient_distance(pred, cloudy, cloud, valid)
    return to_clear / (to_clear + to_cloudy + CONTRAST_EPS)


def balanced_bce(gate: torch.Tensor, clear: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``gate`` against ``clear`` (both [B,1,H,W]) over valid pixels,
    each class weighing one half (a class absent from the batch weighs nothing)."""
    clear, cloud = clear * valid, (1 - clear) * valid
    weight = 0.5 * clear / clear.sum().clamp_min(1.0) + 0.5 * cloud / cloud.sum().clamp_min(1.0)
    g = gate.float().clamp(BCE_EPS, 1 - BCE_EPS)  # written out: F.binary_cross_entropy refuses
    bce = -(clear * g.log() + (1 - clear) * (1 - g).log())  # to run under autocast
    return (bce * weight).sum() / weight.sum().clamp_min(BCE_EPS)


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
        "gate": 0.1,
        "kl": 1e-3 * _ramp(progress, 0.0, 0.5),
    }


def ibhfn_terms(pred: torch.Tensor, batch: dict, aux: dict) -> dict[str, torch.Tensor]:
    """Each unweighted term of the joint objective (module docstring)."""
    target, valid, cloud = batch["target"], batch["valid"], batch["cloud"]
    if "gate" not in aux or "kl" not in aux:
        raise UsageError("the ibhfn loss needs a network that returns a gate and a KL (ibhfn)")
    cos = torch.nn.functional.cosine_similarity(pred, target, dim=1, eps=1e-6).unsqueeze(1)
    return {
        "rec": _masked_mean((pred - target).abs(), valid),
        "struct": 1 - ssim_map(pred, target).mean(),
        "spectral": _masked_mean(1 - cos, valid),
        "contrast": contrastive_sharpness(pred, target, batch["s2"], cloud, valid),
        "gate": balanced_bce(aux["gate"], 1 - cloud, valid),
        "kl": aux["kl"],
    }


def ibhfn(pred: torch.Tensor, batch: dict, aux: dict, progress: float):
    """IB-HFN joint objective with its dynamic weighting schedule."""
    terms = ibhfn_terms(pred, batch, aux)
    weights = ibhfn_weights(progress)
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


LOSSES: dict[str, LossFn] = {"l1": l1, "carl": carl, "cloudaware": cloud_aware, "ibhfn": ibhfn}
