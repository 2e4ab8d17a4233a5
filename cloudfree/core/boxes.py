"""Shares of booleans in squares (``scipy.ndimage.uniform_filter`` of a boolean array into
float32) and whether any is set in them (``maximum_filter``), the same values bit for bit for
less work; means over the pixels of a mask in squares (``box_mean``) and local variances.

SciPy filters the first axis, then the second, each line as a running sum in float64 divided by
the square's side, rounded to float32 (``NI_UniformFilter1D``). On booleans the first pass's
sums are whole counts, and its outputs, float32(count / side), are what dividing the counts in
float32 gives (a correctly rounded quotient of two exact integers); the second pass's sums of
those float32 values are exact in float64 (a few dozen significant bits), so its outputs do not
depend on where a line starts. So the first pass is taken here as counts of shifted uint8 rows,
and the second is SciPy's own on those float32 values, on the rows asked for alone where only a
few are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Modes beyond the array's edges, as SciPy names them: mirrored about the edge ("reflect"), or
#: false ("constant").
MODES = ("reflect", "constant")


def box_share(where: np.ndarray, size: int, mode: str = "reflect",
              rows: np.ndarray | None = None) -> np.ndarray:
    """The share of ``where`` [H, W] (booleans) in the ``size`` px square around each pixel,
    float32: ``ndimage.uniform_filter(where, size, output=np.float32, mode=mode)``; only its
    ``rows`` (indices) where given, [len(rows), W]."""
    if where.dtype != bool:
        raise TypeError(f"box shares are of booleans, not {where.dtype}")
    if not where.size:
        return np.zeros((len(where) if rows is None else len(rows), where.shape[1]), np.float32)
    # a false row past the end, which the indices of ``mode="constant"`` read beyond the edges
    source = (np.pad(where, ((0, 1), (0, 0))) if mode == "constant" else where).view(np.uint8)
    lines, height = _extended(len(where), size, mode), len(where)
    few = rows is not None and 2 * len(rows) < height
    if few:  # their squares' rows gathered
        counts = source[lines[rows[:, None] + np.arange(size)]].sum(axis=1, dtype=np.uint8)
    else:  # every row: the squares' rows are shifted views of the extended array
        extended = source[lines]
        counts = extended[:height].copy()
        for shift in range(1, size):  # ``size`` < 256: the counts fit in uint8
            counts += extended[shift:shift + height]
    share = np.divide(counts, np.float32(size), dtype=np.float32)
    share = ndimage.uniform_filter1d(share, size, axis=1, output=share, mode=mode)
    return share[rows] if rows is not None and not few else share


def box_any(where: np.ndarray, size: int, mode: str = "reflect") -> np.ndarray:
    """Whether any of ``where`` [H, W] (booleans) lies in the ``size`` px square around each
    pixel: ``ndimage.maximum_filter(where, size, mode=mode)``, by or-ing shifted copies along
    each axis (spans doubling: a few passes over the bytes, where SciPy's goes through a line
    of float64 per pixel)."""
    if where.dtype != bool:
        raise TypeError(f"box maxima here are of booleans, not {where.dtype}")
    if not where.size:
        return where.copy()
    out = where
    for axis in (0, 1):
        extended = (np.pad(out, ((0, 1), (0, 0)) if axis == 0 else ((0, 0), (0, 1)))
                    if mode == "constant" else out)
        out = np.take(extended, _extended(out.shape[axis], size, mode), axis=axis)
        span = 1  # each element now says whether any of the ``span`` from it on is set
        while span < size:
            step = min(span, size - span)
            ahead = out.shape[axis] - step
            out = (out[:ahead] | out[step:]) if axis == 0 else (out[:, :ahead] | out[:, step:])
            span += step
    return out


def _extended(length: int, size: int, mode: str) -> np.ndarray:
    """Indices of a line of ``length`` extended by ``size // 2`` before it and the rest of the
    square after it, as SciPy extends it: mirrored about the edges (repeatedly where the line
    is shorter than the square), or ``length`` (a false pixel past the end) where constant."""
    if mode not in MODES or not 0 < size < 256:
        raise ValueError(f"box shares take a size of 1 to 255 px and a mode of {MODES}")
    index = np.arange(-(size // 2), length + size - 1 - size // 2)
    if mode == "constant":
        return np.where((index >= 0) & (index < length), index, length)
    index %= 2 * length
    return np.where(index < length, index, 2 * length - 1 - index)


def local_variance(x: np.ndarray, size: int) -> np.ndarray:
    """Variance of ``x`` [H, W] over the ``size`` px square around each pixel."""
    mean = ndimage.uniform_filter(x, size, mode="reflect")
    return ndimage.uniform_filter(x * x, size, mode="reflect") - mean * mean


def box_mean(x: np.ndarray, where: np.ndarray, size: int,
             mode: str = "reflect", count: np.ndarray | None = None,
             rows: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``x`` [H, W] over the ``where`` pixels of the ``size`` px square around each
    pixel (0 where it holds none); beyond the array's edges mirrored (``mode``), as windows
    read at the scene's edges are. ``x`` booleans: the share of them, in float32
    (``box_share``).
    ``count``: ``box_count(where, size, mode, rows)``, where the caller has it; ``rows``:
    only those rows (indices), [len(rows), W]."""
    if mode != "constant" and where.all():  # every weight and their mean exactly 1
        return _box_filter(x, size, mode, rows)
    total = _box_filter(x & where if x.dtype == bool else x * where.astype(np.float32), size,
                        mode, rows)
    return total / (box_count(where, size, mode, rows) if count is None else count)


def _box_filter(x: np.ndarray, size: int, mode: str,
                rows: np.ndarray | None = None) -> np.ndarray:
    """``ndimage.uniform_filter`` of ``x`` [H, W] into float32 or wider (``box_share`` for
    booleans); only its ``rows`` (indices, ascending) where given, the same values.

    SciPy filters the columns, then the rows, each line a running mean from its start: a
    column's mean at a row reads nothing more than half a square below it, and each row is a
    line of its own. So for some rows the columns are filtered down to a square below the last
    of them, and the rows along them alone."""
    if x.dtype == bool:
        return box_share(x, size, mode, rows)
    dtype = np.result_type(x, np.float32)
    if rows is None:
        return ndimage.uniform_filter(x, size, output=dtype, mode=mode)
    if not len(rows):
        return np.zeros((0, x.shape[1]), dtype)
    down = ndimage.uniform_filter1d(x[:int(rows[-1]) + size], size, axis=0, output=dtype,
                                    mode=mode)
    return ndimage.uniform_filter1d(down[rows], size, axis=1, output=dtype, mode=mode)


def box_count(where: np.ndarray, size: int, mode: str = "reflect",
              rows: np.ndarray | None = None) -> np.ndarray:
    """The share of ``where`` [H, W] pixels in the ``size`` px square around each pixel, at
    least 1e-6: ``box_mean``'s divisor (``rows``: only those, as ``box_share``)."""
    share = box_share(where, size, mode, rows)
    return np.maximum(share, np.float32(1e-6), out=share)
