"""CARF backbone: structure, shapes, determinism, fusion, size independence."""

from __future__ import annotations

import io

import torch
from sar_optical_patch import assert_crop_matches_whole, sar_optical_patch

from cloudfree.inference.checkpoint import load_checkpoint, save_checkpoint
from cloudfree.networks import build, get_architecture
from cloudfree.networks.blocks import DualSwinConv, DualWindowAttention, GuidedWindowAttention
from cloudfree.networks.carf import CARF


def small(seed: int = 0, **overrides) -> CARF:
    torch.manual_seed(seed)
    return build("carf", "small", **overrides).eval()


def test_registered():
    cls = get_architecture("carf")
    assert cls is CARF
    assert cls.default_scaling == "glfcr"
    assert cls.size_multiple == 16 and not cls.fully_convolutional


def test_paper_stage_layout():
    """Eq. 6-8: J dense layers, J - 1 Swin blocks, 1x1 aggregation; eq. 9 over all stages."""
    model = build("carf", "paper")
    assert len(model.stages) == 6
    for stage in model.stages:
        swin = [isinstance(layer, DualSwinConv) for layer in stage.convs]
        assert swin == [True, True, True, True, False]
        assert [layer.shift for layer in stage.convs[:4]] == [0, 4, 0, 4]
        assert stage.LFF.kernel_size == (1, 1) and stage.LFF.in_channels == 96 + 5 * 48
    assert model.fusion[0].in_channels == 6 * 96
    assert model.receptive_field() == 2 * (2 + 6 * (4 * 8 + 1) + 2) + 2


def test_small_forward_shape_and_determinism():
    model = small()
    assert 10_000 < sum(p.numel() for p in model.parameters()) < 300_000
    s2, s1 = sar_optical_patch(128)
    with torch.no_grad():
        first = model(s2, s1)
        second, aux = model(s2, s1, return_aux=True)
    assert first.shape == (1, 13, 128, 128)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    assert aux == {}


def test_output_is_cloudy_input_plus_reconstruction():
    """Eq. 12: with the reconstruction network silenced the output is the cloudy input."""
    model = small()
    for parameter in model.reconstruction[-1].parameters():
        parameter.data.zero_()
    s2, s1 = sar_optical_patch(64)
    with torch.no_grad():
        assert torch.equal(model(s2, s1), s2)


def test_sar_reaches_the_optical_output():
    model = small()
    s2, s1 = sar_optical_patch(64)
    with torch.no_grad():
        changed = model(s2, s1.flip(-1)) - model(s2, s1)
    assert changed.abs().max() > 1e-4


def test_state_dict_round_trip():
    source, target = small(seed=1), small(seed=2)
    s2, s1 = sar_optical_patch(64)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(source(s2, s1), target(s2, s1))


def test_no_size_baked_in():
    assert_crop_matches_whole(small(stages=1))


def test_paper_preset_attends_within_each_modality():
    """Eq. 6: W-MSA within each modality in ``paper``; GLF-CR's guided attention in ``guided``."""
    for preset, guided in (("paper", False), ("small", False), ("guided", True)):
        model = build("carf", preset)
        attention = [layer.attn for stage in model.stages for layer in stage.convs
                     if isinstance(layer, DualSwinConv)]
        assert attention and all(type(a) is (GuidedWindowAttention if guided else
                                              DualWindowAttention) for a in attention)
        assert hasattr(model, "sar_to_opt") == guided and hasattr(model, "merge") != guided


def test_window_fusion_keeps_the_streams_apart_inside_a_stage():
    """The optical output of a stage does not depend on the SAR features in the paper's
    reading; with GLF-CR's guided attention it does."""
    s2, s1 = sar_optical_patch(64)
    for fusion, depends in (("window", False), ("guided", True)):
        model = small(fusion=fusion)
        with torch.no_grad():
            x = model.encoder_opt(torch.nn.functional.pixel_unshuffle(s2, 2))
            s = model.encoder_sar(torch.nn.functional.pixel_unshuffle(s1, 2))
            first, _ = model.stages[0](x, s)
            other, _ = model.stages[0](x, s.flip(-1))
        assert (not torch.allclose(first, other, atol=1e-6)) == depends


def test_streams_meet_by_a_conv_of_both_at_the_end_of_a_stage():
    model = small(fusion="window")
    s2, s1 = sar_optical_patch(64)
    x, s = s2[..., :32, :32].repeat(1, 2, 1, 1)[:, :16], s1[..., :32, :32].repeat(1, 8, 1, 1)
    with torch.no_grad():
        new_x, new_s = model.meet(0, x, s)
        conv = model.merge[0]
        expected = x + torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0],
                                    torch.cat([x, s], 1)) + conv.bias[None, :, None, None]
    assert torch.allclose(new_x, expected, atol=1e-5) and torch.equal(new_s, s)


def test_checkpoints_from_before_the_fusion_option_load_as_guided(tmp_path):
    """Configs saved without ``fusion`` rebuild the backbone they were trained with."""
    model = small(fusion="guided")
    path = save_checkpoint(tmp_path / "old.pt", model)
    data = torch.load(path, weights_only=True)
    del data["config"]["fusion"]
    torch.save(data, path)
    loaded = load_checkpoint(path).network
    s2, s1 = sar_optical_patch(64)
    with torch.no_grad():
        assert torch.equal(loaded(s2, s1), model(s2, s1))
