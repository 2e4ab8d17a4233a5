"""ONNX export for every architecture: parity with torch on real patches, metadata, CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import rasterio
import torch
from helpers import SUMMER_S1, SUMMER_S2
from sar_optical_patch import real_batch

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.inference.bundled import bundled_model
from cloudfree.inference.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from cloudfree.inference.engines import OnnxEngine, TorchEngine, open_engine
from cloudfree.inference.onnx_export import export_onnx
from cloudfree.io.sentinel2 import BANDS
from cloudfree.networks import ARCHITECTURES, build

ARCHS = sorted(ARCHITECTURES)
TILE = 128


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[LoadedModel, object]]:
    """arch -> (loaded of the small preset, path of its ONNX export at TILE)."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for arch in ARCHS:
        torch.manual_seed(3)
        loaded = LoadedModel.from_network(build(arch, "small").eval())
        out[arch] = (loaded, export_onnx(loaded, folder / f"{arch}.onnx", tile=TILE))
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.slow
def test_onnxruntime_matches_torch_on_real_patches(exported, arch):
    loaded, path = exported[arch]
    engine = open_engine(onnx=path, device="cpu")
    s2, s1 = real_batch(loaded.scaling, TILE)  # batch 2 through a graph traced at batch 1
    got = engine.predict(s2, s1)
    want = TorchEngine(loaded, device="cpu", cpu_runtime="torch").predict(s2, s1)
    assert got.shape == want.shape == (2, 13, TILE, TILE) and got.dtype == "float32"
    assert abs(got - want).max() <= 1e-4
    assert engine.session.get_providers() == ["CPUExecutionProvider"]


def test_the_fill_network_runs_in_onnxruntime_on_cpu_with_the_same_output():
    loaded = load_checkpoint(bundled_model("cloudfree-fillnet"))
    fast, eager = (TorchEngine(loaded, device="cpu", cpu_runtime=r)
                   for r in ("onnxruntime", "torch"))
    assert fast.session is not None and eager.session is None
    s2, s1 = real_batch(loaded.scaling, TILE)
    mask = (s2[:, 1:2] > np.median(s2[:, 1:2])).astype(np.float32)  # some pixels filled
    for crop in (np.s_[:, :, :, :], np.s_[:1, :, 8:72, :]):  # any batch, height and width
        got = fast.predict(s2[crop], s1[crop], mask[crop])
        want = eager.predict(s2[crop], s1[crop], mask[crop])
        assert got.shape == want.shape == s2[crop].shape
        assert abs(got - want).max() <= 1e-5 and abs(got - s2[crop]).max() > 1e-3
    glfcr = LoadedModel.from_network(build("glfcr", "small").eval())
    assert TorchEngine(glfcr, device="cpu").session is None  # graph bound to its tile size
    # its idle threads sleep, leaving the cores to the loaders
    options = fast.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


@pytest.mark.parametrize("arch", ARCHS)
def test_metadata_carries_what_the_engine_needs(exported, arch):
    loaded, path = exported[arch]
    engine = OnnxEngine(path, device="cpu")
    assert (engine.arch, engine.tile, engine.bands, engine.scaling) == (
        arch, TILE, BANDS, loaded.scaling)
    assert engine.receptive_field == loaded.network.receptive_field()
    assert engine.size_multiple == loaded.network.size_multiple
    assert engine.fully_convolutional == loaded.network.fully_convolutional
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 17
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"


def test_engine_refuses_other_tile_sizes(exported):
    engine = OnnxEngine(exported["dsen2cr"][1], device="cpu")
    s2, s1 = real_batch(engine.scaling, 64)
    with pytest.raises(ValueError, match="128x128 tiles only"):
        engine.predict(s2, s1)


def test_auto_device_falls_back_to_cpu_quietly(exported, capfd):
    engine = OnnxEngine(exported["dsen2cr"][1], device="auto")
    if not torch.cuda.is_available():
        assert engine.device == "cpu"
        assert capfd.readouterr().err == ""


@pytest.mark.parametrize("arch", [a for a in ARCHS if ARCHITECTURES[a].size_multiple > 1])
def test_tile_must_fit_the_size_multiple(exported, tmp_path, arch):
    loaded = exported[arch][0]
    with pytest.raises(UsageError, match=f"multiple of {loaded.network.size_multiple}"):
        export_onnx(loaded, tmp_path / "x.onnx", tile=loaded.network.size_multiple * 4 + 1)
    assert not list(tmp_path.iterdir())


def test_onnx_without_cloudfree_metadata(exported, tmp_path):
    model = onnx.load(str(exported["dsen2cr"][1]))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(CloudfreeError, match="lacks cloudfree metadata"):
        OnnxEngine(path, device="cpu")


def test_cli_export_onnx_end_to_end(tmp_path, cli):
    torch.manual_seed(4)
    checkpoint = save_checkpoint(tmp_path / "m.pt", build("dsen2cr", "small").eval())
    output = tmp_path / "m.onnx"
    args = ["export-onnx", "--checkpoint", str(checkpoint), "-o", str(output), "--tile", "64"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    engine = open_engine(onnx=output)
    assert engine.tile == 64 and engine.arch == "dsen2cr"
    s2, s1 = real_batch(engine.scaling, 64)
    torch_engine = open_engine(checkpoint=checkpoint, device="cpu")
    assert abs(engine.predict(s2, s1) - torch_engine.predict(s2, s1)).max() <= 1e-4

    again = cli(*args)
    assert again.exit_code == 2 and "exists" in again.output
    assert cli(*args, "--overwrite").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]


def test_cli_export_onnx_bad_checkpoint(tmp_path, cli):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 cut short")
    result = cli("export-onnx", "-c", str(bad), "-o",
                 str(tmp_path / "x.onnx"))
    assert result.exit_code == 1 and "truncated or corrupt" in result.output


def test_cli_exports_a_bundled_model_that_remove_runs_as_the_model_itself(tmp_path, cli):
    output = tmp_path / "default.onnx"
    result = cli("export-onnx", "--model", "cloudfree-fillnet", "-o", output)
    assert result.exit_code == 0, result.output
    outs = {}
    for name, model in (("onnx", ["--onnx", output]),
                        ("bundled", ["--model", "cloudfree-fillnet"])):
        outs[name] = tmp_path / f"{name}.tif"
        result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", outs[name],
                     "--s1-aligned", "--quiet", *model)
        assert result.exit_code == 0, result.output
    with rasterio.open(outs["onnx"]) as a, rasterio.open(outs["bundled"]) as b:
        difference = np.abs(a.read().astype(np.int32) - b.read()).max()
    assert difference <= 1


@pytest.mark.parametrize("args", [[], ["--model", "cloudfree-fillnet", "-c", "x.pt"],
                                  ["--model", "nope"]])
def test_cli_export_onnx_takes_one_model(tmp_path, cli, args):
    result = cli("export-onnx", *args, "-o", tmp_path / "x.onnx")
    assert result.exit_code == 2
    assert "bundled: cloudfree-fillnet-fast, cloudfree-fillnet, median-fill" in result.output
    assert not (tmp_path / "x.onnx").exists()
