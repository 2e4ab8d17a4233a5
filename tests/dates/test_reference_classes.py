"""The classes of each reference and of the target, kept by the first statistics pass and read
back by every later pass: the same as classifying them again, a reference read as it is or
resampled (shifted onto the target), and `remove` writes the same output where they cannot be
kept.

The scenes: the bundled five-date series (real SEN12MS-CR-TS dates of one place); its cloudy
date, 2018-07-05, is the target; a reference with cloud is 2018-07-30 with that date's cumulus
pasted 64 px to the east.
"""

from __future__ import annotations

import importlib
from contextlib import closing
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from helpers import ROOT
from rasterio.windows import Window
from scipy import ndimage

from cloudfree.dates import references
from cloudfree.dates.opening import open_one
from cloudfree.dates.references import Reference, open_reference
from cloudfree.dates.target_mask import TargetMask
from cloudfree.dates.temporal_mask import TemporalMask
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import block_windows
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, MaskParams, classify
from cloudfree.mask.decoded_copy import decoded_copy
from cloudfree.pipeline.options import OutputOptions, ReferenceOptions
from cloudfree.pipeline.remove import remove_scene

SERIES = ROOT / "examples" / "data" / "series"
TARGET = SERIES / "s2_2018-07-05.tif"


def cloudy_reference(folder, moved=False):
    """2018-07-30 with the cumulus of 2018-07-05 (its mask's cloud) pasted 64 px to the east
    (wrapped round); ``moved``: all of it then moved 2 px down and 1.5 px west, dated two
    days earlier (read resampled, its shift applied)."""
    with rasterio.open(SERIES / "s2_2018-07-30.tif") as ds:
        clear, profile = ds.read().astype(np.float64), ds.profile
    with open_sentinel2(TARGET) as s2:
        cloud = classify(*s2.read(), MaskParams())[0] == CLOUD
    with rasterio.open(TARGET) as ds:
        data = np.where(np.roll(cloud, 64, axis=1), np.roll(ds.read(), 64, axis=2), clear)
    if moved:
        data = ndimage.shift(data, (0, 2, -1.5), order=1, mode="nearest")
    out = folder / f"s2_2018-07-{28 if moved else 30}.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.clip(data, 1, 65535).round().astype(np.uint16))
    return out


def kept_reference(folder, target, index: int, moved: bool, output,
                   params: MaskParams = MaskParams(buffer=5)) -> Reference:
    """``cloudy_reference`` opened with its decoded copy beside ``output``, registered (its
    shift applied: read resampled) where ``moved``, else read as it is; its classes kept by a
    first pass over the target grid in 48 px windows."""
    path = cloudy_reference(folder, moved)
    ref = open_one(index, path, None, target, params, InputOptions(), True, scratch=output) \
        if moved else open_reference(index, open_sentinel2(path), target, params,
                                     scratch=output)
    ref.keep_classes(48)
    for window in block_windows(target.width, target.height, 48):
        ref.clear(int(window.row_off), int(window.col_off), int(window.height),
                  int(window.width), with_shadow=False)
    return ref


def test_the_kept_classes_are_what_classifying_again_gives(tmp_path):
    output = tmp_path / "out" / "out.tif"
    output.parent.mkdir()
    with open_sentinel2(TARGET) as target:
        for index, moved in enumerate((False, True), 1):
            with closing(kept_reference(tmp_path, target, index, moved, output)) as ref:
                assert ref.shift_applied == moved and (ref.resampling is None) != moved
                kept = ref.classified
                assert kept.complete and len(kept.windows) == 9
                # inside, at the edges, and reaching beyond them farther than it reads of
                # the scene (its margin there repeats what it reads: classified as it was)
                for top, left, h, w, halo in ((0, 0, 128, 128, 0), (10, 20, 50, 70, 7),
                                              (70, 90, 58, 38, 12), (0, 60, 20, 68, 5),
                                              (-24, -24, 152, 35, 5)):
                    back = ref.classes(top, left, h, w, with_shadow=False, halo=halo)
                    ref.classified = None  # classified again, with the mask's context
                    again = ref.classes(top, left, h, w, with_shadow=False, halo=halo)
                    ref.classified = kept
                    for got, want in zip(back, again, strict=True):
                        np.testing.assert_array_equal(got, want)
                classes = ref.classes(0, 0, 128, 128)[2]
                assert (classes == CLOUD).mean() > 0.2 and (classes == CLEAR).mean() > 0.3
        # the target's, with the mask's cloud buffer and without
        params = MaskParams(buffer=5, edges=False)
        copy = decoded_copy(target, output, target.bands, params, True, every_format=True)
        mask = TargetMask(target, target.bands, params, None, copy.decoded)
        with closing(copy.decoded), closing(mask):
            mask.keep_classes(48, (None, 0))
            for window in block_windows(target.width, target.height, 48):
                for buffer in (None, 0):
                    mask.clear(int(window.row_off), int(window.col_off), int(window.height),
                               int(window.width), buffer)
            kept = dict(mask.classified)
            assert len(kept) == 2 and all(k.complete for k in kept.values())
            for top, left, h, w in ((0, 0, 128, 128), (10, 20, 50, 70), (70, 90, 58, 38)):
                for buffer in (None, 0):
                    back = mask.classes(top, left, h, w, buffer)
                    mask.classified = {}
                    again = mask.classes(top, left, h, w, buffer)
                    mask.classified = kept
                    for got, want in zip(back, again, strict=True):
                        np.testing.assert_array_equal(got, want)
            single = mask.classes(0, 0, 128, 128)[1]
            assert (single == CLOUD).mean() > (mask.classes(0, 0, 128, 128, 0)[1] == CLOUD).mean()
    assert list(output.parent.iterdir()) == []  # nameless scratches: nothing left behind


