"""Image quality metrics of the cloud-removal papers, on reflectance scaled to [0, 1].

Conventions (the same for every caller, training and ``cloudfree evaluate``):

- Inputs are torch tensors ``[B, C, H, W]`` (or ``[C, H, W]``); every metric returns one value
  per image, shape ``[B]``. Callers average over images (GLF-CR averages per-image figures).
- PSNR = 10 log10(1 / MSE) over all bands and pixels of an image (CARF eq. 19, peak 1). The MSE
  is floored at 1e-10, so identical images give 100 dB instead of infinity.
- SSIM: Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1; computed per band
  on the "valid" part of the image (no padding, the outer 5 pixels only feed their neighbours),
  averaged over pixels and then over bands.
- SSIM ``official``: what GLF-CR's released ``metrics.py`` computes, for figures comparable with
  its tables: the same constants, but the image is zero-padded by 5 pixels (borders count, pulled
  down by the padding), the window is computed in float32 with its centre at 11 / 2 = 5.5 rather
  than 5 (half a pixel off), and the map is averaged over bands and pixels together.
- SAM: the angle between the predicted and true spectra of each pixel, in degrees, averaged over
  pixels (pixels where either spectrum is all zero count as 0 degrees).
- MAE: mean absolute difference over bands and pixels (CARF eq. 20).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

PSNR_MSE_FLOOR = 1e-10
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _batched(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if x.dim() == 3 else x


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, peak 1, capped at 100 dB."""
    mse = (_batched(pred) - _batched(target)).double().pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(PSNR_MSE_FLOOR))


def mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (_batched(pred) - _batched(target)).double().abs().flatten(1).mean(1)


def sam(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Spectral angle mapper in degrees."""
    p, t = _batched(pred).double(), _batched(target).double()
    dot = (p * t).sum(1)
    norms = p.norm(dim=1) * t.norm(dim=1)
    cos = torch.where(norms > 0, dot / norms.clamp_min(1e-30), torch.ones_like(dot))
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0))).flatten(1).mean(1)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
                    centre: float | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps centred on tap ``centre`` (default: the middle)."""
    x = torch.arange(size, dtype=torch.float64) - ((size - 1) / 2 if centre is None else centre)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """Separable Gaussian filter per channel, zero-padded by ``pad`` pixels."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, padding=(pad, 0))
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, padding=(0, pad))


def ssim_map(pred: torch.Tensor, target: torch.Tensor, official: bool = False) -> torch.Tensor:
    """Per-band SSIM map [B, C, H-10, W-10] (differentiable; used by the losses too), or with
    ``official`` GLF-CR's variant [B, C, H, W] (module docstring)."""
    p, t = _batched(pred), _batched(target)
    if official:  # GLF-CR metrics.py: centre size / 2, float32 window, zero padding size // 2
        g, pad = gaussian_window(centre=SSIM_WINDOW / 2).float().to(p), SSIM_WINDOW // 2
    else:
        g, pad = gaussian_window().to(p), 0
    blur = functools.partial(_blur, g=g, pad=pad)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_p, mu_t = blur(p), blur(t)
    var_p = blur(p * p) - mu_p**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(p * t) - mu_p * mu_t
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2)
    )


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity, per band then averaged over bands."""
    return ssim_map(_batched(pred).double(), _batched(target).double()).flatten(1).mean(1)


def ssim_official(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity as GLF-CR's released code computes it (module docstring)."""
    return ssim_map(_batched(pred).float(), _batched(target).float(),
                    official=True).double().flatten(1).mean(1)


METRICS = {"psnr": psnr, "ssim": ssim, "sam": sam, "mae": mae}
#: ``cloudfree evaluate --ssim``: ours (valid pixels only) or GLF-CR's.
SSIM_VARIANTS = {"valid": ssim, "official": ssim_official}


def all_metrics(pred: torch.Tensor, target: torch.Tensor,
                ssim_variant: str = "valid") -> dict[str, list[float]]:
    """Every metric of ``METRICS`` (SSIM as ``ssim_variant``), per image, as plain floats."""
    chosen = {**METRICS, "ssim": SSIM_VARIANTS[ssim_variant]}
    return {name: [float(v) for v in fn(pred, target)] for name, fn in chosen.items()}

