"""Sentinel-1 onto the Sentinel-2 grid: windowed warp in linear power, sub-pixel shift refinement.

The warp resamples linear power (averaging dB would average logarithms, biasing the mean low) and
writes dB. Bilinear keeps sub-pixel positions exact when S1 and S2 pixels are of similar size (GRD
10 m onto S2 10 m); when S1 pixels are less than half the S2 pixel, area averaging is used instead
to avoid aliasing. A refined shift is applied by translating the destination grid of the warp by
the estimated offset (exact in the S2 CRS whatever the S1 CRS), so pixels are resampled once.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Geod
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import transform as window_transform

from cloudfree.cog import AVERAGE
from cloudfree.errors import CloudfreeError, UsageError
from cloudfree.masking import CLEAR, MASK_BANDS, MaskParams, classify
from cloudfree.provenance import SHIFT_APPLIED, SHIFT_X, SHIFT_Y, provenance_tags
from cloudfree.rasterio_io import (
    DEFAULT_BLOCK,
    atomic_output,
    block_windows,
    check_output,
    geotiff_profile,
    progress,
    scene_io_env,
)
from cloudfree.sentinel1 import POLARISATIONS, Sentinel1, linear_to_db, open_sentinel1
from cloudfree.sentinel2 import Sentinel2, open_sentinel2
from cloudfree.shift_estimation import CombinedShift, combine, estimate_shift, orientation_field

log = logging.getLogger("cloudfree")

#: Native 10 m S2 bands used for the refinement (resampled 20/60 m bands may be offset).
REFINE_BANDS = ("B02", "B03", "B04", "B08")
#: Size (pixels) of the windows the shift is estimated on, and how many per axis at most.
ESTIMATION_WINDOW = 512
ESTIMATION_WINDOWS_PER_AXIS = 3
#: Fraction of valid (overlapping, cloud-free) pixels a window needs to take part.
MIN_VALID = 0.2
#: Clouds (and this buffer around them, pixels) are left out of the refinement.
CLOUD_BUFFER = 5
#: Extra S1 pixels read around each window for the resampling kernel.
SOURCE_MARGIN = 3


@dataclass(frozen=True)
class Grid:
    """A target raster grid: CRS, affine transform and size."""

    crs: object
    transform: object
    width: int
    height: int

    @classmethod
    def of(cls, s2: Sentinel2 | Grid) -> Grid:
        return cls(s2.crs, s2.transform, s2.width, s2.height)


def _source_window(s1: Sentinel1, crs, transform, width: int, height: int,
                   margin: int) -> Window | None:
    """The S1 window covering a destination area (plus margin), or None when they do not meet."""
    bounds = transform_bounds(crs, s1.crs, *array_bounds(height, width, transform),
                              densify_pts=21)
    win = from_bounds(*bounds, transform=s1.transform)
    col0 = max(0, math.floor(min(win.col_off, win.col_off + win.width)) - margin)
    row0 = max(0, math.floor(min(win.row_off, win.row_off + win.height)) - margin)
    col1 = min(s1.width, math.ceil(max(win.col_off, win.col_off + win.width)) + margin)
    row1 = min(s1.height, math.ceil(max(win.row_off, win.row_off + win.height)) + margin)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _pixel_ratio(s1: Sentinel1, grid: Grid) -> float:
    """S2 pixel size over S1 pixel size, measured in the S2 CRS (> 1: S1 pixels are finer)."""
    left, bottom, right, top = transform_bounds(
        s1.crs, grid.crs, *array_bounds(s1.height, s1.width, s1.transform), densify_pts=21)
    s1_pixel = math.sqrt((right - left) * (top - bottom) / (s1.width * s1.height))
    return math.sqrt(abs(grid.transform.determinant)) / s1_pixel


def choose_resampling(s1: Sentinel1, grid: Grid) -> Resampling:
    """Bilinear for similar pixel sizes, average when S1 is more than twice as fine."""
    return Resampling.average if _pixel_ratio(s1, grid) > 2.0 else Resampling.bilinear


def warp_window(s1: Sentinel1, grid: Grid, window: Window, shift: tuple[float, float],
                resampling: Resampling, threads: int) -> np.ndarray:
    """S1 dB float32 [2, h, w] on a window of the grid, displaced by -shift (S2 pixels)."""
    h, w = int(window.height), int(window.width)
    dst_transform = window_transform(window, grid.transform) @ \
        rasterio.Affine.translation(*shift)
    out = np.full((2, h, w), np.nan, dtype=np.float32)
    margin = SOURCE_MARGIN + math.ceil(_pixel_ratio(s1, grid))
    src_window = _source_window(s1, grid.crs, dst_transform, w, h, margin)
    if src_window is None:
        return out
    reproject(s1.read_linear(src_window), out, src_transform=window_transform(
        src_window, s1.transform), src_crs=s1.crs, src_nodata=np.nan,
        dst_transform=dst_transform, dst_crs=grid.crs, dst_nodata=np.nan,
        resampling=resampling, num_threads=threads)
    return linear_to_db(out)


def overlap_fraction(s1: Sentinel1, grid: Grid) -> float:
    """Fraction of the grid covered by valid S1 pixels, from a warp at most ~512 px wide."""
    src = _source_window(s1, grid.crs, grid.transform, grid.width, grid.height, 1)
    if src is None:
        return 0.0
    step = max(1, math.ceil(max(grid.width, grid.height) / 512))
    dst_shape = (math.ceil(grid.height / step), math.ceil(grid.width / step))
    src_step = max(1, math.ceil(max(src.width, src.height) / 1024))
    src_shape = (math.ceil(src.height / src_step), math.ceil(src.width / src_step))
    vv = s1.dataset.read(s1.bands[0], window=src, out_shape=src_shape, masked=True)
    valid = np.isfinite(vv.filled(np.nan)).astype(np.float32)
    dst = np.zeros(dst_shape, np.float32)
    reproject(valid, dst, src_crs=s1.crs, dst_crs=grid.crs, resampling=Resampling.nearest,
              src_transform=window_transform(src, s1.transform) @ rasterio.Affine.scale(
                  src.width / src_shape[1], src.height / src_shape[0]),
              dst_transform=grid.transform @ rasterio.Affine.scale(
                  grid.width / dst_shape[1], grid.height / dst_shape[0]))
    return float(dst.mean())


def estimation_windows(width: int, height: int) -> list[Window]:
    """Up to 3 x 3 windows of ESTIMATION_WINDOW px spread evenly over the grid (or the whole)."""
    def starts(size: int) -> list[int]:
        if size <= ESTIMATION_WINDOW * 1.5:
            return [0]
        return sorted({int(round(s)) for s in np.linspace(
            0, size - ESTIMATION_WINDOW, ESTIMATION_WINDOWS_PER_AXIS)})

    def length(size: int) -> int:
        return size if size <= ESTIMATION_WINDOW * 1.5 else ESTIMATION_WINDOW

    return [Window(c, r, length(width), length(height))
            for r in starts(height) for c in starts(width)]


def _optical_field(s2: Sentinel2, window: Window) -> np.ndarray | None:
    """Sum of the 10 m bands' orientation fields, clouds left out; None if too little is valid."""
    bands = REFINE_BANDS + tuple(b for b in MASK_BANDS if b not in REFINE_BANDS)
    if not all(b in s2.band_sources for b in bands):
        bands = REFINE_BANDS
    reflectance, valid = s2.read(window, bands=bands)
    if len(bands) > len(REFINE_BANDS):
        classes, _ = classify(reflectance, valid, MaskParams(buffer=CLOUD_BUFFER), bands=bands)
        valid &= classes == CLEAR
    if valid.mean() < MIN_VALID:
        return None
    return sum(orientation_field(reflectance[i], valid) for i in range(len(REFINE_BANDS)))


