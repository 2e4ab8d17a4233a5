"""Bad inputs a new user may give: each is one line and the right exit code, or nodata.

Rasters, ONNX models and checkpoints that are wrong in one way each, built from the real sample;
every case checks the message, the exit code and the files left behind.
"""

from __future__ import annotations

import configparser
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
import torch
from helpers import ROOT, SEN12, SUMMER_S1, SUMMER_S2, WINTER_CLEAR, one_line_error
from onnx import TensorProto, helper

from cloudfree import MaskParams, coregister_file, mask_scene, remove_scene, run_batch
from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.inference.checkpoint import LoadedModel
from cloudfree.inference.engines import OnnxEngine
from cloudfree.inference.onnx_export import onnx_metadata
from cloudfree.io.options import InputOptions
from cloudfree.networks import ARCHITECTURES, build
from cloudfree.pipeline.options import EngineOptions, FillOptions


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def sample_as(path, dtype: str, edit=None):
    """The real summer S2 as ``dtype``; ``edit(data)`` may change its values first."""
    with rasterio.open(SUMMER_S2) as ds:
        data, profile = ds.read().astype(dtype), ds.profile
    if edit is not None:
        edit(data)
    profile.update(dtype=dtype, blockysize=16)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    return path


# --- data types: complex and int8 refused, non-finite and huge floats are nodata -----------------

@pytest.mark.parametrize("dtype", ["complex64", "int8"])
@pytest.mark.parametrize("command", ["mask", "remove"])
def test_unsupported_s2_data_types_are_refused(tmp_path, cli, dtype, command):
    s2 = sample_as(tmp_path / "s2.tif", dtype)
    out = tmp_path / "out.tif"
    args = ["mask", s2] if command == "mask" else ["remove", "--s2", s2, "--s1", SUMMER_S1]
    result = cli(*args, "-o", out)
    assert result.exit_code == 1, result.output
    assert last_line(result.stderr) == (
        f"Error: Sentinel-2 input {s2}: data type {dtype} is not Sentinel-2 data; give uint16 or "
        "int16 digital numbers, or float reflectance or digital numbers")
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.tif"]


def non_finite(data: np.ndarray) -> None:
    """inf, -inf, NaN and values no Sentinel-2 DN can take, in 10 x 10 squares."""
    for i, value in enumerate((np.inf, -np.inf, np.nan, 1e30, -1e30, 3e38)):
        data[:, 10 + 20 * i: 20 + 20 * i, 100:110] = value


@pytest.fixture(scope="module")
def garbage_s2(tmp_path_factory):
    return sample_as(tmp_path_factory.mktemp("garbage") / "s2.tif", "float32", non_finite)


def test_non_finite_and_huge_float_values_are_nodata(tmp_path, garbage_s2, cli):
    holes = np.zeros((256, 256), bool)
    for i in range(6):
        holes[10 + 20 * i: 20 + 20 * i, 100:110] = True
    out, mask, alone = tmp_path / "r.tif", tmp_path / "m.tif", tmp_path / "alone.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = cli("remove", "--s2", garbage_s2, "--s1", SUMMER_S1, "-o", out,
                     "--mask-out", mask)
        assert result.exit_code == 0, result.output
        assert cli("mask", garbage_s2, "-o", alone).exit_code == 0
    with rasterio.open(out) as ds, rasterio.open(mask) as m, rasterio.open(alone) as a:
        filled, classes, masked = ds.read(), m.read(1), a.read(1)
    assert np.array_equal(classes == 255, holes) and np.array_equal(masked == 255, holes)
    assert np.isnan(filled[:, holes]).all()
    data = filled[:, ~holes]
    assert np.isfinite(data).all() and data.min() >= 0 and data.max() < 20000


# --- grids: a south-up transform is a place like any other ------------------------------------

def south_up(path, source):
    """``source`` stored bottom row first, with a transform of positive y pixel size."""
    with rasterio.open(source) as ds:
        data, profile, t = ds.read(), ds.profile, ds.transform
    profile["transform"] = rasterio.Affine(t.a, 0, t.c, 0, -t.e, t.f + ds.height * t.e)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data[:, ::-1])
    return path


