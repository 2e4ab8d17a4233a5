"""The CUDA path on a real GPU: device choice, autocast, pinned transfers, onnxruntime's CUDA
provider, the out-of-memory fallback and training with AMP. Skipped where no GPU is usable (CI).

Tolerances against the CPU in reflectance (1 DN = 1e-4): fp32 within 1e-4 everywhere; fp16 and
bf16 autocast within ``AUTOCAST_TOLERANCE`` on 99.9 % of the values and 10x that at worst.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from helpers import SUMMER_S1, SUMMER_S2

from cloudfree.core.errors import CloudfreeError
from cloudfree.inference.checkpoint import LoadedModel
from cloudfree.inference.engines import OnnxEngine, TorchEngine, resolve_device
from cloudfree.io.options import InputOptions
from cloudfree.networks import ARCHITECTURES, build
from cloudfree.pipeline.options import EngineOptions, split_options
from cloudfree.pipeline.remove import remove_scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: Reflectance error of fp16 / bf16 autocast against the CPU in fp32 (99.9th percentile).
AUTOCAST_TOLERANCE = {"fp16": 2e-3, "bf16": 1e-2}


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.int64)


def sample_tiles(tile: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Two real tiles of the summer sample, scaled as GLF-CR scales them."""
    from cloudfree.inference.checkpoint import default_scaling

    scaling = default_scaling("glfcr")
    with rasterio.open(SUMMER_S2) as s2, rasterio.open(SUMMER_S1) as s1:
        x2 = s2.read().astype(np.float32) / 10000
        x1 = s1.read().astype(np.float32)
    x2 = np.stack([x2[:, :tile, :tile], x2[:, -tile:, -tile:]])
    x1 = np.stack([x1[:, :tile, :tile], x1[:, -tile:, -tile:]])
    return scaling.scale_s2(x2), scaling.scale_s1(x1)


def test_auto_is_the_gpu_and_a_missing_index_is_refused():
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(CloudfreeError, match="numbered from 0"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_on_the_gpu_matches_the_cpu_in_fp32(arch):
    torch.manual_seed(0)
    loaded = LoadedModel.from_network(build(arch, "small").eval())
    s2, s1 = sample_tiles()
    mask = np.zeros((len(s2), 1, *s2.shape[2:]), np.float32)
    mask[:, :, 32:96, 32:96] = 1
    cpu = TorchEngine(loaded, "cpu", cpu_runtime="torch").predict(s2, s1, mask)
    gpu = TorchEngine(loaded, "cuda").predict(s2, s1, mask)
    scale = loaded.scaling.s2_factor
    assert np.abs(gpu - cpu).max() / scale <= 1e-4


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_on_the_gpu_stays_within_its_tolerance(precision):
    torch.manual_seed(0)
    loaded = LoadedModel.from_network(build("glfcr", "small").eval())
    s2, s1 = sample_tiles()
    cpu = TorchEngine(loaded, "cpu", cpu_runtime="torch").predict(s2, s1)
    gpu = TorchEngine(loaded, "cuda", precision).predict(s2, s1)
    error = np.abs(gpu - cpu) / loaded.scaling.s2_factor
    assert np.isfinite(gpu).all()
    assert np.percentile(error, 99.9) <= AUTOCAST_TOLERANCE[precision]
    assert error.max() <= 10 * AUTOCAST_TOLERANCE[precision]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_remove_on_the_gpu_matches_the_cpu(tmp_path, precision):
    """The default model through the whole tiled pipeline: output DN against the CPU run."""
    cpu = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "cpu.tif",
                       engine=EngineOptions(device="cpu"), inputs=InputOptions(s1_aligned=True),
                       quiet=True)
    gpu = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "gpu.tif",
                       engine=EngineOptions(device="auto", precision=precision),
                       inputs=InputOptions(s1_aligned=True), quiet=True)
    assert gpu["device"] == "cuda" and gpu["tiles_run"] == cpu["tiles_run"] > 0
    diff = np.abs(read(tmp_path / "gpu.tif") - read(tmp_path / "cpu.tif"))
    if precision == "fp32":
        assert diff.max() <= 1  # 1e-4 of reflectance
    else:
        assert np.percentile(diff, 99.9) <= AUTOCAST_TOLERANCE[precision] * 10000


def test_transfers_go_through_pinned_host_memory():
    torch.manual_seed(0)
    engine = TorchEngine(LoadedModel.from_network(build("fillnet", "small").eval()), "cuda")
    staged = engine._to_device(np.ones((2, 13, 64, 64), np.float32), "s2")
    assert staged.is_cuda
    assert engine._staging and all(buf.is_pinned() for buf in engine._staging.values())


def test_onnxruntime_cuda_provider_matches_torch(tmp_path):
    import onnxruntime as ort

    from cloudfree.inference.onnx_export import export_onnx

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (onnxruntime-gpu not installed)")
    torch.manual_seed(0)
    loaded = LoadedModel.from_network(build("dsen2cr", "small").eval())
    engine = OnnxEngine(export_onnx(loaded, tmp_path / "m.onnx", 128), "cuda")
    assert engine.device == "cuda"
    s2, s1 = sample_tiles()
    reference = TorchEngine(loaded, "cuda").predict(s2, s1)
    assert np.abs(engine.predict(s2, s1) - reference).max() / loaded.scaling.s2_factor <= 1e-4


def test_a_real_out_of_memory_halves_the_batch(tmp_path, cloudfree_log):
    """Fill the GPU until one tile fits but a row of three does not: remove must finish at a
    smaller batch and give the same output as without the pressure."""
    torch.manual_seed(0)
    loaded = LoadedModel.from_network(build("glfcr", "paper").eval())
    checkpoint = tmp_path / "glfcr.pt"
    from cloudfree.inference.checkpoint import save_checkpoint

    save_checkpoint(checkpoint, loaded.network, loaded.scaling)
    # 128 px tiles with 32 px overlap: rows of 3 tiles on the 256 px sample
    options = {"checkpoint": checkpoint, "s1_aligned": True, "tile": 128, "overlap": 32,
               "composite": False, "device": "cuda"}
    remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "free.tif", quiet=True,
                 **split_options({"batch_size": 1, **options}))
    engine = TorchEngine(loaded, "cuda")
    s2, s1 = sample_tiles()
    engine.predict(s2[:1], s1[:1])
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    engine.predict(s2[:1], s1[:1])
    per_tile = torch.cuda.max_memory_allocated() - base  # activations and workspace of one
    del engine
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    ballast = torch.empty(free - int(1.5 * per_tile) - (128 << 20), dtype=torch.uint8,
                          device="cuda")
    try:
        summary = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "tight.tif", quiet=True,
                               **split_options({"batch_size": 3, **options}))
    finally:
        del ballast
        torch.cuda.empty_cache()
    assert "GPU out of memory at batch size 3; continuing with 1" in cloudfree_log.text
    assert summary["tiles_run"] == 9
    assert np.abs(read(tmp_path / "tight.tif") - read(tmp_path / "free.tif")).max() <= 1


def test_training_with_amp_on_the_gpu_lowers_the_loss(tmp_path):
    from helpers import flat_layout, read_csv

    from cloudfree.training.loop import TrainConfig, train_folder

    data = flat_layout(tmp_path / "data", 4)
    config = TrainConfig(arch="glfcr", preset="small", epochs=3, batch_size=2, crop=64,
                         lr=1e-3, amp=True, device="cuda", quiet=True)
    summary = train_folder(data, config, tmp_path / "run")
    rows = read_csv(tmp_path / "run" / "log.csv")
    assert summary["step"] == 6 and len(rows) == 3
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