def test_a_reference_read_in_some_of_its_bands_reads_only_those_where_its_classes_are_kept(
        tmp_path):
    # the temporal background compares six bands: where a reference's classes are read back,
    # only those bands are read, the same values as reading every band and taking them; where
    # they are classified again (a narrow window reaching past the edge), all are read
    output = tmp_path / "out" / "out.tif"
    output.parent.mkdir()
    planes = [0, 1, 3, 7, 10]
    # without the bright-land test: its context would make every window of this small scene
    # mirror more than it reads (classified again)
    params = MaskParams(buffer=5, land=False)
    with open_sentinel2(TARGET) as target:
        for index, moved in enumerate((False, True), 1):
            with closing(kept_reference(tmp_path, target, index, moved, output, params)) as ref:
                # moved: read back from its copy resampled onto the target grid
                scratch = ref.on_grid if moved else ref.kept.decoded
                read, reads = scratch.read, []

                def recorded(window, planes=None, read=read, reads=reads):
                    reads.append(planes)
                    return read(window, planes)

                scratch.read = recorded
                for top, left, h, w, halo, narrow in ((10, 20, 50, 70, 7, False),
                                                      (0, 60, 20, 68, 5, False),
                                                      (-24, -24, 152, 35, 5, True)):
                    reads.clear()
                    some = ref.classes(top, left, h, w, with_shadow=False, halo=halo,
                                       planes=planes)
                    counts = {len(ref.bands) if p is None else len(p) for p in reads}
                    assert counts == {len(ref.bands) if narrow else len(planes)}
                    every = ref.classes(top, left, h, w, with_shadow=False, halo=halo)
                    np.testing.assert_array_equal(some[0], every[0][planes])
                    for got, want in zip(some[1:], every[1:], strict=True):
                        np.testing.assert_array_equal(got, want)


def test_a_reference_read_on_a_sample_of_rows_and_columns_is_that_of_its_whole_read(tmp_path):
    # the statistics passes after the first read each reference on the cells' sample alone:
    # the same bits as the whole window read and masked, at every step-th row and column
    output = tmp_path / "out" / "out.tif"
    output.parent.mkdir()
    params = MaskParams(buffer=5, land=False)  # windows of the small scene read back (above)
    with open_sentinel2(TARGET) as target:
        for index, moved in enumerate((False, True), 1):
            with closing(kept_reference(tmp_path, target, index, moved, output, params)) as ref:
                for top, left, h, w, step in ((0, 0, 128, 128, 2), (10, 20, 50, 70, 2),
                                              (70, 90, 58, 37, 3), (64, 0, 64, 128, 4)):
                    refl, clear = ref.sampled(top, left, h, w, step)
                    want_refl, _, want_clear = ref.clear(top, left, h, w, with_shadow=False)
                    on = (slice(None, None, step),) * 2
                    assert clear.shape == want_clear[on].shape
                    np.testing.assert_array_equal(refl, want_refl[(slice(None), *on)])
                    np.testing.assert_array_equal(clear, want_clear[on])
                assert 0.2 < ref.sampled(0, 0, 128, 128, 2)[1].mean() < 0.8
                kept, ref.classified = ref.classified, None  # classified by each read
                assert ref.sampled(0, 0, 128, 128, 2) is None
                ref.classified = kept


