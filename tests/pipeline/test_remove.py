"""`cloudfree remove`: tiling exactness, seams, end to end on real pairs, errors."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from helpers import FLOODS_S1, FLOODS_S2, ROOT, SUMMER_S1, SUMMER_S2, WINTER_S1, WINTER_S2

from cloudfree.coregister.shift_estimation import RULE
from cloudfree.inference.checkpoint import save_checkpoint
from cloudfree.inference.tiling import TileGrid
from cloudfree.io.options import InputOptions
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import CLOUD, NODATA, SHADOW, MaskParams, classify
from cloudfree.networks import ARCHITECTURES, build
from cloudfree.pipeline.options import EngineOptions, FillOptions, OutputOptions
from cloudfree.pipeline.remove import remove_scene
from cloudfree.pipeline.scene_passes import first_passes

SERIES_S2 = ROOT / "examples" / "data" / "series" / "s2_2018-07-05.tif"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small-preset checkpoints of every architecture (seeded initial weights: for mechanics)."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for arch in sorted(ARCHITECTURES):
        torch.manual_seed(0)
        paths[arch] = save_checkpoint(folder / f"{arch}.pt", build(arch, "small"), tile=64)
    return paths


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.tags(), ds.descriptions


def whole_image_prediction(checkpoint, s2_path, s1_path, trim):
    """The network on the whole (mirror-padded) scene at once: what tiling must reproduce."""
    from cloudfree.inference.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    with open_sentinel2(s2_path) as s2, rasterio.open(s1_path) as s1:
        refl, _ = s2.read()
        x2 = loaded.scaling.scale_s2(refl)
        x1 = loaded.scaling.scale_s1(s1.read())
        pad = ((0, 0), (trim, trim), (trim, trim))
        with torch.inference_mode():
            out = loaded.network.eval()(torch.from_numpy(np.pad(x2, pad, "symmetric"))[None],
                                        torch.from_numpy(np.pad(x1, pad, "symmetric"))[None])
        out = out[0, :, trim : trim + s2.height, trim : trim + s2.width].numpy()
        return s2.to_dn(loaded.scaling.unscale_s2(out))


def test_tiled_equals_whole_image_for_fully_convolutional(tmp_path, checkpoints):
    ckpt = checkpoints["dsen2cr"]
    out = tmp_path / "tiled.tif"
    summary = remove_scene(SUMMER_S2, SUMMER_S1, out,
                           engine=EngineOptions(checkpoint=ckpt, tile=64, overlap=24, batch_size=3,
                                                device="cpu"),
                           fill=FillOptions(composite=False), inputs=InputOptions(s1_aligned=True))
    rf = build("dsen2cr", "small").receptive_field()
    grid = TileGrid(256, 256, 64, 24, trim=min(rf, 11))
    assert summary["tiles_run"] == grid.rows * grid.cols and summary["tiles_skipped"] == 0
    tiled, profile, _, _ = read(out)
    whole = whole_image_prediction(ckpt, SUMMER_S2, SUMMER_S1, trim=grid.trim)
    diff = np.abs(tiled.astype(np.int64) - whole.astype(np.int64))
    assert diff.max() <= 1  # float rounding to integer DN
    assert (diff > 0).mean() < 1e-4


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.slow
def test_no_seams_at_tile_borders(tmp_path, checkpoints, arch):
    out = tmp_path / f"{arch}.tif"
    remove_scene(WINTER_S2, WINTER_S1, out,
                 engine=EngineOptions(checkpoint=checkpoints[arch], tile=64, batch_size=4,
                                      device="cpu"),
                 fill=FillOptions(composite=False), inputs=InputOptions(s1_aligned=True))
    pred = read(out)[0].astype(np.float64)
    grad = np.abs(np.diff(pred, axis=2)).mean(axis=(0, 1))  # mean |d/dx| per column boundary
    # Tile starts/ends in scene columns for the default overlap (a quarter of the tile).
    overlap, stride = 16, 48
    borders = sorted({x for k in range(-1, 7) for x in (k * stride, k * stride + 64 - 1)
                      if 0 < x < len(grad)} | {k * stride + overlap // 2 for k in range(6)})
    inside = np.delete(grad, borders)
    assert grad[borders].max() <= np.percentile(inside, 99), (arch, grad[borders], inside.max())


def test_cli_end_to_end_on_sen12mscr(tmp_path, checkpoints, cli):
    out, mask_out = tmp_path / "clear.tif", tmp_path / "mask.tif"
    result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", out, "--checkpoint",
                 checkpoints["dsen2cr"], "--mask-out", mask_out, "--tile", "128", "--json",
                 "--device", "cpu", "--feather", "4")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    coregistration = summary["s1_coregistration"]  # half under cumulus: no shift
    (window,) = coregistration["window_estimates"]
    # too weak a peak: the halves and bands, which could not change that, are not estimated
    assert window["significance"] < RULE.significance and not window["reliable"]
    assert "halves" not in window and "band_estimates" not in window
    assert not coregistration["applied"]
    assert coregistration["reason"].startswith("no significant correlation peak")
    data, profile, tags, names = read(out)
    source, src_profile, _, _ = read(SUMMER_S2)
    for key in ("crs", "transform", "width", "height", "dtype", "count"):
        assert profile[key] == src_profile[key]
    assert names == BANDS
    assert tags["ARCH"] == "dsen2cr" and tags["TILE"] == "128"
    classes = read(mask_out)[0][0]
    cloud, shadow = classes == CLOUD, classes == SHADOW  # the shadows the clouds cast, relit
    assert summary["cloud_fraction"] == pytest.approx(cloud.mean())
    assert summary["shadow_fraction"] == pytest.approx(shadow.mean())
    assert shadow.mean() > 0.01
    kept = ~(cloud | shadow)
    np.testing.assert_array_equal(data[:, kept], source[:, kept])  # clear pixels unchanged
    assert (data[:, cloud] != source[:, cloud]).any(axis=0).mean() > 0.95  # clouds filled


@pytest.mark.slow
def test_cli_end_to_end_on_sen1floods11_geographic_s1(tmp_path, checkpoints, cli):
    """S1 in EPSG:4326 on a slightly different grid, S2 int16 with nodata 0."""
    with rasterio.open(FLOODS_S2) as ds:
        data, profile = ds.read(), ds.profile
    data[:, :20, :] = 0  # a nodata edge
    data[:, 200:260, 100:300] = 6000  # a bright block the mask takes for cloud
    s2 = tmp_path / "s2.tif"
    with rasterio.open(s2, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(f"B{int(b[1:])}" if b != "B8A" else "B8A" for b in BANDS)
    out = tmp_path / "out.tif"
    result = cli("remove", "--s1", FLOODS_S1, "--s2", s2, "-o", out, "--checkpoint",
                 checkpoints["dsen2cr"], "--device", "cpu", "--mask-out", tmp_path / "m.tif")
    assert result.exit_code == 0, result.output
    res, out_profile, _, _ = read(out)
    for key in ("crs", "transform", "width", "height", "dtype", "nodata"):
        assert out_profile[key] == profile[key]
    classes = read(tmp_path / "m.tif")[0][0]
    assert (classes[:20] == NODATA).all() and (res[:, :20] == 0).all()
    clear = classes == 0
    np.testing.assert_array_equal(res[:, clear], data[:, clear])
    assert (res[:, 210:250, 110:290] != 6000).any(axis=0).all()  # every cloud pixel filled


def test_clear_scene_skips_every_tile(tmp_path, checkpoints):
    from helpers import WINTER_CLEAR

    out = tmp_path / "same.tif"
    # The cloud-free partner has 10 bright-roof pixels above the default threshold of 0.2.
    summary = remove_scene(WINTER_CLEAR, WINTER_S1, out,
                           engine=EngineOptions(checkpoint=checkpoints["dsen2cr"], tile=64,
                                                device="cpu"),
                           mask_params=MaskParams(threshold=0.3),
                           inputs=InputOptions(s1_aligned=True))
    assert summary["tiles_run"] == 0 and summary["cloud_fraction"] == 0
    np.testing.assert_array_equal(read(out)[0], read(WINTER_CLEAR)[0])


def _twelve_band_checkpoint(tmp_path, checkpoints):
    path = tmp_path / "twelve.pt"
    data = torch.load(checkpoints["dsen2cr"], weights_only=True)
    data["bands"] = data["bands"][:12]
    torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("extra", "message", "code"),
    [
        (lambda t, c: ["--s1", FLOODS_S1, "--s2", SUMMER_S2],
         "does not overlap the Sentinel-2 grid", 1),
        (lambda t, c: ["--s1", SUMMER_S1, "--s2", SUMMER_S1], "2 unnamed band(s)", 1),
        (lambda t, c: ["--s1", SUMMER_S2, "--s2", SUMMER_S2], "13 bands without VV/VH names", 1),
        (lambda t, c: ["--s1", SUMMER_S1, "--s2", WINTER_S2, "--s1-aligned"],
         "is not on the Sentinel-2 grid", 1),
        (lambda t, c: ["--s1", SUMMER_S1, "--s2", SUMMER_S2, "--checkpoint",
                       _twelve_band_checkpoint(t, c)], "13", 1),
        (lambda t, c: ["--s1", SUMMER_S1, "--s2", SUMMER_S2, "--tile", "100", "--checkpoint",
                       c["glfcr"]], "multiple of 16", 2),
        (lambda t, c: ["--s1", SUMMER_S1, "--s2", SUMMER_S2, "--model", "nope"],
         "no bundled model 'nope'", 2),
        (lambda t, c: ["--s1", SUMMER_S1, "--s2", SUMMER_S2, "--precision", "fp16",
                       "--device", "cpu"], "fp16 needs a GPU", 2),
    ],
)
def test_errors_are_one_line_and_leave_no_file(tmp_path, checkpoints, extra, message, code, cli):
    args = extra(tmp_path, checkpoints)
    if "--checkpoint" not in args and "--model" not in args:
        args += ["--checkpoint", checkpoints["dsen2cr"]]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = cli("remove", *args, "-o", out_dir / "x.tif")
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert list(out_dir.iterdir()) == []


def test_missing_crs_is_refused(tmp_path, checkpoints, cli):
    with rasterio.open(SUMMER_S1) as ds:
        data, profile = ds.read(), ds.profile
    profile.update(crs=None)
    s1 = tmp_path / "nocrs.tif"
    with rasterio.open(s1, "w", **profile) as dst:
        dst.write(data)
    result = cli("remove", "--s1", s1, "--s2", SUMMER_S2, "-o", tmp_path / "x.tif",
                 "--checkpoint", checkpoints["dsen2cr"])
    assert result.exit_code == 1 and "coordinate reference system" in result.output
    assert not (tmp_path / "x.tif").exists()


def test_gpu_out_of_memory_halves_the_batch(tmp_path, checkpoints, monkeypatch, caplog):
    """A CUDA OOM is simulated on the CPU engine: the pipeline retries with smaller batches."""
    from cloudfree.inference import engines

    real = engines.TorchEngine.predict

    def predict(self, s2, s1, mask=None, max_correction=None):
        if len(s2) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(self, s2, s1, mask, max_correction)

    monkeypatch.setattr(engines.TorchEngine, "predict", predict)
    out = tmp_path / "oom.tif"
    import logging

    logging.getLogger("cloudfree").addHandler(caplog.handler)
    summary = remove_scene(SUMMER_S2, SUMMER_S1, out,
                           engine=EngineOptions(checkpoint=checkpoints["dsen2cr"], tile=64,
                                                batch_size=4, device="cpu"),
                           inputs=InputOptions(s1_aligned=True))
    logging.getLogger("cloudfree").removeHandler(caplog.handler)
    assert "out of memory at batch size 4; continuing with 2" in caplog.text
    assert summary["tiles_run"] > 0 and out.exists()


def test_onnx_engine_matches_checkpoint_and_default_tile(tmp_path, checkpoints, cli):
    from cloudfree.inference.onnx_export import export_checkpoint

    onnx = export_checkpoint(checkpoints["dsen2cr"], tmp_path / "m.onnx", 64)
    a = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "a.tif",
                     engine=EngineOptions(checkpoint=checkpoints["dsen2cr"], device="cpu"),
                     inputs=InputOptions(s1_aligned=True))
    b = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "b.tif",
                     engine=EngineOptions(onnx=onnx, device="cpu"),
                     inputs=InputOptions(s1_aligned=True))
    assert a["tile"] == b["tile"] == 64  # the checkpoint's tile when --tile is not given
    diff = np.abs(read(tmp_path / "a.tif")[0].astype(int) - read(tmp_path / "b.tif")[0])
    assert diff.max() <= 1
    result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "--onnx", onnx, "--tile", "128",
                 "-o", tmp_path / "c.tif")
    assert result.exit_code == 2 and "runs 64 px tiles only" in result.output


def test_chunks_loaded_on_several_threads_give_the_same_output(tmp_path, monkeypatch):
    """The default model and fill, with chunks loading ahead on one thread or on three."""
    import importlib

    removal = importlib.import_module("cloudfree.pipeline.remove")
    outputs = []
    for loaders in (1, 3):
        monkeypatch.setattr(removal, "loader_threads", lambda device, network, n=loaders: n)
        out = tmp_path / f"loaders{loaders}.tif"
        summary = remove_scene(SUMMER_S2, SUMMER_S1, out,
                               engine=EngineOptions(tile=64, batch_size=2),
                               inputs=InputOptions(s1_aligned=True), quiet=True)
        assert summary["tiles_run"] > 4  # several chunks, most with cloud
        with rasterio.open(out) as ds:
            outputs.append(ds.read())
    assert np.array_equal(*outputs)
    with rasterio.open(SUMMER_S2) as ds:
        assert (outputs[0] != ds.read()).any()


@pytest.mark.parametrize(("cores", "cpu", "gpu"), [(2, 2, 2), (16, 2, 14), (96, 2, 16)])
def test_loader_threads_on_cpu_and_on_a_gpu(monkeypatch, cores, cpu, gpu):
    """A network on the CPU keeps the cores; on a GPU, or with no network, the loaders take them."""
    import importlib

    removal = importlib.import_module("cloudfree.pipeline.remove")
    monkeypatch.setattr(removal, "usable_cores", lambda: cores)
    assert removal.loader_threads("cpu") == cpu
    assert removal.loader_threads("cuda:0") == gpu
    assert removal.loader_threads("cpu", network=False) == gpu


def test_the_fill_runs_numpys_blas_on_one_thread_and_restores_it(tmp_path, monkeypatch):
    """Called from Python, where the launcher's OPENBLAS_NUM_THREADS does not apply, the local
    fill's matrix products run on one BLAS thread each; the caller's setting comes back."""
    import importlib

    from threadpoolctl import threadpool_info, threadpool_limits

    removal = importlib.import_module("cloudfree.pipeline.remove")
    seen: set[int] = set()
    real_fill = removal.local_fill

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    def local_fill(*args, **kwargs):
        seen.update(blas_threads())
        return real_fill(*args, **kwargs)

    monkeypatch.setattr(removal, "local_fill", local_fill)
    with threadpool_limits(limits=3, user_api="blas"):
        remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "a.tif", inputs=InputOptions(s1_aligned=True),
                     quiet=True)
        assert seen == {1}
        assert blas_threads() == {3}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_float_s2_in_dn_keeps_its_clear_pixels_exactly(tmp_path, dtype):
    """Float DN come back through float32 reflectance one unit in the last place off; the
    composite gives the stored values back instead, as for integer DN."""
    with rasterio.open(SUMMER_S2) as src:
        profile, stored = src.profile, src.read()
    floats = tmp_path / f"s2_{dtype}.tif"
    with rasterio.open(floats, "w", **{**profile, "dtype": dtype, "nodata": np.nan}) as dst:
        dst.write(stored.astype(dtype))
    outputs = {}
    for name, s2 in (("uint16", SUMMER_S2), (dtype, floats)):
        outputs[name] = tmp_path / f"out_{name}.tif"
        remove_scene(s2, SUMMER_S1, outputs[name], engine=EngineOptions(model="median-fill"),
                     quiet=True)
    with rasterio.open(outputs["uint16"]) as a, rasterio.open(outputs[dtype]) as b:
        integer, float_ = a.read(), b.read()
        assert b.dtypes[0] == dtype and b.crs == a.crs and b.transform == a.transform
    kept = (integer == stored).all(axis=0)  # the pixels the composite keeps
    assert 0.2 < kept.mean() < 0.9
    assert np.array_equal(float_[:, kept], stored[:, kept].astype(dtype))
    assert np.abs(float_[:, ~kept] - integer[:, ~kept]).max() <= 1  # the fill as for uint16


@pytest.mark.parametrize("feather", [0, 1, 2, 3, 7, 9])
def test_composite_ramp_is_the_distance_to_the_clear_pixels(feather):
    """On the real cumulus scene's mask (buffered clouds touching the edges), the ramp is the
    Euclidean distance into the filled region over feather + 1, capped at 1, whichever way it
    is computed."""
    from scipy import ndimage

    from cloudfree.mask.classify import classify
    from cloudfree.pipeline.remove import composite_alpha

    with open_sentinel2(SUMMER_S2) as s2:
        reflectance, valid = s2.read()
        fill = classify(reflectance, valid, MaskParams(buffer=5), bands=s2.bands)[0] == CLOUD
    assert 0.1 < fill.mean() < 0.9 and fill[0].any() and fill[:, 0].any()
    alpha = composite_alpha(fill, feather)
    depth = ndimage.distance_transform_edt(fill)
    assert alpha.dtype == np.float32
    np.testing.assert_array_equal(alpha, np.clip(depth / (feather + 1), 0, 1).astype(np.float32))
    assert (alpha[~fill] == 0).all() and (alpha[fill] < 1).any() == (feather > 0)


def test_the_statistics_beside_the_coregistration_stop_once_it_fails():
    """The first passes that need no S1 run on a thread of their own while it is
    co-registered; when that fails, they stop at the next window instead of reading on."""
    from concurrent.futures import CancelledError
    from threading import Event

    from cloudfree.pipeline.scene_passes import first_passes, scene_fill_spectrum

    params = MaskParams(buffer=5, shadow=True)
    with open_sentinel2(WINTER_S2) as s2:
        shadow, (fill, bounds) = first_passes(s2, s2.bands, params, True, False, True)
        alone = scene_fill_spectrum(s2, s2.bands, params, shadow, True)
        assert (fill, bounds) == alone
        assert shadow is not None and 0 < fill.clear_fraction < 1
        assert first_passes(s2, s2.bands, params, False, False, True)[1] is None
        abandon = Event()
        abandon.set()
        with pytest.raises(CancelledError):
            first_passes(s2, s2.bands, params, True, False, True, abandon)


def test_the_shadow_offset_pass_reads_the_parallax_index_its_mask_computed(monkeypatch):
    """The pass that finds the offset from the summer sample's clouds to their shadows confirms
    its clouds by their parallax: it reads the index the mask computed for the window (one
    window: one index), and finds the offset it finds computing its own."""
    from cloudfree.mask import bright_land as module
    from cloudfree.mask.bands import PARALLAX_BANDS, pick
    from cloudfree.pipeline.scene_passes import first_passes

    params = MaskParams(buffer=5, shadow=True)
    index, calls = module.parallax_index, []

    def counted(b):
        calls.append(b["B08"].shape)
        return index(b)

    def unkept(self, reflectance, bands):  # each reader computes its own
        return index(pick(reflectance, bands, PARALLAX_BANDS))

    monkeypatch.setattr(module, "parallax_index", counted)
    with open_sentinel2(SUMMER_S2) as s2:
        shadow = first_passes(s2, s2.bands, params, False, True, True)[0]
        assert shadow.offset is not None and len(calls) == 1
        monkeypatch.setattr(module.ParallaxIndex, "of", unkept)
        assert first_passes(s2, s2.bands, params, False, True, True)[0] == shadow


@pytest.mark.slow
def test_the_default_fills_in_chunks_no_wider_than_a_1024_px_scene_gets(tmp_path):
    """The network-free fill depends on its chunk's extent, and the chunk's arrays are the
    memory that grows with it: whatever the batch, its chunks hold at most 5 tiles of 256 px
    (1152 px), as a 1024^2 scene's whole row, so a wider scene's output is the same at batch 8
    as at batch 5."""
    with rasterio.open(SUMMER_S2) as s2, rasterio.open(SUMMER_S1) as s1:
        wide = {}
        for name, src in (("s2", s2), ("s1", s1)):
            data = src.read()
            data = np.tile(np.concatenate([data, data[:, :, ::-1]], axis=2), (1, 1, 3))
            wide[name] = tmp_path / f"{name}.tif"  # 7 tiles across
            with rasterio.open(wide[name], "w", **{**src.profile, "width": data.shape[2]}) as dst:
                dst.write(data)
    outputs = {}
    for batch in (5, 8):
        outputs[batch] = tmp_path / f"out_{batch}.tif"
        summary = remove_scene(wide["s2"], wide["s1"], outputs[batch],
                               engine=EngineOptions(model="median-fill", batch_size=batch),
                               inputs=InputOptions(s1_aligned=True), quiet=True)
        assert summary["tiles_run"] > 5
    with rasterio.open(outputs[5]) as a, rasterio.open(outputs[8]) as b:
        assert a.width == 1536 and np.array_equal(a.read(), b.read())


@pytest.mark.parametrize("model, tilings", [
    ("median-fill", ([], ["--tile", "16", "--batch-size", "1"])),  # chunks 14 px apart
    ("cloudfree-fillnet", (["--tile", "32"], ["--tile", "64"])),  # corners -2 and -4
])
def test_the_mask_does_not_depend_on_how_the_scene_is_cut(tmp_path, cli, model, tilings):
    """The shadows tied to their clouds are weighed on a grid of 4 px laid from the scene's
    corner, with their whole reach around each chunk: the classes written are the same
    whatever the tiles, the batch and so the chunks (the sample's tied shadows lie along
    chunk borders of both runs)."""
    masks = []
    for number, tiling in enumerate(tilings):
        mask = tmp_path / f"mask{number}.tif"
        result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", tmp_path / "x.tif",
                     "--model", model, "--mask-out", mask, "--overwrite", "--quiet", *tiling)
        assert result.exit_code == 0, result.output
        masks.append(read(mask)[0][0])
    assert (masks[0] == SHADOW).mean() > 0.03
    np.testing.assert_array_equal(masks[0], masks[1])


def test_remove_changes_under_1_percent_of_the_cloud_free_chip(tmp_path):
    """Roofs, roads and greenhouses of the cloud-free Sen1Floods11 chip that score as cloud are
    bright land by their texture, short-wave infrared and lack of parallax, and the built-up
    ones by their backscatter; what is left grows no buffer or haze ring and casts no shadow:
    `remove` with its defaults and the chip's S1 changes under 1 % of its pixels (9 pixels,
    0.003 %; 0.86 % without the bright-land test), no more than the mask flags."""
    out, mask = tmp_path / "out.tif", tmp_path / "mask.tif"
    remove_scene(FLOODS_S2, FLOODS_S1, out, outputs=OutputOptions(mask_out=mask), quiet=True)
    with rasterio.open(FLOODS_S2) as src, rasterio.open(out) as dst, rasterio.open(mask) as m:
        valid = (src.read() != 0).all(axis=0)
        changed = (src.read() != dst.read()).any(axis=0) & valid
        masked = m.read(1) == CLOUD
    assert 0 < changed.sum() / valid.sum() < 0.01
    assert changed[masked].all()  # what the mask flags is filled
    assert changed.sum() <= masked.sum()


def test_remove_leaves_the_chips_bright_land_alone_without_s1(tmp_path):
    """Without Sentinel-1 (no built-up test), the bright-land test alone keeps most of what
    scores as cloud on the cloud-free Sen1Floods11 chip (roofs, greenhouses, roads) clear:
    `remove` changes under 1 % of the chip (1.7 % without the test); what it leaves cloud is
    filled."""
    out, mask = tmp_path / "out.tif", tmp_path / "mask.tif"
    remove_scene(FLOODS_S2, None, out, outputs=OutputOptions(mask_out=mask), quiet=True)
    with rasterio.open(FLOODS_S2) as src, rasterio.open(out) as dst, rasterio.open(mask) as m:
        changed = (src.read() != dst.read()).any(axis=0)
        masked = m.read(1) == CLOUD
    with open_sentinel2(FLOODS_S2) as s2:
        refl, valid = s2.read()
    assert changed.mean() < 0.01
    assert changed[masked].all()  # what the mask flags is filled
    without = classify(refl, valid, MaskParams(land=False))[0] == CLOUD
    found = classify(refl, valid)[0] == CLOUD
    assert found.mean() < 0.35 * without.mean() and changed[found].mean() > 0.99


def test_remove_with_s1_leaves_the_chips_built_up_land_alone(tmp_path):
    """With Sentinel-1, what scores as cloud on built-up backscatter with no confident cloud
    near is left clear: without the bright-land test, `remove` changes under 1 % of the
    cloud-free Sen1Floods11 chip, where it changes 1.7 % without either test; the mask written
    is the one filled."""
    changed, masked = {}, {}
    for on in (True, False):
        out, mask = tmp_path / f"{on}.tif", tmp_path / f"mask{on}.tif"
        remove_scene(FLOODS_S2, FLOODS_S1, out, quiet=True, outputs=OutputOptions(mask_out=mask),
                     mask_params=MaskParams(buffer=5, built_up=on, land=False))
        with rasterio.open(FLOODS_S2) as src, rasterio.open(out) as dst, rasterio.open(mask) as m:
            changed[on] = (src.read() != dst.read()).any(axis=0)
            masked[on] = m.read(1) == CLOUD
            assert dst.tags()["S1_BUILT_UP_TEST"] == str(on)
        assert changed[on][masked[on]].all()
    assert changed[True].mean() < 0.01 < 0.015 < changed[False].mean()
    assert (masked[True] <= masked[False]).all()


def _all_cloud(path, pasted_cloud, saturated: bool):
    """The real summer cumulus spread over the whole patch (its pixels that the mask calls
    cloud on their own, whatever their neighbours, repeated), or every pixel saturated (65535
    DN)."""
    summer, profile = pasted_cloud["summer"], pasted_cloud["profile"]
    if saturated:
        image = np.full_like(summer, 65535)
    else:
        with open_sentinel2(SUMMER_S2) as s2:
            classes, score = classify(s2.read()[0], None, MaskParams())
        cores = summer[:, (classes == CLOUD) & (score > 0.5)]
        image = cores[:, np.arange(summer[0].size) % cores.shape[1]].reshape(summer.shape)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
    return path


@pytest.mark.parametrize("saturated", [False, True], ids=["all cloud", "all saturated"])
def test_a_scene_with_nothing_clear_warns_that_it_is_filled_with_one_spectrum(
        tmp_path, pasted_cloud, cli, saturated):
    """It became one colour per band with only a note."""
    s2 = _all_cloud(tmp_path / "target_20171201.tif", pasted_cloud, saturated)
    out = tmp_path / "out.tif"
    result = cli("remove", "--s2", s2, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "cloudfree: target_20171201.tif: only 0.00% of the scene is clear: its clouds are "
        "filled with one spectrum, the median of clear Sentinel-2 scenes elsewhere (the prior), "
        "not the land under them; give other dates of the same place with --reference "
        "(references)"]
    assert all(np.unique(band).size == 1 for band in read(out)[0])


def test_a_scene_with_a_few_percent_clear_warns_that_its_fill_comes_from_little(
        tmp_path, pasted_cloud, cli):
    """A 48 px square of the clear winter land left in the all-cloud scene: the scene's median
    (not the prior) fills the rest; it was said only below 1 % clear."""
    s2 = _all_cloud(tmp_path / "target_20171201.tif", pasted_cloud, saturated=False)
    with rasterio.open(s2, "r+") as ds:
        image = ds.read()
        image[:, 100:148, 100:148] = pasted_cloud["truth"][:, 100:148, 100:148]
        ds.write(image)
    result = cli("remove", "--s2", s2, "--model", "median-fill", "-o", tmp_path / "out.tif")
    assert result.exit_code == 0, result.output
    line, = result.stderr.splitlines()
    share = float(re.match(r"cloudfree: target_20171201\.tif: only (\d\.\d\d)% of the scene "
                           "is clear: its clouds are filled with one spectrum, the median of "
                           r"those few pixels \(mostly cloud edges, perhaps hazy\), not the "
                           "land under them; give other dates of the same place with "
                           r"--reference \(references\)$", line)[1])
    assert 1 < share < 5


def test_a_scene_with_clear_land_gives_no_such_warning(tmp_path, pasted_cloud, cli):
    result = cli("remove", "--s2", pasted_cloud["target"], "-o", tmp_path / "out.tif")
    assert result.exit_code == 0 and result.stderr == "", result.output


def test_where_the_dates_judge_the_clouds_that_cast_shadows_leave_the_bright_land_test_out():
    """Where other dates judge the clouds, the offset to their shadows is that of the clouds the
    dates' test starts from: the pass reading the classes with the bright-land test finds the one
    it finds classifying without it, on the bundled series' cumulus of 5 July and the summer
    sample."""
    params = MaskParams(buffer=5, shadow=True)
    for path in (SERIES_S2, SUMMER_S2):
        with open_sentinel2(path) as s2:
            without = replace(params, land=False).for_bands(s2.bands)
            want = first_passes(s2, s2.bands, without, False, True, True)[0].offset
            got = first_passes(s2, s2.bands, params.for_bands(s2.bands), False, True, True,
                               judged=True)[0].offset
            assert want is not None and got == want
