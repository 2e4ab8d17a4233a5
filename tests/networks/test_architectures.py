"""What every registered architecture promises about input sizes, on real patches."""

from __future__ import annotations

import pytest
import torch
from sar_optical_patch import sar_optical_patch

from cloudfree.networks import ARCHITECTURES, build


@pytest.fixture(scope="module")
def patch() -> tuple[torch.Tensor, torch.Tensor]:
    return sar_optical_patch(256)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_accepts_any_multiple_of_its_size_multiple(arch, patch):
    net = build(arch, "small").eval()
    m = net.size_multiple
    s2, s1 = patch
    for height, width in [(8 * m, 8 * m), (12 * m, 8 * m), (8 * m, 13 * m)]:
        with torch.no_grad():
            out = net(s2[..., :height, :width], s1[..., :height, :width])
        assert out.shape == (1, 13, height, width)


@pytest.mark.parametrize("arch", sorted(a for a in ARCHITECTURES
                                        if ARCHITECTURES[a].size_multiple > 1))
def test_rejects_other_sizes_clearly(arch, patch):
    net = build(arch, "small").eval()
    m = net.size_multiple
    size = 8 * m + 1
    s2, s1 = patch
    with pytest.raises(ValueError, match=f"multiples of {m}, got {size}x{size}"):
        net(s2[..., :size, :size], s1[..., :size, :size])
