"""The image metrics of every benchmark: one PSNR, RMSE, MAE, SAM and SSIM (numpy).

Conventions, the same for every function and every benchmark:

- ``pred`` and ``truth`` are reflectance, bands first: ``[C, H, W]`` images, or ``[C, N]``
  pixels. Both are clipped to [0, 1] (an output's DN / 10000 can exceed 1 over bright land or
  cloud; the truth is clipped too) and compared in float64.
- ``where`` picks the pixels: a boolean ``[H, W]`` (or ``[N]``) array, every band of each pixel
  it marks; ``None`` is every pixel. A metric over no pixel is NaN.
- Each returns one float for the whole set of pixels (pixels pooled, not averaged per image).

They are those of ``cloudfree.training.metrics`` (what ``cloudfree evaluate`` and training
report), in numpy and over a chosen set of pixels; SSIM is that module's own.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cloudfree.training.metrics import PSNR_MSE_FLOOR, SSIM_WINDOW, ssim_map

__all__ = ["mae", "psnr", "rmse", "sam", "ssim"]

#: Pixels the SSIM map loses at each edge (its window is valid only, no padding).
SSIM_EDGE = SSIM_WINDOW // 2


def _pixels(image: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    """``image`` clipped to [0, 1] in float64, as ``[C, N]`` over the pixels ``where``."""
    image = np.asarray(image)
    picked = image.reshape(len(image), -1) if where is None else image[:, where]
    return np.clip(picked.astype(np.float64), 0, 1)


def _error(pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    return _pixels(pred, where) - _pixels(truth, where)


def psnr(pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(1 / MSE)``, peak 1.

    MSE is the mean of the squared difference over every band of the pixels ``where``, on
    reflectance clipped to [0, 1], in float64; it is floored at 1e-10, so identical pixels give
    100 dB, not infinity.
    """
    err = _error(pred, truth, where)
    if not err.size:
        return float("nan")
    return 10 * math.log10(1 / max(float(np.mean(err**2)), PSNR_MSE_FLOOR))


def rmse(pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    """Root mean squared error, in reflectance: ``sqrt(MSE)``, the MSE of :func:`psnr`
    (every band of the pixels ``where``, clipped to [0, 1], float64; not floored)."""
    err = _error(pred, truth, where)
    return float(np.sqrt(np.mean(err**2))) if err.size else float("nan")


def mae(pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean absolute error, in reflectance, over every band of the pixels ``where`` (clipped to
    [0, 1], float64)."""
    err = _error(pred, truth, where)
    return float(np.mean(np.abs(err))) if err.size else float("nan")


def sam(pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    """Spectral angle mapper, in degrees: the angle between the predicted and the true spectrum
    (every band) of each pixel ``where``, averaged over those pixels. Reflectance clipped to
    [0, 1], float64; a pixel whose spectrum is all zero in either counts as 0 degrees."""
    p, t = _pixels(pred, where), _pixels(truth, where)
    if not p.size:
        return float("nan")
    dot = (p * t).sum(0)
    norms = np.linalg.norm(p, axis=0) * np.linalg.norm(t, axis=0)
    cos = np.where(norms > 0, dot / np.maximum(norms, 1e-30), 1.0)
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))).mean())


def ssim(pred: np.ndarray, truth: np.ndarray, where: np.ndarray | None = None) -> float:
    """Structural similarity of two ``[C, H, W]`` images, averaged over the pixels ``where``.

    The map is ``cloudfree.training.metrics.ssim_map`` (Gaussian window 11 x 11, sigma 1.5,
    K1 = 0.01, K2 = 0.03, data range 1, per band, float64, on reflectance clipped to [0, 1]),
    averaged over bands at each pixel, then over the pixels ``where``. The map covers the
    valid part of the image only: the outer ``SSIM_EDGE`` (5) pixels have no value, so
    ``where`` counts inside that border (``None``: the whole map, which is
    ``cloudfree.training.metrics.ssim``).
    """
    p, t = (torch.from_numpy(np.clip(np.asarray(x, dtype=np.float64), 0, 1)) for x in (pred, truth))
    values = ssim_map(p, t)[0].mean(0).numpy()
    if where is not None:
        e = SSIM_EDGE
        values = values[where[e:-e, e:-e]]
    return float(values.mean()) if values.size else float("nan")
