"""Separable linear filters (Gaussians, bilinear upsampling) as matrix products on an array's
last two axes.

A 1-D filter along an axis is a matrix whose row i holds the weights output i gives the inputs.
Applied in blocks of ``BLOCK`` outputs, each from the span of inputs its rows reach, it is one
float32 matrix product (BLAS) per block over every channel and line at once: for kernels of
tens of taps, several times faster than a loop over the taps (``scipy.ndimage``), with the same
values to float32 rounding.
"""

from __future__ import annotations

import numpy as np

#: Outputs per matrix product along an axis.
BLOCK = 32


def gaussian_matrix(size: int, sigma: float, radius: int, outputs: slice = slice(None),
                    edge: str = "constant") -> np.ndarray:
    """[m, size] Gaussian of ``sigma`` truncated at ``radius`` and normalised (as
    ``scipy.ndimage.gaussian_filter1d``'s kernel), for the outputs ``outputs`` of an axis of
    ``size``; beyond the ends, zeros (``edge="constant"``) or the end value (``"nearest"``)."""
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.arange(size)[outputs]
    source = out[:, None] + taps
    matrix = np.zeros((len(out), size))
    rows = np.broadcast_to(np.arange(len(out))[:, None], source.shape)
    weights = np.broadcast_to(kernel, source.shape)
    if edge == "nearest":
        np.add.at(matrix, (rows, np.clip(source, 0, size - 1)), weights)
    else:
        inside = (source >= 0) & (source < size)
        matrix[rows[inside], source[inside]] = weights[inside]
    return matrix.astype(np.float32)


def upsample_matrix(size: int, factor: int, outputs: slice = slice(None)) -> np.ndarray:
    """[m, size] bilinear upsampling by ``factor`` of an axis of ``size``, as
    ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``: output o
    reads input (o + 0.5) / factor - 0.5, the end values held beyond the end centres."""
    out = np.arange(size * factor)[outputs]
    x = np.maximum((out + 0.5) / factor - 0.5, 0)
    low = np.minimum(np.floor(x).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = x - low
    matrix = np.zeros((len(out), size))
    np.add.at(matrix, (np.arange(len(out)), low), 1 - frac)
    np.add.at(matrix, (np.arange(len(out)), high), frac)
    return matrix.astype(np.float32)


def along(a: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """``matrix`` [m, n] applied along the last (``axis=-1``) or second-last (``-2``) axis of
    ``a`` (float32, length n there), in blocks of ``BLOCK`` outputs."""
    shape = list(a.shape)
    shape[axis] = len(matrix)
    out = np.empty(shape, np.float32)
    if axis == -1:  # every line at once: one product per block
        a, out = np.ascontiguousarray(a).reshape(-1, a.shape[-1]), out.reshape(-1, shape[-1])
    reached = matrix != 0
    for start in range(0, len(matrix), BLOCK):
        rows = slice(start, start + BLOCK)
        used = np.flatnonzero(reached[rows].any(axis=0))
        if not len(used):
            (out[..., rows] if axis == -1 else out[..., rows, :]).fill(0)
            continue
        span = slice(used[0], used[-1] + 1)
        if axis == -1:
            np.matmul(a[..., span], matrix[rows, span].T, out=out[..., rows])
        else:
            np.matmul(matrix[rows, span], a[..., span, :], out=out[..., rows, :])
    return out.reshape(shape)


def separable(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows`` [m, H] along the second-last axis of ``a`` [..., H, W], then ``cols`` [n, W]
    along the last: [..., m, n]."""
    return along(along(a, rows, -2), cols, -1)


def block_sums(a: np.ndarray, factor: int) -> np.ndarray:
    """[..., H, W] -> sums [..., ceil(H / factor), ceil(W / factor)] over blocks of ``factor``
    squared pixels, the partial blocks of the far edges summing what they hold."""
    for axis in (-2, -1):  # the rows first: whole contiguous lines added
        size = a.shape[axis]
        shape = list(a.shape)
        shape[axis] = -(-size // factor)
        out = np.zeros(shape, np.float32)
        for offset in range(factor):
            part = a[..., offset::factor, :] if axis == -2 else a[..., offset::factor]
            length = part.shape[axis]
            if axis == -2:
                out[..., :length, :] += part
            else:
                out[..., :length] += part
        a = out
    return a
