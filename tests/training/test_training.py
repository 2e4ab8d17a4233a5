"""Training data layouts, the training loop (resume, DDP on CPU) and evaluate, on real data."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import (
    SUMMER_S1,
    SUMMER_S2,
    WINTER,
    cloudfree_process,
    flat_layout,
    one_line_error,
    read_csv,
)

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.training.datasets import find_samples
from cloudfree.training.evaluate import COLUMNS, METHODS
from cloudfree.training.loop import STATE, TrainConfig, train_folder


def sen12mscr_layout(root: Path, with_summer: bool = False) -> Path:
    """The SEN12MS-CR folder scheme, e.g. ROIs2017_winter_s2_cloudy/s2_cloudy_112/..._p797.tif."""
    files = {("ROIs2017_winter", "112", "p797", kind): path for kind, path in WINTER.items()}
    if with_summer:
        files[("ROIs1868_summer", "19", "p30", "s1")] = SUMMER_S1
        files[("ROIs1868_summer", "19", "p30", "s2_cloudy")] = SUMMER_S2
    for (roi, scene, patch, kind), path in files.items():
        folder = root / f"{roi}_{kind}" / f"{kind}_{scene}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{roi}_{kind}_{scene}_{patch}.tif").symlink_to(path)
    return root


def test_sen12mscr_layout_is_found(tmp_path):
    samples = find_samples(sen12mscr_layout(tmp_path))
    assert [s.name for s in samples] == ["ROIs2017_winter_112_p797"]
    assert samples[0].s2_clear.name == "ROIs2017_winter_s2_112_p797.tif"
    assert samples[0].s2_cloudy.parent.name == "s2_cloudy_112"


def test_missing_twin_is_reported(tmp_path, cloudfree_log):
    samples = find_samples(sen12mscr_layout(tmp_path, with_summer=True))
    assert len(samples) == 1
    assert "ROIs1868_summer_19_p30 (no s2_cloudfree)" in cloudfree_log.text
    for path in tmp_path.glob("ROIs2017*/*/*.tif"):
        path.unlink()
    with pytest.raises(CloudfreeError, match="no complete"):
        find_samples(tmp_path)


@pytest.mark.slow
def test_training_lowers_the_loss_and_resume_continues(tmp_path):
    data, out = flat_layout(tmp_path / "data", 2), tmp_path / "run"
    config = TrainConfig(loss="l1", epochs=4, batch_size=2, crop=None, lr=2e-3, schedule="constant",
                         quiet=True)
    train_folder(data, config, out)
    rows = read_csv(out / "log.csv")
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])

    config.epochs = 6
    summary = train_folder(data, config, out, resume=True)
    state = torch.load(out / STATE, weights_only=True)
    assert summary["step"] == state["step"] == 6 and state["epoch"] == 6
    assert [int(r["step"]) for r in read_csv(out / "log.csv")] == [1, 2, 3, 4, 5, 6]


def test_resume_with_fewer_epochs_than_trained_is_refused(tmp_path, cloudfree_log):
    """An --epochs the run started with and was not repeated is named; the run's own count
    again has nothing to train, and says so."""
    data, out = flat_layout(tmp_path / "data", 1), tmp_path / "run"
    config = TrainConfig(epochs=2, batch_size=1, crop=32, quiet=True)
    train_folder(data, config, out)
    saved = (out / STATE).read_bytes()
    config.epochs = 1
    with pytest.raises(UsageError, match=r"has trained 2 epochs, more than epochs=1 in all: "
                                         r"give the epochs the run started with \(more than 2"):
        train_folder(data, config, out, resume=True)
    config.epochs = 2
    assert train_folder(data, config, out, resume=True)["step"] == 2
    assert "has trained its 2 epochs: nothing to continue" in cloudfree_log.text
    assert (out / STATE).read_bytes() == saved


def test_train_resume_reads_the_run_checkpoint_once(tmp_path, cli, monkeypatch):
    """The run's network, which --resume continues, and its arch and preset, which the
    command takes from it, come from one read of last.pt."""
    data, out = flat_layout(tmp_path / "data", 1), tmp_path / "run"
    train_folder(data, TrainConfig(arch="fillnet", preset="paper", epochs=1, batch_size=1,
                                   crop=32, quiet=True), out)
    reads = []
    real_load = torch.load

    def load(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    result = cli("train", data, "-o", out, "--resume", "--epochs", 2, "--batch-size", 1,
                 "--crop", 32, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(reads) == ["last.pt", STATE]
    assert [int(r["epoch"]) for r in read_csv(out / "log.csv")] == [1, 2]
    assert torch.load(out / STATE, weights_only=True)["epoch"] == 2


def test_loader_workers_default_to_none_on_cpu_and_some_on_a_gpu():
    from cloudfree.core.threads import usable_cores
    from cloudfree.training.loop import loader_workers

    assert loader_workers(None, torch.device("cpu")) == 0
    assert loader_workers(None, torch.device("cuda")) == min(8, usable_cores())
    assert loader_workers(1, torch.device("cpu")) == 1


def test_more_loader_workers_than_cores_are_capped_with_a_warning(cloudfree_log):
    from cloudfree.core.threads import usable_cores
    from cloudfree.training.loop import loader_workers

    cores = usable_cores()
    assert loader_workers(100000, torch.device("cpu")) == cores
    assert (f"100000 data-loading processes asked for, more than the {cores} usable cores; "
            f"using {cores}") in cloudfree_log.text


def test_persistent_loader_workers_train_every_epoch(tmp_path):
    """Worker processes kept across epochs: every epoch still sees every sample."""
    data, out = flat_layout(tmp_path / "data", 4), tmp_path / "run"
    config = TrainConfig(loss="l1", epochs=2, batch_size=2, crop=32, workers=2, quiet=True)
    summary = train_folder(data, config, out)
    assert summary["step"] == 4
    assert [int(r["step"]) for r in read_csv(out / "log.csv")] == [2, 4]


def test_train_and_evaluate_commands(tmp_path, cli):
    data = sen12mscr_layout(tmp_path / "data", with_summer=True)
    result = cli("train", str(data), "--epochs", "1", "--crop", "32",
                 "--loss", "cloudaware", "--out", str(tmp_path / "run"), "-q")
    assert result.exit_code == 0, result.output
    report, table = tmp_path / "report.json", tmp_path / "report.csv"
    result = cli("evaluate", str(data), "-c", str(tmp_path / "run" / "last.pt"),
                 "--report", str(report), "--csv", str(table), "-q")
    assert result.exit_code == 0, result.output
    assert "| median_fill |" in result.output
    rows = read_csv(table)
    assert tuple(rows[0]) == COLUMNS
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        assert r["bin"] == "0-20" and 0 <= float(r["cloud_cover"]) <= 20
        assert 10 < float(r["psnr"]) < 60 and 0 < float(r["ssim"]) <= 1
        assert 0 <= float(r["sam"]) < 90 and 0 <= float(r["mae"]) < 0.5
    summary = json.loads(report.read_text())
    assert set(summary["overall"]) == set(METHODS) and list(summary["bins"]) == ["0-20"]


def _distributed_worker(rank: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    try:
        train_folder(Path(data), TrainConfig(epochs=1, batch_size=1, crop=32, device="cpu",
                                             quiet=True), Path(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_training_on_cpu_with_gloo(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, out = flat_layout(tmp_path / "data", 2), tmp_path / "run"
    mp.spawn(_distributed_worker, args=(port, str(data), str(out)), nprocs=2)
    rows = read_csv(out / "log.csv")
    assert len(rows) == 1 and rows[0]["step"] == "1"  # two samples, one per process
    assert torch.load(out / STATE, weights_only=True)["step"] == 1


def test_a_learning_rate_above_1_is_refused(tmp_path, cli):
    """One epoch at 1e30 saved weights of about 1e30, finite, and exited 0."""
    data, run = sen12mscr_layout(tmp_path / "data"), tmp_path / "run"
    result = cli("train", data, "--epochs", "1", "--crop", "32", "--lr", "1e30", "--out", run)
    assert result.exit_code == 2, result.output
    assert one_line_error(result) == (
        "Error: --lr 1e+30 must be above 0 and at most 1: Adam moves every weight by about the "
        "learning rate each step (the papers train at 1e-4 to 1e-3)")
    assert not run.exists()


def test_a_diverging_run_stops_and_a_nan_checkpoint_is_refused(tmp_path, cli, monkeypatch):
    """The loss not finite: one line and exit 1, no NaN last.pt written; a checkpoint whose
    parameters are NaN is refused in one line."""
    monkeypatch.setattr("cloudfree.training.loop.MAX_LR", 1e30)  # a rate that diverges
    data = sen12mscr_layout(tmp_path / "data")
    run = tmp_path / "run"
    result = cli("train", str(data), "--epochs", "2", "--crop", "32", "--lr", "1e30",
                 "--out", str(run), "-q")
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: training diverged at step ")
    assert line.endswith("; nothing of this epoch is saved; lower --lr 1e+30 or look for NaN "
                         "in the data")
    from cloudfree.inference.checkpoint import load_checkpoint, save_checkpoint

    if (run / "last.pt").exists():  # an earlier epoch's, still finite: it loads
        load_checkpoint(run / "last.pt")
    from cloudfree.inference.scaling import SCALINGS
    from cloudfree.networks import build

    network = build("fillnet")
    with torch.no_grad():
        next(network.parameters()).fill_(float("nan"))
    bad = tmp_path / "nan.pt"
    save_checkpoint(bad, network, SCALINGS["glfcr"])
    with pytest.raises(CloudfreeError, match=r"^checkpoint .*nan\.pt: parameter \S+ holds NaN "
                       r"or infinite values \(its training diverged\); train it again with a "
                       r"lower learning rate$"):
        load_checkpoint(bad)


def nan_s1_layout(root: Path) -> Path:
    """The winter triplet with every pixel of its S1 NaN."""
    data = flat_layout(root, 1)
    s1 = data / "s1" / "winter0.tif"
    s1.unlink()
    with rasterio.open(WINTER["s1"]) as src:
        profile = src.profile
    with rasterio.open(s1, "w", **profile) as dst:
        dst.write(np.full((2, profile["height"], profile["width"]), np.nan, np.float32))
    return data


@pytest.mark.parametrize("workers", [0, 2])
def test_a_sample_with_no_usable_pixel_is_refused_naming_the_file(tmp_path, cli, workers):
    """An all-NaN S1 leaves no pixel to train on (it trained at a loss of 0): one line naming
    the file, also from a loading process; no run folder."""
    data, run = nan_s1_layout(tmp_path / "data"), tmp_path / "run"
    result = cli("train", data, "--epochs", "1", "--crop", "32", "--workers", workers,
                 "--out", run, "-q")
    assert result.exit_code == 1, result.output
    assert one_line_error(result) == (
        f"Error: sample winter0 has no usable pixel: every pixel of {data}/s1/winter0.tif is "
        "nodata (NaN or its nodata value); fix or remove the sample")
    assert not run.exists()


def test_a_run_killed_before_its_first_epoch_leaves_no_folder(tmp_path):
    data, run = flat_layout(tmp_path / "data", 8), tmp_path / "runs" / "run"
    proc = cloudfree_process("train", data, "--epochs", "1", "--crop", "128", "-o", run)
    for line in proc.stderr:
        if "training dsen2cr" in line:
            break
    time.sleep(0.5)  # the first epoch takes seconds
    assert proc.poll() is None
    proc.kill()
    proc.communicate()
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]


def test_a_crop_larger_than_the_samples_is_reported(tmp_path, cloudfree_log):
    data, out = flat_layout(tmp_path / "data", 1), tmp_path / "run"
    train_folder(data, TrainConfig(epochs=1, batch_size=1, crop=512, quiet=True), out)
    assert "crop 512 is larger than sample winter0 (256 x 256): its crops are 256 px" \
        in cloudfree_log.text
