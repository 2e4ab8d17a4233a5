"""The temporal background of each window of the statistics pass, computed once per fit.

After each fit of the references' lines the temporal test's calibration (``TemporalMask.
calibrate``) computes the background of the whole scene, the statistics pass after it computes
it again on each of its windows with the ``REACH`` px around them that the test judges them
from, and after the last fit the chunks compute it again around themselves: the same values
(the same fit, references and classes). Each window's background with that margin is computed
once per fit (the calibration computes them all first, on every core) and kept in an
uncompressed scratch file beside the output, nameless as the decoded scene's
(``io.decoded_scene``): ``4 x bands + 2`` bytes a pixel (the median in float32, the count and
the snow flag), 26 with the six bands L1C compares, over the windows and their margins (1.11
times the pixels of a 10980^2 tile).

The statistics pass reads back the very blocks it would compute. The calibration's blocks
(whole windows with a margin of at most ``REACH``) are put together from them (``get``), and so
is any block within the scene and its margin once every window is kept (``region``: a chunk
away from the scene's edges). A pixel's background does not depend on the block it is computed
on but for how the BLAS products that interpolate the fits' fields round
(``radiometry.cells_on_block``), which is the same for blocks of these sizes
(benchmarks/records/speed.md, "Each fit's background computed once"; ``python
benchmarks/remove_equality.py`` finds the same output). A new fit clears it (``clear``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cloudfree.io.decoded_scene import ScratchRoom, has_room, read_at, write_at
from cloudfree.io.rasters import block_windows

log = logging.getLogger("cloudfree")

Block = tuple[int, int, int, int]  # top, left, height, width on the target grid
#: A background as ``temporal_mask.Background`` holds it: values [bands, h, w] (float32), count
#: [h, w] (int64) and snow flag [h, w] (bool).
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
#: A window's share of a block: its index, where the share lies in the block and in the window
#: with its margin.
Part = tuple[int, tuple[slice, slice], tuple[slice, slice]]


class WindowBackgrounds:
    """The backgrounds [``bands``, ...] of the windows of ``block_windows(width, height,
    block)`` with ``margin`` px around each, kept as they are computed (:meth:`get`)."""

    def __init__(self, height: int, width: int, block: int, margin: int, bands: int,
                 folder: Path) -> None:
        self.margin, self.bands, self.size = margin, bands, (height, width)
        self.windows = [(int(w.row_off), int(w.col_off), int(w.height), int(w.width))
                        for w in block_windows(width, height, block)]
        self.grown = [(t - margin, left - margin, h + 2 * margin, w + 2 * margin)
                      for t, left, h, w in self.windows]
        self.offsets = np.cumsum([0] + [self._bytes(h, w) for _, _, h, w in self.grown])
        self._places = {grown: index for index, grown in enumerate(self.grown)}
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".cloudfree-background-")  # noqa: SIM115
        self._stored = [False] * len(self.windows)
        self._lock = threading.Lock()
        #: a write failed (full disk): the backgrounds are computed each time instead
        self.failed = False

    @classmethod
    def beside(cls, folder: Path, height: int, width: int, block: int, margin: int,
               bands: int, room: ScratchRoom | None = None) -> WindowBackgrounds | None:
        """A scratch in ``folder`` (the target's decoded copy's, where the outputs are written
        too), or None (each background is then computed where it is asked for) where it cannot
        be made, or ``room`` (the run's, after the decoded inputs) has none left for it, or,
        without a room, the folder has less than twice its size free; a disk that fills up
        meanwhile leaves them computed again (:meth:`get`)."""
        if not hasattr(os, "preadv"):
            return None
        try:
            kept = cls(height, width, block, margin, bands, Path(folder))
        except OSError as exc:
            log.debug("the temporal backgrounds could not be kept in %s (%s)", folder, exc)
            return None
        size = int(kept.offsets[-1])
        if not has_room(room, Path(folder), size):
            log.debug("%s lacks room for the %.0f MB the temporal backgrounds need: computed "
                      "where asked for", folder, size / 2**20)
            kept.close()
            return None
        return kept

    def clear(self) -> None:
        """Forget every window's background (a new fit)."""
        self._stored = [False] * len(self.windows)

    def get(self, block: Block, compute: Callable[[int, int, int, int], Arrays]
            ) -> Arrays | None:
        """The background of ``block`` (top, left, height, width, as ``compute`` takes it) where
        it is a window with its ``margin``, or whole windows with a margin of at most
        ``margin`` (put together from theirs; each computed by ``compute`` and kept, unless
        kept already); None for any other block."""
        index = self._places.get(block)
        if index is not None:
            return self._window(index, compute)
        parts = self._covering(block)
        if parts is None:
            return None
        return self._assemble(block, parts, compute)

    def region(self, block: Block) -> Arrays | None:
        """The background of any ``block`` within the scene and the ``margin`` around it, from
        the windows' once every window's is kept (each pixel's from the window it lies in, or
        the margin beside it at the scene's edge); None before, or for a block reaching
        farther."""
        if self.failed or not all(self._stored):
            return None
        top, left, height, width = block
        m, size = self.margin, self.size
        if top < -m or left < -m or top + height > size[0] + m or left + width > size[1] + m:
            return None
        parts = []
        for index, (t, c, h, w) in enumerate(self.windows):
            # the window's pixels, and the margin beside them at the scene's edge
            rows = max(t - m * (t == 0), top), min(t + h + m * (t + h == size[0]), top + height)
            cols = max(c - m * (c == 0), left), min(c + w + m * (c + w == size[1]), left + width)
            if rows[0] < rows[1] and cols[0] < cols[1]:
                parts.append(self._part(index, block, rows, cols))
        return self._assemble(block, parts, None)

    def _covering(self, block: Block) -> list[Part] | None:
        """The windows a block is made of, with a margin of at most ``margin``: each one's
        index, the part of the block it gives and where that lies in its grown block; None
        where the block is not so made."""
        top, left, height, width = block
        bottom, right = top + height, left + width
        for grow in range(self.margin + 1):
            inner = (top + grow, left + grow, bottom - grow, right - grow)
            inside = [i for i, (t, c, h, w) in enumerate(self.windows)
                      if inner[0] <= t and t + h <= inner[2] and inner[1] <= c
                      and c + w <= inner[3]]
            if inside and sum(self.windows[i][2] * self.windows[i][3] for i in inside) == \
                    (inner[2] - inner[0]) * (inner[3] - inner[1]):
                break
        else:
            return None
        parts = []
        for index in inside:
            t, c, h, w = self.windows[index]
            rows = (t - grow if t == inner[0] else t, t + h + grow if t + h == inner[2] else t + h)
            cols = (c - grow if c == inner[1] else c, c + w + grow if c + w == inner[3] else c + w)
            parts.append(self._part(index, block, rows, cols))
        return parts

    def _part(self, index: int, block: Block, rows: tuple[int, int], cols: tuple[int, int]
              ) -> Part:
        """Window ``index``'s share of ``block``, the scene's ``rows`` and ``cols`` (from, to):
        its index, where they lie in the block and in its grown block."""
        def from_corner(top: int, left: int) -> tuple[slice, slice]:
            return slice(rows[0] - top, rows[1] - top), slice(cols[0] - left, cols[1] - left)

        return index, from_corner(*block[:2]), from_corner(*self.grown[index][:2])

    def _assemble(self, block: Block, parts: list[Part],
                  compute: Callable[[int, int, int, int], Arrays] | None) -> Arrays:
        """``block``'s background put together from its windows' ``parts`` (``_part``)."""
        _, _, height, width = block
        out = (np.empty((self.bands, height, width), np.float32),
               np.empty((height, width), np.int64), np.empty((height, width), bool))
        for index, here, there in parts:
            values, count, snowy = self._window(index, compute)
            out[0][:, here[0], here[1]] = values[:, there[0], there[1]]
            out[1][here] = count[there]
            out[2][here] = snowy[there]
        return out

    def _window(self, index: int, compute: Callable[[int, int, int, int], Arrays] | None
                ) -> Arrays:
        """Window ``index``'s background with its margin: read back where kept, else computed
        and kept."""
        _, _, height, width = self.grown[index]
        offset = int(self.offsets[index])
        if self._stored[index] and not self.failed:
            values = np.empty((self.bands, height, width), np.float32)
            flags = np.empty((2, height, width), np.uint8)
            read_at(self._file.fileno(), values, offset)
            read_at(self._file.fileno(), flags, offset + values.nbytes)
            return values, flags[0].astype(np.int64), flags[1].view(bool)
        background = compute(*self.grown[index])
        if not self.failed:
            values = np.ascontiguousarray(background[0], np.float32)
            flags = np.stack(background[1:]).astype(np.uint8)
            try:
                write_at(self._file.fileno(), values, offset)
                write_at(self._file.fileno(), flags, offset + values.nbytes)
            except OSError as exc:
                with self._lock:
                    self.failed = True
                    log.debug("the temporal backgrounds could not be kept (%s)", exc)
                    os.ftruncate(self._file.fileno(), 0)
            else:
                self._stored[index] = True
        return background

    def close(self) -> None:
        """Give the scratch's space back."""
        self._file.close()

    def _bytes(self, height: int, width: int) -> int:
        return (4 * self.bands + 2) * height * width
