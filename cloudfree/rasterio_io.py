"""Windowed raster I/O helpers: output profiles, creation options, window grids, atomic writes."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import socket
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
import rasterio.io
import rasterio.transform
from rasterio.windows import Window
from tqdm import tqdm

from cloudfree.cog import NEAREST, cog_block, make_cog, scratch_profile
from cloudfree.errors import CloudfreeError, UsageError
from cloudfree.overviews import OverviewedWriter, StreamedOverviews, supported
from cloudfree.paths import check_input, input_problem, real, taken
from cloudfree.publish import publish
from cloudfree.signals import check_stop

log = logging.getLogger("cloudfree")

#: Rows and columns read or computed at once when streaming a scene.
DEFAULT_BLOCK = 1024
#: Deflate level of outputs (``--co ZLEVEL=`` overrides): a 4096^2 13-band uint16 scene is
#: written in 3.7 s of CPU at level 1 against 8.4 s at GDAL's default 6, for a file 1.7 % bigger.
DEFLATE_LEVEL = 1
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


#: Output file name endings: every raster cloudfree writes (but the PNG quicklook) is a GeoTIFF.
GEOTIFF_SUFFIXES = (".tif", ".tiff")
#: GeoTIFF predictors: none, horizontal differencing (integers), floating point.
PREDICTORS = ("1", "2", "3")
#: Compressions that fit no cloudfree output: lossy and 8-bit only, while outputs are 16-bit or
#: float reflectance, float scores and class masks (which a lossy codec would corrupt).
LOSSY_8BIT = ("JPEG", "WEBP")
#: Where GDAL documents the GeoTIFF creation options.
GTIFF_OPTIONS_URL = "https://gdal.org/drivers/raster/gtiff.html#creation-options"


def parse_creation_options(items: Sequence[str]) -> dict[str, str]:
    """Turn ``["COMPRESS=LZW", "ZLEVEL=9"]`` into GDAL creation options, as ``rio --co`` does."""
    options: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"creation option {item!r} is not NAME=VALUE (e.g. --co COMPRESS=LZW)")
        options[name.strip().lower()] = value.strip()
    check_creation_options(options)
    return options


def _options_error(options: dict[str, str], problem: str) -> UsageError:
    given = " ".join(f"{k.upper()}={v}" for k, v in options.items())
    return UsageError(f"--co {given}: {problem}; see {GTIFF_OPTIONS_URL}")


def check_creation_options(options: dict[str, str]) -> None:
    """Refuse options the GeoTIFF driver does not know, values it would ignore (GDAL only warns,
    and writes without them) and values no output can take: tried on small in-memory GeoTIFFs
    of the data types cloudfree writes. :func:`check_geotiff_output` checks the output's own."""
    if not options:
        return
    if str(options.get("compress", "")).upper() in LOSSY_8BIT:
        raise _options_error(options, f"{options['compress'].upper()} is lossy and 8-bit only, "
                                      "which fits no cloudfree output; use DEFLATE, ZSTD or LZW")
    if options.get("predictor", "1") not in PREDICTORS:
        raise _options_error(options, "PREDICTOR must be 1 (none), 2 (horizontal) or 3 "
                                      "(floating point)")
    failures = [_probe(options, 1, dtype) for dtype in ("float32", "uint16")]
    if all(failures):  # a failure with one data type only may be the other's option
        raise _options_error(options, failures[0])


def check_geotiff_output(count: int, dtype: str, creation_options: dict[str, str] | None
                         ) -> None:
    """Refuse, before any work, creation options that cannot write a GeoTIFF of ``count`` bands
    of ``dtype`` (e.g. PREDICTOR=3 for integers), or any output (see
    :func:`check_creation_options`)."""
    if not creation_options:
        return
    check_creation_options(creation_options)
    failure = _probe(creation_options, count, dtype)
    if failure:
        raise _options_error(creation_options, failure)


