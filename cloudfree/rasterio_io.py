"""Windowed raster I/O helpers: output profiles, creation options, window grids, atomic writes."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from tqdm import tqdm

from cloudfree.cog import make_cog
from cloudfree.errors import CloudfreeError, UsageError

#: Rows and columns read or computed at once when streaming a scene.
DEFAULT_BLOCK = 1024
#: GDAL block cache (MB) while streaming a scene: room for the two rows of output blocks a strip
#: touches across a full Sentinel-2 tile (10980 px, 13 bands), and bounded so that memory does
#: not grow with the scene (GDAL's default is 5 % of RAM).
GDAL_CACHE_MB = 256


def scene_io_env() -> rasterio.Env:
    """GDAL settings for streaming whole scenes; a GDAL_CACHEMAX set by the user wins."""
    if "GDAL_CACHEMAX" in os.environ:
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20)  # rasterio takes bytes


def parse_creation_options(items: Sequence[str]) -> dict[str, str]:
    """Turn ``["COMPRESS=LZW", "ZLEVEL=9"]`` into GDAL creation options, as ``rio --co`` does."""
    options: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"creation option {item!r} is not NAME=VALUE (e.g. --co COMPRESS=LZW)")
        options[name.strip().lower()] = value.strip()
    return options


def geotiff_profile(
    *,
    width: int,
    height: int,
    crs,
    transform,
    count: int,
    dtype: str,
    nodata: float | None,
    creation_options: dict[str, str] | None = None,
) -> dict:
    """A tiled, compressed GeoTIFF profile; user creation options override the defaults."""
    integer = np.issubdtype(np.dtype(dtype), np.integer)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "crs": crs,
        "transform": transform,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2 if integer else 3,
        "bigtiff": "if_safer",
        "num_threads": "all_cpus",
    }
    profile.update(creation_options or {})
    return profile


def block_windows(width: int, height: int, block: int = DEFAULT_BLOCK) -> list[Window]:
    """Row-major windows of at most ``block`` x ``block`` pixels covering the raster."""
    return [
        Window(col, row, min(block, width - col), min(block, height - row))
        for row in range(0, height, block)
        for col in range(0, width, block)
    ]


def with_halo(
    window: Window, halo: int, width: int, height: int
) -> tuple[Window, tuple[slice, slice]]:
    """The window grown by ``halo`` (clipped to the raster) and the slices of the original in it."""
    col0 = max(0, int(window.col_off) - halo)
    row0 = max(0, int(window.row_off) - halo)
    col1 = min(width, int(window.col_off + window.width) + halo)
    row1 = min(height, int(window.row_off + window.height) + halo)
    inner = (
        slice(int(window.row_off) - row0, int(window.row_off) - row0 + int(window.height)),
        slice(int(window.col_off) - col0, int(window.col_off) - col0 + int(window.width)),
    )
    return Window(col0, row0, col1 - col0, row1 - row0), inner


def check_output(path: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> Path:
    """Refuse an output that exists (unless overwrite), is an input, or cannot be written."""
    path = Path(path)
    for src in inputs:
        if Path(src).exists() and path.exists() and path.resolve() == Path(src).resolve():
            raise UsageError(f"output {path} is also an input: choose another output path")
    if path.is_dir():
        raise UsageError(f"output {path} is a folder: give a file name")
    if path.exists() and not overwrite:
        raise UsageError(f"output {path} exists: pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CloudfreeError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CloudfreeError(f"cannot write {path}: folder {parent} is not writable")
    return path


@contextmanager
def atomic_output(path: Path, overwrite: bool, inputs: Sequence[Path] = (),
                  cog: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds.

    ``cog``: make the finished GeoTIFF a Cloud Optimized GeoTIFF with overviews resampled this
    way (``cloudfree.cog.AVERAGE`` or ``NEAREST``) before the rename.
    """
    path = check_output(path, overwrite, inputs)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.partial{path.suffix}")
    try:
        tmp.touch()
    except OSError as exc:
        raise CloudfreeError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if cog is not None:
            make_cog(tmp, cog)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".aux.xml")):
            leftover.unlink(missing_ok=True)


def open_raster(path: Path | str, what: str = "raster"):
    """Open a raster for reading, turning GDAL's complaints into one clear line."""
    path = Path(path)
    if not path.exists():
        raise CloudfreeError(f"{what} {path} does not exist")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise CloudfreeError(f"{what} {path} is not a raster GDAL can read ({exc})") from None


def progress(iterable, total: int | None = None, desc: str = "", quiet: bool = False, unit="win"):
    """A tqdm bar on stderr, shown only on a terminal and when not quiet."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False)
