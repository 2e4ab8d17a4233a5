"""GLF-CR: shapes, determinism, official checkpoint compatibility, size independence."""

from __future__ import annotations

import io

import pytest
import torch
from sar_optical_patch import assert_crop_matches_whole, sar_optical_patch

from cloudfree.core.errors import CloudfreeError
from cloudfree.networks import build, get_architecture
from cloudfree.networks.blocks import shifted_window_mask, window_partition
from cloudfree.networks.glfcr import GLFCR, dynamic_filter

#: Counted by hand from the official RDN_residual_CR definition: shallow convs 310,272;
#: 6 RDBs x 1,608,720; 6 filter generators x 730,944; 12 gate convs x 9,312; GFF 138,432;
#: UPNet 228,941. The paper reports no parameter count; this is the official definition's.
PAPER_PARAMETERS = 14_827_373


@pytest.fixture(scope="module")
def paper() -> GLFCR:
    torch.manual_seed(0)
    return build("glfcr", "paper").eval()


def small(seed: int = 0, **overrides) -> GLFCR:
    torch.manual_seed(seed)
    return build("glfcr", "small", **overrides).eval()


def official_checkpoint(model: GLFCR, crop: int = 128) -> dict:
    """What the official code would save for ``model`` trained on ``crop`` px patches.

    Its shifted layers (odd dense layers) hold an ``attn_mask`` buffer [nW, 64, 64] baked for
    the crop size; the unshifted ones register None, which is not saved.
    """
    state = dict(model.state_dict())
    windows = (crop // 16) ** 2
    for i, rdb in enumerate(model.RDBs):
        for c in range(1, len(rdb.convs), 2):
            state[f"RDBs.{i}.convs.{c}.attn_mask"] = torch.zeros(windows, 64, 64)
    return {"network": state}


def test_registered_with_glfcr_scaling():
    cls = get_architecture("glfcr")
    assert cls is GLFCR
    assert cls.default_scaling == "glfcr"
    assert cls.size_multiple == 16 and not cls.fully_convolutional


def test_paper_preset_parameter_count(paper):
    assert sum(p.numel() for p in paper.parameters()) == PAPER_PARAMETERS
    assert not [k for k in paper.state_dict() if k.endswith("attn_mask")]


def test_paper_preset_tiny_forward(paper):
    s2, s1 = sar_optical_patch(32)
    with torch.no_grad():
        out = paper(s2, s1)
    assert out.shape == (1, 13, 32, 32)
    assert torch.isfinite(out).all()


def test_small_forward_shape_and_determinism():
    model = small()
    assert 10_000 < sum(p.numel() for p in model.parameters()) < 300_000
    s2, s1 = sar_optical_patch(128)
    with torch.no_grad():
        first = model(s2, s1)
        second, aux = model(s2, s1, return_aux=True)
    assert first.shape == (1, 13, 128, 128)
    assert torch.equal(first, second)
    assert aux == {}
    assert not torch.equal(first, s2)  # the network adds something to the cloudy input


def test_state_dict_round_trip():
    source, target = small(seed=1), small(seed=2)
    s2, s1 = sar_optical_patch(64)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    with torch.no_grad():
        before = target(s2, s1)
        target.load_state_dict(torch.load(buffer, weights_only=True))
        assert not torch.equal(before, target(s2, s1))
        assert torch.equal(source(s2, s1), target(s2, s1))


def test_official_checkpoint_loads_without_its_masks(paper, tmp_path):
    path = tmp_path / "glfcr_official.pth"
    torch.save(official_checkpoint(paper), path)
    loaded = GLFCR.from_official(torch.load(path, weights_only=True))
    loaded_state = loaded.state_dict()
    for name, value in paper.state_dict().items():
        assert torch.equal(loaded_state[name], value), name
    s2, s1 = sar_optical_patch(32)
    with torch.no_grad():
        assert torch.equal(loaded(s2, s1), paper(s2, s1))


def test_official_checkpoint_accepts_bare_and_data_parallel_dicts(paper):
    state = official_checkpoint(paper)["network"]
    prefixed = {f"module.{k}": v for k, v in state.items()}
    for variant in (state, {"network": prefixed}):
        loaded = GLFCR.from_official(variant)
        assert torch.equal(loaded.SFENet1.weight, paper.SFENet1.weight)


def test_mismatched_checkpoint_names_what_is_wrong(paper):
    state = official_checkpoint(paper)["network"]
    del state["DF.3.fac_warp.1.stem.0.weight"]
    state["RDBs.0.convs.0.attn.qkv_sar.weight"] = state.pop("RDBs.0.convs.0.attn.qkv_SAR.weight")
    state["GFF.0.weight"] = torch.zeros(96, 480, 1, 1)  # as if trained with 5 blocks
    with pytest.raises(CloudfreeError) as info:
        GLFCR.from_official({"network": state})
    message = str(info.value)
    assert "\n" not in message
    assert "missing" in message and "DF.3.fac_warp.1.stem.0.weight" in message
    assert "RDBs.0.convs.0.attn.qkv_SAR.weight" in message
    assert "unexpected" in message and "RDBs.0.convs.0.attn.qkv_sar.weight" in message
    assert "mis-shaped 1 (GFF.0.weight (96, 480, 1, 1) vs (96, 576, 1, 1))" in message


@pytest.mark.parametrize("state", [[1, 2], {"network": {"SFENet1.weight": "weights"}}])
def test_non_checkpoint_objects_are_refused(state):
    with pytest.raises(CloudfreeError, match="not an official GLF-CR checkpoint"):
        GLFCR.from_official(state)


def test_small_checkpoint_is_not_official():
    with pytest.raises(CloudfreeError, match=r"mis-shaped \d+ \(SFENet1.weight"):
        GLFCR.from_official({"network": small().state_dict()})


def test_no_size_baked_in():
    assert_crop_matches_whole(small(blocks=1))


def test_shift_mask_matches_official_region_layout():
    """Regions of a map rolled by -shift: [0, -window), [-window, -shift), [-shift, end)."""
    height, width, window, shift = 24, 16, 8, 4
    labels = torch.zeros(1, height, width, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for n, (rows, cols) in enumerate((r, c) for r in cuts for c in cuts):
        labels[:, rows, cols] = n
    tokens = window_partition(labels, window).squeeze(-1)
    expected = (tokens[:, None] != tokens[:, :, None]).float() * -100.0
    assert torch.equal(shifted_window_mask(height, width, window, shift, torch.device("cpu")),
                       expected)


def test_dynamic_filter_is_per_pixel_convolution():
    torch.manual_seed(0)
    x, filters = torch.randn(1, 2, 6, 7), torch.randn(1, 2 * 9, 6, 7)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    c, r, q = 1, 3, 4  # channel, row, column
    patch = padded[0, c, r:r + 3, q:q + 3].flatten()
    expected = (patch * filters[0, c * 9:(c + 1) * 9, r, q]).sum()
    assert torch.allclose(dynamic_filter(x, filters, 3)[0, c, r, q], expected, atol=1e-6)


def test_receptive_field_of_paper_preset(paper):
    # half-resolution radius 3 + 6 * (5 * 8 + 1 + 5 + 2) + 2 = 293 -> 2 * 293 + 2
    assert paper.receptive_field() == 588