def test_south_up_s1_and_s2_are_warped_like_north_up_ones(tmp_path, cli):
    s2, s1 = south_up(tmp_path / "s2.tif", SUMMER_S2), south_up(tmp_path / "s1.tif", SUMMER_S1)
    warped = {}
    for name, pair in {"plain": (SUMMER_S1, SUMMER_S2), "s1": (s1, SUMMER_S2),
                       "s2": (SUMMER_S1, s2)}.items():
        out = tmp_path / f"{name}_on_s2.tif"
        result = cli("coregister", "--s1", pair[0], "--s2", pair[1], "-o", out, "--no-refine")
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as ds:
            warped[name] = ds.read()
    assert np.array_equal(warped["s1"], warped["plain"])
    assert np.array_equal(warped["s2"][:, ::-1], warped["plain"])
    out = tmp_path / "r.tif"
    result = cli("remove", "--s2", s2, "--s1", SUMMER_S1, "-o", out)
    assert result.exit_code == 0, result.output
    with rasterio.open(s2) as src, rasterio.open(out) as ds:
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)


# --- output names and creation options, refused before any work ------------------------------

@pytest.mark.parametrize("command", ["mask", "remove"])
@pytest.mark.parametrize("co, message", [
    ("PREDICTOR=9", "--co PREDICTOR=9: PREDICTOR must be 1 (none), 2 (horizontal) or 3 "
                    "(floating point)"),
    ("BLOCKXSIZE=17", "--co BLOCKXSIZE=17: the height and width of TIFF dataset blocks must be "
                      "multiples of 16"),
    ("COMPRESS=JPEG", "--co COMPRESS=JPEG: JPEG is lossy and 8-bit only, which fits no "
                      "cloudfree output; use DEFLATE, ZSTD or LZW"),
])
def test_creation_options_are_checked_before_any_work(tmp_path, cli, command, co, message):
    out = tmp_path / "out.tif"
    args = ["mask", SUMMER_S2] if command == "mask" else [
        "remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1]
    result = cli(*args, "-o", out, "--co", co, "-v")
    assert result.exit_code == 2, result.output
    line = last_line(result.stderr)
    assert line.startswith("Error: " + message), line
    assert "shift field" not in result.stderr and "S1 co-registration" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_creation_options_that_do_not_fit_the_data_type_are_refused_before_any_work(tmp_path,
                                                                                  cli):
    out = tmp_path / "out.tif"  # PREDICTOR=3 is for floats: the uint16 S2 or the uint8 mask
    for args in (["remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1], ["mask", SUMMER_S2]):
        result = cli(*args, "-o", out, "--co", "PREDICTOR=3", "-v")
        assert result.exit_code == 2, result.output
        assert last_line(result.stderr) == (
            "Error: --co PREDICTOR=3: PREDICTOR=3 is only supported with Float32 or Float64; see "
            "https://gdal.org/drivers/raster/gtiff.html#creation-options")
        assert "S1 co-registration" not in result.stderr and "shift field" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_library_calls_get_the_same_checks(tmp_path):
    from cloudfree import mask_scene
    from cloudfree.core.errors import UsageError

    with pytest.raises(UsageError, match="JPEG is lossy and 8-bit only"):
        mask_scene(SUMMER_S2, tmp_path / "m.tif", creation_options={"compress": "jpeg"})
    with pytest.raises(UsageError, match="outputs are GeoTIFFs; give a .tif or .tiff name"):
        mask_scene(SUMMER_S2, tmp_path / "m.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("call, message", [
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, fill=FillOptions(feather=-1)),
     "feather=-1 must be in 0..256 pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, fill=FillOptions(feather=10**6)),
     "feather=1000000 must be in 0..256 pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, inputs=InputOptions(max_shift=1e9)),
     "max_shift=1000000000.0 must be in 0.5..100 pixels"),
    (lambda out: coregister_file(SUMMER_S1, SUMMER_S2, out, max_shift=1e6),
     "max_shift=1000000.0 must be in 0.5..100 pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, inputs=InputOptions(offset=500)),
     "offset=500 must be auto, 0 or 1000"),
    (lambda out: mask_scene(SUMMER_S2, out, offset=500), "offset=500 must be auto, 0 or 1000"),
    (lambda out: coregister_file(SUMMER_S1, SUMMER_S2, out, offset="500"),
     "offset='500' must be auto, 0 or 1000"),
    (lambda out: mask_scene(SUMMER_S2, out, threads=0), "threads=0 must be in 1..1024"),
    (lambda out: coregister_file(SUMMER_S1, SUMMER_S2, out, threads=0),
     "threads=0 must be in 1..256"),
    (lambda out: mask_scene(SUMMER_S2, out, block=10**9),
     "block=1000000000 must be in 64..16384 pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(batch_size=10**6)),
     "batch_size=1000000 must be in 1..1024"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, fill=FillOptions(max_correction=-0.5)),
     "max_correction=-0.5 must be a share >= 0 (such as 0.25) or None"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, mask_params=MaskParams(buffer=-1)),
     "buffer=-1 must be at least 0 pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(tile=0)),
     "tile=0 must be in 16..8192 pixels"),
    (lambda out: mask_scene(SUMMER_S2, out, block=0), "block=0 must be in 64..16384 pixels"),
    (lambda out: run_batch(ROOT / "examples" / "data" / "series", out, jobs=-1),
     "jobs=-1 must be in 1..1024"),
    (lambda out: run_batch(ROOT / "examples" / "data" / "series", out, references=-1),
     "references=-1 must be in 0..250"),
    (lambda out: coregister_file(SUMMER_S1, SUMMER_S2, out, block=0),
     "block=0 must be in 64..16384 pixels"),
    (lambda out: mask_scene(SUMMER_S2, out, MaskParams(threshold=float("nan"))),
     "threshold=nan must be a number"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, mask_params=MaskParams(
        ndsi_threshold=-2)), "ndsi_threshold=-2 must be in -1..1"),
])
def test_library_calls_get_the_range_checks_of_the_cli(tmp_path, call, message):
    """Values the CLI's option ranges refuse: a UsageError, not a traceback or a wrong result."""
    with pytest.raises(UsageError) as error:
        call(tmp_path / "out.tif")
    assert str(error.value) == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.png", "out"])
