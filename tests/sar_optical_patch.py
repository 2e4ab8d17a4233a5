"""Real co-registered S2/S1 patches from the shared sample data, scaled for the networks."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from conftest import SUMMER_S1, SUMMER_S2

from cloudfree.scaling import SCALINGS


def sar_optical_patch(size: int, row: int = 0, col: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloudy S2 [1, 13, size, size] and S1 [1, 2, size, size], GLF-CR scaling."""
    window = ((row, row + size), (col, col + size))
    with rasterio.open(SUMMER_S2) as ds:
        s2 = ds.read(window=window).astype(np.float32) / 10000.0
    with rasterio.open(SUMMER_S1) as ds:
        s1 = ds.read(window=window).astype(np.float32)
    scaling = SCALINGS["glfcr"]
    return (torch.from_numpy(scaling.scale_s2(s2))[None],
            torch.from_numpy(scaling.scale_s1(s1))[None])


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
