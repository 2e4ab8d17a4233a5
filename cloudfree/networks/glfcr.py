"""GLF-CR (Xu et al., "SAR-Enhanced Cloud Removal with Global-Local Fusion"), seed paper 001.

Two streams (optical, SAR) at half resolution after a pixel unshuffle by 2. Each of ``blocks``
stages is an SGCI block (Sec. 4.2: a two-stream residual dense block whose dense layers are
followed by a window transformer layer with SAR-guided attention, shifted windows on odd layers)
followed by an SLFC block (Sec. 4.3: per-pixel dynamic filters generated from both streams
applied to the SAR features, then gated residual exchange between the streams). The optical
outputs of all stages are fused (GFF), added to the first shallow features, pixel-shuffled back
to full resolution and added to the cloudy input (eq. 6).

Parameter and buffer names follow the official release so that its checkpoints
(``{"network": state_dict}``) load with :meth:`GLFCR.from_official`; the official size-bound
``attn_mask`` buffers are ignored and the masks recomputed for any input size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cloudfree.core.errors import CloudfreeError
from cloudfree.networks.base import S1_BANDS, S2_BANDS, CloudRemovalNet
from cloudfree.networks.blocks import (
    DualRDB,
    DualSwinConv,
    ResBlock,
    exchange,
    global_fusion,
    pixel_shuffle_head,
)
from cloudfree.networks.registry import register

SCALE = 2  # pixel (un)shuffle factor
WINDOW = 8  # attention window, in half-resolution pixels
LEAKY_SLOPE = 0.1  # of the dynamic filter generator's activations


def _conv_lrelu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
                         nn.LeakyReLU(LEAKY_SLOPE))


class FilterGenerator(nn.Module):
    """Dynamic filter generation (Sec. 4.3, Sec. 5.1): a conv and two residual blocks on the
    concatenated streams, then a 1x1 conv to one k x k filter per SAR channel and pixel."""

    def __init__(self, features: int, size: int) -> None:
        super().__init__()
        self.fac_warp = nn.Sequential(
            _conv_lrelu(2 * features, features, 3),
            ResBlock(features, nn.LeakyReLU(LEAKY_SLOPE), name="stem"),
            ResBlock(features, nn.LeakyReLU(LEAKY_SLOPE), name="stem"),
            _conv_lrelu(features, features * size * size, 1),
        )

    def forward(self, opt: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        return self.fac_warp(torch.cat([opt, sar], 1))


def dynamic_filter(x: torch.Tensor, filters: torch.Tensor, size: int) -> torch.Tensor:
    """Eq. 10: filter each channel and pixel of ``x`` [B, C, H, W] with its own k x k kernel.

    ``filters`` is [B, C * k * k, H, W], taps of channel c in row-major order at c * k * k;
    borders are replicate-padded, as in the official filter-adaptive convolution layer.
    """
    b, c, h, w = x.shape
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    taps = filters.reshape(b, c, size * size, h, w)
    out = torch.zeros_like(x)
    for i in range(size):
        for j in range(size):
            out = out + taps[:, :, i * size + j] * padded[:, :, i:i + h, j:j + w]
    return out


@register
class GLFCR(CloudRemovalNet):
    """GLF-CR; the ``paper`` preset is the official model (14,827,373 parameters).

    Parameters
    ----------
    features : int
        Channels of both streams at half resolution. Default: 96.
    blocks : int
        SGCI + SLFC stages. Default: 6.
    layers : int
        Dense layers (each with a window transformer layer) per stage. Default: 5.
    growth : int
        Channels each dense layer adds. Default: 48.
    heads : int
        Attention heads of the window transformer layers. Default: 8.
    mlp_ratio : float
        Hidden width of the transformer MLP, as a multiple of its input. Default: 2.
    filter_size : int
        Side in pixels of the per-pixel dynamic filters (SLFC). Default: 5.
    up_features : int
        Channels before the output convolution. Default: 64.
    drop_path : float
        Largest stochastic-depth rate, reached by the last dense layer (training only).
        Default: 0.2.
    """

    arch: ClassVar[str] = "glfcr"
    presets: ClassVar[dict[str, dict]] = {
        "paper": {"features": 96, "blocks": 6, "layers": 5, "growth": 48, "heads": 8,
                  "mlp_ratio": 2.0, "filter_size": 5, "up_features": 64, "drop_path": 0.2},
        "small": {"features": 16, "blocks": 2, "layers": 2, "growth": 8, "heads": 2,
                  "mlp_ratio": 2.0, "filter_size": 5, "up_features": 8, "drop_path": 0.0},
    }
    size_multiple: ClassVar[int] = SCALE * WINDOW
    fully_convolutional: ClassVar[bool] = False
    default_scaling: ClassVar[str] = "glfcr"
    default_loss: ClassVar[str] = "l1"  # sec. 5.1: supervised by L1

    def __init__(self, features: int = 96, blocks: int = 6, layers: int = 5, growth: int = 48,
                 heads: int = 8, mlp_ratio: float = 2.0, filter_size: int = 5,
                 up_features: int = 64, drop_path: float = 0.2) -> None:
        super().__init__(features=features, blocks=blocks, layers=layers, growth=growth,
                         heads=heads, mlp_ratio=mlp_ratio, filter_size=filter_size,
                         up_features=up_features, drop_path=drop_path)
        self.filter_size = filter_size
        unshuffled = SCALE * SCALE
        self.SFENet1 = nn.Conv2d(S2_BANDS * unshuffled, features, 5, padding=2)
        self.SFENet2 = nn.Conv2d(features, features, 3, padding=1)
        self.SFENet1_SAR = nn.Conv2d(S1_BANDS * unshuffled, features, 5, padding=2)
        self.SFENet2_SAR = nn.Conv2d(features, features, 3, padding=1)
        # Stochastic depth rising linearly over all dense layers, as in the official training.
        rates = torch.linspace(0.0, drop_path, blocks * layers).tolist()
        self.RDBs = nn.ModuleList(
            DualRDB([DualSwinConv(features + c * growth, growth, heads, WINDOW,
                                  shift=WINDOW // 2 if c % 2 else 0, mlp_ratio=mlp_ratio,
                                  drop_path=rates[i * layers + c]) for c in range(layers)],
                    features, fusion_kernel=3)
            for i in range(blocks))
        self.DF = nn.ModuleList(FilterGenerator(features, filter_size) for _ in range(blocks))
        self.sar_fuse_1x1conv = nn.ModuleList(nn.Conv2d(features, features, 1)
                                              for _ in range(blocks))
        self.opt_distribute_1x1conv = nn.ModuleList(nn.Conv2d(features, features, 1)
                                                    for _ in range(blocks))
        self.GFF = global_fusion(blocks, features)
        self.UPNet = pixel_shuffle_head(features, up_features, S2_BANDS, SCALE)

    def receptive_field(self) -> int:
        """Upper bound, summing each layer's reach in half-resolution pixels, then x2 (+2).

        Shallow convs 5x5 + 3x3 reach 3; per stage, each dense layer reaches 1 (3x3 conv) plus
        WINDOW - 1 (attention within a window), the fusion conv 1, and the SLFC block 5 (its
        filter generator chains five 3x3 convs) plus k // 2 (the dynamic filter); GFF 1; the
        up-sampling conv 1. Doubled to full resolution, plus 1 for the unshuffle
        block and 1 for the last full-resolution conv.
        """
        layers = len(self.RDBs[0].convs)
        stage = layers * WINDOW + 1 + 5 + self.filter_size // 2
        half = 3 + len(self.RDBs) * stage + 1 + 1
        return SCALE * half + 2

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, return_aux: bool = False):
        self.check_size(s2.shape[-2], s2.shape[-1])
        shallow = self.SFENet1(F.pixel_unshuffle(s2, SCALE))
        x = self.SFENet2(shallow)
        s = self.SFENet2_SAR(self.SFENet1_SAR(F.pixel_unshuffle(s1, SCALE)))
        stages = []
        for rdb, generator, to_opt, to_sar in zip(self.RDBs, self.DF, self.sar_fuse_1x1conv,
                                                  self.opt_distribute_1x1conv, strict=True):
            x, s = rdb(x, s)  # SGCI
            filtered = dynamic_filter(s, generator(x, s), self.filter_size)  # SLFC
            x, s = exchange(x, s, filtered, to_opt, to_sar)
            stages.append(x)
        out = s2 + self.UPNet(self.GFF(torch.cat(stages, 1)) + shallow)
        return (out, {}) if return_aux else out

    @classmethod
    def from_official(cls, state: Mapping) -> GLFCR:
        """Build the ``paper`` GLF-CR and load an official checkpoint dict into it, strictly.

        Accepts ``{"network": state_dict}``, a bare state dict, and ``module.``-prefixed names.
        Raises CloudfreeError naming the first missing, unexpected or mis-shaped entries. The
        model is returned in eval mode (the official training used stochastic depth).
        """
        if not isinstance(state, Mapping):
            raise CloudfreeError(f"not an official GLF-CR checkpoint: got {type(state).__name__}")
        model = cls(**cls.presets["paper"])
        model.load_checked_state(_official_state_dict(state), "not an official GLF-CR checkpoint")
        return model.eval()


#: Official buffers that depend on the training input size; recomputed here on demand.
SIZE_BOUND_BUFFERS = ("attn_mask",)


def _official_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """Unwrap ``{"network": sd}``, strip DataParallel's ``module.``, drop size-bound buffers."""
    if "network" in state and isinstance(state["network"], Mapping):
        state = state["network"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CloudfreeError("not an official GLF-CR checkpoint: expected a dict of tensors "
                             "or {'network': state_dict}")
    out = {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        if name.rsplit(".", 1)[-1] not in SIZE_BOUND_BUFFERS:
            out[name] = value
    return out
