"""The scene decoded once in `remove`: the co-registration, the clear-sky statistics and the
shadow passes read what the first pass keeps, bit for bit what decoding the input gives, as it
keeps it."""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from helpers import SUMMER_S1, SUMMER_S2, WINTER_CLEAR, WINTER_S2, mosaic
from rasterio.windows import Window
from s2_builders import (
    INPUTS,
    WINDOWS,
    coarsen_like_l1c,
    l1c_safe,
    l2a_safe,
    read_stack,
    summer_with_nodata,
    write_safe,
    write_stack,
)

import cloudfree.io.decoded_scene as decoded_scene
from cloudfree.core.threads import thread_pool
from cloudfree.coregister.s1_to_s2 import REFINE_BANDS
from cloudfree.inference.checkpoint import save_checkpoint
from cloudfree.io.decoded_scene import DecodedScene
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import block_windows
from cloudfree.io.sentinel2 import Sentinel2, open_sentinel2
from cloudfree.mask.bands import SHADOW_BANDS
from cloudfree.mask.classify import CLOUD, MaskParams, classify
from cloudfree.mask.decoded_copy import fill_copy
from cloudfree.mask.scene_input import SceneCopy, stored_reader, takes_scl
from cloudfree.networks import build
from cloudfree.pipeline.mask import mask_scene
from cloudfree.pipeline.options import EngineOptions, OutputOptions, ReferenceOptions
from cloudfree.pipeline.remove import remove_scene
from cloudfree.pipeline.scene_passes import scene_fill_spectrum

#: The bands the co-registration reads (the refinement's and its mask's), the shadow pass's,
#: and one band.
BAND_SETS = (REFINE_BANDS + ("B01", "B10", "B11"), SHADOW_BANDS, ("B04",))


class Decodes(list):
    """The (window, bands) of every ``Sentinel2.read_dn`` call; ``by_input``: the windows read
    of each input, by its file name."""

    def __init__(self) -> None:
        super().__init__()
        self.by_input: dict[str, list[Window]] = {}

    def clear(self) -> None:
        super().clear()
        self.by_input.clear()


@pytest.fixture
def decodes(monkeypatch) -> Decodes:
    """The decodes of every ``Sentinel2.read_dn`` call from here on."""
    calls = Decodes()
    read_dn = Sentinel2.read_dn

    def counted(self, window=None, bands=None):
        calls.append((window, None if bands is None else tuple(bands)))
        calls.by_input.setdefault(self.path.name, []).append(window)
        return read_dn(self, window, bands)

    monkeypatch.setattr(Sentinel2, "read_dn", counted)
    return calls


@pytest.mark.parametrize("make", INPUTS.values(), ids=INPUTS.keys())
def test_the_copy_gives_what_decoding_gives_and_decodes_only_where_it_cannot(tmp_path, make,
                                                                            decodes):
    params = MaskParams(buffer=5)
    with open_sentinel2(make(tmp_path)) as s2:
        decoded = DecodedScene((s2.height, s2.width), s2.dtype,
                               s2.bands, takes_scl(s2, params), tmp_path, block=100)
        copy = SceneCopy(s2, decoded)
        try:
            scene_fill_spectrum(s2, s2.bands, params, None, True, copy=copy)
            copy.end()
            assert decoded.complete
            for window in WINDOWS:
                all_valid = bool(decoded.read(window)[1].all())
                for bands in BAND_SETS:
                    if s2.missing(bands):
                        continue
                    before = len(decodes)
                    refl, valid = copy.read(window, bands)
                    assert len(decodes) == before + (not all_valid)  # decoded where masked
                    want_refl, want_valid = s2.read(window, bands)
                    np.testing.assert_array_equal(refl, want_refl)
                    np.testing.assert_array_equal(valid, want_valid)
            if make in (l1c_safe, l2a_safe):  # JPEG2000 has no masks: all from the copy
                assert decoded.read(Window(0, 0, 252, 252))[1].all()
            if make is summer_with_nodata:  # the nodata corner's windows decoded again
                assert not decoded.read(WINDOWS[0])[1].all()
                assert decoded.read(WINDOWS[2])[1].all()
        finally:
            decoded.close()


