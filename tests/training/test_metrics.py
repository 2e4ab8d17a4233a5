"""Metrics and the cloud-aware loss against closed-form cases, on real reflectance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import WINTER_CLEAR, WINTER_S2

from cloudfree.training.datasets import read_reflectance
from cloudfree.training.losses import cloud_aware
from cloudfree.training.metrics import SSIM_K1, mae, psnr, sam, ssim, ssim_official


@pytest.fixture(scope="module")
def clear() -> torch.Tensor:
    reflectance, _ = read_reflectance(WINTER_CLEAR)
    return torch.from_numpy(np.clip(reflectance[:, :64, :64], 0, 1)).double()[None]


def test_identical_images(clear):
    assert psnr(clear, clear).item() == pytest.approx(100.0)  # MSE floor 1e-10: capped, not inf
    assert ssim(clear, clear).item() == pytest.approx(1.0, abs=1e-12)
    assert sam(clear, clear).item() == pytest.approx(0.0, abs=1e-6)
    assert mae(clear, clear).item() == 0.0


def test_known_noise_gives_psnr_of_its_mse(clear):
    signs = torch.ones_like(clear)
    signs[..., ::2, :] = -1  # +-0.01 everywhere: MSE exactly 1e-4, MAE 0.01
    noisy = clear + 0.01 * signs
    assert psnr(noisy, clear).item() == pytest.approx(10 * math.log10(1 / 1e-4))
    assert mae(noisy, clear).item() == pytest.approx(0.01)


def test_known_angle(clear):
    v = clear[:, :, :8, :8]
    u = torch.roll(v, 1, dims=1)
    u = u - (u * v).sum(1, keepdim=True) / (v * v).sum(1, keepdim=True) * v  # u orthogonal to v
    theta = math.radians(17.0)
    rotated = math.cos(theta) * v / v.norm(dim=1, keepdim=True) \
        + math.sin(theta) * u / u.norm(dim=1, keepdim=True)
    assert sam(rotated, v).item() == pytest.approx(17.0, abs=1e-6)
    assert sam(3.0 * v, v).item() == pytest.approx(0.0, abs=1e-5)  # scale does not count


def test_ssim_of_constant_images():
    a, c = 0.3, 0.1
    x = torch.full((1, 13, 32, 32), a, dtype=torch.float64)
    c1 = SSIM_K1**2
    expected = (2 * a * (a + c) + c1) / (a**2 + (a + c) ** 2 + c1)  # variances 0: luminance only
    assert ssim(x + c, x).item() == pytest.approx(expected)


def test_cloud_aware_loss_weights_clouds_four_times(clear):
    pred = (clear + 0.02).float()
    batch = {"target": clear.float(), "s2": pred, "valid": torch.ones_like(clear[:, :1]).float()}
    cloudy, _ = cloud_aware(pred, {**batch, "cloud": batch["valid"]}, {}, 0.0)
    clear_loss, _ = cloud_aware(pred, {**batch, "cloud": 0 * batch["valid"]}, {}, 0.0)
    assert (cloudy / clear_loss).item() == pytest.approx(0.8 / 0.2)  # eq. 17, lambda 0.8


def _glfcr_ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """GLF-CR's released SSIM formula, written independently with scipy in float64: 11-tap
    Gaussian (sigma 1.5) centred at 11 / 2, zero padding, map averaged over bands and pixels."""
    from scipy.ndimage import correlate1d

    taps = np.exp(-((np.arange(11) - 11 / 2) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def blur(a: np.ndarray) -> np.ndarray:
        for axis in (-2, -1):
            a = correlate1d(a, taps, axis=axis, mode="constant", cval=0.0)
        return a

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * cxy + c2))
                  / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_official_ssim_is_glfcr_formula(clear):
    hazy, _ = read_reflectance(WINTER_S2)
    hazy = torch.from_numpy(np.clip(hazy[:, :64, :64], 0, 1)).double()[None]
    expected = _glfcr_ssim_by_hand(hazy[0].numpy(), clear[0].numpy())
    official = ssim_official(hazy, clear).item()
    assert official == pytest.approx(expected, abs=2e-6)  # float32 as in the released code
    assert abs(official - ssim(hazy, clear).item()) > 1e-3  # the padding and shift matter
    assert ssim_official(clear, clear).item() == pytest.approx(1.0, abs=1e-6)
