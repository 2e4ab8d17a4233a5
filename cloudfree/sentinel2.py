"""Sentinel-2 L1C: the band table and a windowed reader for GeoTIFF stacks and .SAFE folders.

Reflectance is DN / 10000 for products before processing baseline 04.00 and (DN - 1000) / 10000
from baseline 04.00 on (ESA, Sentinel-2 L1C product specification; used from 25 January 2022).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from cloudfree.errors import CloudfreeError, UsageError
from cloudfree.paths import check_input
from cloudfree.rasterio_io import checked_read, open_raster

log = logging.getLogger("cloudfree")

#: L1C band order (SEN12MS-CR, GLF-CR and DSen2-CR all use it): B8A is ninth.
BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)
#: Native ground sampling distance of each band in metres.
RESOLUTION: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}
#: How errors name a Sentinel-2 input.
S2_INPUT = "Sentinel-2 input"
#: STAC ``eo`` common name, centre wavelength and bandwidth (micrometres) of each band, from
#: the Sentinel-2A MSI spectral response (ESA, Sentinel-2 User Handbook and MSI technical guide).
SPECTRAL: dict[str, tuple[str, float, float]] = {
    "B01": ("coastal", 0.443, 0.021), "B02": ("blue", 0.492, 0.066),
    "B03": ("green", 0.560, 0.036), "B04": ("red", 0.665, 0.031),
    "B05": ("rededge", 0.704, 0.015), "B06": ("rededge", 0.741, 0.015),
    "B07": ("rededge", 0.783, 0.020), "B08": ("nir", 0.833, 0.106),
    "B8A": ("nir08", 0.865, 0.021), "B09": ("nir09", 0.945, 0.020),
    "B10": ("cirrus", 1.374, 0.031), "B11": ("swir16", 1.614, 0.091),
    "B12": ("swir22", 2.202, 0.175),
}
#: DN per unit reflectance (QUANTIFICATION_VALUE of L1C products).
QUANTIFICATION = 10000.0
#: L1C DNs are uint16: a float value beyond this (1e30, inf, NaN) is no measurement but nodata.
MAX_DN = float(np.iinfo(np.uint16).max)
#: Radiometric offset of baseline 04.00+ products, in DN.
BASELINE_OFFSET = 1000

_BAND_RE = re.compile(r"^B?0?(1[0-2]|[1-9]|8A)$", re.IGNORECASE)


def canonical_band(name: str | None) -> str | None:
    """'B1', 'b01', 'B8a', '8A' -> 'B01', 'B01', 'B8A', 'B8A'; anything else -> None."""
    if not name:
        return None
    match = _BAND_RE.match(name.strip())
    if not match:
        return None
    number = match.group(1).upper()
    return "B8A" if number == "8A" else f"B{int(number):02d}"


def parse_offset(value: str) -> int | None:
    """The --offset option: 'auto' -> None, '0' or '1000' -> that many DN."""
    if value == "auto":
        return None
    if value in ("0", "1000"):
        return int(value)
    raise UsageError(f"offset={value} must be auto, 0 or 1000", "offset")


@dataclass
class Sentinel2:
    """An opened Sentinel-2 L1C scene on its 10 m grid, read window by window as reflectance.

    ``read`` may be called from several threads at once: each thread other than the opening one
    reads through dataset handles of its own (GDAL handles are not shared between threads).
    Those live in the thread's local storage only, so they close when their thread ends: a
    pass on a thread pool leaves no handles behind (each holds a few MB of GDAL buffers, which
    with several reference dates added up).
    """

    path: Path
    kind: str  # "geotiff" or "safe"
    width: int
    height: int
    crs: object
    transform: object
    dtype: str
    nodata: float | None
    offset: int  # DN subtracted before dividing by dn_scale
    dn_scale: float  # DN per unit reflectance (1.0 for float reflectance input)
    band_sources: dict[str, tuple[object, int, int]] = field(repr=False)
    # band -> (dataset, band index, resolution factor relative to the grid)
    _datasets: list = field(default_factory=list, repr=False)  # the opening thread's
    _thread_datasets: weakref.WeakSet = field(default_factory=weakref.WeakSet, repr=False)
    _owner: int = field(default_factory=threading.get_ident, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def bands(self) -> tuple[str, ...]:
        """The L1C bands present, in L1C order."""
        return tuple(b for b in BANDS if b in self.band_sources)

    @property
    def profile(self) -> dict:
        """Grid of the scene (CRS, transform, size) for writing outputs on it."""
        return {
            "width": self.width, "height": self.height, "crs": self.crs,
            "transform": self.transform,
        }

    def require(self, bands: Sequence[str], purpose: str) -> None:
        """Fail with one line when bands needed for ``purpose`` are missing."""
        missing = [b for b in bands if b not in self.band_sources]
        if missing:
            raise CloudfreeError(
                f"{self.path}: band {', '.join(missing)} missing, needed for {purpose} "
                f"(bands found: {', '.join(self.bands) or 'none'}); give an L1C product with "
                "all 13 bands"
            )

    @property
    def exact_reflectance(self) -> bool:
        """Whether reflectance converts back to every stored value exactly (``to_dn``): integer
        DN are rounded back, float32 reflectance is not scaled; float DN and float64 are not."""
        dtype = np.dtype(self.dtype)
        return np.issubdtype(dtype, np.integer) or (dtype == np.float32 and self.dn_scale == 1.0)

    def read_dn(
        self, window: Window | None = None, bands: Sequence[str] = BANDS
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The stored values [len(bands), h, w] of the window, in the input's dtype, and the
        validity its masks give [h, w] (None: every pixel, as far as they tell)."""
        self.require(bands, "this command")
        window = window or Window(0, 0, self.width, self.height)
        h, w = int(window.height), int(window.width)
        raw: np.ndarray | None = None
        valid: np.ndarray | None = None  # None: every pixel valid so far
        sources = self._thread_sources()
        groups: dict[tuple[int, int], list[int]] = {}
        for i, band in enumerate(bands):
            dataset, _, factor = sources[band]
            groups.setdefault((id(dataset), factor), []).append(i)
        for positions in groups.values():
            dataset, _, factor = sources[bands[positions[0]]]
            indexes = [sources[bands[i]][1] for i in positions]
            data, ok = _read_bands(dataset, indexes, factor, window)
            if len(groups) == 1:
                raw = data
            else:
                raw = np.empty((len(bands), h, w), dtype=data.dtype) if raw is None else raw
                raw[positions] = data
            if ok is not None:
                valid = ok.all(axis=0) if valid is None else valid & ok.all(axis=0)
        return raw, valid

    def read(
        self, window: Window | None = None, bands: Sequence[str] = BANDS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reflectance float32 [len(bands), h, w] and a valid-pixel mask [h, w] for the window."""
        raw, valid = self.read_dn(window, bands)
        h, w = raw.shape[1:]
        if self.nodata is not None and not math.isnan(self.nodata):
            filled = (raw == self.nodata).any(axis=0)
            valid = ~filled if valid is None else valid & ~filled
        else:  # 0 is L1C's fill value: a pixel with every band at 0 DN is none, declared or not
            measured = raw.any(axis=0)
            if not measured.all():
                valid = measured if valid is None else valid & measured
        # One pass from the input's dtype to float32, exactly as float32(dn - offset) / scale.
        out = np.empty(raw.shape, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # huge floats are nodata, below
            if self.offset:
                np.subtract(raw, self.offset, out=out, dtype=np.float32)
                out /= self.dn_scale
            else:
                np.divide(raw, self.dn_scale, out=out, dtype=np.float32)
        if np.issubdtype(raw.dtype, np.floating):
            # NaN, inf and values no DN can take are never data, declared or not
            measured = (np.abs(out) <= MAX_DN / self.dn_scale).all(axis=0)
            valid = measured if valid is None else valid & measured
        if valid is None or valid.all():
            return out, np.ones((h, w), dtype=bool)
        out[:, ~valid] = 0.0
        return out, valid

    def _thread_sources(self) -> dict[str, tuple[object, int, int]]:
        """``band_sources`` with dataset handles owned by the calling thread."""
        if threading.get_ident() == self._owner:
            return self.band_sources
        sources = getattr(self._local, "sources", None)
        if sources is None:
            handles: dict[str, object] = {}
            for dataset, _, _ in self.band_sources.values():
                if dataset.name not in handles:
                    handles[dataset.name] = rasterio.open(dataset.name)
                    self._thread_datasets.add(handles[dataset.name])
            sources = {band: (handles[ds.name], index, factor)
                       for band, (ds, index, factor) in self.band_sources.items()}
            self._local.sources = sources
        return sources

    def to_dn(self, reflectance: np.ndarray) -> np.ndarray:
        """Reflectance back to the input's DN scale and dtype (clipped to the dtype's range)."""
        dn = reflectance * self.dn_scale + self.offset
        dtype = np.dtype(self.dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low = max(info.min, 1) if self.nodata == 0 else info.min
            return np.clip(np.rint(dn), low, info.max).astype(dtype)
        return dn.astype(dtype)

    def close(self) -> None:
        for ds in [*self._datasets, *self._thread_datasets]:
            ds.close()

    def __enter__(self) -> Sentinel2:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_bands(dataset, indexes: list[int], factor: int, window: Window):
    """Bands of one dataset on the 10 m grid: data [n, h, w] in its dtype and masks (or None).

    Coarser bands are replicated (nearest neighbour), which keeps windowed reads identical to
    whole-image reads wherever the window falls.
    """
    if factor == 1:
        data = checked_read(S2_INPUT, dataset, indexes, window=window)
        return data, _read_valid(dataset, indexes, window)
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    src = Window(c0 // factor, r0 // factor,
                 (c1 - 1) // factor - c0 // factor + 1, (r1 - 1) // factor - r0 // factor + 1)
    data = checked_read(S2_INPUT, dataset, indexes, window=src)
    mask = _read_valid(dataset, indexes, src)
    rows = np.arange(r0, r1) // factor - r0 // factor
    cols = np.arange(c0, c1) // factor - c0 // factor
    return data[:, rows][:, :, cols], None if mask is None else mask[:, rows][:, :, cols]


def _read_valid(dataset, indexes: list[int], window: Window) -> np.ndarray | None:
    """Valid-pixel masks [n, h, w] of the bands; None where GDAL says every pixel is valid."""
    flags = dataset.mask_flag_enums
    if all(flags[i - 1] == [MaskFlags.all_valid] for i in indexes):
        return None
    return dataset.read_masks(indexes, window=window) > 0


def open_sentinel2(path: Path | str, offset: str | int | None = "auto") -> Sentinel2:
    """Open a multi-band GeoTIFF (or any GDAL raster) or an L1C .SAFE folder."""
    path = Path(path)
    if isinstance(offset, str):
        offset = parse_offset(offset)
    if path.is_dir() or path.name == "MTD_MSIL1C.xml":
        return _open_safe(path if path.is_dir() else path.parent, offset)
    return _open_stack(path, offset)


def _open_stack(path: Path, offset: int | None) -> Sentinel2:
    ds = open_raster(path, "Sentinel-2 input")
    try:
        names = [canonical_band(d) for d in ds.descriptions]
        if any(names):
            sources = {n: (ds, i + 1, 1) for i, n in enumerate(names) if n}
        elif ds.count == len(BANDS):
            sources = {n: (ds, i + 1, 1) for i, n in enumerate(BANDS)}
            log.info("%s: no band names, assuming the 13-band L1C order B01..B12 (B8A 9th)",
                     path)
        else:
            raise CloudfreeError(
                f"{path}: {ds.count} unnamed band(s); expected 13 bands in L1C order "
                "(B01..B12 with B8A ninth) or band descriptions naming them (B1, B02, B8A...)"
            )
        if ds.crs is None:
            raise CloudfreeError(f"{path}: no coordinate reference system; georeference it first")
        dtype, nodata = ds.dtypes[0], ds.nodata
        check_data_type(path, np.dtype(dtype))
        dn_scale = QUANTIFICATION
        if np.issubdtype(np.dtype(dtype), np.floating):
            dn_scale = _float_scale(ds, path)
            nodata = float("nan") if nodata is None else nodata  # NaN is nodata in float input
        if offset is None:
            offset = _offset_from_tags(ds.tags(), path) if dn_scale != 1.0 else 0
        return Sentinel2(
            path=path, kind="geotiff", width=ds.width, height=ds.height, crs=ds.crs,
            transform=ds.transform, dtype=dtype, nodata=nodata, offset=offset,
            dn_scale=dn_scale, band_sources=sources, _datasets=[ds],
        )
    except BaseException:
        ds.close()
        raise


def check_data_type(path: Path, dtype: np.dtype) -> None:
    """Refuse data types that cannot hold L1C DNs or reflectance (complex, 8-bit integers)."""
    if dtype.kind == "f" or (dtype.kind in "iu" and dtype.itemsize >= 2):
        return
    raise CloudfreeError(f"{S2_INPUT} {path}: data type {dtype} is not Sentinel-2 data; give "
                         "uint16 or int16 digital numbers, or float reflectance or digital "
                         "numbers")


def _float_scale(ds, path: Path) -> float:
    """Float input holds reflectance (0-1) or DN (0-10000): decide from an overview read."""
    step = max(1, max(ds.width, ds.height) // 512)
    sample = checked_read(
        S2_INPUT, ds, 1 + min(1, ds.count - 1),
        out_shape=(max(1, ds.height // step), max(1, ds.width // step)), masked=True,
    ).astype(np.float64)
    values = sample.compressed()
    values = values[np.abs(values) <= MAX_DN]  # not NaN, inf or garbage
    if values.size and np.percentile(values, 99) < 3.0:
        log.info("%s: float values near 0-1, read as reflectance", path)
        return 1.0
    log.info("%s: float values in DN range, read as DN / 10000", path)
    return QUANTIFICATION


def _offset_from_tags(tags: dict[str, str], path: Path) -> int:
    """Offset from RADIO_ADD_OFFSET or PROCESSING_BASELINE tags; 0 when there are none."""
    for key, value in tags.items():
        if key.upper().startswith("RADIO_ADD_OFFSET"):
            return int(round(-float(value)))
    for key, value in tags.items():
        if key.upper() == "PROCESSING_BASELINE":
            return BASELINE_OFFSET if float(value) >= 4.0 else 0
    log.info("%s: no processing-baseline metadata, assuming no radiometric offset "
             "(use --offset 1000 for baseline 04.00+ DNs that still carry it)", path)
    return 0


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_safe_offset(metadata: Path) -> int:
    """Radiometric offset (DN to subtract) from an L1C product's MTD_MSIL1C.xml."""
    try:
        root = ET.parse(metadata).getroot()
    except (OSError, ET.ParseError) as exc:
        raise CloudfreeError(f"cannot read product metadata {metadata}: {exc}") from None
    offsets = [float(e.text) for e in root.iter() if _local(e.tag) == "RADIO_ADD_OFFSET"]
    if offsets:
        if len(set(offsets)) > 1:
            log.warning("%s: band offsets differ; using %s", metadata.name, offsets[0])
        return int(round(-offsets[0]))
    baseline = [e.text for e in root.iter() if _local(e.tag) == "PROCESSING_BASELINE"]
    if baseline and baseline[0] and float(baseline[0]) >= 4.0:
        return BASELINE_OFFSET
    return 0


