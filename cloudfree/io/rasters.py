"""Opening rasters and reading them by windows: GDAL settings for whole scenes, window
grids, halos and mirrored margins, one-line errors for unreadable files."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
import rasterio.io
import rasterio.transform
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import as_url, check_input
from cloudfree.core.stop import check_stop
from cloudfree.io.remote import gdal_path, open_error, shown

log = logging.getLogger("cloudfree")

#: Rows and columns read or computed at once when streaming a scene.
DEFAULT_BLOCK = 1024
#: Window sizes a caller may give (``block``): smaller ones only cost time, larger ones memory.
BLOCK_RANGE = (64, 16384)

#: Side of the outputs' blocks (pixels), unless the user's creation options say otherwise.
OUTPUT_BLOCK = 256

#: The mask's windows: smaller, so that the arrays of one window stay in the CPU caches
#: (benchmarks/mask_speed.py: about 5 % faster than 1024 on 2 cores; 256 is no faster).
MASK_BLOCK = 512

#: GDAL block cache (MB) while streaming a scene: at most this much (GDAL's default is 5 % of
#: RAM), so that memory does not grow with the scene. Read blocks are used once, by the chunks
#: under them, but the cache keeps them until it is full: with 256 MB for any scene, a 4096^2
#: ``remove`` peaked 171 MB higher than with 64 (and 1024^2, whose blocks never fill it, not at
#: all), outputs identical.
GDAL_CACHE_MB = 256

#: Least block cache while streaming a scene (MB): room for the reads of the chunks in flight
#: (the chunks read the scene back from its decoded copy, outside the cache).
MIN_GDAL_CACHE_MB = 32

def scene_io_env(output_row_bytes: int | None = None, block_rows: int = OUTPUT_BLOCK
                 ) -> rasterio.Env:
    """GDAL settings for streaming whole scenes; a GDAL_CACHEMAX set by the user wins. Given
    the bytes of one row of pixels of all the outputs (``output_row_bytes``), in blocks of
    ``block_rows`` rows, the block cache holds two rows of output blocks (those a strip of
    chunks leaves partly written, which GDAL would otherwise write and read back), between
    ``MIN_GDAL_CACHE_MB`` and ``GDAL_CACHE_MB``."""
    if "GDAL_CACHEMAX" in os.environ:
        return rasterio.Env()
    cache = GDAL_CACHE_MB * 2**20
    if output_row_bytes is not None:
        wanted = 2 * block_rows * output_row_bytes
        cache = min(cache, max(MIN_GDAL_CACHE_MB * 2**20, wanted))
    return rasterio.Env(GDAL_CACHEMAX=cache)  # rasterio takes bytes

def block_windows(width: int, height: int, block: int = DEFAULT_BLOCK) -> list[Window]:
    """Row-major windows of at most ``block`` x ``block`` pixels covering the raster."""
    if block < 1:
        raise UsageError(f"block={block} must be at least 1 pixel", "block")
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

def read_padded(read, top: int, left: int, height: int, width: int,
                scene_h: int, scene_w: int, halo: int = 0, pads_itself: bool = False):
    """Read rows/cols [top, top+height) x [left, left+width) of a scene, mirrored outside.

    ``read(window)`` returns arrays [..., h, w] (or None, passed on); ``halo`` extra pixels of
    real context are read where the scene has them (and mirrored where not); every returned array
    has the size (height + 2 halo, width + 2 halo). Mirroring repeats the edge pixel (numpy
    "symmetric"), as scipy.ndimage's "reflect" mode does, so masks agree with ``cloudfree mask``
    at edges. With ``pads_itself``, ``read(window, pads)`` returns its arrays already mirrored
    by ``pads`` (rows, cols): it can fill a padded array it makes (:func:`mirror_pads`) where
    a padded copy would take as long as the read.
    """
    grown, pads = halo_pads(top, left, height, width, scene_h, scene_w, halo)
    if not any(sum(pads, ())):
        return read(grown)
    if pads_itself:
        return read(grown, pads)
    return tuple(None if a is None else
                 np.pad(a, [(0, 0)] * (a.ndim - 2) + list(pads), mode="symmetric")
                 for a in read(grown))


def halo_pads(top: int, left: int, height: int, width: int, scene_h: int, scene_w: int,
              halo: int) -> tuple[Window, tuple[tuple[int, int], tuple[int, int]]]:
    """What :func:`read_padded` reads of the scene for this window (grown by ``halo``, clipped
    to the scene) and the pixels it mirrors around that: (top, bottom), (left, right)."""
    grown, (rows, cols) = with_halo(Window(left, top, width, height), halo, scene_w, scene_h)
    return grown, ((halo - rows.start, halo + rows.stop - grown.height),
                   (halo - cols.start, halo + cols.stop - grown.width))


def mirrors_once(top: int, left: int, height: int, width: int, scene_h: int, scene_w: int,
                 halo: int) -> bool:
    """Whether :func:`read_padded` of this window mirrors no margin wider than the part of the
    scene it reads: each pixel it gives outside the scene is then the scene's mirror image
    across the nearest edge, whatever the halo; else the margin repeats the part read, which
    depends on the halo."""
    grown, ((top_pad, bottom), (left_pad, right)) = halo_pads(top, left, height, width,
                                                              scene_h, scene_w, halo)
    return max(top_pad, bottom) <= grown.height and max(left_pad, right) <= grown.width


def crop_halo(a: np.ndarray, halo: int) -> np.ndarray:
    """The inner part of an array [..., h, w] read with ``halo`` extra pixels on every side."""
    return a[..., halo : a.shape[-2] - halo, halo : a.shape[-1] - halo]


def mirror_pads(padded: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]
                ) -> np.ndarray:
    """``padded`` [..., H, W] with its margins ``pads`` (rows, cols) set, in place, to the
    mirror of what they surround, as numpy's "symmetric" pad (a new array where a margin is
    wider than what it mirrors)."""
    (top, bottom), (left, right) = pads
    h, w = padded.shape[-2] - top - bottom, padded.shape[-1] - left - right
    if max(top, bottom) > h or max(left, right) > w:
        inner = padded[..., top:top + h, left:left + w]
        return np.pad(inner, [(0, 0)] * (padded.ndim - 2) + list(pads), mode="symmetric")
    middle = padded[..., :, left:left + w]  # rows first, then every row's columns: as np.pad
    middle[..., :top, :] = middle[..., top:2 * top, :][..., ::-1, :]
    end = top + h
    middle[..., end:, :] = middle[..., end - bottom:end, :][..., ::-1, :]
    padded[..., :left] = padded[..., left:2 * left][..., ::-1]
    end = left + w
    padded[..., end:] = padded[..., end - right:end][..., ::-1]
    return padded


def within_scene(valid: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]
                 ) -> np.ndarray:
    """``valid`` [H, W] with its margins ``pads`` (rows, cols), mirrored beyond the scene's
    edge, set false: a copy."""
    (top, bottom), (left, right) = pads
    out = valid.copy()
    out[:top], out[len(out) - bottom:] = False, False
    out[:, :left], out[:, out.shape[1] - right:] = False, False
    return out


def open_raster(path: Path | str, what: str = "raster"):
    """Open a raster for reading (a local file, or an http(s) URL read by byte ranges: see
    ``remote.py``), turning GDAL's complaints into one clear line."""
    path = check_input(path, what, folder=False, url=True)
    url = as_url(path)
    try:
        with warnings.catch_warnings():
            # readers that need a grid refuse its absence in their own words (check_georeferenced)
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path if url is None else gdal_path(url))
    except rasterio.errors.RasterioIOError as exc:
        check_stop()  # GDAL's read was broken off by a stop ("Interrupted system call")
        if url is not None:
            raise open_error(url, what, exc) from None
        raise CloudfreeError(f"{what} {path} is not a raster GDAL can read ({exc})") from None

