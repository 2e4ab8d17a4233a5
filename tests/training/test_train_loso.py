"""Held-out training folds: train_default.py --holdout, split_training_set.py and train_loso.py.

On a tiny set of 64 px crops of the real samples in ../shared/data, laid out as
``scripts/build_training_set.py`` writes its sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from helpers import ROOT, SUMMER_S1, SUMMER_S2, WINTER_CLEAR, WINTER_S1, WINTER_S2

sys.path.insert(0, str(ROOT / "scripts"))
import split_training_set  # noqa: E402
from train_default import clear_scenes, cloud_fields, real_triplets, training_records  # noqa: E402

from cloudfree.inference.checkpoint import load_checkpoint  # noqa: E402

CLOUDY = (slice(None), slice(0, 64), slice(128, 192))  # 63 % cloud in summer_19
PLAIN = (slice(None), slice(64, 128), slice(64, 128))


def crop(path: Path, window: tuple[slice, ...] = PLAIN) -> np.ndarray:
    """A 64 px float32 crop of a GeoTIFF."""
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float32)[window]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """A cloudy triplet (train), a cloud-free one (val), a pair, a cloud field, a clear patch
    and an L2A pair, one scene each."""
    data = tmp_path_factory.mktemp("set")
    clear, s1 = crop(WINTER_CLEAR), crop(WINTER_S1)
    records = {
        "sky": ("triplet", "train", [], {"s1": crop(SUMMER_S1, CLOUDY),
                                         "s2_cloudy": crop(SUMMER_S2, CLOUDY), "s2_clear": clear}),
        "plain": ("triplet", "val", [], {"s1": s1, "s2_cloudy": crop(WINTER_S2),
                                         "s2_clear": clear}),
        "pair": ("pair", "train", [], {"s1": s1, "s2_clear": clear[:, ::-1].copy()}),
        "field": ("cloudfield", "train", [], {"s2_cloudy": crop(SUMMER_S2, CLOUDY),
                                              "s2_clear": clear}),
        "patch": ("clear", "train", [], {"s2_clear": clear}),
        "l2a": ("pair", "train", ["B10"], {"s1": s1, "s2_clear": clear}),
    }
    index = []
    for name, (kind, split, missing, arrays) in records.items():
        np.savez_compressed(data / f"{name}.npz", **arrays)
        index.append({"id": name, "scene": name, "kind": kind, "split": split,
                      "bands_missing": missing})
    (data / "index.json").write_text(json.dumps(index))
    return data


def counts(records: list[dict]) -> tuple[int, int, int]:
    """Real triplets, clear scenes and cloud fields that training makes of ``records``."""
    return (len(real_triplets(records)), len(clear_scenes(records)),
            len(cloud_fields(records)))


def test_a_holdout_reads_both_splits_without_the_scene(tiny_set):
    assert [r["id"] for r in training_records([tiny_set], [])] == [
        "sky", "pair", "field", "patch", "l2a"]
    held_out = training_records([tiny_set], ["sky"])
    assert "sky" not in [r["id"] for r in held_out]
    assert counts(held_out) == (1, 2, 2)  # plain (val) only; pair and plain; field and plain
    with pytest.raises(SystemExit, match="no scene nowhere"):
        training_records([tiny_set], ["nowhere"])
    with pytest.raises(SystemExit, match="repeated"):
        training_records([tiny_set, tiny_set], ["sky"])
    with pytest.raises(SystemExit, match="no index.json"):
        training_records([tiny_set / "nowhere"], [])
    every = training_records([tiny_set], [], all_splits=True)
    assert {r["id"] for r in every} == {r["id"] for r in held_out} | {"sky"}


@pytest.mark.parametrize("options", [[], ["--holdout", "sky"], ["--all-splits", "--preset",
                                                                  "small", "--holdout", "sky"]])
@pytest.mark.slow
def test_install_ships_only_a_model_of_every_scene(tiny_set, tmp_path, options):
    """The bundled models are trained on both splits with nothing held out."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_default.py"),
                             "--data", str(tiny_set), "--out", str(tmp_path / "run"),
                             "--install", *options], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--install ships a model of every scene" in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_parts_hold_what_training_reads(tiny_set, tmp_path):
    sizes = [p.stat().st_size for p in tiny_set.glob("*.npz")]
    parts = split_training_set.split(tiny_set, tmp_path / "data", 1.5 * max(sizes))
    assert len(parts) > 1
    assert all(sum(f.stat().st_size for f in p.glob("*.npz")) <= 1.5 * max(sizes)
               for p in parts)
    ids = sorted(r["id"] for p in parts for r in json.loads((p / "index.json").read_text()))
    assert ids == ["field", "pair", "plain", "sky"]
    field = next(p / "field.npz" for p in parts if (p / "field.npz").exists())
    assert np.load(field).files == ["s2_cloudy"]  # its clear twin feeds the prior only
    for holdout in (["sky"], ["plain"]):
        assert (counts(training_records(parts, holdout))
                == counts(training_records([tiny_set], holdout)))
    with pytest.raises(SystemExit, match="exists"):
        split_training_set.split(tiny_set, tmp_path / "data", 1.5 * max(sizes))


def train_loso(data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """``scripts/train_loso.py`` on fillnet small, 8 samples an epoch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train_loso.py"), "--data",
                           str(data), "--out", str(out), "--candidates", "fillnet:small",
                           "--samples", "8", *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_loso_runs_resume_and_stop_at_the_deadline(tiny_set, tmp_path):
    done = train_loso(tiny_set, tmp_path, "--epochs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "finished fillnet-small/sky: 1 epochs" in done.stdout  # the one scene with cloud
    run = tmp_path / "fillnet-small" / "sky"
    assert load_checkpoint(run / "last.pt").metadata["holdout"] == ["sky"]
    again = train_loso(tiny_set, tmp_path, "--epochs", "2")
    assert "resuming after epoch 1" in again.stdout and again.returncode == 0
    assert len((run / "log.csv").read_text().splitlines()) == 3
    stopped = train_loso(tiny_set, tmp_path, "--epochs", "500", "--deadline", "5")
    assert stopped.returncode == 1 and "missing fillnet-small/sky" in stopped.stdout
    assert load_checkpoint(run / "last.pt").metadata["training"]["epoch"] >= 2
