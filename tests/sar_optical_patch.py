"""Real co-registered S2/S1 patches from the shared sample data, scaled for the networks."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from helpers import SUMMER_S1, SUMMER_S2, WINTER_S1, WINTER_S2

from cloudfree.inference.scaling import SCALINGS, Scaling

PAIRS = ((SUMMER_S2, SUMMER_S1), (WINTER_S2, WINTER_S1))


def read_pair(s2_path, s1_path, scaling: Scaling, size: int, row: int = 0,
              col: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """S2 [13, size, size] and S1 [2, size, size] of a real pair, float32, scaled."""
    window = ((row, row + size), (col, col + size))
    with rasterio.open(s2_path) as ds:
        s2 = ds.read(window=window).astype(np.float32) / 10000.0
    with rasterio.open(s1_path) as ds:
        s1 = ds.read(window=window).astype(np.float32)
    return scaling.scale_s2(s2), scaling.scale_s1(s1)


def sar_optical_patch(size: int, row: int = 0, col: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloudy summer S2 [1, 13, size, size] and S1 [1, 2, size, size], GLF-CR scaling."""
    s2, s1 = read_pair(SUMMER_S2, SUMMER_S1, SCALINGS["glfcr"], size, row, col)
    return torch.from_numpy(s2)[None], torch.from_numpy(s1)[None]


def real_batch(scaling: Scaling, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """S2 [2, 13, size, size] and S1 [2, 2, size, size]: summer cumulus and winter haze."""
    pairs = [read_pair(s2, s1, scaling, size, 64, 64) for s2, s1 in PAIRS]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def assert_crop_matches_whole(model: torch.nn.Module) -> None:
    """No input size baked in: a crop's output equals the whole image's output wherever the
    crop border is beyond ``model.receptive_field()``, and differs near the border."""
    reach = model.receptive_field()
    s2, s1 = sar_optical_patch(192)
    top, left, size = 32, 48, 128  # multiples of 16: the same window grid
    assert 2 * reach < size
    with torch.no_grad():
        whole = model(s2, s1)[..., top:top + size, left:left + size]
        crop = model(s2[..., top:top + size, left:left + size],
                     s1[..., top:top + size, left:left + size])
    inner = slice(reach, size - reach)
    assert torch.allclose(crop[..., inner, inner], whole[..., inner, inner], atol=1e-5)
    assert not torch.allclose(crop[..., :4, :4], whole[..., :4, :4], atol=1e-5)
