"""Measure which input pixels influence one output pixel, by back-propagation."""

from __future__ import annotations

import torch

from cloudfree.networks.base import CloudRemovalNet


def support_radius(model: CloudRemovalNet, s2: torch.Tensor, s1: torch.Tensor,
                   row: int, col: int) -> int:
    """Chebyshev radius around (row, col) of the input pixels with a non-zero gradient."""
    s2 = s2.clone().requires_grad_(True)
    s1 = s1.clone().requires_grad_(True)
    model(s2, s1)[0, :, row, col].sum().backward()
    touched = (s2.grad.abs().sum((0, 1)) + s1.grad.abs().sum((0, 1))) > 0
    rows, cols = torch.nonzero(touched, as_tuple=True)
    return int(max((rows - row).abs().max(), (cols - col).abs().max()))
