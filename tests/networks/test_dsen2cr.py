"""DSen2-CR: structure, exact receptive field, long skip, optical-only variant, CLI listing."""

from __future__ import annotations

import numpy as np
import torch
from sar_optical_patch import real_batch

from cloudfree.inference import bundled
from cloudfree.inference.bundled import DEFAULT_MODEL
from cloudfree.inference.checkpoint import save_checkpoint
from cloudfree.inference.engines import open_engine
from cloudfree.inference.scaling import SCALINGS
from cloudfree.networks import build


def conv_params(cin: int, cout: int) -> int:
    return cin * cout * 9 + cout


def test_paper_preset_is_16_blocks_of_256_features():
    net = build("dsen2cr", "paper")
    expected = conv_params(15, 256) + 32 * conv_params(256, 256) + conv_params(256, 13)
    assert sum(p.numel() for p in net.parameters()) == expected == 18_947_341
    assert all(block.res_scale == 0.1 for block in net.body) and len(net.body) == 16
    nosar = build("dsen2cr", "paper_nosar")
    assert nosar.head[0].in_channels == 13


def test_receptive_field_is_exact():
    torch.manual_seed(0)
    net = build("dsen2cr", "small").eval()
    s2, s1 = torch.rand(1, 13, 41, 41), torch.rand(1, 2, 41, 41)
    bumped = s1.clone()
    bumped[0, :, 20, 20] += 1.0
    with torch.no_grad():
        changed = (net(s2, bumped) - net(s2, s1)).abs().amax(dim=(0, 1)) > 0
    rows, cols = np.nonzero(changed.numpy())
    radius = net.receptive_field()
    assert radius == 10  # head + 2 x 4 blocks + tail
    assert rows.min() == cols.min() == 20 - radius and rows.max() == cols.max() == 20 + radius


def test_long_skip_returns_cloudy_input_when_the_body_is_silent():
    net = build("dsen2cr", "small").eval()
    torch.nn.init.zeros_(net.tail.weight)
    torch.nn.init.zeros_(net.tail.bias)
    s2, s1 = map(torch.from_numpy, real_batch(SCALINGS["dsen2cr"], 64))
    with torch.no_grad():
        assert torch.equal(net(s2, s1), s2)


def test_optical_only_variant_ignores_sar():
    net = build("dsen2cr", "small", use_sar=False).eval()
    s2, s1 = map(torch.from_numpy, real_batch(SCALINGS["dsen2cr"], 64))
    with torch.no_grad():
        out, aux = net(s2, s1, return_aux=True)
        assert torch.equal(out, net(s2, torch.zeros_like(s1)))
    assert out.shape == (2, 13, 64, 64) and aux == {}


def test_cli_models_lists_dsen2cr_with_parameter_counts(cli):
    result = cli("models")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("  dsen2cr")
    assert lines[start + 1].split()[:3] == ["paper", "18.95", "M"]
    assert lines[start + 3].split()[:3] == ["small", "82.1", "k"]
    assert "Bundled models" in result.output


def test_bundled_model_is_found_listed_and_opened(tmp_path, monkeypatch, cli):
    monkeypatch.setattr(bundled, "MODELS_DIR", tmp_path)
    save_checkpoint(tmp_path / f"{DEFAULT_MODEL}.pt", build("dsen2cr", "small"))
    (tmp_path / f"{DEFAULT_MODEL}.md").write_text("# DSen2-CR small, trained on SEN12MS-CR\n")
    result = cli("models")
    assert f"  {DEFAULT_MODEL} (default): DSen2-CR small, trained on SEN12MS-CR" in result.output
    engine = open_engine(model=DEFAULT_MODEL, device="cpu")
    assert engine.arch == "dsen2cr" and engine.scaling == SCALINGS["dsen2cr"]
