"""CARF, the Cloud-Attentive Reconstruction Framework (seed paper 002): its SAR-optical backbone.

Sec. III-A: spatial-channel reconfiguration (pixel unshuffle by ``s``, eq. 1-2), a low-level
feature encoder per modality (two 3x3 convs with ReLU, eq. 3-5), then ``stages`` two-stream
stages of residual dense layers interleaved with Swin transformer blocks (eq. 6) whose outputs a
1x1 conv aggregates (eq. 7-8). Sec. III-B: global feature fusion of all stage outputs (1x1 then
3x3 conv, eq. 9), a skip from the initial optical features (eq. 10), the image reconstruction
network (3x3 conv, inverse reconfiguration, conv, eq. 11) and the cloudy input added (eq. 12).
The cloud-aware loss (eq. 13-18) belongs to training, not to the network.

Two readings of the fusion, chosen by ``fusion``:

- ``window`` (the ``paper`` and ``small`` presets): eq. 6 as written, a Swin block with window
  multi-head self-attention (W-MSA) within each modality, the two streams independent inside a
  stage. The paper does not say where the streams meet ("attention-driven feature fusion",
  Fig. 2); choice: each stage ends with ``x <- x + Conv1x1(x (+) s)``, the optical stream taking
  a 1x1 conv of both streams concatenated, and the SAR stream passing on unchanged.
- ``guided`` (the ``guided`` preset, and the constructor default so that checkpoints saved before
  this option existed load unchanged): GLF-CR's SAR-guided window attention (optical scores
  gated towards the SAR ones) in every Swin block, and GLF-CR's gated two-way feature exchange
  closing each stage, without its dynamic filter.

The authors' released code (github.com/thoailt/Cloud-Removal, ``net_CR_RDN.py``) is neither:
it is GLF-CR's network, dynamic filter included, with GLF-CR's module names and sizes, i.e.
``glfcr``'s ``paper`` preset (see docs/guides/training.md).

Details the paper leaves open, and what is chosen here:

- scale ``s`` = 2, window 8, and the widths and depths: not given in the paper; the ``paper``
  and ``guided`` presets use GLF-CR's values (CARF follows its backbone and compares against
  it).
- eq. 6-7 "J RDBs and J - 1 Swin blocks": read as J dense conv layers per stage with a
  (pre-norm, shifted on odd layers) Swin block after each but the last, and the 1x1 aggregation
  conv added to the stage input (the local residual of a residual dense block).
- eq. 5 puts a ReLU after both encoder convs.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cloudfree.networks.base import S1_BANDS, S2_BANDS, CloudRemovalNet
from cloudfree.networks.blocks import (
    DualConv,
    DualRDB,
    DualSwinConv,
    exchange,
    global_fusion,
    pixel_shuffle_head,
)
from cloudfree.networks.registry import register

SCALE = 2  # spatial-channel reconfiguration factor s (eq. 2)
WINDOW = 8  # Swin window, in reconfigured pixels


def low_level_encoder(in_channels: int, features: int) -> nn.Sequential:
    """LFE (eq. 5): two 3x3 convs, each followed by a ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, features, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(features, features, 3, padding=1), nn.ReLU())


FUSIONS = ("window", "guided")


def fusion_stage(features: int, layers: int, growth: int, heads: int, mlp_ratio: float,
                 guided: bool) -> DualRDB:
    """One stage (eq. 6-8): ``layers`` dense layers, a Swin block after all but the last."""
    dense: list[DualConv] = [
        DualSwinConv(features + c * growth, growth, heads, WINDOW,
                     shift=WINDOW // 2 if c % 2 else 0, mlp_ratio=mlp_ratio, pre_norm=True,
                     guided=guided)
        for c in range(layers - 1)
    ]
    dense.append(DualConv(features + (layers - 1) * growth, growth))
    return DualRDB(dense, features, fusion_kernel=1)


