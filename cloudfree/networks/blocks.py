"""Building blocks shared by the networks: mostly the two-stream (optical + SAR) window
attention of GLF-CR and CARF, and the plain residual block.

Windows are cut with plain reshapes and the cyclic shift uses ``torch.roll`` so that everything
exports to ONNX. Shifted-window masks depend on the feature-map size only; they are computed on
demand and cached per size, never stored in a state dict.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

#: Additive attention score between tokens of different regions of a shifted window (Swin).
MASKED_SCORE = -100.0


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * nW, window * window, C], windows in row-major order."""
    _, h, w, c = x.shape
    x = x.reshape(-1, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nW, window * window, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


@lru_cache(maxsize=16)
def shifted_window_mask(height: int, width: int, window: int, shift: int,
                        device: torch.device) -> torch.Tensor:
    """[nW, N, N] additive mask keeping attention inside the regions a cyclic shift joined.

    After rolling by ``-shift``, the last window row/column holds pixels from two regions of the
    unshifted map (Swin Transformer, Liu et al. 2021, Sec. 3.2); token pairs across regions get
    ``MASKED_SCORE``.
    """

    def bands(size: int) -> torch.Tensor:
        pos = torch.arange(size, device=device)
        return (pos >= size - window).long() + (pos >= size - shift).long()

    labels = bands(height)[:, None] * 3 + bands(width)[None, :]
    tokens = window_partition(labels[None, :, :, None].float(), window).squeeze(-1)
    different = tokens[:, :, None] != tokens[:, None, :]
    return different.float() * MASKED_SCORE


def relative_position_index(window: int) -> torch.Tensor:
    """[N, N] index into a ((2 * window - 1) ** 2)-row bias table for each token pair."""
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # 2, N
    delta = coords[:, :, None] - coords[:, None, :] + (window - 1)  # 2, N, N in [0, 2w - 2]
    return delta[0] * (2 * window - 1) + delta[1]


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples of a residual branch with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - rate)
    return x * keep / (1.0 - rate)


def gated_residual(base: torch.Tensor, difference: torch.Tensor, gate: nn.Module) -> torch.Tensor:
    """``base + difference * sigmoid(gate(difference))``: GLF-CR's gate G (eq. 8, 11, 12).

    The paper (sec. 5.1) builds G from a convolution and a Softmax; the official code, whose
    checkpoints load here, uses a sigmoid, and so do we.
    """
    return base + difference * torch.sigmoid(gate(difference))


