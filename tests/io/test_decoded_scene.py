"""The scene decoded once: what the chunks read back from the scratch is what decoding the
input gives, bit for bit, and the scratch leaves no file behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from helpers import ROOT, SUMMER_S1, SUMMER_S2, leftovers, mosaic, wait_for_partial
from rasterio.windows import Window
from s2_builders import (
    INPUTS,
    WINDOWS,
    l1c_safe,
    l2a_safe,
)

import cloudfree.io.decoded_scene as decoded_scene
from cloudfree.io.decoded_scene import DecodedScene
from cloudfree.io.rasters import mirror_pads, read_padded
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import MaskParams
from cloudfree.mask.scene_input import (
    SceneCopy,
    mask_input,
    mask_reader,
    stored_reader,
    takes_scl,
)
from cloudfree.pipeline.options import EngineOptions
from cloudfree.pipeline.remove import remove_scene
from cloudfree.pipeline.scene_passes import scene_fill_spectrum


@pytest.mark.parametrize("make", INPUTS.values(), ids=INPUTS.keys())
def test_the_chunks_read_back_what_decoding_gives_bit_for_bit(tmp_path, make):
    params = MaskParams(buffer=5)
    with open_sentinel2(make(tmp_path)) as s2:
        decoded = DecodedScene((s2.height, s2.width), s2.dtype,
                               s2.bands, takes_scl(s2, params), tmp_path, block=100)
        try:
            spectrum, _ = scene_fill_spectrum(s2, s2.bands, params, None, True,
                                              copy=SceneCopy(s2, decoded))
            assert decoded.complete and len(decoded.windows) == 9
            direct, _ = scene_fill_spectrum(s2, s2.bands, params, None, True)
            np.testing.assert_array_equal(spectrum.values, direct.values)
            from_copy = mask_reader(s2, s2.bands, params, decoded)
            decode = stored_reader(s2, s2.bands, params)
            for window in WINDOWS:
                raw, valid, scl = decoded.read(window)
                want_raw, want_valid, want_scl = decode(window)
                assert raw.dtype == np.dtype(s2.dtype)
                np.testing.assert_array_equal(raw, want_raw)  # NaN where NaN
                np.testing.assert_array_equal(valid, True if want_valid is None else want_valid)
                assert (scl is None) == (want_scl is None) == (not s2.has_scl)
                if scl is not None:
                    np.testing.assert_array_equal(scl, want_scl)
                for step in (2, 3):  # every step-th row and column alone, across its windows
                    on = (slice(None, None, step),) * 2
                    some = decoded.read(window, [0, 2], step=step)
                    np.testing.assert_array_equal(some[0], raw[[0, 2]][(slice(None), *on)])
                    np.testing.assert_array_equal(some[1], valid[on])
                    assert (some[2] is None) == (scl is None)
                    if scl is not None:
                        np.testing.assert_array_equal(some[2], scl[on])
                refl, ok, _ = from_copy(window)
                want_refl, want_ok = s2.read(window)
                np.testing.assert_array_equal(refl, want_refl)
                np.testing.assert_array_equal(ok, want_ok)
            if make not in (l1c_safe, l2a_safe):  # nodata read back as nodata
                assert not s2.read()[1].all()
        finally:
            decoded.close()


def test_padded_reads_mirror_exactly_as_np_pad(tmp_path):
    params = MaskParams(buffer=5)
    with open_sentinel2(l2a_safe(tmp_path)) as s2:
        read = mask_reader(s2, s2.bands, params)
        for top, left, h, w, halo in ((0, 0, 60, 252, 20), (200, 10, 52, 30, 9),
                                      (0, 0, 252, 252, 300), (100, 100, 20, 20, 5)):
            got = read_padded(read, top, left, h, w, 252, 252, halo, pads_itself=True)
            want = read_padded(lambda win: read(win), top, left, h, w, 252, 252, halo)
            for a, b in zip(got, want, strict=True):
                assert a.shape == (*a.shape[:-2], h + 2 * halo, w + 2 * halo)
                np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 9, 2)
        pads = tuple(tuple(int(x) for x in rng.integers(0, 12, 2)) for _ in range(2))
        inner = rng.random((2, h, w)).astype(np.float32)
        padded = np.full((2, h + sum(pads[0]), w + sum(pads[1])), np.nan, np.float32)
        padded[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w] = inner
        np.testing.assert_array_equal(mirror_pads(padded, pads),
                                      np.pad(inner, [(0, 0), *pads], mode="symmetric"))
    with open_sentinel2(SUMMER_S2) as s2:  # all of a corner window, converted into its place
        stored = stored_reader(s2, s2.bands, params)(Window(0, 0, 40, 30))
        refl, valid, _ = mask_input(s2.reflectance, stored, ((3, 0), (0, 7)))
        np.testing.assert_array_equal(refl, np.pad(s2.read(Window(0, 0, 40, 30))[0],
                                                   [(0, 0), (3, 0), (0, 7)], mode="symmetric"))
        assert refl.shape == valid.shape[:0] + (13, 33, 47) and valid.all()


@pytest.mark.slow
def test_remove_reads_the_copy_with_the_same_output_and_leaves_no_file(tmp_path, monkeypatch,
                                                                      cloudfree_log):
    s2 = mosaic(SUMMER_S2, tmp_path / "s2.tif", 5)  # 1280 px: 4 windows, two partial
    kept = []
    store, read = DecodedScene.store, DecodedScene.read

    def store_and_look(self, *args):
        kept.append(sorted(p.name for p in tmp_path.iterdir()))
        return store(self, *args)

    def counted(self, window, planes=None):
        kept.append("read")
        return read(self, window, planes)

    monkeypatch.setattr(DecodedScene, "store", store_and_look)
    monkeypatch.setattr(DecodedScene, "read", counted)
    out = tmp_path / "copy.tif"
    remove_scene(s2, SUMMER_S1, out, engine=EngineOptions(model="median-fill"), quiet=True)
    assert kept[0] == ["s2.tif"]  # in the folder, with no name
    assert kept.count("read") > 4 and len(kept) - kept.count("read") == 4
    monkeypatch.setattr(decoded_scene.shutil, "disk_usage",
                        lambda folder: SimpleNamespace(free=50 * 2**20))
    before = len(kept)
    remove_scene(s2, SUMMER_S1, tmp_path / "again.tif", engine=EngineOptions(model="median-fill"),
                 quiet=True)
    assert f"{tmp_path} has 50 MB free, less than twice the 44 MB the decoded scene " \
        "needs: the input is decoded again for each pass instead" in cloudfree_log.text
    assert len(kept) == before  # nothing kept, nothing read back
    monkeypatch.undo()
    writes = []

    def full_disk(fd, array, offset):  # the disk fills up in the second window
        writes.append(offset)
        if len(writes) > 20:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(fd, array, offset)

    write = decoded_scene.write_at
    monkeypatch.setattr(decoded_scene, "write_at", full_disk)
    remove_scene(s2, SUMMER_S1, tmp_path / "full.tif", engine=EngineOptions(model="median-fill"),
                 quiet=True)
    assert f"the decoded scene could not be kept in {tmp_path} (No space left on device): the " \
        "input is decoded again for each pass instead" in cloudfree_log.text
    for other in ("again.tif", "full.tif"):
        with rasterio.open(out) as a, rasterio.open(tmp_path / other) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.tif", "copy.tif", "full.tif",
                                                          "s2.tif"]


def test_a_run_killed_while_the_copy_is_in_use_leaves_only_its_partial_output(tmp_path):
    scene, out = tmp_path / "scene", tmp_path / "out"
    scene.mkdir()
    out.mkdir()
    s2, s1 = mosaic(SUMMER_S2, scene / "s2.tif", 3), mosaic(SUMMER_S1, scene / "s1.tif", 3)
    proc = subprocess.Popen([sys.executable, "-m", "cloudfree", "remove", "--s2", str(s2),
                             "--s1", str(s1), "--s1-aligned", "-o", str(out / "r.tif"),
                             "--batch-size", "1", "--quiet"],
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_partial(out, proc)  # the chunks have begun: they read the copy
    proc.send_signal(signal.SIGKILL)  # no clean-up possible
    proc.communicate(timeout=60)
    names = sorted(p.name for p in out.iterdir())  # the partial output and its overviews so far
    assert names == leftovers(out) and all(n.startswith(names[0]) for n in names), names