def test_outputs_must_be_named_as_geotiffs(tmp_path, cli, name):
    out = tmp_path / name
    for args in (["mask", SUMMER_S2, "-o", out],
                 ["remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", out],
                 ["mask", SUMMER_S2, "-o", tmp_path / "m.tif", "--score", out]):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert last_line(result.stderr).startswith(
            f"Error: {out}: outputs are GeoTIFFs; give a .tif or .tiff name")
    assert list(tmp_path.iterdir()) == []


# --- tiles: larger than the scene is capped, beyond the machine's memory refused --------------

def test_a_tile_larger_than_the_scene_is_capped(tmp_path, cli):
    out = tmp_path / "r.tif"
    result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", out, "--tile", "8192",
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tile"] == 256  # the 256 px scene
    assert "tile 8192 px is larger than the 256x256 px scene: using 256" in result.stderr
    with rasterio.open(out) as ds:
        assert ds.tags()["TILE"] == "256"


def test_a_batch_beyond_the_memory_of_the_machine_is_refused(tmp_path, cli):
    wide = tmp_path / "wide.tif"  # 8192 x 2^20 px, sparse: nothing written, nothing read
    with rasterio.open(SUMMER_S2) as ds:
        profile = {**ds.profile, "width": 2**20, "height": 8192, "tiled": True,
                   "blockxsize": 1024, "blockysize": 1024, "sparse_ok": True, "bigtiff": "yes"}
    with rasterio.open(wide, "w", **profile):
        pass
    result = cli("remove", "--s2", wide, "--s1", SUMMER_S1, "-o", tmp_path / "r.tif",
                 "--tile", "8192", "--batch-size", "64", "-v")
    assert result.exit_code == 2, result.output
    # 64 tiles of 8192^2 px, 29 float32 planes each (13 + 2 + 1 in, 13 out): 464 GiB
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert last_line(result.stderr) == (
        f"Error: --tile 8192 with --batch-size 64 needs at least 464 GiB for the network's "
        f"inputs and outputs alone; this machine has {total:.0f} GiB: give a smaller --tile SIZE "
        "or --batch-size N")
    assert "S1 co-registration" not in result.stderr and "cloud pixels" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.tif"]


