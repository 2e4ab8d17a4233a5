"""The scene's classes kept by `remove`'s first pass: read back with any margin, mirrored around
the scene, they are the classes of a window classified with its context, and the chunks that
read them back write what classifying their windows again gives."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import rasterio
from helpers import SUMMER_S1, SUMMER_S2

from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import block_windows
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classified_scene import ClassifiedScene
from cloudfree.mask.classify import MaskParams
from cloudfree.mask.scene_input import mask_reader, read_classified
from cloudfree.pipeline.mask import scene_shadow_thresholds
from cloudfree.pipeline.options import EngineOptions


def test_the_kept_classes_read_back_as_a_window_classified_with_its_context(tmp_path):
    params = MaskParams(buffer=5, shadow=True)
    with open_sentinel2(SUMMER_S2) as s2:
        scene = (s2.height, s2.width)
        shadow = scene_shadow_thresholds(s2, block_windows(s2.width, s2.height), True)
        read = mask_reader(s2, s2.bands, params)
        kept = ClassifiedScene(s2.height, s2.width, tmp_path, block=100)
        try:
            for index, window in enumerate(kept.windows):  # as the first pass stores them
                top, left = int(window.row_off), int(window.col_off)
                h, w = int(window.height), int(window.width)
                masked = read_classified(read, top, left, h, w, scene, params.halo, params,
                                         s2.bands, shadow)
                inner = (slice(params.halo, params.halo + h), slice(params.halo, params.halo + w))
                kept.store(index, masked.classes[inner], masked.score[inner])
            assert kept.complete and len(kept.windows) == 9
            halo, exact = params.halo + 40, 40  # classes exact 40 px around the window
            for top, left, h, w in ((0, 0, 60, 90), (150, 30, 106, 120), (200, 180, 56, 76)):
                want = read_classified(read, top, left, h, w, scene, halo, params, s2.bands,
                                       shadow)
                classes, score = kept.around(top, left, h, w, halo)
                ring = (slice(halo - exact, halo + h + exact),
                        slice(halo - exact, halo + w + exact))
                assert (want.classes[ring] == 1).any()  # cloud there, and clear
                np.testing.assert_array_equal(classes[ring], want.classes[ring])
                np.testing.assert_array_equal(score[ring], want.score[ring])
        finally:
            kept.close()
    assert list(tmp_path.iterdir()) == []  # nameless: nothing left behind


def test_the_chunks_reading_the_kept_classes_write_what_classifying_again_gives(
        tmp_path, monkeypatch):
    removal = importlib.import_module("cloudfree.pipeline.remove")
    scene_input = importlib.import_module("cloudfree.mask.scene_input")
    classified = []
    classify = scene_input.classify

    def counted(*args, **kwargs):
        classified.append(args[0].shape)
        return classify(*args, **kwargs)

    monkeypatch.setattr(scene_input, "classify", counted)
    outputs, calls = [], []
    for keep in (True, False):
        if not keep:
            monkeypatch.setattr(removal.ClassifiedScene, "beside", lambda *args: None)
        classified.clear()
        out = tmp_path / f"keep{keep}.tif"
        summary = removal.remove_scene(SUMMER_S2, SUMMER_S1, out,
                                       engine=EngineOptions(tile=64, batch_size=2),
                                       inputs=InputOptions(s1_aligned=True), quiet=True)
        assert summary["tiles_run"] > 4  # several chunks, most with cloud
        calls.append(len(classified))
        with rasterio.open(out) as ds:
            outputs.append(ds.read())
    np.testing.assert_array_equal(*outputs)
    # kept: the shadow offset's one window alone is classified; else the clear-sky statistics'
    # window and every chunk too
    assert calls[0] == 1
    assert calls[1] > 4


def test_a_failed_write_of_the_classes_leaves_the_windows_classified_again(tmp_path,
                                                                           monkeypatch):
    module = importlib.import_module("cloudfree.mask.classified_scene")

    def full_disk(fd, array, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "write_at", full_disk)
    kept = ClassifiedScene(256, 256, tmp_path, block=100)
    try:
        kept.store(0, np.zeros((100, 100), np.uint8), np.zeros((100, 100), np.float32))
        assert kept.failed and not kept.complete
    finally:
        kept.close()


@pytest.mark.parametrize("found", [False, True])
def test_the_statistics_read_the_kept_classes_without_the_masks_context(tmp_path, monkeypatch,
                                                                        found):
    """Once the first pass has kept the summer sample's classes, the fill statistics read them
    back with no margin where no shadow is tied to its cloud (the scene's offset not found),
    else with the margin they would classify with, and sum what classifying their windows
    again with it gives."""
    passes = importlib.import_module("cloudfree.pipeline.scene_passes")
    params = MaskParams(buffer=5, shadow=True)
    if not found:
        monkeypatch.setattr(passes, "scene_offset", lambda counts: None)
    halos = []
    read_masked = passes.read_masked

    def recorded(read, top, left, height, width, scene, halo, *args, **kwargs):
        halos.append(halo)
        return read_masked(read, top, left, height, width, scene, halo, *args, **kwargs)

    monkeypatch.setattr(passes, "read_masked", recorded)
    margin = params.halo + passes.SHADOW_NEAR if found else params.halo
    with open_sentinel2(SUMMER_S2) as s2:
        kept = ClassifiedScene(s2.height, s2.width, tmp_path)
        try:
            shadow, stats = passes.first_passes(s2, s2.bands, params, True, True, True,
                                                 kept=kept)
            assert kept.complete and (shadow.offset is not None) == found
            assert halos[-1] == (margin if found else 0)  # the statistics' window, read back
            again = passes.scene_fill_spectrum(s2, s2.bands, params, shadow, True, True)
            assert halos[-1] == margin  # classified again
            assert stats == again and 0 < stats[0].clear_fraction < 1
        finally:
            kept.close()