def _probe(options: dict[str, str], count: int, dtype: str) -> str | None:
    """GDAL's complaint, in a few words, when a small GeoTIFF with ``options`` is created and
    written in memory; None when that works."""
    profile = geotiff_profile(width=256, height=256, crs="EPSG:3857", count=count, dtype=dtype,
                              transform=rasterio.transform.from_origin(0, 256, 1, 1),
                              nodata=None, creation_options=options)
    failure = None
    with gdal_messages(logging.WARNING) as messages, rasterio.io.MemoryFile() as memory:
        try:
            with memory.open(**profile) as dst:
                dst.write(np.zeros((count, 256, 256), dtype))
        except rasterio.errors.RasterioError as exc:
            failure = str(exc)
    refused = [m.split(" in ", 1)[-1] for m in messages
               if "creation option" in m or "not recognised" in m]
    if failure is None and not refused:
        return None
    raised = [failure] if failure and "previous" not in failure else []  # else GDAL's says why
    said = [m.split("msg=", 1)[-1][1:-1] for m in messages if "signalled an error" in m]
    text = re.sub(r"^[^ ]+\.tif: ", "", (refused + raised + said + [str(failure)])[0])
    text = text.rstrip(". ")
    return text[0].lower() + text[1:] if text[1:2].islower() else text


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
    # Bytes are class labels here (masks): differencing them only makes the file bigger.
    predictor = 1 if np.dtype(dtype) == np.uint8 else 2 if integer else 3
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
        "blockxsize": OUTPUT_BLOCK,
        "blockysize": OUTPUT_BLOCK,
        "compress": "deflate",
        "predictor": predictor,
        "bigtiff": "if_safer",
        "num_threads": "all_cpus",
    }
    profile.update(creation_options or {})
    if str(profile["compress"]).lower() == "deflate":
        profile.setdefault("zlevel", DEFLATE_LEVEL)
    return profile


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
    grown, (rows, cols) = with_halo(Window(left, top, width, height), halo, scene_w, scene_h)
    pads = ((halo - rows.start, halo + rows.stop - grown.height),
            (halo - cols.start, halo + cols.stop - grown.width))
    if not any(sum(pads, ())):
        return read(grown)
    if pads_itself:
        return read(grown, pads)
    return tuple(None if a is None else
                 np.pad(a, [(0, 0)] * (a.ndim - 2) + list(pads), mode="symmetric")
                 for a in read(grown))


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


def check_output(path: Path, overwrite: bool, inputs: Sequence[Path] = (),
                 geotiff: bool = False) -> Path:
    """Refuse an output that exists (unless overwrite; a symbolic link exists even when it leads
    nowhere), is an input, or cannot be written; with ``geotiff``, one not named ``.tif`` or
    ``.tiff``."""
    path = Path(path)
    if geotiff and path.suffix.lower() not in GEOTIFF_SUFFIXES:
        raise UsageError(f"{path}: outputs are GeoTIFFs; give a .tif or .tiff name")
    for src in inputs:
        if Path(src).exists() and path.exists() and real(path) == real(src):
            raise UsageError(f"output {path} is also an input: choose another output path")
    if path.is_dir():
        raise UsageError(f"output {path} is a folder: give a file name")
    occupied = taken(path)
    if occupied and not overwrite:
        raise UsageError(f"output {path} {occupied}: pass overwrite=True to replace it",
                         "overwrite")
    parent = path.parent if str(path.parent) else Path(".")
    problem = input_problem(parent, folder=True)
    if problem is not None:
        raise CloudfreeError(f"cannot write {path}: folder {parent} {problem}")
    if not os.access(parent, os.W_OK):
        raise CloudfreeError(f"cannot write {path}: folder {parent} is not writable")
    return path


