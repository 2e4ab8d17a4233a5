"""The IB-HFN joint objective, term by term, against closed forms on real reflectance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import WINTER_CLEAR, WINTER_S2

from cloudfree.core.errors import UsageError
from cloudfree.networks.ibhfn import VariationalBottleneck
from cloudfree.training.datasets import read_reflectance
from cloudfree.training.losses import (
    balanced_bce,
    contrastive_sharpness,
    ibhfn,
    ibhfn_terms,
    ibhfn_weights,
)
from cloudfree.training.metrics import SSIM_K1

SIZE = 48


def _patch(path) -> torch.Tensor:
    reflectance, _ = read_reflectance(path)
    return torch.from_numpy(np.clip(reflectance[:, 64:64 + SIZE, 64:64 + SIZE], 0, 1))[None]


@pytest.fixture(scope="module")
def clear() -> torch.Tensor:
    return _patch(WINTER_CLEAR).double()


@pytest.fixture(scope="module")
def hazy() -> torch.Tensor:
    """The winter cloudy image: haze that the cloud mask does not flag."""
    return _patch(WINTER_S2).double()


def ones(x: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(x[:, :1])


def ramp(x: torch.Tensor, slope: float) -> torch.Tensor:
    """slope * column index, the same in every band and row."""
    return slope * torch.arange(x.shape[-1], dtype=x.dtype).expand_as(x)


def batch_of(target, cloudy, cloud, valid=None) -> dict:
    return {"target": target, "s2": cloudy, "cloud": cloud,
            "valid": ones(target) if valid is None else valid}


def test_contrast_of_ramps_is_its_closed_form(clear):
    """pred and cloudy are the clear image plus ramps of slopes g and h: the gradient distances
    are g (to the clear image) and |g - h| (to the cloudy one), in x only."""
    g, h = 0.004, 0.001
    pred, cloudy = clear + ramp(clear, g), clear + ramp(clear, h)
    value = contrastive_sharpness(pred, clear, cloudy, ones(clear), ones(clear))
    assert value.item() == pytest.approx(g / (g + abs(g - h) + 1e-6), rel=1e-9)


def test_contrast_is_bounded_and_zero_for_the_right_answer(clear, hazy):
    cloud = ones(clear)
    at_target = contrastive_sharpness(clear, clear, hazy, cloud, cloud)
    at_input = contrastive_sharpness(hazy, clear, hazy, cloud, cloud)
    assert at_target.item() == 0.0
    assert at_input.item() == pytest.approx(1.0, abs=1e-3)  # copying the cloud: d / (d + 1e-6)
    noise = torch.randn(clear.shape, generator=torch.Generator().manual_seed(0), dtype=clear.dtype)
    assert 0.0 < contrastive_sharpness(clear + noise, clear, hazy, cloud, cloud).item() < 1.0


def test_contrast_reads_cloud_pixels_only(clear, hazy):
    """A clear patch (nothing flagged) costs nothing; the unbounded old ratio cost the correct
    answer, the input itself, |grad(input - target)| / 1e-3, over 100 times its L1."""
    nothing = torch.zeros_like(ones(clear))
    assert contrastive_sharpness(hazy, clear, hazy, nothing, ones(clear)).item() == 0.0
    # a cloud square: pairs outside it do not count, however different they are
    cloud = nothing.clone()
    cloud[..., 8:24, 8:24] = 1
    elsewhere = hazy.clone()
    elsewhere[..., 30:, 30:] += ramp(elsewhere, 0.05)[..., 30:, 30:]
    assert contrastive_sharpness(elsewhere, clear, hazy, cloud, ones(clear)).item() == \
        pytest.approx(contrastive_sharpness(hazy, clear, hazy, cloud, ones(clear)).item())


def test_invalid_pixels_do_not_count(clear, hazy):
    cloud, valid = ones(clear), ones(clear)
    valid[..., :, :10] = 0
    spoiled = hazy.clone()
    spoiled[..., :, :10] = 50.0  # nodata-like values where invalid
    pred = clear + ramp(clear, 0.002)
    assert contrastive_sharpness(pred, clear, spoiled, cloud, valid).item() == pytest.approx(
        contrastive_sharpness(pred, clear, hazy, cloud, valid).item())


def test_balanced_bce_closed_forms(clear):
    clear_sky = ones(clear)
    clear_sky[..., :12, :] = 0  # a quarter of the pixels is cloud
    valid = ones(clear)
    expected = 0.5 * -math.log(0.8) + 0.5 * -math.log(0.2)  # each class weighs one half
    assert balanced_bce(torch.full_like(clear_sky, 0.8), clear_sky, valid).item() == \
        pytest.approx(expected)
    assert balanced_bce(torch.full_like(clear_sky, 0.5), clear_sky, valid).item() == \
        pytest.approx(math.log(2))
    assert balanced_bce(clear_sky.clone(), clear_sky, valid).item() == pytest.approx(0, abs=1e-5)
    # all clear: only the clear class counts
    assert balanced_bce(torch.full_like(clear_sky, 0.8), valid, valid).item() == \
        pytest.approx(-math.log(0.8))


def test_rec_struct_spectral_of_constant_images(clear):
    """Per-band constants a (the clear patch's band means) against a + c: L1 = c, 1 - SSIM from
    the luminance term only, 1 - cos(a, a + c) for the spectra."""
    a = clear.mean((2, 3), keepdim=True).expand_as(clear).contiguous()
    c = 0.05
    terms = ibhfn_terms(a + c, batch_of(a, a, torch.zeros_like(ones(a))),
                        {"gate": torch.full_like(ones(a), 0.5), "kl": torch.tensor(0.25)})
    bands = a[0, :, 0, 0]
    luminance = (2 * bands * (bands + c) + SSIM_K1**2) / (bands**2 + (bands + c) ** 2 + SSIM_K1**2)
    cos = (bands * (bands + c)).sum() / (bands.norm() * (bands + c).norm())
    assert terms["rec"].item() == pytest.approx(c)
    assert terms["struct"].item() == pytest.approx(1 - luminance.mean().item())
    assert terms["spectral"].item() == pytest.approx(1 - cos.item(), rel=1e-6)
    assert terms["contrast"].item() == 0.0
    assert terms["gate"].item() == pytest.approx(math.log(2))
    assert terms["kl"].item() == 0.25


def test_total_is_the_scheduled_sum(clear, hazy):
    cloud = ones(clear)
    aux = {"gate": torch.full_like(cloud, 0.3), "kl": torch.tensor(2.0, dtype=clear.dtype)}
    batch = batch_of(clear, hazy, cloud)
    for progress in (0.0, 0.2, 0.45, 1.0):
        total, parts = ibhfn(hazy, batch, aux, progress)
        weights = ibhfn_weights(progress)
        assert set(parts) == set(weights)
        assert total.item() == pytest.approx(sum(weights[k] * parts[k] for k in parts))
    assert ibhfn_weights(0.0)["kl"] == 0.0 and ibhfn_weights(0.0)["contrast"] == 0.0
    assert ibhfn_weights(1.0) == {"rec": 1.0, "struct": 0.5, "spectral": 0.1,
                                  "contrast": 0.05, "gate": 0.1, "kl": 1e-3}
    assert ibhfn_weights(0.45)["contrast"] == pytest.approx(0.025)


def test_the_correct_answer_costs_nothing_in_a_clear_patch(hazy):
    """Nothing flagged and the target equal to the input: only the gate and KL terms remain."""
    nothing = torch.zeros_like(ones(hazy))
    aux = {"gate": torch.full_like(nothing, 0.9), "kl": torch.tensor(0.0, dtype=hazy.dtype)}
    total, parts = ibhfn(hazy, batch_of(hazy, hazy, nothing), aux, 1.0)
    assert parts["rec"] == 0.0 and parts["contrast"] == 0.0
    assert parts["struct"] == pytest.approx(0.0, abs=1e-12)
    assert total.item() == pytest.approx(0.1 * -math.log(0.9), rel=1e-6)


def test_loss_refuses_a_network_without_gate_and_kl(clear):
    with pytest.raises(UsageError, match="gate and a KL"):
        ibhfn(clear, batch_of(clear, clear, ones(clear)), {}, 0.5)


def test_kl_against_a_hand_computation():
    """KL(N(mu, e^lv) || N(0, 1)) = (mu^2 + e^lv - 1 - lv) / 2 per element, averaged."""
    bottleneck = VariationalBottleneck(2)
    with torch.no_grad():
        for conv in (bottleneck.mu, bottleneck.logvar):
            conv.weight.zero_()
        bottleneck.mu.bias.copy_(torch.tensor([1.0, 0.0]))
        bottleneck.logvar.bias.copy_(torch.tensor([0.0, math.log(2.0)]))
    _, kl = bottleneck.eval()(torch.zeros(1, 2, 4, 4))
    by_hand = ((1 + 1 - 1 - 0) / 2 + (0 + 2 - 1 - math.log(2)) / 2) / 2  # two channels, equal size
    assert kl.item() == pytest.approx(by_hand)  # 0.25 + 0.1534 = 0.4034
    z, _ = bottleneck(torch.zeros(1, 2, 4, 4))
    assert torch.equal(z[0, :, 0, 0], torch.tensor([1.0, 0.0]))  # eval: the mean
