"""The statistics pass's windows' temporal backgrounds, kept once computed: which blocks they
give, read back as computed, and put together from several windows."""

from __future__ import annotations

import numpy as np

from cloudfree.dates.window_backgrounds import WindowBackgrounds

HEIGHT, WIDTH, BLOCK, MARGIN, BANDS = 1100, 1300, 512, 13, 3


def by_position(computed: list):
    """A background that depends on each pixel's place alone, noting each block computed."""

    def compute(top: int, left: int, height: int, width: int):
        computed.append((top, left, height, width))
        rows, cols = np.mgrid[top:top + height, left:left + width]
        values = np.stack([rows * 1e4 + cols + band for band in range(BANDS)]).astype(np.float32)
        values[0, (rows + cols) % 7 == 0] = np.nan
        return values, ((rows + cols) % 6).astype(np.int64), (rows * cols) % 3 == 0

    return compute


def assert_same(got, expected) -> None:
    assert got is not None
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_windows_are_computed_once_and_read_back_as_computed(tmp_path):
    computed: list = []
    compute = by_position(computed)
    kept = WindowBackgrounds.beside(tmp_path, HEIGHT, WIDTH, BLOCK, MARGIN, BANDS)
    try:
        assert len(kept.windows) == 9  # 512, 512 and the rest, down and across
        window = kept.grown[4]
        assert window == (512 - MARGIN, 512 - MARGIN, 512 + 2 * MARGIN, 512 + 2 * MARGIN)
        assert_same(kept.get(window, compute), compute(*window))
        assert_same(kept.get(window, compute), compute(*window))  # read back
        assert computed.count(window) == 3  # once by the store, twice here
        # the calibration's block: whole windows with the margin (or none) around them
        computed.clear()
        for block in ((-MARGIN, -MARGIN, 1024 + 2 * MARGIN, 1024 + 2 * MARGIN),
                      (0, 0, 1024, 1024),
                      (1024 - MARGIN, -MARGIN, HEIGHT - 1024 + 2 * MARGIN, WIDTH + 2 * MARGIN)):
            expected = compute(*block)
            computed.pop()
            assert_same(kept.get(block, compute), expected)
        # each window computed once, with its margin, whichever block asked for it
        assert sorted(computed) == sorted(set(computed)) and set(computed) <= set(kept.grown)
        assert kept.get((0, 0, 1000, 1024), compute) is None  # not whole windows
        assert kept.get((-20, -20, 1064, 1064), compute) is None  # a margin too wide
        assert kept.region((0, 0, 10, 10)) is None  # until every window is kept
        for grown in kept.grown:
            kept.get(grown, compute)
        computed.clear()
        rng = np.random.default_rng(0)
        for _ in range(20):
            top, left = rng.integers(-MARGIN, HEIGHT), rng.integers(-MARGIN, WIDTH)
            height = int(rng.integers(1, HEIGHT + MARGIN - top + 1))
            width = int(rng.integers(1, WIDTH + MARGIN - left + 1))
            block = (int(top), int(left), height, width)
            expected = compute(*block)
            assert_same(kept.region(block), expected)
        assert kept.region((-MARGIN - 1, 0, 100, 100)) is None  # beyond the margin
        assert len(computed) == 20  # only the expected ones: the rest read back
        kept.clear()  # a new fit
        assert kept.region((0, 0, 10, 10)) is None
    finally:
        kept.close()


def test_without_room_or_after_a_failed_write_each_is_computed(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from cloudfree.dates import window_backgrounds
    from cloudfree.io import decoded_scene

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(decoded_scene.shutil, "disk_usage",  # where the room is looked up
                        lambda _: namedtuple("Usage", "total used free")(usage.total, 0, 10**6))
    assert WindowBackgrounds.beside(tmp_path, HEIGHT, WIDTH, BLOCK, MARGIN, BANDS) is None
    monkeypatch.undo()

    def full(*_):
        raise OSError(28, "No space left on device")

    computed: list = []
    compute = by_position(computed)
    kept = WindowBackgrounds.beside(tmp_path, HEIGHT, WIDTH, BLOCK, MARGIN, BANDS)
    try:
        monkeypatch.setattr(window_backgrounds, "write_at", full)
        window = kept.grown[0]
        expected = compute(*window)
        assert_same(kept.get(window, compute), expected)
        assert kept.failed and kept.region(window) is None
        assert_same(kept.get(window, compute), expected)  # computed again
        assert computed.count(window) == 3
    finally:
        kept.close()


def test_the_runs_room_decides_after_the_decoded_inputs(tmp_path, monkeypatch):
    # with the run's room, the backgrounds take what is left of the free space the run found
    # once, after its decoded inputs and outputs, and count it as taken: no second look
    from types import SimpleNamespace

    from cloudfree.io import decoded_scene
    from cloudfree.io.decoded_scene import ScratchRoom

    looks = []
    inputs = 10 * 2**20

    def free(folder):
        looks.append(folder)
        return SimpleNamespace(free=2 * inputs + 100 * 2**20)

    monkeypatch.setattr(decoded_scene.shutil, "disk_usage", free)
    room = ScratchRoom(tmp_path / "out.tif", {tmp_path / "s2.tif": inputs})
    assert room.granted == {tmp_path / "s2.tif"}
    kept = WindowBackgrounds.beside(tmp_path, HEIGHT, WIDTH, BLOCK, MARGIN, BANDS, room)
    try:
        size = int(kept.offsets[-1])
        assert 0 < size <= 100 * 2**20 and room.need == 2 * inputs + size
    finally:
        kept.close()
    room.need = room.free - size + 1  # one byte short
    assert WindowBackgrounds.beside(tmp_path, HEIGHT, WIDTH, BLOCK, MARGIN, BANDS, room) is None
    assert looks == [tmp_path]
