"""Networks on top of the classical fill (``cloudfree/fill/median.py``): the default model's family.

``fill`` has no parameters and returns its input: with the pipeline's fill it is the network-free
model ``median-fill``. ``fillnet`` adds a correction to the filled pixels only::

    output = s2 + mask * delta(s2, s1, mask)

where ``s2`` already holds the fill under the mask, so the cloudy values there never reach the
network. ``delta`` is a small U-Net (three poolings, two 3x3 conv-ReLU layers per level, skip
connections by concatenation) whose last layer starts at zero: an untrained ``fillnet`` is the
fill itself, and training moves it from there. Clear pixels pass through unchanged. This design is
ours (no seed paper describes it); the U-Net layout follows Ronneberger et al. (2015).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cloudfree.networks.base import S1_BANDS, S2_BANDS, CloudRemovalNet
from cloudfree.networks.registry import register


def _mask_or_zeros(s2: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The fill mask, or an all-zero one (nothing filled) when none is given."""
    return s2.new_zeros((s2.shape[0], 1, *s2.shape[2:])) if mask is None else mask


@register
class Fill(CloudRemovalNet):
    """The classical fill as a model: returns the (already filled) optical input.

    Takes no parameters.
    """

    arch: ClassVar[str] = "fill"
    presets: ClassVar[dict[str, dict]] = {"paper": {}, "small": {}}
    uses_mask: ClassVar[bool] = True

    def receptive_field(self) -> int:
        return 0

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, mask: torch.Tensor | None = None,
                return_aux: bool = False):
        self.check_size(*s2.shape[2:])
        return (s2, {}) if return_aux else s2


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


@register
class FillNet(CloudRemovalNet):
    """Correction of the classical fill from S1 and the clear context.

    Parameters
    ----------
    widths : tuple of 4 int
        Channels of the U-Net at full, 1/2, 1/4 and 1/8 resolution. Default: (16, 32, 48, 64).
    """

    arch: ClassVar[str] = "fillnet"
    presets: ClassVar[dict[str, dict]] = {
        "paper": {"widths": (32, 64, 96, 128)},  # no paper: the larger size we offer
        "small": {"widths": (16, 32, 48, 64)},  # the bundled default
    }
    default_preset: ClassVar[str] = "small"
    size_multiple: ClassVar[int] = 8
    fully_convolutional: ClassVar[bool] = False  # pooling makes output depend on tile phase
    uses_mask: ClassVar[bool] = True
    onnx_any_size: ClassVar[bool] = True

    def __init__(self, widths: tuple[int, ...] | list[int] = (16, 32, 48, 64)) -> None:
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"fillnet needs four positive widths, got {widths}")
        super().__init__(widths=widths)
        cin = S2_BANDS + S1_BANDS + 1
        self.down = nn.ModuleList(
            _double_conv(a, b) for a, b in zip((cin, *widths[:-1]), widths, strict=True))
        self.up = nn.ModuleList(
            _double_conv(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1))
        self.head = nn.Conv2d(widths[0], S2_BANDS, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def receptive_field(self) -> int:
        """Two 3x3 convs per level on the way down and up, at strides 1, 2, 4, 8."""
        down = sum(2 * 2**i for i in range(4))
        up = sum(2 * 2**i for i in range(3))
        return down + up

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, mask: torch.Tensor | None = None,
                return_aux: bool = False):
        self.check_size(*s2.shape[2:])
        mask = _mask_or_zeros(s2, mask)
        x = torch.cat([s2, s1, mask], dim=1)
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.avg_pool2d(x, 2) if i else x)
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        out = s2 + mask * self.head(x)
        return (out, {}) if return_aux else out