@pytest.mark.slow
def test_remove_writes_the_same_where_the_classes_are_not_kept(tmp_path, monkeypatch):
    scene_input = importlib.import_module("cloudfree.mask.scene_input")
    module = importlib.import_module("cloudfree.mask.classified_scene")
    classified = []
    classify = scene_input.classify

    def counted(*args, **kwargs):
        classified.append(args[0].shape)
        return classify(*args, **kwargs)

    def full_disk(fd, array, offset):
        raise OSError(28, "No space left on device")

    sample, sampled = Reference.sampled, []

    def recorded(self, *args):  # the later passes' reads on the cells' sample, where kept
        got = sample(self, *args)
        sampled.append(got is not None)
        return got

    monkeypatch.setattr(scene_input, "classify", counted)
    monkeypatch.setattr(Reference, "sampled", recorded)
    references = [cloudy_reference(tmp_path), SERIES / "s2_2018-06-25.tif"]
    outputs, calls, samples = [], [], []
    for case in ("kept", "not kept"):
        if case == "not kept":  # no room for the references' classes, and a full disk for
            # the target's: each classified again in every pass (and the dates' background of
            # each window computed in every pass, as it classifies the references too)
            monkeypatch.setattr(Reference, "keep_classes", lambda self, block: None)
            monkeypatch.setattr(module, "write_at", full_disk)
            monkeypatch.setattr(TemporalMask, "keep_windows", lambda *_: None)
        classified.clear()
        sampled.clear()
        out = tmp_path / f"{case}.tif"
        summary = remove_scene(TARGET, None, out, quiet=True, outputs=OutputOptions(mask_out=(
            tmp_path / f"{case}_mask.tif")), dates=ReferenceOptions(references=references))
        assert summary["pixels_by_source"]["references"] > 2000  # of the 5835 cloud pixels
        calls.append(len(classified))
        samples.append(sum(sampled))
        with rasterio.open(out) as ds, rasterio.open(tmp_path / f"{case}_mask.tif") as mask:
            outputs.append((ds.read(), mask.read()))
    for got, want in zip(*outputs, strict=True):
        np.testing.assert_array_equal(got, want)
    assert calls[0] < calls[1] / 2
    assert samples[0] > 0 and samples[1] == 0


def test_a_shifted_reference_is_resampled_once_onto_the_target_grid(tmp_path, monkeypatch):
    # kept decoded, a reference read shifted is resampled once as it is registered
    # (``settle``), window by window, and every later read is direct: the values of resampling
    # each window read, to float32's last bit (a warp rounds by the window it fills)
    output = tmp_path / "out" / "out.tif"
    output.parent.mkdir()
    warps = []
    warp_onto = references.warp_onto

    def counted(*args, **kwargs):
        warps.append(args[4])
        return warp_onto(*args, **kwargs)

    monkeypatch.setattr(references, "warp_onto", counted)
    with open_sentinel2(TARGET) as target, closing(open_one(
            1, cloudy_reference(tmp_path, moved=True), None, target, MaskParams(buffer=5),
            InputOptions(), True, scratch=output)) as ref:
        assert ref.shift_applied and ref.on_grid is not None and ref.kept is None
        assert len(warps) == 1  # the copy's one window (registered unshifted: read directly)
        each_read = replace(ref, on_grid=None)  # resampled by every read, as before
        for top, left, h, w in ((0, 0, 128, 128), (10, 20, 50, 70), (70, 90, 58, 38)):
            warps.clear()
            got = ref.classes(top, left, h, w, with_shadow=False, halo=7)
            assert not warps
            want = each_read.classes(top, left, h, w, with_shadow=False, halo=7)
            assert warps
            np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=0)
            assert (got[0] != want[0]).mean() < 1e-4
            for a, b in zip(got[1:], want[1:], strict=True):
                np.testing.assert_array_equal(a, b)
        whole = Window(0, 0, target.width, target.height)
        (refl, valid), (want, want_valid) = ref.read(whole), each_read.read(whole)
        np.testing.assert_array_equal(valid, want_valid)  # all but the strips shifted out
        np.testing.assert_allclose(refl, want, rtol=1e-6, atol=0)
        assert 0.95 < valid.mean() < 0.99 and (refl[:, valid] > 0).all()
    assert list(output.parent.iterdir()) == []
