"""The mask's classes and cloud score of a whole scene, kept as the first pass over it classifies
them, so that the later passes and the chunks read them back with the margins they need rather
than classify their windows again (each with the mask's own context around the margin: on a
chunk of ``remove``, four times the pixels it writes).

Each window of the pass is kept as it is classified with its context, which gives the classes of
the whole scene (``MaskParams.halo``); around the scene, the read-backs mirror them, as the
classes of a window read mirrored there are (the mask's filters are symmetric). Kept in an
uncompressed scratch file beside the output, nameless as the decoded scene's
(``io.decoded_scene``), one byte of class and four of score a pixel.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from cloudfree.io.decoded_scene import overlaps, read_at, write_at
from cloudfree.io.rasters import DEFAULT_BLOCK, block_windows, read_padded

log = logging.getLogger("cloudfree")

#: Bytes kept per pixel: the class (uint8) and the score (float32).
PIXEL_BYTES = 5


class ClassifiedScene:
    """The classes and score of a scene of ``height`` x ``width`` px, window by window of
    ``windows`` (``block_windows`` of ``block``) as a pass stores them (:meth:`store`), read
    back once every window is stored (:attr:`complete`)."""

    def __init__(self, height: int, width: int, folder: Path, block: int = DEFAULT_BLOCK
                 ) -> None:
        self.height, self.width = height, width
        self.windows = block_windows(width, height, block)
        self.offsets = np.cumsum([0] + [PIXEL_BYTES * int(w.height) * int(w.width)
                                        for w in self.windows])
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".cloudfree-classes-")  # noqa: SIM115
        self._stored = [False] * len(self.windows)
        self._places = {(int(w.row_off), int(w.col_off), int(w.height), int(w.width)): index
                        for index, w in enumerate(self.windows)}
        #: a write failed (full disk): the windows are classified again instead
        self.failed = False

    @classmethod
    def beside(cls, folder: Path, height: int, width: int, block: int = DEFAULT_BLOCK
               ) -> ClassifiedScene | None:
        """A scratch in ``folder`` (the output's), or None (the windows are then classified
        again) where it cannot be made. Made where the decoded scene is kept, whose room (twice
        its size, or the run's ``ScratchRoom``) holds it too (5 bytes a pixel against 28 for 13
        bands of 16 bits); a disk that fills up meanwhile leaves the windows classified again
        (:meth:`store`)."""
        if not hasattr(os, "preadv"):
            return None
        try:
            return cls(height, width, Path(folder), block)
        except OSError as exc:
            log.debug("the scene's classes could not be kept in %s (%s)", folder, exc)
            return None

    @property
    def complete(self) -> bool:
        """Whether every window has been stored."""
        return not self.failed and all(self._stored)

    def place(self, top: int, left: int, height: int, width: int) -> int | None:
        """The index in ``windows`` of the window of these rows and columns, None where it is
        none of them."""
        return self._places.get((top, left, height, width))

    def store(self, index: int, classes: np.ndarray, score: np.ndarray) -> None:
        """Keep the classes and score [h, w] of window ``index`` of ``windows``."""
        if self.failed:
            return
        offset = int(self.offsets[index])
        try:
            write_at(self._file.fileno(), np.ascontiguousarray(classes, np.uint8), offset)
            write_at(self._file.fileno(), np.ascontiguousarray(score, np.float32),
                     offset + classes.size)
        except OSError as exc:
            self.failed = True
            log.debug("the scene's classes could not be kept (%s)", exc)
            os.ftruncate(self._file.fileno(), 0)
            return
        self._stored[index] = True

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The classes and score of ``window`` (within the scene)."""
        top, left = int(window.row_off), int(window.col_off)
        h, w = int(window.height), int(window.width)
        classes, score = np.empty((h, w), np.uint8), np.empty((h, w), np.float32)
        for index, (t_top, t_left, t_h, t_w), (r0, r1, c0, c1) in overlaps(self.windows, window):
            start = int(self.offsets[index])
            cols = slice(c0 - t_left, c1 - t_left)
            for out, plane, itemsize in ((classes, start, 1),
                                         (score, start + t_h * t_w, 4)):
                rows = np.empty((r1 - r0, t_w), out.dtype)
                read_at(self._file.fileno(), rows, plane + (r0 - t_top) * t_w * itemsize)
                out[r0 - top:r1 - top, c0 - left:c1 - left] = rows[:, cols]
        return classes, score

    def around(self, top: int, left: int, height: int, width: int, halo: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """The classes and score of rows [top, top+height) x [left, left+width) with ``halo``
        px around, mirrored outside the scene (``io.rasters.read_padded``)."""
        return read_padded(self.read, top, left, height, width, self.height, self.width, halo)

    def close(self) -> None:
        """Give the scratch's space back."""
        self._file.close()