def exchange(opt: torch.Tensor, sar: torch.Tensor, sar_source: torch.Tensor,
             to_opt: nn.Module, to_sar: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual gated propagation between streams (GLF-CR Sec. 4.3, eq. 11-12).

    ``sar_source`` is the SAR feature that feeds the optical one (dynamically filtered in GLF-CR);
    the SAR stream is then updated from the new optical feature.
    """
    new_opt = gated_residual(opt, sar_source - opt, to_opt)
    new_sar = gated_residual(sar, new_opt - sar_source, to_sar)
    return new_opt, new_sar


class ResBlock(nn.Module):
    """conv3x3, activation (default ReLU), conv3x3, times ``res_scale``, plus the input.

    ``name`` is the attribute holding the three layers, so that state-dict keys can follow a
    published checkpoint (the official GLF-CR release calls it ``stem``).
    """

    def __init__(self, channels: int, activation: nn.Module | None = None,
                 res_scale: float = 1.0, name: str = "body") -> None:
        super().__init__()
        self.res_scale, self.layers = res_scale, name
        self.add_module(name, nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True) if activation is None else activation,
            nn.Conv2d(channels, channels, 3, padding=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.get_submodule(self.layers)(x)
        return x + (residual if self.res_scale == 1 else self.res_scale * residual)


class Mlp(nn.Module):
    """Token-wise feed-forward network: Linear, GELU, Linear."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DualWindowAttention(nn.Module):
    """Window multi-head self-attention (W-MSA, Swin) within each stream, independently.

    M = QK^T / sqrt(d) + B per stream, softmax, value aggregation and output projection per
    stream; the relative position bias table B is shared by the two streams (as in GLF-CR).
    """

    def __init__(self, features: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.scale = (features // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(features, 3 * features)
        self.qkv_SAR = nn.Linear(features, 3 * features)
        self.proj = nn.Linear(features, features)
        self.proj_SAR = nn.Linear(features, features)

    def _scores(self, qkv: nn.Linear, x: torch.Tensor, bias: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention scores [B*nW, heads, N, N] and values [B*nW, heads, N, d] of one stream."""
        n, c = x.shape[1], x.shape[2]
        q, k, v = qkv(x).reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q * self.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:
            windows = mask.shape[0]
            scores = scores.reshape(-1, windows, self.heads, n, n) + mask[None, :, None]
            scores = scores.reshape(-1, self.heads, n, n)
        return scores, v

    def forward(self, x: torch.Tensor, s: torch.Tensor,
                mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows [B*nW, N, C] of both streams -> attended windows of both streams."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, self.heads).permute(2, 0, 1)
        scores, v = self._scores(self.qkv, x, bias, mask)
        scores_sar, v_sar = self._scores(self.qkv_SAR, s, bias, mask)
        scores = self.fuse_scores(scores, scores_sar)
        x = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        s = (scores_sar.softmax(-1) @ v_sar).transpose(1, 2).reshape(s.shape)
        return self.proj(x), self.proj_SAR(s)

    def fuse_scores(self, scores: torch.Tensor, scores_sar: torch.Tensor) -> torch.Tensor:
        """The optical attention scores used; here the stream's own (no cross-modal guidance)."""
        return scores


class GuidedWindowAttention(DualWindowAttention):
    """Window self-attention on both streams, the optical scores gated towards the SAR ones.

    GLF-CR Sec. 4.2, eq. 7-9: M = QK^T / sqrt(d) + B per stream (shared relative position bias B),
    M_opt <- M_opt + M_res * G(M_res) with M_res = M_sar - M_opt and G a 1x1 conv over heads
    followed by a sigmoid (the official code's; the paper says Softmax, see ``gated_residual``);
    softmax and value aggregation per stream.
    """

    def __init__(self, features: int, heads: int, window: int) -> None:
        super().__init__(features, heads, window)
        self.attn_fuse_1x1conv = nn.Conv2d(heads, heads, kernel_size=1)

    def fuse_scores(self, scores: torch.Tensor, scores_sar: torch.Tensor) -> torch.Tensor:
        return gated_residual(scores, scores_sar - scores, self.attn_fuse_1x1conv)


class DualConv(nn.Module):
    """One dense layer of a two-stream residual dense block: 3x3 conv + ReLU per stream.

    The new features are concatenated to the layer input (dense connection, Zhang et al. 2018).
    """

    def __init__(self, in_features: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_features, growth, 3, padding=1), nn.ReLU())
        self.conv_SAR = nn.Sequential(nn.Conv2d(in_features, growth, 3, padding=1), nn.ReLU())

    def new_features(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(x), self.conv_SAR(s)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new_x, new_s = self.new_features(x, s)
        return torch.cat([x, new_x], 1), torch.cat([s, new_s], 1)


class DualSwinConv(DualConv):
    """A dense layer whose conv output goes through a two-stream (shifted) window transformer.

    ``pre_norm`` adds the LayerNorm before attention of a standard Swin layer; GLF-CR has none
    (its layer is conv -> attention + shortcut -> LayerNorm -> MLP + shortcut). ``guided``
    selects GLF-CR's SAR-guided attention, else each stream attends within itself.
    """

    def __init__(self, in_features: int, growth: int, heads: int, window: int, shift: int,
                 mlp_ratio: float, pre_norm: bool = False, drop_path: float = 0.0,
                 guided: bool = True) -> None:
        super().__init__(in_features, growth)
        self.window = window
        self.shift = shift
        self.drop_path = drop_path
        self.pre_norm = pre_norm
        if pre_norm:
            self.norm1 = nn.LayerNorm(growth)
            self.norm1_SAR = nn.LayerNorm(growth)
        self.attn = (GuidedWindowAttention if guided else DualWindowAttention)(growth, heads,
                                                                               window)
        self.norm2 = nn.LayerNorm(growth)
        self.norm2_SAR = nn.LayerNorm(growth)
        self.mlp = Mlp(growth, int(growth * mlp_ratio))
        self.mlp_SAR = Mlp(growth, int(growth * mlp_ratio))

    def _attend(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channels-last maps [B, H, W, C] -> (shifted) window attention output, same layout."""
        _, h, w, _ = x.shape
        # Like the official GLF-CR code, no shift when one window covers the map's short side.
        shift = self.shift if min(h, w) > self.window else 0
        mask = None
        if shift:
            x, s = (torch.roll(t, (-shift, -shift), (1, 2)) for t in (x, s))
            mask = shifted_window_mask(h, w, self.window, shift, x.device).to(x.dtype)
        x, s = self.attn(window_partition(x, self.window), window_partition(s, self.window), mask)
        x, s = (window_merge(t, self.window, h, w) for t in (x, s))
        if shift:
            x, s = (torch.roll(t, (shift, shift), (1, 2)) for t in (x, s))
        return x, s

    def new_features(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s = (t.permute(0, 2, 3, 1) for t in super().new_features(x, s))
        ax, as_ = (self.norm1(x), self.norm1_SAR(s)) if self.pre_norm else (x, s)
        ax, as_ = self._attend(ax, as_)
        x = x + drop_path(ax, self.drop_path, self.training)
        s = s + drop_path(as_, self.drop_path, self.training)
        x = x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)
        s = s + drop_path(self.mlp_SAR(self.norm2_SAR(s)), self.drop_path, self.training)
        return x.permute(0, 3, 1, 2), s.permute(0, 3, 1, 2)


class DualRDB(nn.Module):
    """Two-stream residual dense block: dense layers, local feature fusion conv, local residual."""

    def __init__(self, layers: list[DualConv], features: int, fusion_kernel: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(layers)
        width = features + sum(layer.conv[0].out_channels for layer in layers)
        pad = fusion_kernel // 2
        self.LFF = nn.Conv2d(width, features, fusion_kernel, padding=pad)
        self.LFF_SAR = nn.Conv2d(width, features, fusion_kernel, padding=pad)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dense_x, dense_s = x, s
        for layer in self.convs:
            dense_x, dense_s = layer(dense_x, dense_s)
        return self.LFF(dense_x) + x, self.LFF_SAR(dense_s) + s


def pixel_shuffle_head(features: int, hidden: int, out_channels: int, scale: int) -> nn.Sequential:
    """3x3 conv to ``hidden * scale**2`` channels, pixel shuffle, 3x3 conv to the output bands."""
    return nn.Sequential(
        nn.Conv2d(features, hidden * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
        nn.Conv2d(hidden, out_channels, 3, padding=1),
    )


def global_fusion(blocks: int, features: int) -> nn.Sequential:
    """Global feature fusion: 1x1 conv over the concatenated block outputs, then a 3x3 conv."""
    return nn.Sequential(nn.Conv2d(blocks * features, features, 1),
                         nn.Conv2d(features, features, 3, padding=1))
