"""Sentinel-1 GRD backscatter: reading VV/VH, telling dB from linear power, converting between them.

sigma0 in dB is 10 log10 of linear power. Over land and water nearly all dB values lie in about
[-30, +5] with most of them negative; linear power is positive and mostly below 1.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import Url, as_url
from cloudfree.io.rasters import check_georeferenced, checked_read, open_raster

log = logging.getLogger("cloudfree")

UNITS = ("auto", "db", "linear")
POLARISATIONS = ("VV", "VH")
#: How errors name a Sentinel-1 input.
S1_INPUT = "Sentinel-1 input"
#: The units check reads up to this many windows a side, of this many pixels each.
SAMPLE_GRID, SAMPLE_WINDOW = 8, 64
#: A median backscatter outside this range (dB) is not calibrated sigma0 or gamma0.
PLAUSIBLE_DB = (-40.0, 10.0)
#: dB stored as integer hundredths, as some products do: a median in this range is read as dB x 100
#: (-40 to -1 dB once divided; a whole scene's median above -1 dB is not Sentinel-1).
DB_X100 = (-4000.0, -100.0)
#: Linear values whose VV median is above this (dB once read as power) while VV exceeds VH by less
#: than :data:`AMPLITUDE_VV_VH` (dB, medians) look like amplitude, the square root of power, which
#: halves both in dB. On the training pool's 24 real scenes in power, VV medians lie in -24.5 to
#: -7.7 dB and VV - VH in 2.1 to 7.9 dB; as amplitude, the land scenes give -6.2 to -3.9 dB and
#: 2.4 to 4.0 dB.
AMPLITUDE_VV_DB, AMPLITUDE_VV_VH = -7.0, 4.5


def db_to_linear(db: np.ndarray) -> np.ndarray:
    """10 ** (dB / 10); NaN stays NaN."""
    return np.power(np.float32(10.0), db / np.float32(10.0), dtype=np.float32)


def linear_to_db(linear: np.ndarray) -> np.ndarray:
    """10 log10(power); zero, negative and NaN power become NaN (nodata)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = np.float32(10.0) * np.log10(linear, dtype=np.float32)
    db[~(linear > 0)] = np.nan
    return db


def guess_units(values: np.ndarray) -> str | None:
    """'db', 'linear' or None (undecided) from a sample of valid backscatter values."""
    if values.size == 0:
        return None
    negative = float(np.mean(values < 0))
    if negative > 0.5:
        return "db"
    if negative == 0.0 and np.median(values) < 1.0:
        return "linear"
    return None


def resolve_units(values: np.ndarray, requested: str, name: str) -> str:
    """Units to read with: the guess for 'auto'; the request, if the values do not contradict it."""
    if requested not in UNITS:
        raise UsageError(f"s1_units={requested} must be one of {', '.join(UNITS)}", "s1_units")
    guess = guess_units(values)
    median = float(np.median(values)) if values.size else float("nan")
    if requested == "auto":
        if guess is None:
            raise CloudfreeError(
                f"{name}: cannot tell dB from linear power (median {median:.3g}); "
                "pass s1_units=db or s1_units=linear", "s1_units"
            )
        log.debug("%s: backscatter read as %s (median %.3g)", name,
                  "dB" if guess == "db" else "linear power", median)
        return guess
    if guess is not None and guess != requested:
        raise UsageError(
            f"{name}: s1_units={requested} contradicts the values (median {median:.3g}, "
            f"{'mostly negative: dB' if guess == 'db' else 'positive below 1: linear power'}); "
            f"pass s1_units={guess} or auto", "s1_units"
        )
    return requested