# --- ONNX models that do not fit ---------------------------------------------------------------

def toy_onnx(path, s2_channels: int = 13, size: int = 64, out_channels: int = 13):
    """A 1x1 convolution from s2 [N, s2_channels, size, size] to out_channels, with the cloudfree
    metadata of a 64 px fill model (s1 is declared and unused)."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["s2", "w"], ["output"])], "toy",
        [helper.make_tensor_value_info("s2", TensorProto.FLOAT, ["batch", s2_channels, size, size]),
         helper.make_tensor_value_info("s1", TensorProto.FLOAT, ["batch", 2, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                       ["batch", out_channels, size, size])],
        [helper.make_tensor("w", TensorProto.FLOAT, [out_channels, s2_channels, 1, 1],
                            np.full(out_channels * s2_channels, 1 / s2_channels).tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    loaded = LoadedModel.from_network(build("fill", "small"))
    for key, value in onnx_metadata(loaded, 64).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("shape, message", [
    ({"s2_channels": 12}, "input s2 is [batch, 12, 64, 64]; cloudfree feeds [batch, 13, 64, 64]"),
    ({"size": 32}, "input s2 is [batch, 13, 32, 32]; cloudfree feeds [batch, 13, 64, 64]"),
    ({"out_channels": 3}, "output is [batch, 3, 64, 64]; cloudfree needs [batch, 13, 64, 64]"),
])
def test_onnx_models_of_the_wrong_shape_are_refused(tmp_path, cli, shape, message):
    model = toy_onnx(tmp_path / "toy.onnx", **shape)
    assert OnnxEngine(toy_onnx(tmp_path / "ok.onnx"), device="cpu").tile == 64  # the shape fits
    out = tmp_path / "r.tif"
    result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", out, "--onnx", model)
    assert result.exit_code == 1, result.output
    assert last_line(result.stderr) == (f"Error: ONNX model {model}: {message}; export it "
                                        "with `cloudfree export-onnx`")
    assert not out.exists()



def test_an_onnx_tile_far_larger_than_the_scene_is_refused_before_reading_it(tmp_path, cli):
    """A 1024 px export would pad the 256 px patch to 16 times its pixels (an 8192 px one, to
    1024 times)."""
    from cloudfree.inference.onnx_export import export_onnx
    from cloudfree.pipeline.remove import check_fixed_tile

    model = export_onnx(LoadedModel.from_network(build("fillnet", "small").eval()),
                        tmp_path / "big.onnx", tile=1024)
    line = ("Error: this ONNX model runs 1024 px tiles only, 16 times the pixels of the 256x256 "
            "px scene: export it again with a smaller tile (cloudfree export-onnx --tile 256), "
            "or run its checkpoint (--checkpoint PATH), which takes any tile")
    out = tmp_path / "r.tif"
    result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", out, "--onnx", model)
    assert result.exit_code == 2, result.output
    assert last_line(result.stderr) == line
    assert "cloud pixels" not in result.stderr  # refused before the scene is classified
    for name, target in (("x_s2.tif", SUMMER_S2), ("x_s1.tif", SUMMER_S1)):
        (tmp_path / "scenes").mkdir(exist_ok=True)
        (tmp_path / "scenes" / name).symlink_to(target)
    result = cli("batch", tmp_path / "scenes", "-o", tmp_path / "out", "--onnx", model)
    assert (result.exit_code, result.stderr) == (2, line + "\n")  # before any scene
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "scenes"]
    check_fixed_tile(512, (256, 256), 16)  # 4 times the pixels: runs
    check_fixed_tile(256, (40, 40), 16)  # the default tile runs on any scene
    check_fixed_tile(2048, (800, 10000), 16)  # five tiles, 2.6 times the pixels: runs
    with pytest.raises(UsageError, match="2048 px tiles only, 7 times the pixels of the "
                                         r"10000x300 px scene: .* --tile 304\)"):
        check_fixed_tile(2048, (300, 10000), 16)

def test_a_missing_cuda_provider_names_the_gpu_extra(tmp_path, monkeypatch):
    import onnxruntime as ort

    model = toy_onnx(tmp_path / "ok.onnx")
    monkeypatch.setattr(ort, "get_available_providers",  # the CPU package's providers
                        lambda: ["AzureExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, for torch
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(CloudfreeError) as raised:
        OnnxEngine(model, device="cuda")
    assert str(raised.value) == (
        "device cuda asked for, but this onnxruntime has no CUDA provider (the CPU package is "
        "installed or shadows the GPU one): install onnxruntime-gpu as the README's GPU "
        "paragraph says (pip install -e .[gpu]), or use the cpu device")
    assert OnnxEngine(model, device="auto").device == "cpu"


# --- messages ------------------------------------------------------------------------------------

def test_random_bytes_are_not_a_pytorch_checkpoint(tmp_path, cli):
    rng = np.random.default_rng(27)
    for name, head in (("random.pt", b""), ("pickle_like.pt", b"\x80\x34")):
        path = tmp_path / name
        path.write_bytes(head + rng.integers(0, 256, 4000, np.uint8).tobytes())
        result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", tmp_path / "r.tif",
                     "-c", path)
        assert result.exit_code == 1, result.output
        assert result.stderr == (f"Error: checkpoint {path} is not a PyTorch checkpoint (no "
                                 "torch.save archive or pickle inside)\n")


@pytest.mark.parametrize("command", ["remove", "evaluate", "export-onnx"])
def test_an_unknown_model_name_is_a_usage_error_in_every_command(tmp_path, cli, command):
    args = {"remove": ["remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", tmp_path / "r.tif"],
            "evaluate": ["evaluate", tmp_path], "export-onnx": ["export-onnx", "-o",
                                                                 tmp_path / "m.onnx"]}[command]
    result = cli(*args, "--model", "nope")
    assert result.exit_code == 2, result.output
    assert last_line(result.stderr).startswith(
        "Error: no bundled model 'nope' (bundled: cloudfree-fillnet-fast, cloudfree-fillnet, "
        "median-fill)")
    assert list(tmp_path.iterdir()) == []


def test_batch_output_that_is_a_file_is_named(tmp_path, cli):
    out = tmp_path / "out"
    out.write_text("a file\n")
    result = cli("batch", ROOT / "examples" / "data", "-o", out)
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"Error: output {out} is a file; batch writes into a folder: give "
                             "a folder path\n")
    inside = out / "scenes"  # a folder to make inside that file
    result = cli("batch", ROOT / "examples" / "data", "-o", inside)
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"Error: output {inside} lies inside {out}, which is a file, not a "
                             "folder; batch writes into a folder: give a folder path\n")


@pytest.mark.parametrize("command", ["mask", "remove"])
def test_an_output_whose_folder_is_a_file_or_missing_is_one_line(tmp_path, cli, command):
    afile = tmp_path / "afile"
    afile.write_text("a file\n")
    run = {"mask": ["mask", SUMMER_S2, "-o"], "remove": ["remove", "--s2", SUMMER_S2, "-o"]}[
        command]
    for out, code, message in (
            (afile / "x.tif", 2, f"{afile} is a file, not a folder; give a path in a folder"),
            (afile / "deeper" / "x.tif", 2, f"it lies inside {afile}, which is a file, not a "
                                            "folder; give a path in a folder"),
            (tmp_path / "none" / "x.tif", 1, f"folder {tmp_path / 'none'} does not exist; make "
                                             "it first, or give a path in a folder that exists")):
        result = cli(*run, out)
        assert (result.exit_code, one_line_error(result)) == (
            code, f"Error: cannot write {out}: {message}")
    assert list(tmp_path.iterdir()) == [afile]


@pytest.mark.parametrize(("option", "name", "message"), [
    ("--report", "r.tif", "report {}: it is written as JSON; name it .json"),
    ("--csv", "r.json", "CSV {}: it is written as CSV; name it .csv")])
def test_evaluate_reports_named_for_another_format_are_refused(tmp_path, cli, option, name,
                                                               message):
    result = cli("evaluate", SEN12, "--model", "median-fill", option, tmp_path / name)
    assert result.exit_code == 2, result.output
    assert last_line(result.stderr) == f"Error: {message.format(tmp_path / name)}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["mask", "ftp://host/scene.tif", "-o", "{tmp}/m.tif"],
     "Invalid value for 'SCENE': ftp://host/scene.tif: ftp:// URLs are not read or written here; "
     "give a local path or an http(s) URL."),
    (["mask", SUMMER_S2, "-o", "http://host/m.tif"],
     "Invalid value for '-o' / '--output': http://host/m.tif: http:// URLs are not read or "
     "written here; give a local path.")])
def test_a_url_that_cannot_be_read_or_written_is_named_as_such(tmp_path, cli, args, message):
    result = cli(*(str(a).format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert last_line(result.stderr) == f"Error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_evaluate_on_a_file_says_it_is_not_a_folder(tmp_path, cli):
    result = cli("evaluate", SUMMER_S2, "--model", "median-fill")
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: data folder {SUMMER_S2} is a file, not a folder\n"


def triplet_folder(data: Path) -> Path:
    """``evaluate``'s flat layout with one triplet: the summer pair and the winter clear image."""
    for folder, path in (("s1", SUMMER_S1), ("s2_cloudy", SUMMER_S2),
                         ("s2_cloudfree", WINTER_CLEAR)):
        (data / folder).mkdir(parents=True)
        (data / folder / "summer.tif").symlink_to(path)
    return data


