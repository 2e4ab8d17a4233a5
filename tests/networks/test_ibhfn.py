"""IB-HFN on real SEN12MS-CR patches: shapes, aux outputs, determinism, Dirac skip, sizes."""

from __future__ import annotations

import pytest
import torch
from grad_support import support_radius
from sar_optical_patch import sar_optical_patch
from torch import nn

from cloudfree.networks import build
from cloudfree.networks.ibhfn import IBHFN

SIZE = 64


@pytest.fixture(scope="module")
def patch() -> tuple[torch.Tensor, torch.Tensor]:
    return sar_optical_patch(SIZE, row=96, col=96)


@pytest.fixture()
def model() -> IBHFN:
    torch.manual_seed(0)
    return build("ibhfn", "small").eval()


def test_presets_sizes() -> None:
    small = sum(p.numel() for p in build("ibhfn", "small").parameters())
    paper = sum(p.numel() for p in build("ibhfn", "paper").parameters())
    assert 10_000 < small < 400_000
    assert 1_000_000 < paper < 10_000_000


def test_output_and_aux(model: IBHFN, patch) -> None:
    s2, s1 = patch
    with torch.no_grad():
        out, aux = model(s2, s1, return_aux=True)
    assert out.shape == s2.shape and torch.isfinite(out).all()
    gate = aux["gate"]
    assert gate.shape == (1, 1, SIZE, SIZE)
    assert gate.min() >= 0.0 and gate.max() <= 1.0
    assert gate.std() > 0  # a per-pixel map, not a constant
    kl = aux["kl"]
    assert kl.ndim == 0 and torch.isfinite(kl) and kl > 0
    assert torch.equal(model(s2, s1), out)  # return_aux=False gives the same output alone


def test_kl_trains_the_sar_stream(model: IBHFN, patch) -> None:
    _, aux = model(*patch, return_aux=True)
    aux["kl"].backward()
    assert model.sar.coarse[0].weight.grad.abs().sum() > 0
    assert model.bottleneck.logvar.bias.grad.abs().sum() > 0


def test_eval_is_deterministic_train_is_stochastic(model: IBHFN, patch) -> None:
    s2, s1 = patch
    with torch.no_grad():
        first, second = model(s2, s1), model(s2, s1)
        assert torch.equal(first, second)
        model.train()
        noisy_a, noisy_b = model(s2, s1), model(s2, s1)
    assert not torch.equal(noisy_a, noisy_b)
    assert not torch.equal(noisy_a, first)


def test_state_dict_round_trip(model: IBHFN, patch) -> None:
    torch.manual_seed(1)
    other = build("ibhfn", "small").eval()
    with torch.no_grad():
        expected = model(*patch)
        assert not torch.allclose(other(*patch), expected)
        other.load_state_dict(model.state_dict())
        assert torch.equal(other(*patch), expected)


def test_dirac_skip_is_identity_at_init(model: IBHFN, patch) -> None:
    with torch.no_grad():
        features, _ = model.optical(patch[0])
        assert torch.allclose(model.skip(features), features, atol=1e-6)
        assert features.abs().max() > 0


def test_conv_path_stays_within_receptive_field(model: IBHFN, patch) -> None:
    class NoGlobal(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.new_zeros(1)

    model.gate.global_branch = NoGlobal()
    radius = model.receptive_field()
    measured = [support_radius(model, *patch, SIZE // 2 + d, SIZE // 2 + d) for d in (0, 1)]
    assert max(measured) == radius


def test_global_gate_sees_the_whole_tile(model: IBHFN, patch) -> None:
    s2, s1 = patch
    assert not IBHFN.fully_convolutional
    assert support_radius(model, s2, s1, 0, 0) == SIZE - 1
