"""SG-BAFM network (seed 003) on real SEN12MS-CR patches: shapes, tokens, determinism, sizes."""

from __future__ import annotations

import pytest
import torch
from grad_support import support_radius
from sar_optical_patch import sar_optical_patch

from cloudfree.networks import build
from cloudfree.networks.sgbafm import (
    DFIN,
    SGBAFM,
    ChannelAttention,
    FeedForward,
    PatchAttention,
    SGBAFMBlock,
)

SIZE = 64


@pytest.fixture(scope="module")
def patch() -> tuple[torch.Tensor, torch.Tensor]:
    return sar_optical_patch(SIZE, row=96, col=96)


@pytest.fixture()
def model() -> SGBAFM:
    torch.manual_seed(0)
    return build("sgbafm", "small").eval()


def test_presets_sizes() -> None:
    small = sum(p.numel() for p in build("sgbafm", "small").parameters())
    paper = sum(p.numel() for p in build("sgbafm", "paper").parameters())
    assert 10_000 < small < 400_000
    assert 1_000_000 < paper < 10_000_000


def test_output_shape_and_determinism(model: SGBAFM, patch) -> None:
    s2, s1 = patch
    with torch.no_grad():
        out, aux = model(s2, s1, return_aux=True)
        assert out.shape == s2.shape and torch.isfinite(out).all()
        assert aux == {}
        assert torch.equal(model(s2, s1), out)
        batch = model(torch.cat([s2, s2.flip(-1)]), torch.cat([s1, s1.flip(-1)]))
    assert torch.allclose(batch[:1], out, atol=1e-5)


def test_state_dict_round_trip(model: SGBAFM, patch) -> None:
    torch.manual_seed(1)
    other = build("sgbafm", "small").eval()
    with torch.no_grad():
        expected = model(*patch)
        assert not torch.allclose(other(*patch), expected)
        other.load_state_dict(model.state_dict())
        assert torch.equal(other(*patch), expected)


def test_uniform_sar_attends_all_patches_equally(patch) -> None:
    """Identical SAR tokens give uniform weights: each pixel averages the optical values found
    at the same offset in every 16-px patch, which checks how tokens are cut and folded back."""
    s2, _ = patch
    torch.manual_seed(0)
    attention = PatchAttention(features=13, embed=16, heads=1, patch=16).eval()
    with torch.no_grad():
        out = attention(torch.zeros_like(s2), s2)
        values = attention.value(s2).reshape(1, 13, 4, 16, 4, 16).mean((2, 4))
        expected = attention.proj(values.repeat(1, 1, 4, 4))
    assert torch.allclose(out, expected, atol=1e-5)
    assert out.std() > 0


def test_sar_similarity_steers_attention(patch) -> None:
    """A patch attends most to the patches whose SAR features resemble its own."""
    s2, s1 = patch
    torch.manual_seed(0)
    attention = PatchAttention(features=2, embed=8, heads=1, patch=16).eval()
    with torch.no_grad():
        tokens = attention.norm(attention.embed(s1).flatten(2).transpose(1, 2))
        q, k = attention.query(tokens), attention.key(tokens)
        scores = q @ k.transpose(-2, -1)
        # changing the optical value of the best-matched patch changes the output the most
        best = int(scores[0, 0].argmax())
        worst = int(scores[0, 0].argmin())
        base = attention(s1, s1)[..., :16, :16]
        shifted = []
        for index in (best, worst):
            row, col = divmod(index, 4)
            value = s1.clone()
            value[..., row * 16:(row + 1) * 16, col * 16:(col + 1) * 16] += 1.0
            shifted.append((attention(s1, value)[..., :16, :16] - base).abs().mean())
    assert best != worst and shifted[0] > shifted[1]


def test_conv_path_stays_within_receptive_field(model: SGBAFM, patch) -> None:
    for module in model.modules():
        if isinstance(module, ChannelAttention):
            module.forward = lambda x: x
        if isinstance(module, PatchAttention):
            module.forward = lambda sar, optical: torch.zeros_like(optical)
    measured = [support_radius(model, *patch, SIZE // 2 + d, SIZE // 2 + d) for d in (0, 1)]
    assert max(measured) <= model.receptive_field() <= max(measured) + 1


def test_patch_attention_sees_the_whole_tile(model: SGBAFM, patch) -> None:
    assert not SGBAFM.fully_convolutional
    assert support_radius(model, *patch, 0, 0) == SIZE - 1


def test_dfin_concatenates_convolves_then_takes_the_max(patch) -> None:
    """Sec. II-C: Max(Conv(F_hat_b (+) F_hat_f)), the 1x1 conv computed here by hand."""
    s2, _ = patch
    torch.manual_seed(0)
    dfin = DFIN(13, expansion=2).eval()
    base_hat, fused_hat = s2, s2.flip(-1)
    with torch.no_grad():
        stacked = torch.cat([base_hat, fused_hat], dim=1)
        w, b = dfin.merge.weight[:, :, 0, 0], dfin.merge.bias
        conv = torch.einsum("oc,bchw->bohw", w, stacked) + b[None, :, None, None]
        expected = torch.maximum(conv[:, :13], conv[:, 13:])
        assert torch.allclose(dfin.select(base_hat, fused_hat), expected, atol=1e-5)
        # the convolution mixes both streams: not the element-wise max of the inputs alone
        assert not torch.allclose(expected, torch.maximum(base_hat, fused_hat), atol=1e-2)


def test_transformer_block_ends_with_a_feed_forward_block(patch) -> None:
    """The SG-BAFM transformer is attention then a per-pixel LayerNorm-MLP with a residual."""
    s2, s1 = patch
    torch.manual_seed(0)
    block = SGBAFMBlock(features=2, embed=8, heads=1, patch=16).eval()
    assert isinstance(block.feed_forward, FeedForward)
    x = s2[:, :2]
    with torch.no_grad():
        ffn = block.feed_forward
        pixels = x.permute(0, 2, 3, 1)
        normed = (pixels - pixels.mean(-1, keepdim=True)) / torch.sqrt(
            pixels.var(-1, unbiased=False, keepdim=True) + ffn.norm.eps)
        normed = normed * ffn.norm.weight + ffn.norm.bias
        expected = x + ffn.mlp(normed).permute(0, 3, 1, 2)
        assert torch.allclose(ffn(x), expected, atol=1e-5)
        attended = x + block.attention(s1 * block.attention_map(
            torch.cat([block.opt_in(x), block.sar_in(s1)], dim=1)), x)
        assert torch.allclose(block(x, s1), ffn(attended), atol=1e-5)
        assert not torch.allclose(ffn(attended), attended, atol=1e-3)
