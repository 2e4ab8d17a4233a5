"""DSen2-CR (Meraner et al. 2020, ISPRS J. 166): a residual ResNet baseline with a long skip.

Input conv on the concatenated S2 and S1 bands (or S2 alone), ReLU, ``blocks`` residual blocks
(conv-ReLU-conv, output scaled by ``res_scale`` before the add), an output conv to 13 bands, and
the cloudy optical input added to the result.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cloudfree.networks.base import S1_BANDS, S2_BANDS, CloudRemovalNet
from cloudfree.networks.blocks import ResBlock
from cloudfree.networks.registry import register


@register
class DSen2CR(CloudRemovalNet):
    """DSen2-CR; ``use_sar=False`` is the paper's optical-only ablation.

    Parameters
    ----------
    features : int
        Channels of every residual block. Default: 256.
    blocks : int
        Residual blocks. Default: 16.
    res_scale : float
        Factor on each block's residual before it is added. Default: 0.1.
    use_sar : bool
        Feed S1 VV and VH beside the 13 optical bands. Default: True.
    """

    arch: ClassVar[str] = "dsen2cr"
    presets: ClassVar[dict[str, dict]] = {
        "paper": {"features": 256, "blocks": 16, "res_scale": 0.1, "use_sar": True},
        "paper_nosar": {"features": 256, "blocks": 16, "res_scale": 0.1, "use_sar": False},
        "small": {"features": 32, "blocks": 4, "res_scale": 0.1, "use_sar": True},
    }
    size_multiple: ClassVar[int] = 1
    #: Name in ``cloudfree.inference.scaling.SCALINGS`` of the input scaling the paper trains with.
    default_scaling: ClassVar[str] = "dsen2cr"
    default_loss: ClassVar[str] = "carl"  # Meraner et al. 2020, eq. 4

    def __init__(self, features: int = 256, blocks: int = 16, res_scale: float = 0.1,
                 use_sar: bool = True) -> None:
        super().__init__(features=features, blocks=blocks, res_scale=res_scale, use_sar=use_sar)
        self.use_sar = use_sar
        in_bands = S2_BANDS + (S1_BANDS if use_sar else 0)
        self.head = nn.Sequential(nn.Conv2d(in_bands, features, 3, padding=1),
                                  nn.ReLU(inplace=True))
        self.body = nn.Sequential(*(ResBlock(features, res_scale=res_scale) for _ in range(blocks)))
        self.tail = nn.Conv2d(features, S2_BANDS, 3, padding=1)

    def receptive_field(self) -> int:
        """Each 3x3 conv widens the radius by one pixel: head, two per block, tail."""
        return 2 + 2 * len(self.body)

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, return_aux: bool = False):
        x = torch.cat([s2, s1], dim=1) if self.use_sar else s2
        out = s2 + self.tail(self.body(self.head(x)))
        return (out, {}) if return_aux else out
