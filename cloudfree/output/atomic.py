"""Atomic outputs: written to a hidden partial file, verified, renamed into place on
success; never a partial file left behind."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

import rasterio
import rasterio.io
import rasterio.transform

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import input_problem, nearest_existing, real, taken
from cloudfree.core.stop import check_stop
from cloudfree.io.rasters import gdal_messages
from cloudfree.output.cog import NEAREST, cog_block, make_cog, scratch_profile
from cloudfree.output.geotiff import GEOTIFF_SUFFIXES, check_geotiff_output, geotiff_profile
from cloudfree.output.overviews import OverviewedWriter, StreamedOverviews, supported
from cloudfree.output.publish import publish

log = logging.getLogger("cloudfree")


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
    check_output_folder(path)
    return path


def check_output_folder(path: Path) -> None:
    """Refuse to write ``path`` when its folder is not one we can write to, in one line that
    says what to do: a path through a file is a usage mistake (exit 2, as for ``batch -o``); a
    folder missing or not writable fails the run (exit 1)."""
    parent = path.parent if str(path.parent) else Path(".")
    problem = input_problem(parent, folder=True)
    if problem == "does not exist":
        existing = nearest_existing(parent)
        if not existing.is_dir():
            raise UsageError(f"cannot write {path}: it lies inside {existing}, which is a file, "
                             "not a folder; give a path in a folder")
        raise CloudfreeError(f"cannot write {path}: folder {parent} does not exist; make it "
                             "first, or give a path in a folder that exists")
    if problem == "is a file, not a folder":
        raise UsageError(f"cannot write {path}: {parent} is a file, not a folder; give a path "
                         "in a folder")
    if problem is not None:
        raise CloudfreeError(f"cannot write {path}: folder {parent} {problem}")
    if not os.access(parent, os.W_OK):
        raise CloudfreeError(f"cannot write {path}: folder {parent} is not writable; give a path "
                             "in a folder you can write to")

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
        try:  # inside the clean-up: a stop that comes as the file appears removes it
            tmp.touch()
        except OSError as exc:
            raise CloudfreeError(f"cannot write {path}: {exc.strerror or exc}") from None
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
    the block, once each is complete and verified, or none of them (see
    :mod:`cloudfree.output.publish` for outputs that another run wrote meanwhile)."""
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
    ``cog`` (``cloudfree.output.cog.AVERAGE`` or ``NEAREST``: how its overviews are resampled) it is
    a Cloud Optimized GeoTIFF: streamed into a scratch file that the COG step then copies, its
    overviews made from the blocks as they are written (when written strip by strip, see
    :mod:`cloudfree.output.overviews`)."""
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
