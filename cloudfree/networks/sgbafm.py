"""SAR-guided attention-fusion cloud-removal network (seed 003, SG-BAFM + DFIN).

Three stages (paper sec. II-A): a base-fusion stage of MBConv blocks on the concatenated S2 and
S1 bands (``F_b``); a directed-fusion stage that downsamples each modality separately, fuses them
with SG-BAFM (sec. II-B) and refines with MBConv (``F_fused``); and DFIN (sec. II-C) merging both.
The paper gives no layer sizes, block counts or normalisation; our choices are marked "choice:".

- choice: MBConv is expand 1x1 -> depthwise 3x3 -> squeeze-excitation -> project 1x1 with SiLU
  and no batch norm (restoration nets avoid batch statistics that shift radiometry).
- choice: the base-fusion stage runs at full resolution (a 3x3 conv on the 15 bands, then
  MBConv); the directed stage works at half resolution (the paper's "downsampling": stride-2
  3x3 conv, ReLU, 3x3 conv, ReLU per modality) and returns to full resolution by a 3x3 conv and
  pixel shuffle.
- choice: the paper's "Transformer" is one block: the SAR-guided patch attention, then a
  feed-forward block (per-pixel LayerNorm, Linear to ``FFN_RATIO`` x channels, GELU, Linear),
  each with a residual add, as in Vaswani et al. (2017); the paper gives no depth.
- choice: DFIN's ``F_hat`` follows the formula (attention, pyramid and identity in parallel,
  then a 1x1 conv), not the prose's pyramid-then-attention order.
- choice: like DSen2-CR and GLF-CR, a 3x3 conv maps the DFIN output to 13 bands, which are added
  to the cloudy input.
- choice: the paper names no loss; ``train`` uses L1 (``default_loss``), as GLF-CR does.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from cloudfree.networks.base import S1_BANDS, S2_BANDS, CloudRemovalNet
from cloudfree.networks.registry import register

#: choice: hidden width of the transformer's feed-forward block, in channels per channel (ViT's).
FFN_RATIO = 4


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ChannelAttention(nn.Module):
    """Squeeze-excitation: channels reweighted by an MLP on their global means."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.weights = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, squeezed, 1),
                                     nn.SiLU(), nn.Conv2d(squeezed, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class MBConv(nn.Module):
    """Inverted-residual block with depthwise 3x3 and SE; residual when channels match."""

    def __init__(self, cin: int, cout: int, expansion: int = 4) -> None:
        super().__init__()
        hidden = cout * expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.SiLU(),
            ChannelAttention(hidden, max(1, cin // 4)),
            nn.Conv2d(hidden, cout, 1),
        )
        self.residual = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class PatchAttention(nn.Module):
    """Multi-head attention between patches: SAR patches give query and key, optical the value.

    Sec. II-B splits the image into 16-px patches (tokens). Query and key are patch embeddings
    (a ``patch`` x ``patch`` conv with stride ``patch``, then LayerNorm) of the SAR features; the
    value of a token is its optical patch itself, every pixel of it, so the attended output keeps
    full resolution and is folded back onto the pixel grid, followed by the paper's 1x1 conv.
    choice: no absolute position embedding, so any size that is a multiple of the patch works.
    """

    def __init__(self, features: int, embed: int, heads: int, patch: int) -> None:
        super().__init__()
        if features % heads or embed % heads:
            raise ValueError(f"features ({features}) and embed ({embed}) must divide by heads "
                             f"({heads})")
        self.heads, self.patch = heads, patch
        self.embed = nn.Conv2d(features, embed, patch, stride=patch)
        self.norm = nn.LayerNorm(embed)
        self.query = nn.Linear(embed, embed)
        self.key = nn.Linear(embed, embed)
        self.value = nn.Conv2d(features, features, 1)
        self.proj = nn.Conv2d(features, features, 1)
        self.scale = (embed // heads) ** -0.5

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, E] -> [B, heads, N, E / heads]."""
        b, n, e = tokens.shape
        return tokens.reshape(b, n, self.heads, e // self.heads).transpose(1, 2)

    def forward(self, sar: torch.Tensor, optical: torch.Tensor) -> torch.Tensor:
        b, c, h, w = optical.shape
        p, nh, nw = self.patch, h // self.patch, w // self.patch
        tokens = self.norm(self.embed(sar).flatten(2).transpose(1, 2))  # [B, N, E]
        q = self._split_heads(self.query(tokens))
        k = self._split_heads(self.key(tokens))
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)  # [B, heads, N, N]
        # value tokens: [B, heads, N, (C / heads) * p * p], one per patch
        v = self.value(optical).reshape(b, self.heads, c // self.heads, nh, p, nw, p)
        v = v.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, self.heads, nh * nw, -1)
        out = (attn @ v).reshape(b, self.heads, nh, nw, c // self.heads, p, p)
        out = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, c, h, w)
        return self.proj(out)


class FeedForward(nn.Module):
    """Transformer feed-forward block on feature maps, per pixel: LayerNorm over channels,
    Linear, GELU, Linear, added to the input."""

    def __init__(self, features: int, ratio: int = FFN_RATIO) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features)
        self.mlp = nn.Sequential(nn.Linear(features, ratio * features), nn.GELU(),
                                 nn.Linear(ratio * features, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(channels_last)).permute(0, 3, 1, 2)


class SGBAFMBlock(nn.Module):
    """SAR-guided bi-modal attention fusion (sec. II-B) of same-sized optical and SAR features.

    First ``F_sar <- F_sar * sigmoid(Conv(Conv(F_opt) (+) Conv(F_sar)))`` with 1x1 convs and
    (+) the channel concatenation; then a transformer block: patch attention with the SAR
    features as query and key, then the feed-forward block.
    choice: the attention map has one weight per channel and pixel; the attended optical
    features are added to the optical input (the usual transformer residual).
    """

    def __init__(self, features: int, embed: int, heads: int, patch: int) -> None:
        super().__init__()
        self.opt_in = nn.Conv2d(features, features, 1)
        self.sar_in = nn.Conv2d(features, features, 1)
        self.attention_map = nn.Sequential(nn.Conv2d(2 * features, features, 1), nn.Sigmoid())
        self.attention = PatchAttention(features, embed, heads, patch)
        self.feed_forward = FeedForward(features)

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        weights = self.attention_map(torch.cat([self.opt_in(optical), self.sar_in(sar)], dim=1))
        return self.feed_forward(optical + self.attention(sar * weights, optical))


class Pyramid(nn.Module):
    """Two-level U-Net (sec. II-C): two stride-2 downsamplings, transposed-conv upsampling and
    additive skips; choice: channels double per level."""

    def __init__(self, features: int) -> None:
        super().__init__()
        c0, c1, c2 = features, 2 * features, 4 * features
        self.enc0 = nn.Sequential(_conv3(c0, c0), nn.ReLU(inplace=True))
        self.enc1 = nn.Sequential(_conv3(c0, c1, stride=2), nn.ReLU(inplace=True),
                                  _conv3(c1, c1), nn.ReLU(inplace=True))
        self.enc2 = nn.Sequential(_conv3(c1, c2, stride=2), nn.ReLU(inplace=True),
                                  _conv3(c2, c2), nn.ReLU(inplace=True))
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = nn.Sequential(_conv3(c1, c1), nn.ReLU(inplace=True))
        self.up0 = nn.ConvTranspose2d(c1, c0, 2, stride=2)
        self.dec0 = nn.Sequential(_conv3(c0, c0), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        d1 = self.dec1(self.up1(self.enc2(e1)) + e1)
        return self.dec0(self.up0(d1) + e0)


class _Integrate(nn.Module):
    """``F_hat = Conv(Attention(F) (+) Pyramid(F) (+) F)`` of sec. II-C (eq. for F_hat)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.attention = ChannelAttention(features, max(1, features // 4))
        self.pyramid = Pyramid(features)
        self.merge = nn.Conv2d(3 * features, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([self.attention(x), self.pyramid(x), x], dim=1))


class DFIN(nn.Module):
    """Deep feature integration (sec. II-C): ``MBConv(Max(F_hat_b (+) F_hat_f) (+) F_b (+) F_f)``.

    The paper concatenates the two integrated streams, applies a convolution to set the channel
    count, then keeps the strongest signal ("maximum pixel value selection").
    choice: the convolution is 1x1 from 2C to 2C channels, read as two C-channel candidates, and
    the selection is their element-wise maximum: a maxout unit (Goodfellow et al. 2013) from 2C
    to C channels. Each stream has its own pyramid and channel attention.
    """

    def __init__(self, features: int, expansion: int) -> None:
        super().__init__()
        self.base = _Integrate(features)
        self.fused = _Integrate(features)
        self.merge = nn.Conv2d(2 * features, 2 * features, 1)
        self.out = MBConv(3 * features, features, expansion)

    def select(self, base_hat: torch.Tensor, fused_hat: torch.Tensor) -> torch.Tensor:
        """``Max(Conv(F_hat_b (+) F_hat_f))``: the stronger of two candidates per channel."""
        first, second = self.merge(torch.cat([base_hat, fused_hat], dim=1)).chunk(2, dim=1)
        return torch.maximum(first, second)

    def forward(self, base: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        strongest = self.select(self.base(base), self.fused(fused))
        return self.out(torch.cat([strongest, base, fused], dim=1))


class _DirectedStem(nn.Module):
    """One modality's separate extraction at half resolution (sec. II-A, directed stage)."""

    def __init__(self, bands: int, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv3(bands, features, stride=2), nn.ReLU(inplace=True),
                                  _conv3(features, features), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register
class SGBAFM(CloudRemovalNet):
    """Base fusion (MBConv) + directed fusion (SG-BAFM) + DFIN, residual to the cloudy input.

    Parameters
    ----------
    features : int
        Channels of the convolutional paths. Default: 64.
    base_blocks : int
        MBConv blocks of the base fusion. Default: 2.
    fused_blocks : int
        MBConv blocks after the directed fusion. Default: 2.
    embed : int
        Width of the patch attention of SG-BAFM (divisible by ``heads``). Default: 128.
    heads : int
        Attention heads. Default: 4.
    expansion : int
        MBConv hidden width, as a multiple of its output. Default: 4.
    """

    arch: ClassVar[str] = "sgbafm"
    presets: ClassVar[dict[str, dict]] = {
        # choice: the paper gives only the 16-px patch; 64 features, 2 + 2 MBConv blocks and a
        # 128-d, 4-head attention give 4.16 M parameters, comparable to its peers.
        "paper": {"features": 64, "base_blocks": 2, "fused_blocks": 2, "embed": 128,
                  "heads": 4, "expansion": 4},
        "small": {"features": 16, "base_blocks": 1, "fused_blocks": 1, "embed": 32,
                  "heads": 2, "expansion": 2},
    }
    #: input pixels per attention patch (sec. II-B: 256-px images in 16-px patches)
    patch: ClassVar[int] = 16
    # 16-px patches; the DFIN pyramid (two halvings) only needs multiples of 4
    size_multiple: ClassVar[int] = 16
    fully_convolutional: ClassVar[bool] = False  # patch attention and SE pooling are global
    default_scaling: ClassVar[str] = "glfcr"

    def __init__(self, features: int = 64, base_blocks: int = 2, fused_blocks: int = 2,
                 embed: int = 128, heads: int = 4, expansion: int = 4) -> None:
        super().__init__(features=features, base_blocks=base_blocks, fused_blocks=fused_blocks,
                         embed=embed, heads=heads, expansion=expansion)
        self.base = nn.Sequential(_conv3(S2_BANDS + S1_BANDS, features),
                                  *(MBConv(features, features, expansion)
                                    for _ in range(base_blocks)))
        self.optical = _DirectedStem(S2_BANDS, features)
        self.sar = _DirectedStem(S1_BANDS, features)
        # the directed stage runs at half resolution: a 16-px patch is 8 feature pixels there
        self.fusion = SGBAFMBlock(features, embed, heads, self.patch // 2)
        self.refine = nn.Sequential(*(MBConv(features, features, expansion)
                                      for _ in range(fused_blocks)),
                                    _conv3(features, 4 * features), nn.PixelShuffle(2))
        self.integrate = DFIN(features, expansion)
        self.tail = _conv3(features, S2_BANDS)

    def receptive_field(self) -> int:
        """Radius of the convolutional path; attention and SE pooling see the whole tile.

        Full-res 3x3 convs add 1 px, half-res 2 px, quarter-res 4 px. Base: stem 1 + one per
        MBConv. Directed: stride-2 conv 1 + conv 2 + 2 per MBConv + upsampling conv 2 + 1
        (shuffle alignment). DFIN pyramid: 1 + (1 + 2) + (2 + 4) + up 2 + 2 + up 1 + 1 = 16;
        then the output MBConv 1 and the tail 1.
        """
        base = 1 + self.config["base_blocks"]
        directed = 3 + 2 * self.config["fused_blocks"] + 3
        return max(base, directed) + 16 + 2

    def forward(self, s2: torch.Tensor, s1: torch.Tensor, return_aux: bool = False):
        self.check_size(*s2.shape[-2:])
        base = self.base(torch.cat([s2, s1], dim=1))
        fused = self.refine(self.fusion(self.optical(s2), self.sar(s1)))
        out = s2 + self.tail(self.integrate(base, fused))
        return (out, {}) if return_aux else out