def test_a_read_waits_for_the_windows_it_needs_and_decodes_once_the_pass_has_ended(
        tmp_path, decodes):
    with open_sentinel2(l1c_safe(tmp_path)) as s2:
        decoded = DecodedScene((s2.height, s2.width), s2.dtype,
                               s2.bands, False, tmp_path, block=100)
        copy = SceneCopy(s2, decoded)
        decode = stored_reader(s2, s2.bands, MaskParams())
        window = Window(90, 10, 20, 20)  # in the first two of the 3 x 3 windows
        try:
            with thread_pool(1) as pool:
                reading = pool.submit(copy.read, window, REFINE_BANDS)
                copy.store(0, decoded.windows[0], decode(decoded.windows[0]))
                with pytest.raises(FutureTimeout):  # the second is not there yet
                    reading.result(timeout=0.5)
                copy.store(1, decoded.windows[1], decode(decoded.windows[1]))
                stored = len(decodes)
                refl, valid = reading.result(timeout=60)
                assert len(decodes) == stored  # read from the copy
                np.testing.assert_array_equal(refl, s2.read(window, REFINE_BANDS)[0])
                assert valid.all()
                later = pool.submit(copy.read, Window(0, 240, 10, 10), ("B02", "B11"))
                with pytest.raises(FutureTimeout):
                    later.result(timeout=0.5)
                stored = len(decodes)
                copy.end()  # the pass stopped before the last row: decoded instead
                refl, _ = later.result(timeout=60)
                assert decodes[stored:] == [(Window(0, 240, 10, 10), ("B02", "B11"))]
                np.testing.assert_array_equal(refl, s2.read(Window(0, 240, 10, 10),
                                                            ("B02", "B11"))[0])
        finally:
            decoded.close()