def check_georeferenced(dataset, path: Path | str) -> None:
    """Refuse a raster without a coordinate reference system or a geotransform, in one line."""
    if dataset.crs is None:
        missing = "coordinate reference system"
    elif dataset.transform.is_identity:
        missing = "geotransform (pixel size and position)"
    else:
        return
    raise CloudfreeError(f"{path}: no {missing}; georeference it first")

def check_map_crs(crs, path: Path | str, what: str) -> None:
    """Refuse, in one line, a coordinate system that cannot be transformed to another (an
    engineering, i.e. local, one): the inputs of ``what`` (e.g. "Sentinel-1 input") must be
    placed on each other's grid. None (no CRS) is left to :func:`check_georeferenced`."""
    if crs is None or crs.is_projected or crs.is_geographic:
        return
    wkt = crs.to_wkt()
    kind = "an engineering (local) coordinate system" \
        if wkt.startswith(("LOCAL_CS", "ENGCRS", "ENGINEERINGCRS")) else \
        f"a coordinate system of no map ({wkt.split('[', 1)[0]})"
    raise CloudfreeError(f"{what} {path} has {kind}, not a map projection; reproject it "
                         "first (gdalwarp -t_srs with the EPSG code of its UTM zone)")


def checked_read(what: str, dataset, *args, **kwargs) -> np.ndarray:
    """``dataset.read(*args, **kwargs)``; a failure inside a file that opened (damaged data)
    becomes one line naming the input (``what``) and the file."""
    try:
        return dataset.read(*args, **kwargs)
    except rasterio.errors.RasterioError as exc:
        check_stop()
        cause, name = exc.__cause__ or exc, shown(dataset.name)
        if as_url(name) is not None:
            raise CloudfreeError(f"{what} {name}: a read over the network failed ({cause}); "
                                 "check your network and the server, and run again") from None
        raise CloudfreeError(f"{what} {name}: data unreadable ({cause}); the file is damaged "
                             "or truncated: download or export it again") from None


@contextmanager
def gdal_messages(level: int = logging.ERROR) -> Iterator[list[str]]:
    """Collect the GDAL errors (or, with ``level=WARNING``, warnings too) this thread signals
    inside the block; rasterio only logs some, e.g. those raised while a dataset is closed."""
    messages: list[str] = []
    thread = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if record.thread == thread and (record.levelno >= level
                                            or message.startswith("GDAL signalled an error")):
                messages.append(message)

    logger = logging.getLogger("rasterio")  # rasterio._err and rasterio._env log them
    handler, previous = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(min(previous or logging.INFO, logging.INFO))
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
