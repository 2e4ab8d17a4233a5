"""Separable linear filters (Gaussians, bilinear upsampling) as matrix products on an array's
last two axes.

A 1-D filter along an axis is a matrix whose row i holds the weights output i gives the inputs,
kept as its taps (``Taps``). Applied in blocks of ``BLOCK`` outputs, each from the span of
inputs its rows reach, it is one float32 matrix product (BLAS) per block over every channel and
line: for kernels of tens of taps, several times faster than a loop over the taps
(``scipy.ndimage``), with the same values to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

#: Outputs per matrix product along an axis.
BLOCK = 32


@dataclass(frozen=True)
class Taps:
    """A 1-D linear filter along an axis: output i is the sum over t of ``weight[i, t]`` times
    input ``index[i, t]`` (indices may repeat)."""

    index: np.ndarray  # [m, T] int
    weight: np.ndarray  # [m, T]

    @cached_property
    def blocks(self) -> list[tuple[slice, slice, np.ndarray]]:
        """Every block of ``BLOCK`` outputs: (its rows, the inputs they reach, the matrix)."""
        return [(rows, *self.block(rows)) for rows in
                (slice(start, start + BLOCK) for start in range(0, len(self), BLOCK))]

    def block(self, rows: slice) -> tuple[slice, np.ndarray]:
        """The inputs that outputs ``rows`` reach, and their weights there [r, n'] (float32)."""
        index, weight = self.index[rows], self.weight[rows]
        low = int(index.min())
        matrix = np.zeros((len(index), int(index.max()) + 1 - low))
        np.add.at(matrix, (np.arange(len(index))[:, None], index - low), weight)
        return slice(low, low + matrix.shape[1]), matrix.astype(np.float32)

    def __len__(self) -> int:
        return len(self.index)


def gaussian_taps(size: int, sigma: float, radius: int, outputs: slice = slice(None),
                  edge: str = "constant") -> Taps:
    """Gaussian of ``sigma`` truncated at ``radius`` and normalised (as
    ``scipy.ndimage.gaussian_filter1d``'s kernel), for the outputs ``outputs`` (a step of 1) of
    an axis of ``size``; beyond the ends, zeros (``edge="constant"``), the end value
    (``"nearest"``) or the values mirrored about the end (``"reflect"``, ndimage's name: d c b a
    | a b c d | d c b a). Kept: windows repeat a few sizes, and their matrices are built once."""
    return _gaussian_taps(size, sigma, radius, *outputs.indices(size)[:2], edge)


def upsample_taps(size: int, factor: int, outputs: slice = slice(None)) -> Taps:
    """Bilinear upsampling by ``factor`` of an axis of ``size``, as
    ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``: output o
    reads input (o + 0.5) / factor - 0.5, the end values held beyond the end centres; for the
    outputs ``outputs`` (a step of 1). Kept, as ``gaussian_taps``."""
    return _upsample_taps(size, factor, *outputs.indices(size * factor)[:2])


@lru_cache(maxsize=256)
def _gaussian_taps(size: int, sigma: float, radius: int, start: int, stop: int,
                   edge: str) -> Taps:
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    source = np.arange(start, stop)[:, None] + taps
    weight = np.broadcast_to(kernel, source.shape)
    if edge == "constant":
        weight = np.where((source >= 0) & (source < size), weight, 0)
    if edge == "reflect":
        source = source % (2 * size)
        source = np.where(source < size, source, 2 * size - 1 - source)
    return Taps(np.clip(source, 0, size - 1), weight)


@lru_cache(maxsize=256)
def _upsample_taps(size: int, factor: int, start: int, stop: int) -> Taps:
    x = np.maximum((np.arange(start, stop) + 0.5) / factor - 0.5, 0)
    low = np.minimum(np.floor(x).astype(np.int64), size - 1)
    frac = x - low
    return Taps(np.stack([low, np.minimum(low + 1, size - 1)], axis=1),
                np.stack([1 - frac, frac], axis=1))


def along(a: np.ndarray, taps: Taps, axis: int) -> np.ndarray:
    """The filter ``taps`` applied along the last (``axis=-1``) or second-last (``-2``) axis of
    ``a`` (float32), in blocks of ``BLOCK`` outputs, each a matrix product."""
    shape = list(a.shape)
    shape[axis] = len(taps)
    out = np.empty(shape, np.float32)
    if axis == -1:  # every line at once: one product per block
        a, out = np.ascontiguousarray(a).reshape(-1, a.shape[-1]), out.reshape(-1, shape[-1])
    for rows, span, matrix in taps.blocks:
        if axis == -1:
            np.matmul(a[..., span], matrix.T, out=out[..., rows])
        else:
            np.matmul(matrix, a[..., span, :], out=out[..., rows, :])
    return out.reshape(shape)


def gaussian(a: np.ndarray, sigma: float, radius: int, edge: str) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter`` of ``a`` [..., H, W] on its last two axes (``edge`` as
    ``gaussian_taps``), in float32."""
    return separable(a.astype(np.float32, copy=False),
                     *(gaussian_taps(size, sigma, radius, edge=edge) for size in a.shape[-2:]))


def separable(a: np.ndarray, rows: Taps, cols: Taps) -> np.ndarray:
    """``rows`` along the second-last axis of ``a`` [..., H, W], then ``cols`` along the last:
    [..., len(rows), len(cols)]."""
    return along(along(a, rows, -2), cols, -1)


def block_sums(a: np.ndarray, factor: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """[..., H, W] -> sums [..., ceil((H + phase[0]) / factor), ceil((W + phase[1]) / factor)]
    over blocks of ``factor`` squared pixels, the first row and column ``phase`` px into their
    blocks (the blocks laid on a grid that starts before the array), the partial blocks of the
    edges summing what they hold."""
    # the rows first: whole contiguous lines added
    for axis, lead in zip((-2, -1), phase, strict=True):
        size = a.shape[axis]
        shape = list(a.shape)
        shape[axis] = -(-(size + lead) // factor)
        out = np.zeros(shape, np.float32)
        for offset in range(factor):  # the pixels at ``offset`` px into their blocks
            first = (offset - lead) % factor
            part = a[..., first::factor, :] if axis == -2 else a[..., first::factor]
            blocks = slice((first + lead) // factor, (first + lead) // factor + part.shape[axis])
            if axis == -2:
                out[..., blocks, :] += part
            else:
                out[..., blocks] += part
        a = out
    return a