@dataclass
class Sentinel1:
    """An opened Sentinel-1 VV/VH raster, read window by window as linear power with NaN nodata.

    Reads may run on several threads at once, with no lock: each thread other than the opening
    one reads through a dataset handle of its own (``handle``), kept in the thread's local
    storage only, so that it closes when its thread ends (or with the object).
    """

    path: Path | Url
    dataset: object = field(repr=False)  # the opening thread's handle
    bands: tuple[int, int]  # 1-based band indexes of VV and VH
    units: str  # units of the file: "db" or "linear"
    db_scale: float = 1.0  # dB = file value x db_scale (0.01 for dB stored x 100)
    _owner: int = field(default_factory=threading.get_ident, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _handles: weakref.WeakSet = field(default_factory=weakref.WeakSet, repr=False)

    def handle(self):
        """The calling thread's dataset handle (GDAL handles are not shared between threads)."""
        if threading.get_ident() == self._owner:
            return self.dataset
        ds = getattr(self._local, "dataset", None)
        if ds is None:
            ds = self._local.dataset = rasterio.open(self.dataset.name)
            self._handles.add(ds)
        return ds

    @property
    def crs(self):
        return self.dataset.crs

    @property
    def transform(self):
        return self.dataset.transform

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def height(self) -> int:
        return self.dataset.height

    def read_linear(self, window: Window | None = None) -> np.ndarray:
        """Linear power float32 [2, h, w] (VV, VH); nodata and non-finite values are NaN."""
        data = checked_read(S1_INPUT, self.handle(), list(self.bands), window=window,
                            masked=True).astype(np.float32)
        values = data.filled(np.nan)
        if self.units != "db":
            return np.where(values > 0, values, np.float32(np.nan))
        if self.db_scale != 1:  # dB stored x 100
            values *= np.float32(self.db_scale)
        return db_to_linear(values)

    def close(self) -> None:
        for ds in [self.dataset, *list(self._handles)]:
            ds.close()

    def __enter__(self) -> Sentinel1:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_backscatter(db: np.ndarray, name: str, stored_db: bool = True) -> float:
    """The factor from file values to dB for a sample of VV (dB): 1, or 0.01 for a file storing
    dB x 100 (with a warning); refuse a sample with no valid value (power all 0) or a median outside
    :data:`PLAUSIBLE_DB` otherwise."""
    if not np.isfinite(db).any():
        raise CloudfreeError(f"{name}: no valid VV pixels (every value read is 0, nodata in "
                             "linear power)")
    median = float(np.nanmedian(db))
    if PLAUSIBLE_DB[0] <= median <= PLAUSIBLE_DB[1]:
        return 1.0
    if stored_db and DB_X100[0] <= median <= DB_X100[1]:
        log.warning("%s: median backscatter %.0f is dB x 100 (%.3g dB); read divided by 100",
                    name, median, median / 100)
        return 0.01
    raise CloudfreeError(
        f"{name}: median backscatter {median:.3g} dB is outside the {PLAUSIBLE_DB[0]:g} to "
        f"{PLAUSIBLE_DB[1]:g} dB of calibrated Sentinel-1; give calibrated sigma0 or gamma0 "
        "in dB or linear power")


def warn_if_amplitude(vv: np.ndarray, vh: np.ndarray, name: str) -> None:
    """Warn when linear VV and VH samples look like amplitude rather than power."""
    vv_db, vh_db = (float(np.median(linear_to_db(v[v > 0]))) if (v > 0).any() else float("nan")
                    for v in (vv, vh))
    if vv_db > AMPLITUDE_VV_DB and vv_db - vh_db < AMPLITUDE_VV_VH:
        log.warning("%s: the backscatter looks like amplitude, not power (as power: VV median "
                    "%.1f dB, VV - VH %.1f dB, about half of Sentinel-1's usual); if it is "
                    "amplitude, square it or give it in dB", name, vv_db, vv_db - vh_db)


def _band_indexes(ds, path: Path) -> tuple[int, int]:
    """VV and VH by band description (any case), else the first two bands in that order."""
    if ds.count < 2:
        raise CloudfreeError(
            f"{path}: {ds.count} band; Sentinel-1 input needs two bands, VV and VH "
            "(named by description, or in that order)"
        )
    names = [(d or "").strip().upper() for d in ds.descriptions]
    if all(p in names for p in POLARISATIONS):
        return names.index("VV") + 1, names.index("VH") + 1
    if ds.count > 2:
        raise CloudfreeError(
            f"{path}: {ds.count} bands without VV/VH names; Sentinel-1 input has two bands, "
            "VV and VH (is this the Sentinel-2 file?)"
        )
    log.debug("%s: no VV/VH band names, reading band 1 as VV and band 2 as VH", path)
    return 1, 2


def _sample(ds, band: int) -> np.ndarray:
    """Valid values of one band in up to ``SAMPLE_GRID`` x ``SAMPLE_GRID`` windows of
    ``SAMPLE_WINDOW`` pixels spread over the raster (all of a small one): a decimated read of
    the whole band would decode all of it (1.1 s of a 4096^2 S1 on the GPU run's critical
    path)."""
    rows, cols = (np.arange(0, n, max(SAMPLE_WINDOW, n // SAMPLE_GRID))[:SAMPLE_GRID]
                  for n in (ds.height, ds.width))
    values = np.concatenate([
        checked_read(S1_INPUT, ds, band, masked=True, window=Window(
            c, r, min(SAMPLE_WINDOW, ds.width - c), min(SAMPLE_WINDOW, ds.height - r))
        ).compressed() for r in rows for c in cols]).astype(np.float64)
    return values[np.isfinite(values)]


def open_sentinel1(path: Path | str, units: str = "auto") -> Sentinel1:
    """Open an S1 VV/VH raster (a file or an http(s) URL) and settle its units (``auto``,
    ``db`` or ``linear``)."""
    path = as_url(path) or Path(path)
    ds = open_raster(path, "Sentinel-1 input")
    try:
        bands = _band_indexes(ds, path)
        check_georeferenced(ds, path)
        values = _sample(ds, bands[0])
        if values.size == 0:
            raise CloudfreeError(f"{path}: no valid VV pixels")
        settled = resolve_units(values, units, str(path))
        stored_db = settled == "db"
        db_scale = check_backscatter(values if stored_db else linear_to_db(values), str(path),
                                     stored_db)
        if not stored_db:
            warn_if_amplitude(values, _sample(ds, bands[1]), str(path))
        return Sentinel1(path=path, dataset=ds, bands=bands, units=settled, db_scale=db_scale)
    except BaseException:
        ds.close()
        raise