def estimate_grid_shift(s1: Sentinel1, s2: Sentinel2, max_shift: float, resampling: Resampling,
                        threads: int, quiet: bool = False) -> CombinedShift:
    """Residual shift of the warped S1 against S2, estimated on several windows and combined."""
    grid = Grid.of(s2)
    estimates = []
    windows = estimation_windows(grid.width, grid.height)
    for window in progress(windows, desc="refine", quiet=quiet):
        vv = warp_window(s1, grid, window, (0.0, 0.0), resampling, threads)[0]
        sar_valid = np.isfinite(vv)
        if sar_valid.mean() < MIN_VALID:
            continue
        optical = _optical_field(s2, window)
        if optical is not None:
            estimates.append(estimate_shift(orientation_field(vv, sar_valid), optical, max_shift))
    return combine(estimates)


@dataclass
class CoregisterResult:
    """S1 on the S2 grid, read window by window (dB, float32, NaN nodata) by on-demand warping."""

    s1: Sentinel1
    grid: Grid
    overlap: float
    shift: CombinedShift | None  # None when refinement was off or impossible
    applied: bool
    resampling: Resampling
    threads: int

    @property
    def offset(self) -> tuple[float, float]:
        """Shift (dx, dy) in S2 pixels the warp compensates; (0, 0) when none is applied."""
        return (self.shift.dx, self.shift.dy) if self.applied else (0.0, 0.0)

    def read(self, window: Window | None = None) -> np.ndarray:
        """VV, VH in dB, float32 [2, h, w], on a window of the S2 grid."""
        window = window or Window(0, 0, self.grid.width, self.grid.height)
        return warp_window(self.s1, self.grid, window, self.offset, self.resampling, self.threads)

    def report(self) -> dict:
        """What was done: shift in pixels and metres, reliability, overlap, applied or not."""
        shift = self.shift or CombinedShift(0.0, 0.0, 0.0, 0.0, 0, 0, False)
        return {
            "s1": str(self.s1.path),
            "s1_units": self.s1.units,
            "resampling": self.resampling.name,
            "overlap_fraction": round(self.overlap, 4),
            "refined": self.shift is not None,
            "shift_px": {"x": round(shift.dx, 3), "y": round(shift.dy, 3)},
            "shift_m": _metres(self.grid, shift.dx, shift.dy),
            "psr": round(shift.psr, 2),
            "consistency": round(shift.consistency, 3),
            "windows": shift.windows,
            "reliable_windows": shift.reliable_windows,
            "reliable": shift.reliable,
            "applied": self.applied,
            "applied_px": {"x": round(self.offset[0], 3), "y": round(self.offset[1], 3)},
        }

    def tags(self) -> dict[str, str]:
        """GeoTIFF metadata recording the correction."""
        report = self.report()
        return {
            SHIFT_X: str(report["applied_px"]["x"]),
            SHIFT_Y: str(report["applied_px"]["y"]),
            SHIFT_APPLIED: str(self.applied).upper(),
            "COREGISTER_PSR": str(report["psr"]),
            "COREGISTER_OVERLAP": str(report["overlap_fraction"]),
            "S1_INPUT_UNITS": self.s1.units,
            "UNITS": "dB",
        }

    def close(self) -> None:
        self.s1.close()

    def __enter__(self) -> CoregisterResult:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _metres(grid: Grid, dx: float, dy: float) -> dict[str, float]:
    """A shift in grid pixels as east and north metres at the grid centre (geodesic if lon/lat)."""
    t = grid.transform
    east, north = t.a * dx + t.b * dy, t.d * dx + t.e * dy
    if grid.crs.is_geographic:
        lon, lat = t @ (grid.width / 2, grid.height / 2)
        geod = Geod(ellps="WGS84")
        east = math.copysign(geod.inv(lon, lat, lon + east, lat)[2], east)
        north = math.copysign(geod.inv(lon, lat, lon, lat + north)[2], north)
    return {"east": round(east, 3), "north": round(north, 3)}


