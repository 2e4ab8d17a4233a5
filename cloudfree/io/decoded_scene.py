"""A scene decoded once: the stored values of its bands, their validity and (where the mask
takes it) the scene classification, kept as the first pass over the scene decodes them, so
that the chunks read them back instead of decoding the input again (for a JPEG2000 .SAFE the
decoding is most of the read).

Kept in an uncompressed scratch file in the output's folder, which the operating system
deletes as soon as it is made: it has no name, so nothing is left behind whatever stops the
run (even SIGKILL), and its space is freed when the run ends. It is written and read with
positional system calls (``os.pwrite``, ``os.preadv``) from any thread at once, without GDAL or
a lock; what it holds lies in the page cache, not in the process's memory. Layout: the pass's
windows (``block_windows``) one after another, each as planes [bands, validity, SCL] of rows,
in the input's data type (0/1 for validity; SCL's 0-255 fit every type Sentinel-2 data has),
or float32 for a reference resampled onto the target's grid (``references.settle``).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike
from rasterio.windows import Window

from cloudfree.io.rasters import DEFAULT_BLOCK, block_windows
from cloudfree.io.sentinel2 import Sentinel2

log = logging.getLogger("cloudfree")

#: Stored values, their validity (None: every pixel valid) and the scene classification
#: (None: not read) of a window, as ``Sentinel2.read_dn`` and ``read_scl`` give them.
Stored = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


def _planes(bands: Sequence[str], scl: bool) -> int:
    """Planes kept per window: the bands, their validity and (with ``scl``) the SCL."""
    return len(bands) + 1 + scl


def scratch_bytes(s2: Sentinel2, bands: Sequence[str], scl: bool) -> int:
    """The size of the scratch a :class:`DecodedScene` of ``s2`` takes."""
    return _planes(bands, scl) * s2.width * s2.height * np.dtype(s2.dtype).itemsize


def has_room(room: ScratchRoom | None, folder: Path, size: int) -> bool:
    """Whether a scratch of ``size`` bytes more fits in ``folder``: in the run's ``room`` (then
    counted as taken, ``ScratchRoom.spare``), or without one, where the folder has twice that
    free (the outputs are written there too)."""
    return room.spare(size) if room is not None else shutil.disk_usage(folder).free >= 2 * size


class ScratchRoom:
    """Which of a run's scenes are kept decoded in its output's folder, decided once, before
    the first is written, for all of them: in the order given, each while the free space
    holds it, every scene granted before it and the outputs (taken as large as the largest
    scratch, as for one scene alone). Checked one by one, each when it comes, the scenes kept
    first would leave a later one without room and without a word."""

    def __init__(self, output: Path | str, sizes: dict[Path, int]) -> None:
        folder = Path(output).parent
        self.free = free = shutil.disk_usage(folder).free
        self.need = max(sizes.values(), default=0)  # the outputs
        self.sizes = sizes
        self.granted: set[Path] = set()
        for path, size in sizes.items():
            if self.spare(size):
                self.granted.add(path)
        refused = [path.name for path in sizes if path not in self.granted]
        if refused:
            log.warning("%s has %.0f MB free, less than the %.0f MB that keeping every input "
                        "decoded and the outputs need: %s decoded again for each pass instead",
                        folder, free / 2**20, (sum(sizes.values()) + max(sizes.values()))
                        / 2**20, ", ".join(refused))

    def spare(self, size: int) -> bool:
        """Whether ``size`` bytes more fit beside what was granted before and the outputs, in
        the free space as the run found it; if they do, they are counted as taken."""
        if self.need + size > self.free:
            return False
        self.need += size
        return True

    def holds(self, s2: Sentinel2) -> bool | None:
        """Whether ``s2`` was granted room; None for a scene it was not asked about (a
        reference taken in place of one that could not be read)."""
        return s2.path in self.granted if s2.path in self.sizes else None


class DecodedScene:
    """The stored values of ``bands`` (and SCL, with ``scl``) of a scene of ``shape`` (height,
    width) px in ``dtype``, window by window of ``windows`` as a first pass stores them
    (:meth:`store`), then read back for any window (:meth:`read`) once every window is stored
    (:attr:`complete`)."""

    def __init__(self, shape: tuple[int, int], dtype: DTypeLike,
                 bands: Sequence[str], scl: bool, folder: Path, block: int = DEFAULT_BLOCK,
                 room: ScratchRoom | None = None) -> None:
        self.bands, self.scl, self.folder = tuple(bands), scl, folder
        #: the run's room this scratch was granted from, which later scratches beside it ask
        self.room = room
        self.dtype = np.dtype(dtype)
        self.windows = block_windows(shape[1], shape[0], block)
        self.planes = _planes(self.bands, scl)
        self.offsets = np.cumsum([0] + [self._bytes(w) for w in self.windows])
        # open as long as the scene is (``close``), not within one block
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".cloudfree-decoded-")  # noqa: SIM115
        self._stored = [False] * len(self.windows)
        self._lock = threading.Lock()
        #: a write failed (full disk, file size limit): the chunks decode the input instead
        self.failed = False

    @classmethod
    def beside(cls, output: Path, s2: Sentinel2, bands: Sequence[str], scl: bool,
               room: ScratchRoom | None = None) -> DecodedScene | None:
        """A scratch in ``output``'s folder, or None (the input is then decoded again) where
        ``room`` (the run's, for all its scenes) did not grant it one, or, for a scene it was
        not asked about, the folder lacks room for it twice over (the outputs are written there
        too); or the system has no positional reads."""
        if not hasattr(os, "preadv"):  # Windows
            return None
        folder = Path(output).parent
        granted = None if room is None else room.holds(s2)
        if granted is False:
            return None
        size = scratch_bytes(s2, bands, scl)
        free = math.inf if granted else shutil.disk_usage(folder).free
        if free < 2 * size:
            log.info("%s has %.0f MB free, less than twice the %.0f MB the decoded scene needs: "
                     "the input is decoded again for each pass instead", folder, free / 2**20,
                     size / 2**20)
            return None
        try:
            return cls((s2.height, s2.width), s2.dtype, bands, scl, folder, room=room)
        except OSError as exc:  # e.g. no file handle left
            _cannot_keep(folder, exc)
            return None

    @property
    def complete(self) -> bool:
        """Whether every window has been stored."""
        return not self.failed and all(self._stored)

    def store(self, index: int, grown: Window, stored: Stored) -> None:
        """Keep the part of window ``index`` of ``windows`` in ``stored``, read for ``grown``
        (which holds it)."""
        window = self.windows[index]
        rows = slice(int(window.row_off - grown.row_off),
                     int(window.row_off - grown.row_off + window.height))
        cols = slice(int(window.col_off - grown.col_off),
                     int(window.col_off - grown.col_off + window.width))
        raw, valid, scl = stored
        offset = int(self.offsets[index])
        plane = np.empty((int(window.height), int(window.width)), self.dtype)
        for i in range(self.planes):
            if i < len(self.bands):
                plane[:] = raw[i, rows, cols]
            elif i == len(self.bands):
                plane[:] = 1 if valid is None else valid[rows, cols]
            else:
                plane[:] = scl[rows, cols]
            if self.failed:
                return
            try:
                write_at(self._file.fileno(), plane, offset)
            except OSError as exc:
                self._give_up(exc)
                return
            offset += plane.nbytes
        self._stored[index] = True

    def _give_up(self, exc: OSError) -> None:
        """After a failed write: say so once, and give back the space written."""
        with self._lock:
            if not self.failed:
                self.failed = True
                _cannot_keep(self.folder, exc)
            os.ftruncate(self._file.fileno(), 0)

    def read(self, window: Window, planes: Sequence[int] | None = None, step: int = 1
             ) -> Stored:
        """The stored values, validity and SCL (None without ``scl``) of ``window``; with
        ``planes``, the values of those of its ``bands`` (indices) only; with ``step``, of
        every ``step``-th row and column of it from its top left pixel only."""
        top, left = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        n = len(self.bands) if planes is None else len(planes)
        read = [*(range(len(self.bands)) if planes is None else planes),
                *range(len(self.bands), self.planes)]  # and the validity and SCL
        data = np.empty((len(read), -(-h // step), -(-w // step)), self.dtype)
        for index, (t_top, t_left, t_h, t_w), (r0, r1, c0, c1) in overlaps(self.windows, window):
            r0, c0 = r0 + (top - r0) % step, c0 + (left - c0) % step  # the first taken
            if r0 >= r1 or c0 >= c1:
                continue
            piece = np.empty((r1 - r0, t_w), self.dtype)
            rows = slice((r0 - top) // step, (r1 - 1 - top) // step + 1)
            cols = slice((c0 - left) // step, (c1 - 1 - left) // step + 1)
            for into, i in enumerate(read):
                offset = int(self.offsets[index]) + ((i * t_h) + r0 - t_top) * t_w * \
                    self.dtype.itemsize
                read_at(self._file.fileno(), piece, offset)
                data[into, rows, cols] = piece[::step, c0 - t_left:c1 - t_left:step]
        valid = data[n].astype(bool)
        return data[:n], valid, data[n + 1].astype(np.uint8) if self.scl else None

    def close(self) -> None:
        """Give the scratch's space back."""
        self._file.close()

    def _bytes(self, window: Window) -> int:
        return self.planes * int(window.height) * int(window.width) * self.dtype.itemsize


def _cannot_keep(folder: Path, exc: OSError) -> None:
    log.info("the decoded scene could not be kept in %s (%s): the input is decoded again for "
             "each pass instead", folder, exc.strerror or exc)


def overlaps(windows: Sequence[Window], window: Window
             ) -> Iterator[tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Each of the stored ``windows`` that ``window`` overlaps: its index, its (top, left,
    height, width) and the overlap's rows and columns in the scene (r0, r1, c0, c1)."""
    top, left = int(window.row_off), int(window.col_off)
    bottom, right = top + int(window.height), left + int(window.width)
    for index, tile in enumerate(windows):
        t_top, t_left = int(tile.row_off), int(tile.col_off)
        t_h, t_w = int(tile.height), int(tile.width)
        r0, r1 = max(top, t_top), min(bottom, t_top + t_h)
        c0, c1 = max(left, t_left), min(right, t_left + t_w)
        if r0 < r1 and c0 < c1:
            yield index, (t_top, t_left, t_h, t_w), (r0, r1, c0, c1)


def write_at(fd: int, array: np.ndarray, offset: int) -> None:
    """All of the contiguous ``array`` at ``offset`` of the file ``fd``."""
    view = memoryview(array).cast("B")
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def read_at(fd: int, array: np.ndarray, offset: int) -> None:
    """Fill the contiguous ``array`` from ``offset`` of the file ``fd``."""
    view = memoryview(array).cast("B")
    while view:
        done = os.preadv(fd, [view], offset)
        if done == 0:
            raise OSError(f"the decoded scene ends before byte {offset}")
        view, offset = view[done:], offset + done