@pytest.mark.parametrize("shadow", [False, True], ids=["default", "shadow"])
@pytest.mark.slow
def test_remove_decodes_each_window_once_with_the_same_shifts_and_output(tmp_path, monkeypatch,
                                                                         decodes, shadow):
    s2, s1 = mosaic(SUMMER_S2, tmp_path / "s2.tif", 5), mosaic(SUMMER_S1, tmp_path / "s1.tif", 5)
    params = MaskParams(buffer=5, shadow=shadow)
    once = remove_scene(s2, s1, tmp_path / "once.tif", engine=EngineOptions(model="median-fill"),
                        mask_params=params, quiet=True)
    with open_sentinel2(s2) as scene:
        windows, bands = block_windows(scene.width, scene.height), scene.bands
    assert len(once["s1_coregistration"]["window_estimates"]) == 9  # beside 4 windows kept
    # each window decoded once as it is, with no margin (JPEG2000 would decode its neighbours)
    assert len(windows) == 4 and sorted(decodes, key=str) == sorted(((w, bands) for w in windows),
                                                                    key=str)
    monkeypatch.setattr(decoded_scene.shutil, "disk_usage",  # no room: each pass decodes
                        lambda folder: SimpleNamespace(free=2**20))
    del decodes[:]
    again = remove_scene(s2, s1, tmp_path / "again.tif", engine=EngineOptions(model="median-fill"),
                         mask_params=params, quiet=True)
    assert len(decodes) > 4 + 9 + 4 * shadow
    assert once["s1_coregistration"] == again["s1_coregistration"]
    with rasterio.open(tmp_path / "once.tif") as a, rasterio.open(tmp_path / "again.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.tags().get("COREGISTER_FIELD") == b.tags().get("COREGISTER_FIELD")


def test_a_network_without_the_fill_decodes_the_scene_once_before_its_first_chunk(
        tmp_path, monkeypatch, decodes):
    """A network that does not start from the fill (dsen2cr, untrained) makes passes over the
    scene before its first chunk only for the shadows; the first of them keeps what it decodes,
    and the second and the chunks read it back, with the output of decoding again."""
    torch.manual_seed(0)
    engine = EngineOptions(checkpoint=save_checkpoint(tmp_path / "dsen2cr.pt",
                                                      build("dsen2cr", "small"), tile=64),
                           tile=64, batch_size=2, device="cpu")
    inputs = InputOptions(s1_aligned=True)
    once = remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "once.tif", engine=engine,
                        inputs=inputs, quiet=True)
    assert once["tiles_run"] > 4  # several chunks
    with open_sentinel2(SUMMER_S2) as s2:
        assert decodes == [(w, s2.bands) for w in block_windows(s2.width, s2.height)]
    monkeypatch.setattr(decoded_scene.shutil, "disk_usage",  # no room: each pass decodes
                        lambda folder: SimpleNamespace(free=2**20))
    del decodes[:]
    remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "again.tif", engine=engine, inputs=inputs,
                 quiet=True)
    assert len(decodes) > 4
    with rasterio.open(tmp_path / "once.tif") as a, rasterio.open(tmp_path / "again.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_the_scene_is_kept_by_tiles_each_window_decoded_once_as_it_is(tmp_path, monkeypatch):
    with open_sentinel2(l1c_safe(tmp_path)) as s2:  # one JPEG2000 tile per band: 252 px
        assert s2.tiles_across(100) == 2 and s2.tiles_across(126) == 2  # the 20 m tile: 252
        assert s2.tiles_across(1024) == 1
        decoded = DecodedScene((s2.height, s2.width), s2.dtype,
                               s2.bands, False, tmp_path, block=100)
        copy = SceneCopy(s2, decoded)
        try:
            assert copy.tile_groups() == [[0, 1, 3, 4], [2, 5], [6, 7], [8]]
            threads = {}
            decode = stored_reader(s2, s2.bands, MaskParams())

            def on_thread(window):
                threads.setdefault(threading.get_ident(), []).append(window)
                return decode(window)

            # two cores, as CI has (the module, not the function ``cloudfree.remove_scene``)
            monkeypatch.setattr(importlib.import_module("cloudfree.mask.decoded_copy"),
                                "usable_cores", lambda: 2)
            fill_copy(copy, on_thread, True)
            assert decoded.complete
            kept = sorted((w for ws in threads.values() for w in ws), key=str)
            assert kept == sorted(decoded.windows, key=str)  # each once, with no margin
            for group in copy.tile_groups():  # a tile's windows on one thread
                assert any({decoded.windows[i] for i in group} <= set(ws)
                           for ws in threads.values())
            window = Window(80, 90, 60, 50)
            np.testing.assert_array_equal(copy.read(window, s2.bands)[0], s2.read(window)[0])
        finally:
            decoded.close()
    with open_sentinel2(SUMMER_S2) as s2:  # a GeoTIFF in strips: windows read one by one
        assert s2.tiles_across(100) == 1


@pytest.mark.parametrize("make", [l1c_safe, l2a_safe], ids=["L1C", "L2A"])
@pytest.mark.parametrize("shadow", [False, True], ids=["default", "shadow"])
def test_mask_decodes_a_safe_once_with_no_margin_and_writes_the_same(tmp_path, monkeypatch,
                                                                    decodes, make, shadow):
    safe = make(tmp_path)
    # no veiled edges (L2A) nor bright-land test: their context would make every window of
    # this small scene whole
    params = MaskParams(buffer=5, shadow=shadow, edges=False, land=False)
    # 100 px windows: read from the input, each would take a 5 px margin and more
    once = mask_scene(safe, tmp_path / "once.tif", params, block=100, threads=2, quiet=True,
                      score_path=tmp_path / "once_score.tif")
    with open_sentinel2(safe) as s2:
        assert s2.jpeg2000
        whole, bands = Window(0, 0, s2.width, s2.height), params.bands_for(s2.bands)
        scl = takes_scl(s2, params)
    assert decodes == [(whole, bands)] + [(whole, ("SCL",))] * scl  # each pixel once
    monkeypatch.setattr(decoded_scene.shutil, "disk_usage",  # no room: decoded window by window
                        lambda folder: SimpleNamespace(free=2**20))
    del decodes[:]
    again = mask_scene(safe, tmp_path / "again.tif", params, block=100, threads=2, quiet=True,
                       score_path=tmp_path / "again_score.tif")
    assert len(decodes) >= 9 * (1 + shadow) and all(w != whole for w, _ in decodes)
    assert once["cloud_fraction"] == again["cloud_fraction"] > 0
    for name in ("", "_score"):
        with rasterio.open(tmp_path / f"once{name}.tif") as a, \
                rasterio.open(tmp_path / f"again{name}.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cloudfree")]


def test_mask_reads_a_geotiff_as_it_is(tmp_path, decodes):
    params = MaskParams(buffer=5)
    mask_scene(SUMMER_S2, tmp_path / "mask.tif", params, block=100, threads=2, quiet=True)
    with open_sentinel2(SUMMER_S2) as s2:
        assert not s2.jpeg2000
    assert len(decodes) == 9  # each 100 px window with its margin, no scratch kept first


