"""Tile grid and blending for sliding-window inference, streamed in chunks with bounded memory.

Geometry: the scene is reflect-padded by ``trim`` pixels and covered by tiles of ``tile`` pixels
at a stride of ``tile - overlap``. Each tile's 1-D weight is 0 over its outer ``trim`` pixels
(where a network with that receptive-field radius sees the tile border), then a squared-sine ramp
of ``overlap - 2 trim`` pixels, then 1. A tile's falling ramp lies exactly on its neighbour's
rising ramp, and sin^2 + cos^2 = 1, so the weights of overlapping tiles sum to one. Predictions
are accumulated with these weights and divided by the accumulated weight, which also covers the
scene edges and skipped tiles. No per-tile normalisation anywhere: that is what makes seams.

Streaming: tiles are visited strip by strip (a strip is one row of tiles), or a few strips at a
time, and, across them, in chunks of a few tiles. Only the ``overlap`` rows below the strips and
the ``overlap`` columns right of a chunk still expect contributions; they are carried over,
everything else is final and is handed back to be written. Memory is a chunk plus a carry of
``overlap`` rows across the width.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Tile of a model that records none, and of an ONNX export by default (pixels).
DEFAULT_TILE = 256
#: Tile sizes a caller may give (pixels): below 16 a network sees too little context.
TILE_RANGE = (16, 8192)
#: Ranges of the tile overlap (pixels), of the tiles per forward pass and of the feather, the
#: ramp (pixels) over which the prediction blends into the input inside cloud edges.
OVERLAP_RANGE = (0, 4096)
BATCH_SIZE_RANGE = (1, 1024)
FEATHER_RANGE = (0, 256)

@dataclass(frozen=True)
class TileGrid:
    """Tiles over a ``height`` x ``width`` scene; coordinates are scene pixels (may be < 0)."""

    height: int
    width: int
    tile: int
    overlap: int
    trim: int

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile), got {self.overlap} for {self.tile}")
        if self.overlap and not 0 <= 2 * self.trim < self.overlap:
            raise ValueError(f"trim {self.trim} leaves no blending ramp in overlap {self.overlap}")
        if 2 * self.overlap > self.tile + 2 * self.trim:
            raise ValueError(f"overlap {self.overlap} too large for tile {self.tile}")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def count(self, size: int) -> int:
        """Tiles along an axis of ``size`` pixels, so that the last ends past size + trim."""
        return max(1, math.ceil((size + 2 * self.trim - self.tile) / self.stride) + 1)

    @property
    def rows(self) -> int:
        return self.count(self.height)

    @property
    def cols(self) -> int:
        return self.count(self.width)

    def start(self, index: int) -> int:
        """Scene coordinate of the first pixel of tile ``index`` along an axis."""
        return index * self.stride - self.trim

    def window_1d(self) -> np.ndarray:
        """The tile's 1-D blending weight."""
        ramp_len = self.overlap - 2 * self.trim
        weight = np.ones(self.tile, dtype=np.float64)
        if ramp_len > 0:
            ramp = np.sin(np.pi / 2 * (np.arange(ramp_len) + 0.5) / ramp_len) ** 2
            weight[self.trim : self.trim + ramp_len] = ramp
            weight[self.tile - self.trim - ramp_len : self.tile - self.trim] = ramp[::-1]
            weight[: self.trim] = 0
            weight[self.tile - self.trim :] = 0
        return weight

    def weights(self) -> np.ndarray:
        """The tile's 2-D blending weight (outer product), float32."""
        w = self.window_1d()
        return np.outer(w, w).astype(np.float32)


@dataclass(frozen=True)
class Chunk:
    """A run of tiles ``col0 .. col1-1`` in the ``strips`` strips from ``row``; ``rows``/``cols``
    are its pixel span."""

    row: int
    col0: int
    col1: int
    grid: TileGrid
    strips: int = 1

    @property
    def top(self) -> int:
        return self.grid.start(self.row)

    @property
    def left(self) -> int:
        return self.grid.start(self.col0)

    @property
    def height(self) -> int:
        return (self.strips - 1) * self.grid.stride + self.grid.tile

    @property
    def width(self) -> int:
        return (self.col1 - self.col0 - 1) * self.grid.stride + self.grid.tile

    def tile_offsets(self) -> list[tuple[int, int]]:
        """(row, column) offsets of the chunk's tiles inside the chunk, row by row."""
        s = self.grid.stride
        return [(i * s, j * s) for i in range(self.strips) for j in range(self.col1 - self.col0)]


