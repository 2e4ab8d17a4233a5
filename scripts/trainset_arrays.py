"""Array conventions of the training set: S1 in dB, S2 as 13 L1C-ordered DN bands, one 10 m grid.

- ``s1``: float32 (2, H, W), VV then VH, in dB; linear power is converted (10 log10).
- ``s2_clear`` / ``s2_cloudy``: float32 (13, H, W) in the order of ``cloudfree.io.sentinel2.BANDS``,
  DN = reflectance x 10000 without offset; a band the source lacks is NaN, as is nodata.
- Every array of a sample is resampled onto the 10 m grid of its S2 (bilinear, through
  ``rasterio.warp.reproject``: 20 m and 60 m bands, and S1 acquired on another grid), then all
  are cropped to the box where they hold data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import MemoryFile
from rasterio.warp import Resampling, reproject

from cloudfree.core.errors import CloudfreeError
from cloudfree.io.sentinel1 import guess_units, linear_to_db
from cloudfree.io.sentinel2 import BANDS, QUANTIFICATION, canonical_band
from cloudfree.mask.classify import CLOUD, MaskParams, classify

#: Border lines (rows or columns, all sides together) that may be cut to drop partial nodata
#: left by resampling; nodata deeper inside stays NaN.
MAX_PEEL = 16
#: Plausible ranges: S1 median in dB, S2 median DN of the valid values (reflectance x 10000).
S1_MEDIAN_DB = (-35.0, 5.0)
S2_MEDIAN_DN = (30.0, 10000.0)


@dataclass(frozen=True)
class Raster:
    """One decoded file: float32 (C, H, W) with nodata as NaN, and where it lies."""

    data: np.ndarray
    crs: CRS | None
    transform: Affine
    names: tuple[str | None, ...]

    @property
    def grid(self) -> Grid:
        return Grid(self.crs, self.transform, *self.data.shape[1:])


@dataclass(frozen=True)
class Grid:
    crs: CRS | None
    transform: Affine
    height: int
    width: int


def decode(data: bytes, what: str) -> Raster:
    """A GeoTIFF's bytes as a Raster; ``what`` names it in errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with MemoryFile(data) as mem, mem.open() as ds:
                array = ds.read(out_dtype=np.float32, masked=True).filled(np.nan)
                crs = ds.crs if ds.crs else None
                return Raster(array, crs, ds.transform, tuple(ds.descriptions))
        except RasterioError as exc:
            raise CloudfreeError(f"{what} is not a raster GDAL can read ({exc})") from None


def onto(raster: Raster, grid: Grid) -> np.ndarray:
    """``raster`` resampled bilinearly onto ``grid`` (returned as is when already on it)."""
    if raster.grid == grid:
        return raster.data
    if raster.crs is None or grid.crs is None:
        raise CloudfreeError("a raster without georeferencing is not on its partner's grid")
    out = np.full((raster.data.shape[0], grid.height, grid.width), np.nan, np.float32)
    reproject(raster.data, out, src_transform=raster.transform, src_crs=raster.crs,
              src_nodata=np.nan, dst_transform=grid.transform, dst_crs=grid.crs,
              dst_nodata=np.nan, resampling=Resampling.bilinear)
    return out


def s2_from_stack(raster: Raster, what: str) -> np.ndarray:
    """(13, H, W) from one multi-band S2 file: by band names when it has them, else in order."""
    names = [canonical_band(n) for n in raster.names]
    if all(names) and len(set(names)) == len(names):
        return s2_from_bands({n: raster.data[i] for i, n in enumerate(names)}, what)
    if raster.data.shape[0] != len(BANDS):
        raise CloudfreeError(f"{what}: {raster.data.shape[0]} unnamed bands, expected 13")
    return raster.data


def s2_from_bands(bands: dict[str, np.ndarray], what: str) -> np.ndarray:
    """(13, H, W) from per-band arrays on one grid; absent bands are NaN."""
    unknown = set(bands) - set(BANDS)
    if unknown or not bands:
        raise CloudfreeError(f"{what}: unexpected S2 bands {sorted(unknown)}")
    shape = next(iter(bands.values())).shape
    nan = np.full(shape, np.nan, np.float32)
    return np.stack([bands.get(b, nan) for b in BANDS]).astype(np.float32)