def target_and_safe_reference(folder: Path) -> tuple[Path, Path]:
    """The target: the real clear winter patch with the real summer cumulus pasted over it; the
    reference: the hazy winter date of the same place as an L1C .SAFE (JPEG2000)."""
    summer, _ = read_stack(SUMMER_S2, 252)
    with open_sentinel2(SUMMER_S2) as s2:
        cloud = classify(s2.read(Window(0, 0, 252, 252))[0], None, MaskParams())[0] == CLOUD
    clear, profile = read_stack(WINTER_CLEAR, 252)
    target = write_stack(folder / "target_20171201.tif", np.where(cloud, summer, clear),
                         profile)
    reference = write_safe(folder / "S2B_MSIL1C_20171211T101029_N0400_R022_T31UFU_"
                           "20171211T121507.SAFE", coarsen_like_l1c(read_stack(WINTER_S2, 252)[0]),
                           profile, offset=1000)
    return target, reference


@pytest.mark.slow
def test_a_safe_reference_is_decoded_once_with_the_same_fill_and_mask(tmp_path, monkeypatch,
                                                                       decodes):
    target, reference = target_and_safe_reference(tmp_path)
    reads = decodes.by_input

    def run(stem: str) -> tuple[dict, dict]:
        decodes.clear()
        filled = remove_scene(target, None, tmp_path / f"{stem}.tif",
                              dates=ReferenceOptions(references=[reference]),
                              outputs=OutputOptions(source_out=tmp_path / f"{stem}_src.tif"),
                              quiet=True)
        on_remove = {name: len(windows) for name, windows in reads.items()}
        decodes.clear()
        masked = mask_scene(target, tmp_path / f"{stem}_mask.tif", references=[reference],
                            quiet=True)
        assert filled["references"][0]["used"] and masked["cloud_fraction"] > 0.1
        return {"filled": filled["references"], "masked": masked["references"]}, on_remove

    once, counts = run("once")
    assert reads[reference.name] == [Window(0, 0, 252, 252)]  # by the mask: once, as it is
    # by remove: the reference once, and the target once by its first pass, none by the
    # registration, the references' fit and the temporal test
    assert counts == {reference.name: 1, target.name: 1}
    monkeypatch.setattr(decoded_scene.shutil, "disk_usage",  # no room: each pass decodes
                        lambda folder: SimpleNamespace(free=2**20))
    again, counts = run("again")
    assert counts[reference.name] > 3 and counts[target.name] > 3
    assert once == again
    for name in ("", "_src", "_mask"):
        with rasterio.open(tmp_path / f"once{name}.tif") as a, \
                rasterio.open(tmp_path / f"again{name}.tif") as b:
            np.testing.assert_array_equal(a.read(), b.read())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cloudfree")]


def test_the_room_for_the_scratch_files_is_decided_once_for_the_whole_run(
        tmp_path, monkeypatch, decodes, cloudfree_log):
    # room for the target's scratch and the outputs, not for the reference's too: decided from
    # one look at the free space, before either is written (the target's, written first, would
    # otherwise be what leaves the reference none), and said
    target, reference = target_and_safe_reference(tmp_path)
    scratch = 14 * 252 * 252 * 2  # 13 bands and their validity, uint16: 1.7 MB
    looks = []

    def free(folder):
        looks.append(folder)
        return SimpleNamespace(free=int(2.5 * scratch))

    monkeypatch.setattr(decoded_scene.shutil, "disk_usage", free)
    summary = remove_scene(target, None, tmp_path / "out.tif",
                           dates=ReferenceOptions(references=[reference]), quiet=True)
    assert summary["references"][0]["used"] and looks == [tmp_path]
    assert f"{tmp_path} has 4 MB free, less than the 5 MB that keeping every input decoded " \
        f"and the outputs need: {reference.name} decoded again for each pass instead" \
        in cloudfree_log.text
    counts = {name: len(windows) for name, windows in decodes.by_input.items()}
    assert counts[target.name] == 1 and counts[reference.name] > 3
    # mask keeps a JPEG2000 target only: the reference alone has room
    looks.clear()
    decodes.clear()
    mask_scene(target, tmp_path / "mask.tif", references=[reference], quiet=True)
    assert looks == [tmp_path] and len(decodes.by_input[reference.name]) == 1
