"""Sentinel-1 onto the Sentinel-2 grid: windowed warp in linear power, sub-pixel shift field.

The warp resamples linear power (averaging dB would average logarithms, biasing the mean low) and
writes dB. Bilinear keeps sub-pixel positions exact when S1 and S2 pixels are of similar size (GRD
10 m onto S2 10 m); when S1 pixels are less than half the S2 pixel, area averaging is used instead
to avoid aliasing. The residual shift is measured on a grid of windows and fitted by a smooth
field (shift_field.py); each output block's destination grid is moved by the field's affine
approximation over the block (exact in the S2 CRS whatever the S1 CRS), so pixels are resampled
once and memory does not depend on the scene size.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyproj
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import rowcol
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from cloudfree.core.arguments import check_path, check_switch, check_whole
from cloudfree.core.distance import grow
from cloudfree.core.errors import CloudfreeError
from cloudfree.core.progress import progress
from cloudfree.core.threads import WARP_THREADS_RANGE, one_blas_thread, ordered_map, usable_cores
from cloudfree.coregister.shift_estimation import estimate_shift, orientation_fields
from cloudfree.coregister.shift_field import ShiftField, WindowEstimate, fit_field
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import (
    BLOCK_RANGE,
    DEFAULT_BLOCK,
    block_windows,
    check_map_crs,
    checked_read,
    scene_io_env,
)
from cloudfree.io.sentinel1 import POLARISATIONS, S1_INPUT, Sentinel1, linear_to_db, open_sentinel1
from cloudfree.io.sentinel2 import Sentinel2, open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, MaskParams, classify
from cloudfree.mask.scene_input import S2Reader
from cloudfree.output.atomic import (
    check_distinct,
    check_output,
    output_set,
    raster_output,
    write_json,
)
from cloudfree.output.cog import AVERAGE
from cloudfree.output.geotiff import check_geotiff_output, geotiff_profile
from cloudfree.output.provenance import SHIFT_APPLIED, SHIFT_X, SHIFT_Y, provenance_tags

# rasterio warns that "the dataset has no geotransform" while it wraps the arrays given to
# reproject, before it applies the transforms passed with them: a warning about nothing a user
# gave, which would otherwise reach the terminal with a site-packages path
warnings.filterwarnings("ignore", "Dataset has no geotransform",
                        rasterio.errors.NotGeoreferencedWarning, "rasterio.warp")

log = logging.getLogger("cloudfree")

#: Native 10 m S2 bands used for the refinement (with B11 and B12 added, 3 of 4 displaced
#: BigEarthNet patches were estimated less accurately in the calibration).
REFINE_BANDS = ("B02", "B03", "B04", "B08")
#: Size (pixels) of the windows the shift is estimated on, and how many per axis at most.
ESTIMATION_WINDOW = 512
ESTIMATION_WINDOWS_PER_AXIS = 8
#: Share of the reliable windows the field must fit (the rest are outliers) to be applied.
MIN_INLIER_SHARE = 0.5
#: Fraction of valid (overlapping, cloud-free) pixels a window needs to take part.
MIN_VALID = 0.2
#: Clouds (and this buffer around them, pixels) are left out of the refinement.
CLOUD_BUFFER = 5
#: The clouds left out: every pixel that may be cloud, so without the bright-land test, which
#: clears some of them for land (a thin veil over textured land among them); a roof left out
#: costs the fit a few edges, a veil left in blurs them.
SCREEN = MaskParams(land=False)
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


def grid_bounds(height: int, width: int, transform) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a raster's four corners, whatever way its transform turns
    (north-up, south-up, rotated)."""
    xs, ys = zip(*(transform @ corner for corner in ((0, 0), (width, 0), (0, height),
                                                     (width, height))), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def source_window(s1, crs, transform, width: int, height: int,
                  margin: int) -> Window | None:
    """The window of a source raster (S1 or a reference S2) covering a destination area (plus
    margin), or None when they do not meet."""
    left, bottom, right, top = transform_bounds(crs, s1.crs,
                                                *grid_bounds(height, width, transform),
                                                densify_pts=21)
    rows, cols = rowcol(s1.transform, [left, right, left, right], [bottom, bottom, top, top],
                        op=float)
    col0 = max(0, math.floor(min(cols)) - margin)
    row0 = max(0, math.floor(min(rows)) - margin)
    col1 = min(s1.width, math.ceil(max(cols)) + margin)
    row1 = min(s1.height, math.ceil(max(rows)) + margin)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _pixel_ratio(s1, grid: Grid) -> float:
    """S2 pixel size over the source's (S1's) pixel size, measured in the S2 CRS (> 1: the
    source's pixels are finer)."""
    left, bottom, right, top = transform_bounds(
        s1.crs, grid.crs, *grid_bounds(s1.height, s1.width, s1.transform), densify_pts=21)
    s1_pixel = math.sqrt((right - left) * (top - bottom) / (s1.width * s1.height))
    return math.sqrt(abs(grid.transform.determinant)) / s1_pixel


def choose_resampling(s1, grid: Grid) -> Resampling:
    """Bilinear for similar pixel sizes, average when the source (S1) is more than twice as
    fine."""
    return Resampling.average if _pixel_ratio(s1, grid) > 2.0 else Resampling.bilinear


def warp_window(s1: Sentinel1, grid: Grid, window: Window, field: ShiftField | None,
                resampling: Resampling, threads: int) -> np.ndarray:
    """S1 dB float32 [2, h, w] on a window of the grid, each pixel sampled where the field says
    (read as it is where S1 already lies on the grid and no field moves it: the warp would
    give the same values)."""
    if field is None and not grid_differences(s1.crs, s1.transform, (s1.width, s1.height), grid):
        return linear_to_db(s1.read_linear(window))
    dst_transform = window_transform(window, grid.transform) if field is None else \
        grid.transform @ field.block_transform(window)
    return linear_to_db(warp_onto(s1, s1.read_linear, 2, grid, dst_transform, window,
                                  resampling, threads))


def warp_onto(source, read, count: int, grid: Grid, dst_transform, window: Window,
              resampling: Resampling, threads: int) -> np.ndarray:
    """``count`` bands of ``source`` (a raster with crs, transform, width and height, read by
    ``read(source_window)`` as float32 with NaN nodata) resampled onto a window of the grid
    placed at ``dst_transform``; float32 [count, h, w], NaN where the source has no data.

    A source read without NaN is warped without nodata: GDAL then skips its validity masks,
    the same kernel and values (but for float32's last bit at rare pixels) at about a third of
    the CPU (bilinear, 13 bands, 1024^2: 0.19 against 0.54 s); the pixels it does not reach
    keep the NaN they start with (the destination is not initialised)."""
    h, w = int(window.height), int(window.width)
    out = np.full((count, h, w), np.nan, dtype=np.float32)
    margin = SOURCE_MARGIN + math.ceil(_pixel_ratio(source, grid))
    src_window = source_window(source, grid.crs, dst_transform, w, h, margin)
    if src_window is None:
        return out
    data = read(src_window)
    masked = bool(np.isnan(data).any())
    nodata = np.nan if masked else None
    reproject(data, out, src_transform=window_transform(src_window, source.transform),
              src_crs=source.crs, src_nodata=nodata, dst_transform=dst_transform,
              dst_crs=grid.crs, dst_nodata=nodata, init_dest_nodata=masked,
              resampling=resampling, num_threads=threads)
    return out


def overlap_fraction(s1: Sentinel1, grid: Grid) -> float:
    """Fraction of the grid covered by valid S1 pixels, from a warp at most ~512 px wide."""
    src = source_window(s1, grid.crs, grid.transform, grid.width, grid.height, 1)
    if src is None:
        return 0.0
    step = max(1, math.ceil(max(grid.width, grid.height) / 512))
    dst_shape = (math.ceil(grid.height / step), math.ceil(grid.width / step))
    src_step = max(1, math.ceil(max(src.width, src.height) / 1024))
    src_shape = (math.ceil(src.height / src_step), math.ceil(src.width / src_step))
    vv = checked_read(S1_INPUT, s1.handle(), s1.bands[0], window=src, out_shape=src_shape,
                      masked=True)
    valid = np.isfinite(vv.filled(np.nan)).astype(np.float32)
    dst = np.zeros(dst_shape, np.float32)
    reproject(valid, dst, src_crs=s1.crs, dst_crs=grid.crs, resampling=Resampling.nearest,
              src_transform=window_transform(src, s1.transform) @ rasterio.Affine.scale(
                  src.width / src_shape[1], src.height / src_shape[0]),
              dst_transform=grid.transform @ rasterio.Affine.scale(
                  grid.width / dst_shape[1], grid.height / dst_shape[0]))
    return float(dst.mean())


def estimation_windows(width: int, height: int) -> list[Window]:
    """Windows of ESTIMATION_WINDOW px spread evenly over the grid (up to 8 x 8), or the whole."""
    def starts(size: int) -> list[int]:
        if size <= ESTIMATION_WINDOW * 1.5:
            return [0]
        count = min(ESTIMATION_WINDOWS_PER_AXIS, math.ceil(size / ESTIMATION_WINDOW))
        return sorted({int(round(s)) for s in np.linspace(0, size - ESTIMATION_WINDOW, count)})

    def length(size: int) -> int:
        return size if size <= ESTIMATION_WINDOW * 1.5 else ESTIMATION_WINDOW

    return [Window(c, r, length(width), length(height))
            for r in starts(height) for c in starts(width)]


def _optical_fields(s2: Sentinel2, window: Window, read: S2Reader | None = None
                    ) -> dict[str, np.ndarray] | None:
    """Orientation fields of the refinement bands, clouds left out; None if too little valid.
    The bands are read by ``read`` (default: ``s2.read``)."""
    mask_bands = SCREEN.bands_for(s2.bands)
    bands = REFINE_BANDS + tuple(b for b in mask_bands if b not in REFINE_BANDS)
    masked = not s2.missing(bands)
    reflectance, valid = (read or s2.read)(window, bands if masked else REFINE_BANDS)
    if masked:  # every pixel that may be cloud, lone bright ones too, and the buffer around
        classes, _ = classify(reflectance, valid, SCREEN, bands=bands)
        valid &= (classes == CLEAR) & ~grow(classes == CLOUD, CLOUD_BUFFER)
    if valid.mean() < MIN_VALID:
        return None
    return dict(zip(REFINE_BANDS, orientation_fields(reflectance[:len(REFINE_BANDS)], valid),
                    strict=True))


def estimate_window(s1: Sentinel1, s2: Sentinel2, window: Window, max_shift: float,
                    resampling: Resampling, threads: int, evidence: bool = False,
                    read: S2Reader | None = None) -> WindowEstimate:
    """The shift of the warped S1 (VV and VH) against the S2 refinement bands on one window
    (safe on several threads at once: both read through a dataset handle per thread); with
    ``evidence``, every half and band estimated (``estimate_shift``); the S2 bands read by
    ``read`` (default: ``s2.read``)."""
    grid = Grid.of(s2)
    sar = warp_window(s1, grid, window, None, resampling, threads)
    sar_valid = np.isfinite(sar).all(axis=0)
    if sar_valid.mean() < MIN_VALID:
        return WindowEstimate(window, 0.0, 0.0, 0.0, False, "too little S1 overlap")
    optical = _optical_fields(s2, window, read)
    if optical is None:
        return WindowEstimate(window, 0.0, 0.0, 0.0, False,
                              "too few cloud-free valid S2 pixels")
    estimate = estimate_shift(dict(zip(POLARISATIONS, orientation_fields(sar, sar_valid),
                                       strict=True)), optical, max_shift, evidence)
    return WindowEstimate(window, estimate.dx, estimate.dy, estimate.significance,
                          estimate.reliable, estimate.reason, evidence=estimate)


@dataclass(frozen=True)
class FieldEstimate:
    """The per-window estimates, the field fitted to them, and whether it is to be applied."""

    estimates: list[WindowEstimate]
    field: ShiftField | None
    applied: bool
    reason: str  # why it is not applied; empty when it is

    def report(self) -> dict:
        reliable = [e for e in self.estimates if e.reliable]
        inliers = [e for e in reliable if e.inlier]
        best = max(self.estimates, key=lambda e: e.significance, default=None)
        chosen = inliers or ([best] if best else [])
        significance = float(np.median([e.significance for e in chosen])) if chosen else 0.0
        return {"significance": round(significance, 2),
                "halves_disagreement": _median_evidence(chosen, "disagreement"),
                "band_spread": _median_evidence(chosen, "spread"),
                "windows": len(self.estimates),
                "reliable_windows": len(reliable), "inlier_windows": len(inliers),
                "field": self.field.summary() if self.field else None,
                "reliable": self.applied, **({"reason": self.reason} if self.reason else {})}


def _median_evidence(estimates: list[WindowEstimate], name: str) -> float | None:
    """Median of one piece of evidence (px) over the windows that have it."""
    values = [getattr(e.evidence, name) for e in estimates
              if e.evidence and getattr(e.evidence, name) is not None]
    return round(float(np.median(values)), 3) if values else None


def estimate_field(s1: Sentinel1, s2: Sentinel2, max_shift: float, resampling: Resampling,
                   threads: int, quiet: bool = False, evidence: bool = False,
                   read: S2Reader | None = None) -> FieldEstimate:
    """Shift estimates on a grid of windows, outliers rejected, fitted by a smooth field (the
    S2 bands read by ``read``, default ``s2.read``)."""
    grid = Grid.of(s2)
    windows = estimation_windows(grid.width, grid.height)
    def one(window: Window) -> WindowEstimate:
        return estimate_window(s1, s2, window, max_shift, resampling, threads, evidence, read)

    with closing(ordered_map(one, windows, usable_cores())) as results:
        estimates = list(progress(results, len(windows), desc="refine", quiet=quiet))
    field, estimates = fit_field(estimates, (grid.width, grid.height))
    reliable = [e for e in estimates if e.reliable]
    inliers = sum(e.inlier for e in reliable)
    if field is None:
        best = max(estimates, key=lambda e: e.significance, default=None)
        if best is None:
            reason = "no window to estimate on"
        elif len(estimates) == 1:
            reason = best.reason
        else:
            reason = f"none of {len(estimates)} windows reliable; the best: {best.reason}"
        return FieldEstimate(estimates, None, False, reason)
    if inliers <= MIN_INLIER_SHARE * len(reliable):
        return FieldEstimate(estimates, field, False, f"windows disagree: only {inliers} of "
                             f"{len(reliable)} reliable windows fit one smooth field")
    summary = field.summary()
    if max(abs(summary[k]) for k in ("dx_min", "dx_max", "dy_min", "dy_max")) > max_shift:
        return FieldEstimate(estimates, field, False,
                             f"field exceeds the maximum shift of {max_shift:g} px")
    return FieldEstimate(estimates, field, True, "")


@dataclass
class CoregisterResult:
    """S1 on the S2 grid, read window by window (dB, float32, NaN nodata) by on-demand warping."""

    s1: Sentinel1
    grid: Grid
    overlap: float
    estimate: FieldEstimate | None  # None when refinement was off or impossible
    resampling: Resampling
    threads: int

    @property
    def applied(self) -> bool:
        return bool(self.estimate and self.estimate.applied)

    @property
    def field(self) -> ShiftField | None:
        """The displacement field the warp compensates; None when none is applied."""
        return self.estimate.field if self.applied else None

    def read(self, window: Window | None = None) -> np.ndarray:
        """VV, VH in dB, float32 [2, h, w], on a window of the S2 grid."""
        window = window or Window(0, 0, self.grid.width, self.grid.height)
        return warp_window(self.s1, self.grid, window, self.field, self.resampling, self.threads)

    def report(self, windows: bool = True) -> dict:
        """What was done: mean shift in pixels and metres, the field, reliability, overlap."""
        field = self.estimate.field if self.estimate else None
        summary = field.summary() if field else {"dx_mean": 0.0, "dy_mean": 0.0}
        dx, dy = summary["dx_mean"], summary["dy_mean"]
        applied = (dx, dy) if self.applied else (0.0, 0.0)
        report = {
            "s1": str(self.s1.path),
            "s1_units": self.s1.units,
            "resampling": self.resampling.name,
            "overlap_fraction": round(self.overlap, 4),
            "refined": self.estimate is not None,
            "shift_px": {"x": dx, "y": dy},
            "shift_m": _metres(self.grid, dx, dy),
            **(self.estimate.report() if self.estimate else {"reliable": False}),
            "applied": self.applied,
            "applied_px": {"x": applied[0], "y": applied[1]},
        }
        if windows and self.estimate:
            report["window_estimates"] = [e.as_dict() for e in self.estimate.estimates]
        return report

    def tags(self) -> dict[str, str]:
        """GeoTIFF metadata recording the correction."""
        report = self.report(windows=False)
        tags = {
            SHIFT_X: str(report["applied_px"]["x"]),
            SHIFT_Y: str(report["applied_px"]["y"]),
            SHIFT_APPLIED: str(self.applied).upper(),
            "COREGISTER_SIGNIFICANCE": str(report.get("significance", 0.0)),
            "COREGISTER_OVERLAP": str(report["overlap_fraction"]),
            "S1_INPUT_UNITS": self.s1.units,
        }
        if self.field is not None:
            tags["COREGISTER_FIELD"] = json.dumps({
                "degree": self.field.degree, "size": list(self.field.size),
                "coef_x": [round(c, 5) for c in self.field.coef_x],
                "coef_y": [round(c, 5) for c in self.field.coef_y]})
        return tags

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
        geod = pyproj.Geod(ellps="WGS84")
        east = math.copysign(geod.inv(lon, lat, lon + east, lat)[2], east)
        north = math.copysign(geod.inv(lon, lat, lon, lat + north)[2], north)
    return {"east": round(east, 3), "north": round(north, 3)}


def coregister_to_grid(s1_path: Path | str, s2: Sentinel2 | Grid,
                       inputs: InputOptions = InputOptions(), *, threads: int = 2,
                       quiet: bool = False, evidence: bool = False,
                       read_s2: S2Reader | None = None) -> CoregisterResult:
    """Open S1 for reading on the S2 grid, in ``inputs.s1_units``, refining the shift against
    S2 bands when ``inputs.refine`` (with ``evidence``, the report has every window's halves
    and per-band estimates; the S2 bands read by ``read_s2``, default ``s2.read``)."""
    s1 = open_sentinel1(s1_path, inputs.s1_units)
    try:
        grid = Grid.of(s2)
        if s1.crs != grid.crs:  # S1 goes onto the S2 grid through both coordinate systems
            check_map_crs(s1.crs, s1.path, "Sentinel-1 input")
            check_map_crs(grid.crs, s2.path if isinstance(s2, Sentinel2) else "grid",
                          "Sentinel-2 input")
        overlap = overlap_fraction(s1, grid)
        if overlap == 0.0:
            raise CloudfreeError(f"{s1.path.name} does not overlap the Sentinel-2 grid "
                                 f"({grid.crs}); check that both show the same place")
        if overlap < 0.999:
            log.warning("%s covers %.1f%% of the Sentinel-2 grid; the rest is nodata",
                        s1.path, 100 * overlap)
        resampling = choose_resampling(s1, grid)
        estimate = None
        if inputs.refine and isinstance(s2, Sentinel2):
            estimate = estimate_field(s1, s2, inputs.max_shift, resampling, threads, quiet,
                                      evidence, read_s2)
            r = estimate.report()
            if estimate.applied:
                log.debug("S1 co-registration: residual shift corrected (field over %d/%d "
                          "reliable windows, %d inliers, significance %.1f)",
                          r["reliable_windows"], r["windows"], r["inlier_windows"],
                          r["significance"])
            else:
                log.debug("S1 co-registration: Sentinel-1 used as georeferenced, without shift "
                          "correction: %s", estimate.reason)
        elif inputs.refine:
            log.debug("no Sentinel-2 bands given: shift refinement skipped")
        return CoregisterResult(s1, grid, overlap, estimate, resampling, threads)
    except BaseException:
        s1.close()
        raise


def summary_line(report: dict) -> str:
    """One line for the terminal: mean shift, significance, applied or why not, overlap (the
    halves' disagreement only beside an applied shift: when not applied, the reason says what
    failed)."""
    outcome = "applied" if report["applied"] else \
        f"not applied: {report.get('reason', 'refinement off')}"
    halves = report.get("halves_disagreement")
    agreement = "" if halves is None or not report["applied"] else \
        f", halves disagree by {halves} px"
    return (f"{report['output']}: shift ({report['shift_px']['x']}, {report['shift_px']['y']}) px, "
            f"significance {report.get('significance', 0.0)}{agreement}, {outcome}, "
            f"overlap {report['overlap_fraction']:.1%}")


def coregister_file(s1_path: Path | str, s2_path: Path | str, output: Path | str, *,
                    s1_units: str = "auto", refine: bool = True, max_shift: float = 10.0,
                    threads: int = 2, offset: str = "auto", overwrite: bool = False,
                    creation_options: dict[str, str] | None = None,
                    report_path: Path | str | None = None, block: int = DEFAULT_BLOCK,
                    cog: bool = True, quiet: bool = False) -> dict:
    """Write S1 (VV, VH dB float32, NaN nodata) on the S2 grid as a GeoTIFF; return the report.

    Parameters
    ----------
    s1_path : path
        Sentinel-1 GeoTIFF with VV and VH (dB or linear power), in any CRS overlapping the S2.
    s2_path : path
        Sentinel-2 L1C scene (GeoTIFF or ``.SAFE``) whose grid the output takes.
    output : path
        GeoTIFF to write.
    s1_units : {"auto", "db", "linear"}
        Units of the S1 values; ``auto`` decides from them. Default: ``"auto"``.
    refine : bool
        Estimate the residual S1-S2 shift and correct it when reliable. Default: True.
    max_shift : float
        Largest shift the refinement searches for, in S2 pixels, 0.5 to 100. Default: 10.
    threads : int
        GDAL warp threads, 1 to 256. Default: 2.
    offset : {"auto", "0", "1000"}
        Radiometric offset in DN of the S2 (used by the refinement). Default: ``"auto"``.
    overwrite : bool
        Replace existing outputs. Default: False.
    creation_options : dict, optional
        GDAL GeoTIFF creation options. Default: none.
    report_path : path, optional
        Also write the report (shift field, reliability, per-window estimates with their
        per-half and per-band evidence, overlap) as JSON. Default: none.
    block : int
        Window size in pixels for writing, 64 to 16384; the result does not depend on it.
        Default: 1024.
    cog : bool
        Write a Cloud Optimized GeoTIFF with internal overviews. Default: True.
    quiet : bool
        No progress bar. Default: False.

    Returns
    -------
    dict
        The report: output path, shift field and its reliability, overlap.
    """
    options = InputOptions(offset=offset, s1_units=s1_units, refine=refine, max_shift=max_shift)
    for name, path in (("s1_path", s1_path), ("s2_path", s2_path), ("output", output)):
        check_path(name, path)
    check_path("report_path", report_path, optional=True)
    for name, value in (("overwrite", overwrite), ("cog", cog), ("quiet", quiet)):
        check_switch(name, value)
    check_whole("threads", threads, *WARP_THREADS_RANGE)
    check_whole("block", block, *BLOCK_RANGE, "pixels")
    output, inputs = Path(output), (Path(s1_path), Path(s2_path))
    check_distinct({"output": output, "report": report_path})
    check_output(output, overwrite, inputs, geotiff=True)
    check_geotiff_output(2, "float32", creation_options)
    if report_path is not None:
        check_output(Path(report_path), overwrite, inputs + (output,))
    with output_set(overwrite) as together, scene_io_env(), one_blas_thread(), \
            open_sentinel2(s2_path, offset) as s2, coregister_to_grid(
            s1_path, s2, options, threads=threads, quiet=quiet, evidence=True) as result:
        profile = geotiff_profile(width=s2.width, height=s2.height, crs=s2.crs,
                                  transform=s2.transform, count=2, dtype="float32",
                                  nodata=float("nan"), creation_options=creation_options)
        with raster_output(output, overwrite, inputs, profile, together,
                           cog=AVERAGE if cog else None) as dst:
            for i, name in enumerate(POLARISATIONS, start=1):
                dst.set_band_description(i, name)
            dst.update_tags(**provenance_tags("coregister", s2_path, s1_path), **result.tags(),
                            UNITS="dB")
            windows = block_windows(s2.width, s2.height, block)
            for window in progress(windows, desc="coregister", quiet=quiet):
                dst.write(result.read(window), window=window)
        report = {"output": str(output), **result.report()}
        if report_path is not None:
            write_json(report, report_path, overwrite, together)
    return report


class AlignedS1:
    """An S1 file already on the S2 grid, read as dB without warping."""

    def __init__(self, s1: Sentinel1) -> None:
        self.s1 = s1

    def read(self, window: Window) -> np.ndarray:
        return linear_to_db(self.s1.read_linear(window))

    def close(self) -> None:
        self.s1.close()


def grid_differences(crs, transform, size: tuple[int, int], grid) -> list[str]:
    """What differs between a raster's grid and ``grid`` (CRS, pixel size, origin, size), each
    as 'what <the raster's> vs <the grid's>'."""
    def pixel(t) -> str:
        return f"{abs(t.a):g} x {abs(t.e):g}" + (" rotated" if t.b or t.d else "")

    tolerance = 1e-6 * abs(grid.transform.a)
    differences = []
    if crs != grid.crs:
        differences.append(f"CRS {crs.to_string() if crs else None} vs {grid.crs.to_string()}")
    if not np.allclose([transform.a, transform.b, transform.d, transform.e],
                       [grid.transform.a, grid.transform.b, grid.transform.d, grid.transform.e],
                       rtol=0, atol=tolerance):
        differences.append(f"pixel size {pixel(transform)} vs {pixel(grid.transform)}")
    if not np.allclose([transform.c, transform.f], [grid.transform.c, grid.transform.f], rtol=0,
                       atol=tolerance):
        differences.append(f"origin ({transform.c:.2f}, {transform.f:.2f}) vs "
                           f"({grid.transform.c:.2f}, {grid.transform.f:.2f})")
    if size != (grid.width, grid.height):
        differences.append(f"size {size[0]}x{size[1]} vs {grid.width}x{grid.height}")
    return differences


def open_s1_on_grid(s1_path: Path | str, s2: Sentinel2, inputs: InputOptions, quiet: bool,
                    read_s2: S2Reader | None = None):
    """S1 readable on the S2 grid (co-registered unless ``inputs.s1_aligned``), with tags and a
    report of how it got there (the S2 bands the refinement needs read by ``read_s2``,
    default ``s2.read``)."""
    if not inputs.s1_aligned:
        result = coregister_to_grid(s1_path, s2, inputs, quiet=quiet, read_s2=read_s2)
        return result, result.tags(), result.report()
    s1 = open_sentinel1(s1_path, inputs.s1_units)
    differences = grid_differences(s1.crs, s1.transform, (s1.width, s1.height), s2)
    if differences:
        s1.close()
        raise CloudfreeError(
            f"s1_aligned=True: {Path(s1_path).name} is not on the Sentinel-2 grid "
            f"(S1 vs S2: {'; '.join(differences)}); drop s1_aligned=True to co-register it",
            "s1_aligned")
    return AlignedS1(s1), {"S1_ALIGNED": "TRUE", SHIFT_APPLIED: "FALSE"}, \
        {"s1": str(s1.path), "aligned": True, "s1_units": s1.units}