def test_evaluate_without_a_model_uses_the_default(tmp_path, cli):
    data = triplet_folder(tmp_path / "data")
    result = cli("evaluate", data, "--json", "-q")
    assert result.exit_code == 0, result.output
    named = cli("evaluate", data, "--json", "-q", "--model", "median-fill")
    other = cli("evaluate", data, "--json", "-q", "--model", "cloudfree-fillnet")
    overall = [json.loads(r.stdout)["overall"]["model"] for r in (result, named, other)]
    assert overall[0] == overall[1] != overall[2]


def test_evaluate_keeps_existing_files_and_its_inputs(tmp_path, cli):
    data = triplet_folder(tmp_path / "data")
    kept = tmp_path / "kept.csv"
    kept.write_text("keep\n")
    truth = data / "s2_cloudfree" / "summer.tif"
    for args, code, message in (
            (["--csv", kept], 2, f"output {kept} exists: pass --overwrite to replace it"),
            (["--report", truth, "--overwrite"], 2,
             f"output {truth} is also an input: choose another output path"),
            (["--report", tmp_path / "r.json", "--csv", tmp_path / "r.json"], 2,
             f"the report and the CSV are the same file {tmp_path / 'r.json'}: give each its own "
             "path")):
        result = cli("evaluate", data, "--model", "median-fill", "-q", *args)
        assert (result.exit_code, last_line(result.stderr)) == (code, f"Error: {message}")
    assert kept.read_text() == "keep\n" and not (tmp_path / "r.json").exists()
    assert truth.resolve() == WINTER_CLEAR.resolve()
    result = cli("evaluate", data, "--model", "median-fill", "-q", "--csv", kept, "--overwrite")
    assert result.exit_code == 0, result.output
    assert kept.read_text().splitlines()[0] == "name,cloud_cover,bin,method,psnr,ssim,sam,mae"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "kept.csv"]


