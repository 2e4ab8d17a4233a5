"""Overviews of an output built from its blocks while they are written, as GDAL would build them.

GDAL's COG driver, given a file without overviews, halves its sides (rounding down) until both
fit one block, then computes each level from the one above it (a cascade, not from the full
image). Averages: each overview pixel ``j`` of a level ``m`` wide over a level ``n`` wide covers
source columns ``[j n/m, (j+1) n/m)``, edge pixels weighted by the part of them inside (so odd
sides, e.g. 2745 -> 1372, mix three columns with fractional weights), nodata left out; unsigned
integers rounded half up, signed 16-bit ones averaged in GDAL's float32 work type, compared with
nodata there and rounded half away from zero, as GDALCopyWords casts them; nearest picks column
``int(0.5 + j n/m)`` (GDAL's gcore/overview.cpp, GDALResampleChunk_AverageOrRMS_T and
GDALResampleChunk_NearT, 3.10). This module does the same
on the blocks of a streamed output, in the order they are written (strips of rows top to bottom,
each strip's blocks left to right), keeping only the rows and columns that a level's next pixels
still need; each level goes to a scratch GeoTIFF that the COG step hands to GDAL as the source's
overviews, so that the copy after the last block only compresses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

#: Data types whose averages follow GDAL's integer rounding here; others are left to GDAL.
INTEGER_AVERAGED = (np.uint8, np.uint16, np.int16)


def overview_sizes(height: int, width: int, block: int) -> list[tuple[int, int]]:
    """(rows, columns) of each overview level the COG driver makes for a ``block`` px layout."""
    sizes = []
    while height > block or width > block:
        height, width = max(1, height // 2), max(1, width // 2)
        sizes.append((height, width))
    return sizes


def read_levels(path: Path) -> list[np.ndarray]:
    """Every overview level of the raster at ``path``, largest first."""
    with rasterio.open(path) as ds:
        count = len(ds.overviews(1))
    levels = []
    for level in range(count):
        with rasterio.open(path, overview_level=level) as ds:
            levels.append(ds.read())
    return levels


def supported(dtype: str, nodata: float | None, nearest: bool) -> bool:
    """Whether this module reproduces GDAL's overviews of such an output."""
    if nearest:
        return True
    kind = np.dtype(dtype)
    if kind in INTEGER_AVERAGED:
        return True
    return kind.kind == "f" and (nodata is None or np.isnan(nodata))


class _Axis:
    """Which source pixels each overview pixel of one axis reads, and their weights."""

    def __init__(self, n: int, m: int, nearest: bool) -> None:
        ratio = n / m
        j = np.arange(m)
        if nearest:
            self.first = (0.5 + j * ratio).astype(np.int64)
            self.last = self.first
            self.taps = 1
            return
        start = (j * ratio + 1e-8).astype(np.int64)
        end = np.ceil((j + 1) * ratio - 1e-8).astype(np.int64)
        end = np.minimum(np.where(end == start, end + 1, end), n)
        self.taps = int(end[0] - start[0])
        if not (end - start == self.taps).all():  # halving gives 1, 2 or 3 taps everywhere
            raise ValueError(f"uneven overview taps from {n} to {m}")
        self.first, self.last = start, end - 1
        self.left = np.where(self.taps == 1, 1.0, 1 - (j * ratio - start))
        self.right = 1 - (end - (j + 1) * ratio)
        full = self.left
        if self.taps > 1:
            full = full + (self.taps - 2) + self.right
        self.full = full

    def ready(self, start: int, available: int, total: int) -> int:
        """One past the last overview pixel from ``start`` whose sources lie below ``available``."""
        if available >= total:
            return len(self.first)
        return start + int(np.searchsorted(self.last[start:], available))