@register
class CARF(CloudRemovalNet):
    """CARF backbone; train it with the cloud-aware weighted loss of the paper (eq. 17-18).

    Parameters
    ----------
    features : int
        Channels of both streams at half resolution. Default: 96.
    stages : int
        Fusion stages. Default: 6.
    layers : int
        Dense layers per stage (a Swin block after each but the last). Default: 5.
    growth : int
        Channels each dense layer adds. Default: 48.
    heads : int
        Attention heads of the Swin blocks. Default: 8.
    mlp_ratio : float
        Hidden width of the Swin MLP, as a multiple of its input. Default: 2.
    up_features : int
        Channels before the output convolution. Default: 64.
    fusion : {"guided", "window"}
        Where the streams meet (module docstring): ``window`` is eq. 6 as written, ``guided``
        GLF-CR's SAR-guided attention and exchange. Default: ``"guided"``.
    """

    arch: ClassVar[str] = "carf"
    presets: ClassVar[dict[str, dict]] = {
        # choice: the paper gives no sizes; GLF-CR's (scale 2, 96 features, 6 stages of 5 dense
        # layers, growth 48, window 8, 8 heads, MLP ratio 2, 64 features before the output conv)
        "paper": {"features": 96, "stages": 6, "layers": 5, "growth": 48, "heads": 8,
                  "mlp_ratio": 2.0, "up_features": 64, "fusion": "window"},
        "guided": {"features": 96, "stages": 6, "layers": 5, "growth": 48, "heads": 8,
                   "mlp_ratio": 2.0, "up_features": 64, "fusion": "guided"},
        "small": {"features": 16, "stages": 2, "layers": 3, "growth": 8, "heads": 2,
                  "mlp_ratio": 2.0, "up_features": 8, "fusion": "window"},
    }
    default_preset: ClassVar[str] = "guided"
    size_multiple: ClassVar[int] = SCALE * WINDOW
    fully_convolutional: ClassVar[bool] = False
    default_scaling: ClassVar[str] = "glfcr"
    default_loss: ClassVar[str] = "cloudaware"  # eq. 17-18

    def __init__(self, features: int = 96, stages: int = 6, layers: int = 5, growth: int = 48,
                 heads: int = 8, mlp_ratio: float = 2.0, up_features: int = 64,
                 fusion: str = "guided") -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"carf fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        super().__init__(features=features, stages=stages, layers=layers, growth=growth,
                         heads=heads, mlp_ratio=mlp_ratio, up_features=up_features, fusion=fusion)
        guided = fusion == "guided"
        self.encoder_opt = low_level_encoder(S2_BANDS * SCALE * SCALE, features)
        self.encoder_sar = low_level_encoder(S1_BANDS * SCALE * SCALE, features)
        self.stages = nn.ModuleList(fusion_stage(features, layers, growth, heads, mlp_ratio,
                                                 guided) for _ in range(stages))
        if guided:  # GLF-CR's exchange gates
            self.sar_to_opt = nn.ModuleList(nn.Conv2d(features, features, 1)
                                            for _ in range(stages))
            self.opt_to_sar = nn.ModuleList(nn.Conv2d(features, features, 1)
                                            for _ in range(stages))
        else:
            self.merge = nn.ModuleList(nn.Conv2d(2 * features, features, 1)
                                       for _ in range(stages))
        self.fusion = global_fusion(stages, features)
        self.reconstruction = pixel_shuffle_head(features, up_features, S2_BANDS, SCALE)

    def receptive_field(self) -> int:
        """Upper bound, summing each layer's reach in reconfigured pixels, then x2 (+2).

        Encoder: two 3x3 convs, 2. Per stage: each dense layer with a Swin block 1 (3x3 conv) +
        WINDOW - 1 (attention within a window), the last dense layer 1; the 1x1 aggregation and
        the exchange gates 0. Fusion 3x3 conv 1; reconstruction conv before the shuffle 1.
        Doubled to full resolution, plus 1 for the unshuffle block and 1 for the last conv.
        """
        layers = len(self.stages[0].convs)
        stage = (layers - 1) * WINDOW + 1
        half = 2 + len(self.stages) * stage + 1 + 1
        return SCALE * half + 2

    def meet(self, stage: int, x: torch.Tensor, s: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the streams exchange information at the end of ``stage`` (module docstring)."""
        if self.config["fusion"] == "guided":
            return exchange(x, s, s, self.sar_to_opt[stage], self.opt_to_sar[stage])
        return x + self.merge[stage](torch.cat([x, s], 1)), s

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, return_aux: bool = False):
        self.check_size(s2.shape[-2], s2.shape[-1])
        initial = self.encoder_opt(F.pixel_unshuffle(s2, SCALE))
        x, s = initial, self.encoder_sar(F.pixel_unshuffle(s1, SCALE))
        outputs = []
        for i, stage in enumerate(self.stages):
            x, s = self.meet(i, *stage(x, s))
            outputs.append(x)
        out = s2 + self.reconstruction(self.fusion(torch.cat(outputs, 1)) + initial)
        return (out, {}) if return_aux else out
