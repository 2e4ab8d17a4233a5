"""Checkpoints for every architecture: round trip, safety, clear errors; the torch engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sar_optical_patch import real_batch

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.inference.bundled import bundled_model
from cloudfree.inference.checkpoint import (
    LoadedModel,
    default_scaling,
    load_checkpoint,
    save_checkpoint,
)
from cloudfree.inference.engines import TorchEngine, bound_correction, open_engine
from cloudfree.inference.scaling import SCALINGS
from cloudfree.io.sentinel2 import BANDS
from cloudfree.networks import ARCHITECTURES, build

ARCHS = sorted(ARCHITECTURES)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """arch -> (path of a saved small-preset checkpoint, the network saved)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for arch in ARCHS:
        torch.manual_seed(1)
        network = build(arch, "small").eval()
        path = save_checkpoint(folder / f"{arch}.pt", network, tile=128,
                               metadata={"epochs": 3, "metrics": {"psnr": 27.5}})
        out[arch] = (path, network)
    return out


@pytest.fixture
def dsen2cr_payload(saved) -> dict:
    return torch.load(saved["dsen2cr"][0], weights_only=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_round_trip_gives_identical_deterministic_outputs(saved, arch):
    path, network = saved[arch]
    loaded = load_checkpoint(path)
    assert (loaded.arch, loaded.config, loaded.bands, loaded.tile) == (
        arch, network.config, BANDS, 128)
    assert loaded.scaling == default_scaling(arch)
    assert loaded.metadata == {"epochs": 3, "metrics": {"psnr": 27.5}}
    assert not loaded.network.training
    engine = TorchEngine(loaded, device="cpu")
    assert engine.tile is None and engine.device == "cpu"
    assert engine.receptive_field == network.receptive_field() and engine.size_multiple >= 1
    s2, s1 = (a[:1] for a in real_batch(engine.scaling, 64))
    first, second = engine.predict(s2, s1), engine.predict(s2, s1)
    assert first.shape == (1, 13, 64, 64) and first.dtype == "float32"
    assert (first == second).all()
    with torch.no_grad():
        original = network(torch.from_numpy(s2), torch.from_numpy(s1)).numpy()
    assert (first == original).all()


def test_default_scaling_per_architecture():
    for arch in ARCHS:
        assert default_scaling(arch) == SCALINGS["dsen2cr" if arch == "dsen2cr" else "glfcr"]


def test_checkpoint_is_plain_data(dsen2cr_payload):
    assert dsen2cr_payload["format"] == "cloudfree" and dsen2cr_payload["format_version"] == 1
    assert dsen2cr_payload["bands"] == list(BANDS)
    assert dsen2cr_payload["scaling"] == SCALINGS["dsen2cr"].to_dict()
    assert all(isinstance(v, torch.Tensor) for v in dsen2cr_payload["state_dict"].values())


def error_for(tmp_path, payload) -> str:
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CloudfreeError) as info:
        load_checkpoint(path)
    return str(info.value)


def test_truncated_checkpoint(saved, tmp_path):
    data = saved["dsen2cr"][0].read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CloudfreeError, match="cut.pt is truncated or corrupt"):
        load_checkpoint(path)


def test_an_unknown_device_is_no_corrupt_checkpoint(saved):
    path = saved["dsen2cr"][0]
    with pytest.raises(UsageError, match=r"^map_location='tpu' is not a device: use cpu, cuda "
                                         r"or cuda:N$"):
        load_checkpoint(path, map_location="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CloudfreeError, match=r"^map_location='cuda': no CUDA GPU is usable "
                                                 r"here \(torch .*\); use cpu$"):
            load_checkpoint(path, map_location="cuda")
    with pytest.raises(UsageError, match=r"^path=None must be a path"):
        load_checkpoint(None)
    assert load_checkpoint(path, map_location=torch.device("cpu")).arch == "dsen2cr"


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all", "is not a PyTorch checkpoint"),
    (None, "does not exist"),
])
def test_not_a_checkpoint(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CloudfreeError, match=message):
        load_checkpoint(path)


def test_pickled_objects_are_refused(tmp_path):
    message = error_for(tmp_path, {"format": "cloudfree", "metadata": LoadedModel})
    assert "pickled Python objects" in message


def test_unknown_architecture(tmp_path, dsen2cr_payload):
    message = error_for(tmp_path, {**dsen2cr_payload, "arch": "resnet"})
    assert "unknown architecture 'resnet'" in message and "dsen2cr" in message