def missing_bands(s2: np.ndarray) -> list[str]:
    return [b for b, band in zip(BANDS, s2, strict=True) if np.isnan(band).all()]


def s1_db(vv_vh: np.ndarray, what: str) -> np.ndarray:
    """(2, H, W) VV, VH in dB; converted when the values are linear power."""
    if vv_vh.shape[0] != 2:
        raise CloudfreeError(f"{what}: {vv_vh.shape[0]} S1 bands, expected VV and VH")
    values = vv_vh[np.isfinite(vv_vh)]
    units = guess_units(values)
    if units is None:
        raise CloudfreeError(f"{what}: cannot tell dB from linear power "
                             f"(median {np.median(values):.3g})")
    return vv_vh.astype(np.float32) if units == "db" else linear_to_db(vv_vh)


def crop_to_data(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All arrays cut to the box where every present band holds data, peeling up to
    ``MAX_PEEL`` partial border lines (resampling edges); inner nodata stays NaN."""
    shapes = {a.shape[1:] for a in arrays.values()}
    if len(shapes) != 1:
        raise CloudfreeError(f"arrays of one sample on different grids: {sorted(shapes)}")
    ok = np.ones(shapes.pop(), bool)
    for array in arrays.values():
        present = ~np.isnan(array).all(axis=(1, 2))
        ok &= np.isfinite(array[present]).all(axis=0)
    rows, cols = np.flatnonzero(ok.any(axis=1)), np.flatnonzero(ok.any(axis=0))
    if rows.size == 0:
        raise CloudfreeError("the arrays of a sample share no valid pixel")
    box = [rows[0], rows[-1] + 1, cols[0], cols[-1] + 1]
    for _ in range(MAX_PEEL):
        r0, r1, c0, c1 = box
        sides = [ok[r0, c0:c1], ok[r1 - 1, c0:c1], ok[r0:r1, c0], ok[r0:r1, c1 - 1]]
        worst = int(np.argmax([(~s).mean() for s in sides]))
        if sides[worst].all():
            break
        box[worst] += 1 if worst in (0, 2) else -1
    r0, r1, c0, c1 = box
    return {k: np.ascontiguousarray(a[:, r0:r1, c0:c1]) for k, a in arrays.items()}


# The clear check of the recipes is the cloud score as it was when the manifest was written
# (without the HOT and bright-land tests that later became the mask's defaults), so the samples
# stay the same: the land's colour rules made another date of the series its clearest.
RECIPE_MASK = MaskParams(hot=False, land=False)


def cloud_fraction(s2: np.ndarray) -> float | None:
    """Share of valid pixels the recipes' cloud score (masking.classify) calls cloud; None
    when a band the score needs is missing (B10 in L2A)."""
    index = [BANDS.index(b) for b in MaskParams(shadow=True).bands]  # every band a mask reads
    if any(np.isnan(s2[i]).all() for i in index):
        return None
    valid = np.isfinite(s2[index]).all(axis=0)
    classes, _ = classify(np.nan_to_num(s2) / QUANTIFICATION, valid, RECIPE_MASK)
    return float((classes[valid] == CLOUD).mean()) if valid.any() else None


def check_ranges(arrays: dict[str, np.ndarray], what: str) -> None:
    """Refuse values that cannot be S1 dB or S2 DN (a wrong unit or scale in a recipe)."""
    for name, array in arrays.items():
        values = array[np.isfinite(array)]
        median = float(np.median(values)) if values.size else float("nan")
        lo, hi = S1_MEDIAN_DB if name == "s1" else S2_MEDIAN_DN
        if not lo <= median <= hi:
            raise CloudfreeError(f"{what}: {name} median {median:.4g} is outside [{lo}, {hi}]"
                                 f" ({'dB' if name == 's1' else 'DN'}); check its units")