def test_a_bound_on_a_correction_that_does_not_exist_is_said_to_change_nothing(tmp_path, cli):
    runs = []
    for i, extra in enumerate(([], ["--max-correction", "0.1"])):
        out = tmp_path / f"r{i}.tif"
        result = cli("remove", "--s2", SUMMER_S2, "--s1", SUMMER_S1, "-o", out, "--model",
                     "median-fill", *extra)
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as ds:
            runs.append((ds.read(), [line for line in result.stderr.splitlines()
                                     if "--max-correction" in line]))
    assert (runs[0][0] == runs[1][0]).all()
    assert runs[0][1] == [] and runs[1][1] == [
        "cloudfree: --max-correction (max_correction) changes nothing with model median-fill: "
        "it bounds a fill network's correction of its base, and this model has none"]


def test_remove_says_what_co_registration_and_the_fill_did(tmp_path, cli):
    sample = ROOT / "examples" / "data"
    result = cli("remove", "--s2", sample / "s2.tif", "--s1", sample / "s1.tif",
                 "-o", tmp_path / "r.tif", "--model", "cloudfree-fillnet", "-v")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "S1 co-registration" in line]
    assert len(lines) == 1, result.stderr
    assert "Sentinel-1 used as georeferenced, without shift correction" in lines[0]
    assert "not applied" not in result.stderr and "wrong partner" not in result.stderr
    base = ("nearby clear pixels with similar Sentinel-1 backscatter (where none is near: the "
            "scene's clear-sky median)")
    restored = ("where the land shows through thin cloud or haze, the veil taken off, shadows "
                "relit")
    assert (f"cloudfree: cloud pixels: {restored}; the rest filled by the fillnet network, "
            f"starting from {base}") in result.stderr
    result = cli("remove", "--s2", sample / "s2.tif", "--s1", sample / "s1.tif",
                 "-o", tmp_path / "m.tif", "--no-restore", "-v")
    assert f"cloudfree: cloud pixels: filled from {base}, no network" in result.stderr