def coregister_to_grid(s1_path: Path | str, s2: Sentinel2 | Grid, *, units: str = "auto",
                       refine: bool = True, max_shift: float = 10.0, threads: int = 2,
                       quiet: bool = False) -> CoregisterResult:
    """Open S1 for reading on the S2 grid, refining the shift against S2 bands when asked."""
    if not max_shift > 0:
        raise UsageError(f"--max-shift must be positive, not {max_shift}")
    s1 = open_sentinel1(s1_path, units)
    try:
        grid = Grid.of(s2)
        overlap = overlap_fraction(s1, grid)
        if overlap == 0.0:
            raise CloudfreeError(f"{s1.path.name} does not overlap the Sentinel-2 grid "
                                 f"({grid.crs}); check that both show the same place")
        if overlap < 0.999:
            log.warning("%s covers %.1f%% of the Sentinel-2 grid; the rest is nodata",
                        s1.path.name, 100 * overlap)
        resampling = choose_resampling(s1, grid)
        shift = None
        if refine and isinstance(s2, Sentinel2):
            shift = estimate_grid_shift(s1, s2, max_shift, resampling, threads, quiet)
            log.info("shift estimate dx %.2f dy %.2f px, PSR %.1f, %d/%d windows reliable: %s",
                     shift.dx, shift.dy, shift.psr, shift.reliable_windows, shift.windows,
                     "applied" if shift.reliable else "not reliable, not applied")
        elif refine:
            log.info("no Sentinel-2 bands given: shift refinement skipped")
        return CoregisterResult(s1, grid, overlap, shift, bool(shift and shift.reliable),
                                resampling, threads)
    except BaseException:
        s1.close()
        raise