def _open_safe(folder: Path, offset: int | None) -> Sentinel2:
    check_input(folder, "Sentinel-2 input", folder=True)
    files: dict[str, Path] = {}
    for jp2 in sorted(folder.glob("GRANULE/*/IMG_DATA/*.jp2")):
        band = canonical_band(jp2.stem.rsplit("_", 1)[-1])
        if band:
            files[band] = jp2
    if not files:
        raise CloudfreeError(
            f"{folder}: no GRANULE/*/IMG_DATA/*_Bxx.jp2 band files; is it an L1C .SAFE folder?"
        )
    if "B02" not in files:
        raise CloudfreeError(f"{folder}: band B02 (10 m) missing; cannot set the 10 m grid")
    metadata = folder / "MTD_MSIL1C.xml"
    if offset is None:
        if metadata.exists():
            offset = read_safe_offset(metadata)
            log.info("%s: radiometric offset %d DN from product metadata", folder.name, offset)
        else:
            offset = 0
            log.warning("%s: no MTD_MSIL1C.xml, assuming no radiometric offset", folder.name)
    datasets = []
    try:
        sources = {}
        for band, jp2 in files.items():
            ds = open_raster(jp2, f"band {band}")
            datasets.append(ds)
            sources[band] = ds
        grid = sources["B02"]
        if grid.crs is None:
            raise CloudfreeError(f"{files['B02']}: no coordinate reference system")
        band_sources = {}
        for band, ds in sources.items():
            factor = round(ds.transform.a / grid.transform.a)
            if factor < 1 or ds.width * factor < grid.width - factor:
                raise CloudfreeError(f"{files[band]}: its grid does not nest in the 10 m grid")
            band_sources[band] = (ds, 1, factor)
        return Sentinel2(
            path=folder, kind="safe", width=grid.width, height=grid.height, crs=grid.crs,
            transform=grid.transform, dtype=grid.dtypes[0], nodata=0, offset=offset,
            dn_scale=QUANTIFICATION, band_sources=band_sources, _datasets=datasets,
        )
    except BaseException:
        for ds in datasets:
            ds.close()
        raise