def test_config_that_does_not_fit_the_architecture(tmp_path, dsen2cr_payload):
    config = {**dsen2cr_payload["config"], "window": 8}
    message = error_for(tmp_path, {**dsen2cr_payload, "config": config})
    assert "config does not fit dsen2cr" in message and "window" in message


def test_state_dict_mismatch_names_keys(tmp_path, dsen2cr_payload):
    state = dict(dsen2cr_payload["state_dict"])
    del state["tail.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["head.0.weight"] = torch.zeros(32, 13, 3, 3)
    message = error_for(tmp_path, {**dsen2cr_payload, "state_dict": state})
    assert "state dict does not match dsen2cr" in message
    assert "missing 1 (tail.bias)" in message and "unexpected 1 (extra.weight)" in message
    assert "head.0.weight (32, 13, 3, 3) vs (32, 15, 3, 3)" in message


def test_wrong_architecture_weights(tmp_path, dsen2cr_payload):
    wider = build("dsen2cr", "small", features=16).state_dict()
    message = error_for(tmp_path, {**dsen2cr_payload, "state_dict": wider})
    assert "mis-shaped" in message and "+" in message  # names a few, counts the rest


def test_twelve_band_checkpoint(tmp_path, dsen2cr_payload):
    message = error_for(tmp_path, {**dsen2cr_payload, "bands": list(BANDS[:10] + BANDS[11:])})
    assert "trained on 12 band(s)" in message and "13 L1C bands" in message


def test_neither_format(tmp_path):
    assert "neither a cloudfree nor an official GLF-CR" in error_for(tmp_path, {"model": 1})


@pytest.mark.skipif("glfcr" not in ARCHITECTURES, reason="GLF-CR not registered")
def test_official_glfcr_format_loads_with_glfcr_scaling(tmp_path):
    torch.manual_seed(2)
    network = build("glfcr", "paper").eval()
    path = tmp_path / "official.pth"
    torch.save({"network": network.state_dict()}, path)
    loaded = load_checkpoint(path)
    assert loaded.arch == "glfcr" and loaded.scaling == SCALINGS["glfcr"]
    assert loaded.config == network.config and not loaded.network.training
    state = loaded.network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in network.state_dict().items())


def test_engine_options(saved):
    path = saved["dsen2cr"][0]
    with pytest.raises(UsageError, match="exactly one"):
        open_engine(checkpoint=path, onnx=path)
    with pytest.raises(CloudfreeError, match="no bundled model 'nope'"):
        open_engine(model="nope")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="fp16 needs a GPU"):
            open_engine(checkpoint=path, device="cpu", precision="fp16")
        with pytest.raises(CloudfreeError, match="no CUDA GPU"):
            open_engine(checkpoint=path, device="cuda")


def test_cpu_bf16_stays_close_to_fp32(saved):
    path = saved["dsen2cr"][0]
    s2, s1 = real_batch(SCALINGS["dsen2cr"], 64)
    fp32 = open_engine(checkpoint=path, device="cpu").predict(s2, s1)
    bf16 = open_engine(checkpoint=path, device="cpu", precision="bf16").predict(s2, s1)
    assert bf16.dtype == "float32" and abs(bf16 - fp32).max() < 0.05 * abs(fp32).max()


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_the_fill_networks_correction_is_bounded_in_either_runtime(runtime):
    """The bound on the network's correction of the fill is applied inside the engine (on the
    GPU there), the same way in torch and in onnxruntime."""
    engine = TorchEngine(load_checkpoint(bundled_model("cloudfree-fillnet")), "cpu",
                         cpu_runtime=runtime)
    assert engine.uses_mask
    s2, s1 = real_batch(engine.scaling, 64)
    mask = np.ones((len(s2), 1, 64, 64), np.float32)
    free = engine.predict(s2, s1, mask)
    bounded = engine.predict(s2, s1, mask, max_correction=0.05)
    assert (np.abs(free - s2) > 0.06 * np.abs(s2)).mean() > 0.1  # the bound is reached
    assert (np.abs(bounded - s2) <= 0.05 * np.abs(s2) + 1e-6).all()
    assert np.array_equal(bounded, bound_correction(free, s2, 0.05))
    # one share per pixel (remove's, from the local fill's support): none on the left half
    per_pixel = np.full(mask.shape, 0.05, np.float32)
    per_pixel[..., :32] = 0
    held = engine.predict(s2, s1, mask, max_correction=per_pixel)
    assert np.array_equal(held[..., :32], s2[..., :32])
    assert np.array_equal(held[..., 32:], bounded[..., 32:])
    with pytest.raises(ValueError, match="per-pixel bound"):
        engine.predict(s2, s1, mask, max_correction=per_pixel[:, :, :32])