def test_models_and_train_help_name_every_architecture(cli):
    result = cli("models")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "  fill" not in lines  # the network-free fill is listed as the model median-fill
    assert any(line.startswith("  median-fill (default): ") for line in lines)
    assert " 0.0 k" not in result.stdout
    help_text = " ".join(cli("train", "--help").stdout.split())
    trainable = [a for a in ARCHITECTURES if any(True for _ in build(a, "small").parameters())]
    assert "fillnet" in trainable and "fill" not in trainable
    for arch in trainable:
        assert f"{arch}," in help_text or f"{arch})" in help_text, arch



def test_days_out_of_a_scene_with_no_date_warns_once_that_the_days_are_unknown(tmp_path, cli):
    """The bundled 5 July date under a name with no date, filled from 25 June: the days output
    cannot count the days (-32768 where 25 June filled, 0 where observed), and says so once;
    under its own name, the filled pixels are -10 days away and nothing is said."""
    series = ROOT / "examples" / "data" / "series"
    undated = tmp_path / "target.tif"
    undated.symlink_to(series / "s2_2018-07-05.tif")
    warning = (f"cloudfree: {undated.name} has no date (in its name or tags), so the days from "
               "it to the other dates are unknown: the days output is -32768 wherever they "
               "filled; name it with its date (YYYYMMDD) to have them")
    for target, filled_days in ((undated, -32768), (series / "s2_2018-07-05.tif", -10)):
        out, days, source = (tmp_path / f"{name}.tif" for name in ("out", "days", "source"))
        result = cli("remove", "--s2", target, "--reference", series / "s2_2018-06-25.tif",
                     "-o", out, "--days-out", days, "--source-out", source, "--overwrite")
        assert result.exit_code == 0, result.output
        assert "8435 pixels from other dates" in result.stdout
        assert result.stderr.splitlines().count(warning) == (target == undated), result.stderr
        with rasterio.open(days) as d, rasterio.open(source) as s:
            days_map, source_map = d.read(1), s.read(1)
        assert (days_map[source_map == 0] == 0).all()
        assert (days_map[source_map == 1] == filled_days).all()
        assert (source_map == 1).sum() == 8435

# --- packaging: CPU onnxruntime by default, the GPU runtime an extra -------------------------

def test_gpu_onnxruntime_is_an_extra():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    requires = config["options"]["install_requires"].split()
    extras = config["options.extras_require"]
    assert "onnxruntime>=1.16" in requires
    assert not any("onnxruntime-gpu" in r for r in requires)
    assert extras["gpu"].split() == ["onnxruntime-gpu>=1.16"]
    assert 'pip install -e ".[gpu]"' in (ROOT / "README.md").read_text()