def write_report(report: dict, path: Path, overwrite: bool) -> None:
    """The report as JSON, written atomically."""
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")


def coregister_file(s1_path: Path | str, s2_path: Path | str, output: Path | str, *,
                    units: str = "auto", refine: bool = True, max_shift: float = 10.0,
                    threads: int = 2, offset: str = "auto", overwrite: bool = False,
                    creation_options: dict[str, str] | None = None,
                    report_path: Path | str | None = None, block: int = DEFAULT_BLOCK,
                    cog: bool = True, quiet: bool = False) -> dict:
    """Write S1 (VV, VH dB float32, NaN nodata) on the S2 grid as a GeoTIFF; return the report."""
    output, inputs = Path(output), (Path(s1_path), Path(s2_path))
    check_output(output, overwrite, inputs)
    if report_path is not None:
        check_output(Path(report_path), overwrite, inputs + (output,))
    with scene_io_env(), open_sentinel2(s2_path, offset) as s2, coregister_to_grid(
            s1_path, s2, units=units, refine=refine, max_shift=max_shift, threads=threads,
            quiet=quiet) as result:
        profile = geotiff_profile(width=s2.width, height=s2.height, crs=s2.crs,
                                  transform=s2.transform, count=2, dtype="float32",
                                  nodata=float("nan"), creation_options=creation_options)
        with atomic_output(output, overwrite, inputs, cog=AVERAGE if cog else None) as tmp, \
                rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(POLARISATIONS, start=1):
                dst.set_band_description(i, name)
            dst.update_tags(**provenance_tags("coregister", s2_path, s1_path), **result.tags())
            windows = block_windows(s2.width, s2.height, block)
            for window in progress(windows, desc="coregister", quiet=quiet):
                dst.write(result.read(window), window=window)
        report = {"output": str(output), **result.report()}
    if report_path is not None:
        write_report(report, Path(report_path), overwrite)
    return report


class AlignedS1:
    """An S1 file already on the S2 grid, read as dB without warping."""

    def __init__(self, s1: Sentinel1) -> None:
        self.s1 = s1

    def read(self, window: Window) -> np.ndarray:
        return linear_to_db(self.s1.read_linear(window))

    def close(self) -> None:
        self.s1.close()


def open_s1_on_grid(s1_path: Path | str, s2: Sentinel2, *, aligned: bool, units: str,
                    refine: bool, max_shift: float, quiet: bool):
    """S1 readable on the S2 grid, with tags and a report of how it got there."""
    if not aligned:
        result = coregister_to_grid(s1_path, s2, units=units, refine=refine,
                                    max_shift=max_shift, quiet=quiet)
        return result, result.tags(), result.report()
    s1 = open_sentinel1(s1_path, units)
    same = (s1.crs == s2.crs and (s1.width, s1.height) == (s2.width, s2.height)
            and s1.transform.almost_equals(s2.transform, precision=1e-6 * abs(s2.transform.a)))
    if not same:
        s1.close()
        raise CloudfreeError(
            f"--s1-aligned: {Path(s1_path).name} ({s1.crs}, {s1.width}x{s1.height}) is not on "
            f"the Sentinel-2 grid ({s2.crs}, {s2.width}x{s2.height}); drop --s1-aligned to "
            "co-register it")
    return AlignedS1(s1), {"S1_ALIGNED": "TRUE", SHIFT_APPLIED: "FALSE"}, \
        {"s1": str(s1.path), "aligned": True, "s1_units": s1.units}