class _Level:
    """One halving, fed the blocks of the level above in strip order."""

    def __init__(self, source: tuple[int, int], size: tuple[int, int], count: int, dtype,
                 nodata: float | None, nearest: bool) -> None:
        self.source, self.size, self.dtype, self.nodata = source, size, np.dtype(dtype), nodata
        self.nearest = nearest
        self.rows = _Axis(source[0], size[0], nearest)
        self.cols = _Axis(source[1], size[1], nearest)
        self.row_done = 0  # the next overview row to make
        self.kept_top = 0  # source rows of earlier strips still needed, full width, from here
        self.kept = np.empty((count, 0, source[1]), self.dtype)
        self.col_end = 0  # source columns of the strip under way received so far

    def add(self, block: np.ndarray, row: int, col: int
            ) -> tuple[np.ndarray, int, int] | None:
        """Take the next source block; return the overview block it completes (with its row
        and column), if any. Raises ValueError for a block out of strip order."""
        height, width = block.shape[1:]
        if col == 0:
            self._start_strip(row, height)
        elif (row, height) != self.strip or col != self.col_end:
            raise ValueError("blocks out of strip order")
        rows = block  # source rows [kept_top, row + height)
        if self.kept.shape[1]:
            rows = np.concatenate([self.kept[:, :, col:col + width], block], axis=1)
        self.next_kept[:, :, col:col + width] = rows[:, self.next_top - self.kept_top:]
        cols = rows  # source columns [left_col, col + width)
        if self.left.shape[2]:
            cols = np.concatenate([self.left, rows], axis=2)
        self.col_end = col + width
        first = self.col_done
        self.col_done = self.cols.ready(first, self.col_end, self.source[1])
        top, bottom = self.out_rows
        out = None
        if bottom > top and self.col_done > first:
            out = (self._reduce(cols, slice(top, bottom), self.kept_top,
                                slice(first, self.col_done), self.left_col), top, first)
        new_left = self._keep_from(self.cols, self.col_done, self.col_end)
        self.left = cols[:, :, new_left - self.left_col:].copy()
        self.left_col = new_left
        if self.col_end == self.source[1]:  # the strip is complete
            self.kept, self.kept_top, self.row_done = self.next_kept, self.next_top, bottom
        return out

    def _keep_from(self, axis: _Axis, done: int, end: int) -> int:
        """The first source pixel (below ``end``) that overview pixel ``done`` on needs."""
        return end if done >= len(axis.first) else min(int(axis.first[done]), end)

    def _start_strip(self, row: int, height: int) -> None:
        if row != self.kept_top + self.kept.shape[1] or self.col_end not in (0, self.source[1]):
            raise ValueError("blocks out of strip order")
        self.strip = (row, height)
        bottom = self.rows.ready(self.row_done, row + height, self.source[0])
        self.out_rows = (self.row_done, bottom)
        self.next_top = self._keep_from(self.rows, bottom, row + height)
        self.next_kept = np.empty((self.kept.shape[0], row + height - self.next_top,
                                   self.source[1]), self.dtype)
        self.col_end = self.col_done = self.left_col = 0
        self.left = np.empty((self.kept.shape[0], row + height - self.kept_top, 0), self.dtype)

    def _reduce(self, source: np.ndarray, rows: slice, top: int, cols: slice, left: int
                ) -> np.ndarray:
        """Overview rows ``rows`` x columns ``cols`` from ``source``, whose first row and
        column are source row ``top`` and column ``left``."""
        r0 = self.rows.first[rows] - top
        c0 = self.cols.first[cols] - left
        if self.nearest:
            return source[:, r0][:, :, c0]
        if self.dtype.kind in "ui" and self.rows.taps == self.cols.taps == 2:
            return self._halve_integers(source, r0[0], c0[0], len(r0), len(c0))
        # a band at a time: the float64 working copy stays small
        return np.concatenate([self._weighted(source[b:b + 1], rows, r0, cols, c0)
                               for b in range(source.shape[0])])

    def _halve_integers(self, source, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        """2 x 2 means of integers, nodata left out, rounded as GDAL rounds them (its exact
        result)."""
        quads = [source[:, r0 + dy:r0 + 2 * h:2, c0 + dx:c0 + 2 * w:2]
                 for dy in (0, 1) for dx in (0, 1)]
        signed = self.dtype.kind == "i"
        total = quads[0].astype(np.int32 if signed else np.uint32)
        for q in quads[1:]:
            total += q
        # a quarter of the total rounded half up; one less below zero rounds half away from it
        mean = total if self.nodata is None else total.copy()
        if signed:
            mean -= total < 0
        mean += 2
        mean >>= 2
        if self.nodata is None:
            return mean.astype(self.dtype)
        nodata = int(self.nodata)
        missing = sum((q == nodata).view(np.uint8) for q in quads)
        # where all four are valid, GDAL compares the mean with nodata in its work type
        # (signed: before rounding)
        equal = total == 4 * nodata if signed else mean == nodata
        out = mean.astype(self.dtype)
        out[equal] = self._replacement()
        part = np.nonzero(missing)
        if part[0].size:
            count = 4 - missing[part].astype(np.int32)
            exact = (total[part] - nodata * (4 - count)) / np.maximum(count, 1)
            if not signed:
                exact = np.floor(exact + 0.5)
            out[part] = self._finish(exact, count == 0)
        return out

    def _weighted(self, source, rows: slice, r0, cols: slice, c0) -> np.ndarray:
        """Fractionally weighted means, in GDAL's order of operations (float64)."""
        rax, cax = self.rows, self.cols
        values = source.astype(np.float64)
        valid = None
        if self.nodata is not None:
            valid = ~np.isnan(values) if np.isnan(self.nodata) else values != self.nodata
            values = np.where(valid, values, 0.0)
        # the middle tap's weight is 1: multiplying by it changes no bit
        xw = ([cax.left[cols]] + [1.0] * (cax.taps - 2) + [cax.right[cols]])[:cax.taps]
        yw = ([rax.left[rows]] + [1.0] * (rax.taps - 2) + [rax.right[rows]])[:rax.taps]
        total = weight = 0.0
        for dy in range(rax.taps):
            line = line_weight = 0.0
            for dx in range(cax.taps):
                v = values[:, r0 + dy][:, :, c0 + dx]
                wx = np.reshape(xw[dx], (1, 1, -1))
                line = line + v * wx
                if valid is not None:
                    line_weight = line_weight + np.where(valid[:, r0 + dy][:, :, c0 + dx], wx, 0.0)
            wy = np.reshape(yw[dy], (1, -1, 1))
            total = total + line * wy
            if valid is not None:
                weight = weight + line_weight * wy
        if valid is None:
            weight = cax.full[cols][None, None, :] * rax.full[rows][None, :, None]
            empty = np.zeros(total.shape, bool)
        else:
            empty = weight == 0
        mean = total / np.where(empty, 1.0, weight)
        if self.dtype.kind == "u":
            mean = np.floor(mean + 0.5)
        elif self.dtype.kind == "i":
            mean = mean.astype(np.float32)  # GDAL's work type for them
        return self._finish(mean, empty)

    def _replacement(self) -> int:
        """What GDAL writes where an average happens to equal an integer nodata value."""
        nodata = int(self.nodata)
        return nodata + 1 if nodata < np.iinfo(self.dtype).max else nodata - 1

    def _finish(self, mean: np.ndarray, empty: np.ndarray) -> np.ndarray:
        """Cast to the output type: GDAL's replacement where a mean (in its work type) happens
        to equal nodata, signed integers rounded half away from zero (as GDALCopyWords casts
        them), and nodata where no source pixel was valid."""
        if self.nodata is not None and not np.isnan(self.nodata):  # integers
            mean[mean == self.nodata] = self._replacement()
        if self.dtype.kind == "i":
            info = np.iinfo(self.dtype)
            mean = np.where(mean >= 0, np.floor(mean + 0.5), np.ceil(mean - 0.5))
            mean = mean.clip(info.min, info.max)
        out = mean.astype(self.dtype)
        if self.nodata is not None:
            out[empty] = self.nodata
        return out


class StreamedOverviews:
    """The overview levels of an output of ``profile``, one scratch GeoTIFF of ``scratch`` (a
    profile: compression, tiling) per level beside ``base``, fed the output's blocks."""

    def __init__(self, base: Path, profile: dict, scratch: dict, nearest: bool,
                 block: int) -> None:
        height, width, count = profile["height"], profile["width"], profile["count"]
        sizes = overview_sizes(height, width, block)
        self.paths = [base.with_name(f"{base.name}.ovr{i + 1}") for i in range(len(sizes))]
        self.levels, self.datasets = [], []
        self.failed = False
        above = (height, width)
        try:
            for path, size in zip(self.paths, sizes, strict=True):
                self.levels.append(_Level(above, size, count, profile["dtype"],
                                          profile.get("nodata"), nearest))
                scale = profile["transform"] * profile["transform"].scale(
                    width / size[1], height / size[0])
                self.datasets.append(rasterio.open(
                    path, "w", **{**scratch, "driver": "GTiff", "height": size[0],
                                  "width": size[1], "transform": scale}))
                above = size
        except BaseException:
            self.discard()
            raise

    def add(self, array: np.ndarray, window: Window) -> None:
        """Feed one written block ([bands, rows, cols], or [rows, cols] for one band)."""
        if self.failed or not self.levels:
            return
        block = array if array.ndim == 3 else array[None]
        if block.dtype != self.levels[0].dtype:  # left to GDAL's casting
            self.failed = True
            return
        row, col = int(window.row_off), int(window.col_off)
        try:
            for level, dataset in zip(self.levels, self.datasets, strict=True):
                made = level.add(block, row, col)
                if made is None:
                    return
                block, row, col = made
                dataset.write(block, window=Window(col, row, block.shape[2], block.shape[1]))
        except ValueError:  # written out of strip order: GDAL makes the overviews instead
            self.failed = True

    def finish(self) -> list[Path] | None:
        """Close the levels; their files, or None when GDAL must make the overviews."""
        for dataset in self.datasets:
            dataset.close()
        done = not self.failed and all(level.row_done == level.size[0] for level in self.levels)
        if not done:
            self.discard()
        return self.paths if done else None

    def discard(self) -> None:
        """Close and delete the scratch files."""
        for dataset in self.datasets:
            dataset.close()
        for path in self.paths:
            for leftover in (path, path.with_name(path.name + ".aux.xml")):
                leftover.unlink(missing_ok=True)


class OverviewedWriter:
    """A GeoTIFF being written (a rasterio dataset) whose blocks also feed its
    :class:`StreamedOverviews`; everything but ``write`` is the dataset's own."""

    def __init__(self, dataset, overviews: StreamedOverviews) -> None:
        object.__setattr__(self, "_dataset", dataset)
        object.__setattr__(self, "_overviews", overviews)

    def write(self, array: np.ndarray, indexes=None, window: Window | None = None,
              **kwargs) -> None:
        """The dataset's ``write``; blocks of every band go on to the overviews."""
        dataset, overviews = self._dataset, self._overviews
        dataset.write(array, indexes, window=window, **kwargs)
        every = indexes is None or list(np.atleast_1d(indexes)) == list(range(1, dataset.count + 1))
        if not every:
            overviews.failed = True  # GDAL makes the overviews instead
            return
        overviews.add(array, window or Window(0, 0, dataset.width, dataset.height))

    def __getattr__(self, name: str):
        return getattr(self._dataset, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._dataset, name, value)