def tiles_within(grid: TileGrid, width: int) -> int:
    """The most tiles (at least one) of a chunk no wider than ``width`` pixels (or rows of
    tiles no taller)."""
    return max(1, (width - grid.overlap) // grid.stride)


def chunks(grid: TileGrid, tiles_per_chunk: int, strips: int = 1) -> Iterator[Chunk]:
    """Chunks in the order the blender expects: ``strips`` strips at a time top to bottom,
    chunks left to right."""
    for row in range(0, grid.rows, strips):
        for col0 in range(0, grid.cols, tiles_per_chunk):
            yield Chunk(row, col0, min(grid.cols, col0 + tiles_per_chunk), grid,
                        min(strips, grid.rows - row))


def chunk_number(chunk: Chunk, tiles_per_chunk: int, strips: int = 1) -> int:
    """The chunk's place (from 0) in the order of ``chunks(chunk.grid, tiles_per_chunk,
    strips)``."""
    per_row = -(-chunk.grid.cols // tiles_per_chunk)
    return chunk.row // strips * per_row + chunk.col0 // tiles_per_chunk


@dataclass
class BlendedBlock:
    """A finished block of blended predictions: scene rows/cols and the values [C, h, w]."""

    row: int
    col: int
    values: np.ndarray
    weight: np.ndarray  # accumulated weight; 0 where no tile contributed


class Blender:
    """Accumulates weighted tile predictions chunk by chunk and releases final blocks."""

    def __init__(self, grid: TileGrid, channels: int) -> None:
        self.grid = grid
        self.channels = channels
        self.tile_weight = grid.weights()
        padded_width = grid.start(grid.cols - 1) + grid.tile + grid.trim
        # Carry of the `overlap` rows below the previous strip (values + weight), full width:
        # one buffer, each chunk replacing the columns it read with those below itself
        self._down = np.zeros((channels + 1, grid.overlap, padded_width), np.float32)
        self._right: np.ndarray | None = None

    def add(self, chunk: Chunk, predictions: dict[tuple[int, int], np.ndarray]
            ) -> BlendedBlock | None:
        """Add a chunk's tile predictions (by offset; skipped ones absent); return what is final.

        The returned block is clipped to the scene; None when it lies wholly outside it.
        """
        g, c, o = self.grid, self.channels, self.grid.overlap
        acc = np.zeros((c + 1, chunk.height, chunk.width), np.float32)
        for (dy, dx), pred in predictions.items():
            acc[:c, dy : dy + g.tile, dx : dx + g.tile] += pred * self.tile_weight
            acc[c, dy : dy + g.tile, dx : dx + g.tile] += self.tile_weight
        x0 = chunk.left + g.trim  # column of the chunk in the padded carry buffer
        skip = o if chunk.col0 > 0 else 0  # columns the right carry already holds
        acc[:, :o, skip:] += self._down[:, :, x0 + skip : x0 + chunk.width]
        if chunk.col0 > 0 and self._right is not None:
            acc[:, :, :o] += self._right
        last_row, last_col = chunk.row + chunk.strips == g.rows, chunk.col1 == g.cols
        done_rows = chunk.height if last_row else chunk.height - o
        done_cols = chunk.width if last_col else chunk.width - o
        self._right = None if last_col else acc[:, :, done_cols:].copy()
        if not last_row:  # the strip's chunks, left to right, rewrite every column of it
            self._down[:, :, x0 : x0 + done_cols] = acc[:, done_rows:, :done_cols]
        return self._clip(acc[:, :done_rows, :done_cols], chunk.top, chunk.left)

    def _clip(self, block: np.ndarray, top: int, left: int) -> BlendedBlock | None:
        g = self.grid
        r0, c0 = max(0, top), max(0, left)
        r1 = min(g.height, top + block.shape[1])
        c1 = min(g.width, left + block.shape[2])
        if r1 <= r0 or c1 <= c0:
            return None
        part = block[:, r0 - top : r1 - top, c0 - left : c1 - left]
        weight = part[self.channels]
        values = part[: self.channels]  # divided in place: the carries are copied already
        values /= np.where(weight > 0, weight, 1)
        return BlendedBlock(r0, c0, values, weight)