#: This host, as it may appear in a file name (partial files name the host and process).
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def partial_path(path: Path) -> Path:
    """``.NAME.<host>.<pid>.<hex>.partial.SUFFIX`` beside ``path``: hidden, and owned by us."""
    token = f"{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    return path.with_name(f".{path.stem}.{token}.partial{path.suffix}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Remove the partial files of ``path`` that dead runs on this host left; report others.

    A run stopped by SIGKILL (or a crash) cannot clean up after itself; the next run for the
    same output does it. Partials of a live process, or of another host, are left and named.
    """
    # with the COG step's scratch files: the copy (.cog), GDAL's overviews (.cog.ovr.tmp), the
    # streamed overviews (.ovr1, .ovr2, ...) and the file that lists them (.vrt)
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?"
                         rf"[0-9a-f]{{8}}\.partial{re.escape(path.suffix)}"
                         r"(?:\.cog|\.vrt|\.ovr\d+)?(?:\.ovr\.tmp)?"
                         r"(?:\.aux\.xml)?")
    pattern_glob = f".{glob.escape(path.stem)}.*.partial{glob.escape(path.suffix)}*"
    for found in path.parent.glob(pattern_glob):
        match = pattern.fullmatch(found.name)
        if match is None:
            continue
        host, pid = match.group("host"), match.group("pid")
        if host == _HOST and not _process_alive(int(pid)):
            found.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted run (process %s)", found, pid)
        else:
            owner = f"process {pid} on {host}" if pid else "an older cloudfree"
            log.warning("%s: partial output of %s; delete it if no run is writing %s",
                        found, owner, path.name)


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


def _os_error(tmp: Path) -> str | None:
    """The operating system's reason when ``tmp`` cannot grow (full disk, file size limit)."""
    try:
        with open(tmp, "ab") as f:
            f.write(b"\0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


#: GDAL errors that mean bytes did not reach the file.
_WRITE_ERROR = re.compile(r"writ|seek|flush|no space|too large", re.IGNORECASE)


def _write_failure(path: Path, tmp: Path, errors: list[str], raised: bool) -> CloudfreeError | None:
    """The one-line error when writing ``tmp`` failed, named by the OS where it can be; else None.

    ``raised``: the block raised an I/O error, which fails the write when the disk refuses
    more bytes (otherwise the error is not the output's and goes on as it is).
    """
    failed = [e for e in errors if _WRITE_ERROR.search(e)]
    if not failed and not raised:
        return None
    reason = _os_error(tmp)
    if reason is None and not failed:
        return None
    detail = reason or failed[0].split("msg=", 1)[-1].strip("'\"")
    return CloudfreeError(f"cannot write {path}: {detail}; nothing was written there")


def check_distinct(outputs: dict[str, Path | str | None]) -> None:
    """Refuse two outputs on one path: the second would silently replace the first."""
    seen: dict[Path, str] = {}
    for name, path in outputs.items():
        if path is None:
            continue
        key = real(path)
        if key in seen:
            raise UsageError(f"the {seen[key]} and the {name} are the same file {path}: give "
                             "each its own path")
        seen[key] = name


@contextmanager
def atomic_output(path: Path, overwrite: bool, inputs: Sequence[Path] = (),
                  verify: Callable[[Path], None] | None = None,
                  together: list[tuple[Path, Path]] | None = None,
                  finish: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place only if the block succeeds.

    Any error while writing, flushing or closing fails (GDAL's logged-only errors included),
    and ``verify(tmp)`` checks the finished file before the rename. With ``together`` (from
    :func:`output_set`) the rename waits until every output of the set is complete. ``finish``
    runs on the finished file before it is verified (the COG step, :func:`raster_output`).
    """
    path = check_output(path, overwrite, inputs)
    remove_stale_partials(path)
    tmp = partial_path(path)
    try:
        tmp.touch()
    except OSError as exc:
        raise CloudfreeError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with gdal_messages() as errors:
            try:
                yield tmp
                if finish is not None:
                    finish(tmp)
            except (OSError, RuntimeError, rasterio.errors.RasterioError) as exc:
                failure = _write_failure(path, tmp, errors, raised=True)
                if failure is None and tmp.name in str(exc):  # e.g. options GDAL cannot create
                    failure = CloudfreeError(f"cannot write {path}: "
                                             f"{str(exc).replace(tmp.name + ': ', '')}")
                if failure is None:
                    raise
                raise failure from exc
        failure = _write_failure(path, tmp, errors, raised=False)
        if failure is not None:
            raise failure
        if verify is not None:
            try:
                verify(tmp)
            except CloudfreeError as exc:
                reason = _os_error(tmp) or exc  # a flush that failed for want of room
                raise CloudfreeError(f"cannot write {path}: {reason}; nothing was written "
                                     "there") from None
        check_stop()  # a stop whose exception was lost (raised inside a __del__) still stops
        if together is None:
            publish([(tmp, path)], overwrite)
        else:
            together.append((tmp, path))
    finally:
        if together is None or (tmp, path) not in together:
            _remove_partial(tmp)


def write_json(data: object, path: Path | str, overwrite: bool,
               together: list[tuple[Path, Path]] | None = None) -> Path:
    """``data`` as indented JSON, written atomically (see :func:`atomic_output`)."""
    with atomic_output(Path(path), overwrite, together=together) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


def _remove_partial(tmp: Path) -> None:
    """Remove a partial output and its scratch files (``.aux.xml``, the COG step's)."""
    tmp.unlink(missing_ok=True)
    for leftover in tmp.parent.glob(glob.escape(tmp.name) + ".*"):
        leftover.unlink(missing_ok=True)


@contextmanager
def output_set(overwrite: bool) -> Iterator[list[tuple[Path, Path]]]:
    """The outputs of one command (pass it as ``together``): all put into place at the end of
    the block, once each is complete and verified, or none of them (see :mod:`cloudfree.publish`
    for outputs that another run wrote meanwhile)."""
    pending: list[tuple[Path, Path]] = []
    try:
        yield pending
        check_stop()
        publish(pending, overwrite)
        pending.clear()
    finally:
        for tmp, _ in pending:
            _remove_partial(tmp)


def verify_raster(path: Path, profile: dict) -> None:
    """Reopen a written raster: size and band count as asked, every GeoTIFF block in the file."""
    size = path.stat().st_size
    try:
        with rasterio.open(path) as src:
            shape = (src.width, src.height, src.count)
            wanted = (profile["width"], profile["height"], profile["count"])
            if shape != wanted:
                raise CloudfreeError(f"{shape[0]}x{shape[1]} px, {shape[2]} band(s) instead of "
                                     f"{wanted[0]}x{wanted[1]} px, {wanted[2]}")
            if src.driver == "GTiff":
                _check_blocks(src, size, _truthy(profile.get("sparse_ok")))
    except (CloudfreeError, rasterio.errors.RasterioError) as exc:
        raise CloudfreeError(f"the file written does not read back ({exc})") from None


def _truthy(value) -> bool:
    return str(value).upper() in ("TRUE", "YES", "ON", "1")


def _check_blocks(src, size: int, sparse: bool) -> None:
    """Every block of the GeoTIFF has its bytes inside the file (none lost to a failed write)."""
    separate = src.interleaving == rasterio.enums.Interleaving.band
    for band in range(1, src.count + 1) if separate else (1,):
        rows, cols = src.block_shapes[band - 1]
        for y in range(-(-src.height // rows)):
            for x in range(-(-src.width // cols)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band)
                length = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=band)
                if not offset or not length:
                    if sparse:
                        continue
                    raise CloudfreeError(f"block {x},{y} of band {band} is missing")
                if int(offset) + int(length) > size:
                    raise CloudfreeError(f"block {x},{y} of band {band} is cut off")


@contextmanager
def raster_output(path: Path, overwrite: bool, inputs: Sequence[Path], profile: dict,
                  together: list[tuple[Path, Path]] | None = None, cog: str | None = None):
    """An atomic output opened for writing with ``profile``, verified before the rename. With
    ``cog`` (``cloudfree.cog.AVERAGE`` or ``NEAREST``: how its overviews are resampled) it is a
    Cloud Optimized GeoTIFF: streamed into a scratch file that the COG step then copies, its
    overviews made from the blocks as they are written (when written strip by strip, see
    :mod:`cloudfree.overviews`)."""
    verify = partial(verify_raster, profile=profile)
    levels: list[Path] = []  # overviews streamed beside the output (when written in strips)
    finish = None if cog is None else partial(make_cog, resampling=cog, profile=profile,
                                              overviews=levels)
    streamed = profile if cog is None else scratch_profile(profile)
    with atomic_output(path, overwrite, inputs, verify, together, finish) as tmp, \
            rasterio.open(tmp, "w", **streamed) as dst:
        if cog is None or not supported(profile["dtype"], profile.get("nodata"),
                                        cog == NEAREST):
            yield dst
            return
        overviews = StreamedOverviews(tmp, profile, streamed, cog == NEAREST, cog_block(profile))
        try:
            yield OverviewedWriter(dst, overviews)
        except BaseException:
            overviews.discard()
            raise
        levels.extend(overviews.finish() or ())


class GridOutputs:
    """The GeoTIFF outputs of one command on one grid: opened alike, renamed into place together
    (see :func:`output_set`) when ``stack`` closes without an error."""

    def __init__(self, stack: ExitStack, grid: dict, overwrite: bool, inputs: Sequence[Path],
                 cog: bool = True) -> None:
        """``grid``: a source profile (size, CRS, transform) plus ``creation_options``."""
        self.stack, self.grid, self.overwrite, self.inputs, self.cog = (
            stack, grid, overwrite, inputs, cog)
        self.together = stack.enter_context(output_set(overwrite))

    def open(self, path: Path | str, count: int, dtype: str, nodata: float | None,
             resampling: str):
        """Open one output for writing; ``resampling`` makes its COG overviews."""
        check_geotiff_output(count, dtype, self.grid.get("creation_options"))
        profile = geotiff_profile(**self.grid, count=count, dtype=dtype, nodata=nodata)
        return self.stack.enter_context(raster_output(
            Path(path), self.overwrite, self.inputs, profile, self.together,
            resampling if self.cog else None))


def open_raster(path: Path | str, what: str = "raster"):
    """Open a raster for reading, turning GDAL's complaints into one clear line."""
    path = check_input(path, what, folder=False)
    try:
        with warnings.catch_warnings():
            # readers that need a grid refuse its absence in their own words (check_georeferenced)
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        check_stop()  # GDAL's read was broken off by a stop ("Interrupted system call")
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


def checked_read(what: str, dataset, *args, **kwargs) -> np.ndarray:
    """``dataset.read(*args, **kwargs)``; a failure inside a file that opened (damaged data)
    becomes one line naming the input (``what``) and the file."""
    try:
        return dataset.read(*args, **kwargs)
    except rasterio.errors.RasterioError as exc:
        check_stop()
        cause = exc.__cause__ or exc
        raise CloudfreeError(f"{what} {dataset.name}: data unreadable ({cause}); the file is "
                             "damaged or truncated: download or export it again") from None


def progress(iterable, total: int | None = None, desc: str = "", quiet: bool = False, unit="win"):
    """A tqdm bar on stderr, shown only on a terminal and when not quiet."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False)
