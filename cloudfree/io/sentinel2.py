"""Sentinel-2 L1C and L2A: the band table and a windowed reader for GeoTIFF stacks (any subset
of bands), .SAFE folders, folders of per-band files and STAC items (their files: ``s2_files.py``).

Reflectance is DN / 10000 for products before processing baseline 04.00 and (DN - 1000) / 10000
from baseline 04.00 on (ESA, Sentinel-2 L1C and L2A product specifications, RADIO_ADD_OFFSET and
BOA_ADD_OFFSET; used from 25 January 2022). Bands coarser than the finest one are replicated onto
its grid (nearest neighbour), window by window.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import Url, as_url, check_input
from cloudfree.io import remote
from cloudfree.io.rasters import check_georeferenced, checked_read, open_raster
from cloudfree.io.s2_files import (
    BASELINE_OFFSET,
    METADATA_FILES,
    SCL,
    BandFiles,
    band_of_name,
    canonical_band,
    folder_files,
    offset_number,
    parse_level,
    safe_files,
    stac_files,
)

log = logging.getLogger("cloudfree")

#: L1C band order (SEN12MS-CR, GLF-CR and DSen2-CR all use it): B8A is ninth.
BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)
#: L2A band order (the product's bands, BigEarthNet's patches): L1C's without B10.
L2A_BANDS: tuple[str, ...] = tuple(b for b in BANDS if b != "B10")
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
#: Share of a band's pixels below the radiometric offset past which the offset is doubtful:
#: with the offset in the data only noise falls below it (dark water is 1-2 % reflectance in
#: B04, 100-200 DN above it); with the offset removed, a quarter of a scene may be.
BELOW_OFFSET = 0.05


#: The radiometric offsets (DN) a product can carry: none, or that of baseline 04.00 and later.
OFFSETS = (0, 1000)


def parse_offset(value: str | int | None) -> int | None:
    """The offset option: 'auto' (or None) -> None, 0 or 1000 (or '0', '1000') -> that many DN."""
    if value in (None, "auto"):
        return None
    if not isinstance(value, bool) and str(value) in map(str, OFFSETS):
        return int(value)
    raise UsageError(f"offset={value!r} must be auto, 0 or 1000", "offset")


@dataclass
class Sentinel2:
    """An opened Sentinel-2 scene on its finest grid, read window by window as reflectance.

    ``read`` may be called from several threads at once: each thread other than the opening one
    reads through dataset handles of its own (GDAL handles are not shared between threads).
    Those live in the thread's local storage only, so they close when their thread ends: a
    pass on a thread pool leaves no handles behind (each holds a few MB of GDAL buffers, which
    with several reference dates added up). After :meth:`share_handles`, every thread reads
    through one set of handles instead (``SharedHandles``).
    """

    path: Path | Url  # a URL for an input read over the network
    kind: str  # "geotiff", "safe", "folder" or "stac"
    width: int
    height: int
    crs: object
    transform: object
    dtype: str
    nodata: float | None
    offset: int  # DN subtracted before dividing by dn_scale
    dn_scale: float  # DN per unit reflectance (1.0 for float reflectance input)
    band_sources: dict[str, tuple[object, int, int]] = field(repr=False)
    # band -> (dataset, band index, resolution factor relative to the grid), in the input's
    # order (L1C order for products, the stack's order for a GeoTIFF); SCL, if any, among them
    level: str = "L1C"  # "L1C" (top of atmosphere) or "L2A" (bottom of atmosphere)
    level_named: bool = False  # the level is the metadata's or the caller's, not the band set's
    declared_scaling: bool = False  # the input declares scale and offset (GDAL tags, STAC)
    area: Window | None = None  # the window of the stored grid the scene is cropped to
    grid_size: tuple[int, int] | None = None  # the stored grid's width and height, once cropped
    _datasets: list = field(default_factory=list, repr=False)  # the opening thread's
    _thread_datasets: weakref.WeakSet = field(default_factory=weakref.WeakSet, repr=False)
    _owner: int = field(default_factory=threading.get_ident, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _shared: SharedHandles | None = field(default=None, repr=False)
    _scl_checked: bool = field(default=False, repr=False)
    #: the codes of a mask given for the scene (one of ``MASK_CODES``; ``take_mask``), which the
    #: SCL slot then holds, read in place of a product's scene classification whatever the
    #: level; None: none given
    given_codes: str | None = None
    #: where the given mask is a cloud probability: the value from which a pixel is cloud
    given_threshold: float | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        """The spectral bands present, in the input's order."""
        return tuple(b for b in self.band_sources if b != SCL)

    @property
    def top_of_atmosphere(self) -> bool:
        """Whether the scene is L1C as its metadata or the caller name it (a band set that
        names no level may be either)."""
        return self.level == "L1C" and self.level_named

    @property
    def has_scl(self) -> bool:
        """Whether the scene classification of an L2A product, or a mask given for the scene,
        comes with it."""
        return SCL in self.band_sources and (self.level == "L2A" or self.given_mask)

    @property
    def given_mask(self) -> bool:
        """Whether a mask was given for the scene (``take_mask``)."""
        return self.given_codes is not None

    def take_mask(self, path: Path | str, codes: str = "cloudfree",
                  threshold: float | None = None) -> None:
        """Read the first band of the raster at ``path``, in ``codes`` (``MASK_CODES``), or
        with a ``threshold`` as a cloud probability (cloud where it reaches it), as the
        scene's classes, in place of any scene classification; one line when it is not on the
        scene's grid or a whole multiple of its pixels. Before any ``crop``: the mask lies on
        the stored grid."""
        dataset = open_raster(path, "mask")
        try:
            grid = SimpleNamespace(name=str(self.path), transform=self.transform, crs=self.crs,
                                   width=self.width, height=self.height)
            factor = band_factor(dataset, path, "the mask", grid, MASK_ADVICE, MASK_ADVICE,
                                 finest=False)
        except BaseException:
            dataset.close()
            raise
        self.band_sources[SCL] = (dataset, 1, factor)
        self._datasets.append(dataset)
        self.given_codes, self.given_threshold = codes, threshold

    def read_scl(self, window: Window | None = None) -> np.ndarray:
        """The scene classification [h, w] (uint8) of the window, on the scene's grid."""
        return self.read_dn(window, (SCL,))[0][0].astype(np.uint8, copy=False)

    def warn_unknown_scl(self) -> None:
        """Warn (once per scene) when the scene classification holds none of Sen2Cor's classes
        of land and sky (1-11) in a sample of up to 1024 x 1024 of its pixels: a mask from it
        finds no cloud, shadow or snow anywhere."""
        if self._scl_checked or SCL not in self.band_sources or self.given_mask:
            return
        self._scl_checked = True
        dataset, index, _ = self.band_sources[SCL]
        sample = checked_read(S2_INPUT, dataset, index,
                              out_shape=(min(dataset.height, 1024), min(dataset.width, 1024)))
        if ((sample >= 1) & (sample <= 11)).any():
            return
        values = np.unique(sample)
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        log.warning("%s: the scene classification (SCL) holds none of Sen2Cor's classes 1-11 "
                    "(only %s): the mask from it finds no cloud, shadow or snow; give the "
                    "product's own SCL, or --no-scl to mask from the bands",
                    remote.shown(dataset.name), shown)

    def warn_doubtful_offset(self) -> None:
        """Warn when more than ``BELOW_OFFSET`` of the valid pixels of B04 (else the first
        band), in a sample of up to 1024 x 1024, lie below the radiometric offset: negative
        reflectance, as when the offset was already removed from the file."""
        if self.offset <= 0:
            return
        band = "B04" if "B04" in self.band_sources else self.bands[0]
        dataset, index, _ = self.band_sources[band]
        sample = checked_read(S2_INPUT, dataset, index, masked=True,
                              out_shape=(min(dataset.height, 1024), min(dataset.width, 1024)))
        values = sample.compressed().astype(np.float64)
        values = values[(values != 0) & (np.abs(values) <= MAX_DN)]  # 0: L1C's fill value
        below = float(np.mean(values < self.offset)) if values.size else 0.0
        if below > BELOW_OFFSET:
            log.warning("%s: %.0f%% of %s's pixels are below the radiometric offset of %d DN "
                        "(negative reflectance): the file may have had it removed already; if "
                        "so, give --offset 0 (offset=0)", self.path, 100 * below, band,
                        self.offset)

    @property
    def profile(self) -> dict:
        """Grid of the scene (CRS, transform, size) for writing outputs on it."""
        return {
            "width": self.width, "height": self.height, "crs": self.crs,
            "transform": self.transform,
        }

    def require(self, bands: Sequence[str], purpose: str,
                advice: str = "give an L1C product with all 13 bands", *params: str) -> None:
        """Fail with one line when bands needed for ``purpose`` are missing (``params``: the
        arguments ``advice`` names, for the CLI's flags)."""
        missing = self.missing(bands)
        if missing:
            raise CloudfreeError(
                f"{self.path}: band {', '.join(missing)} missing, needed for {purpose} "
                f"(bands found: {', '.join(self.bands) or 'none'}); {advice}", *params
            )

    def missing(self, bands: Sequence[str]) -> list[str]:
        """The ``bands`` the scene lacks."""
        return [b for b in bands if b not in self.band_sources]

    @property
    def scaling(self) -> tuple[float, float] | None:
        """GDAL's scale and offset of every band (reflectance = DN * scale + offset), for
        outputs to carry as the input did; None when the input declared none."""
        if not self.declared_scaling:
            return None
        return 1.0 / self.dn_scale, -self.offset / self.dn_scale

    @property
    def exact_reflectance(self) -> bool:
        """Whether reflectance converts back to every stored value exactly (``to_dn``): integer
        DN are rounded back, float32 reflectance is not scaled; float DN and float64 are not."""
        dtype = np.dtype(self.dtype)
        return np.issubdtype(dtype, np.integer) or (dtype == np.float32 and self.dn_scale == 1.0)

    def read_dn(
        self, window: Window | None = None, bands: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The stored values [len(bands), h, w] of the window (default: every band of the
        scene), in the input's dtype, and the validity its masks give [h, w] (None: every
        pixel, as far as they tell)."""
        bands = self.bands if bands is None else bands
        self.require(bands, "this command", "give an input with these bands")
        window = window or Window(0, 0, self.width, self.height)
        if self.area is not None:
            window = Window(window.col_off + self.area.col_off, window.row_off
                            + self.area.row_off, window.width, window.height)
        if self._shared is None:
            return _read_sources(self._thread_sources(), bands, window)
        size = int(window.height) * int(window.width) * len(bands) * np.dtype(self.dtype).itemsize
        with self._shared.sources(size) as sources:
            return _read_sources(sources, bands, window)

    def crop(self, window: Window) -> None:
        """Make the scene the whole-pixel ``window`` of its grid: its size, transform and
        every read from then on are the window's (``read_dn``'s windows fall inside it)."""
        col, row, width, height = (int(v) for v in (window.col_off, window.row_off,
                                                    window.width, window.height))
        self.transform = window_transform(Window(col, row, width, height), self.transform)
        if self.area is not None:
            col, row = col + self.area.col_off, row + self.area.row_off
        else:
            self.grid_size = self.width, self.height
        self.area = Window(col, row, width, height)
        self.width, self.height = width, height

    def widen(self, margin: int) -> Window:
        """Grow a cropped scene by ``margin`` px of its stored grid on every side, as far as the
        grid goes, so that the pixels around its area are read as they are rather than
        mirrored; the window of the area before in the scene after (the whole scene when it
        is not cropped)."""
        if self.area is None:
            return Window(0, 0, self.width, self.height)
        (grid_w, grid_h), area = self.grid_size, self.area
        col0, row0 = max(0, area.col_off - margin), max(0, area.row_off - margin)
        col1 = min(grid_w, area.col_off + area.width + margin)
        row1 = min(grid_h, area.row_off + area.height + margin)
        box = Window(area.col_off - col0, area.row_off - row0, area.width, area.height)
        self.crop(Window(col0 - area.col_off, row0 - area.row_off, col1 - col0, row1 - row0))
        return box

    def tiles_across(self, block: int) -> int:
        """How many windows of ``block`` px a tile of the 10 and 20 m bands spans, across and
        down (a 1024 px JPEG2000 tile of a 20 m band spans 2048 px of the scene's grid: 2
        windows of 1024), at least 1; 1 for bands stored in strips. Each dataset handle (every
        thread has its own) decodes a tile it reads part of, so the windows of one tile are
        best read on one thread. The 60 m bands are left out: few pixels, and tiles so wide
        that grouping windows by them would leave too few groups to keep every core busy."""
        spans = [1]
        for dataset, index, factor in self.band_sources.values():
            rows, cols = dataset.block_shapes[index - 1]
            if factor <= 2 and rows == cols:
                spans.append(rows * factor // block)
        return max(spans)

    @property
    def jpeg2000(self) -> bool:
        """Whether a band is stored as JPEG2000 (a ``.SAFE`` product's), where a read decodes
        every tile it touches: a window read with a margin decodes the tiles beside it too."""
        return any(dataset.driver == "JP2OpenJPEG" for dataset, _, _ in
                   self.band_sources.values())

    def share_handles(self, budget: int) -> None:
        """Read through one set of dataset handles whatever the thread, one read at a time,
        reopened after every ``budget`` bytes read (``SharedHandles``)."""
        self._shared = SharedHandles(self.band_sources, budget)

    def read(
        self, window: Window | None = None, bands: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reflectance float32 [len(bands), h, w] (default: every band of the scene) and a
        valid-pixel mask [h, w] for the window."""
        return self.reflectance(*self.read_dn(window, bands))

    def reflectance(self, raw: np.ndarray, valid: np.ndarray | None,
                    out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`read` makes of the stored values and validity :meth:`read_dn` gave:
        reflectance float32 (into ``out``, of raw's shape, when given) and the valid pixels."""
        h, w = raw.shape[1:]
        if self.nodata is not None and not math.isnan(self.nodata):
            filled = (raw == self.nodata).any(axis=0)
            valid = ~filled if valid is None else valid & ~filled
        else:  # 0 is L1C's fill value: a pixel with every band at 0 DN is none, declared or not
            measured = raw.any(axis=0)
            if not measured.all():
                valid = measured if valid is None else valid & measured
        # From the input's dtype to float32, exactly as float32(dn - offset) / scale.
        out = np.empty(raw.shape, dtype=np.float32) if out is None else out
        with np.errstate(over="ignore", invalid="ignore"):  # huge floats are nodata, below
            if self.offset:  # cast and offset in one pass (the cast as ``np.copyto``'s)
                np.subtract(raw, np.float32(self.offset), out=out, dtype=np.float32,
                            casting="unsafe")
                out /= np.float32(self.dn_scale)
            else:  # cast and scale in one pass: a third less CPU than a copy, then a divide
                np.divide(raw, np.float32(self.dn_scale), out=out, dtype=np.float32,
                          casting="unsafe")
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
            sources = self._local.sources = _reopened(self.band_sources)
            for dataset, _, _ in sources.values():
                self._thread_datasets.add(dataset)
        return sources

    def to_dn(self, reflectance: np.ndarray) -> np.ndarray:
        """Reflectance back to the input's DN scale and dtype (clipped to the dtype's range)."""
        dn = reflectance * self.dn_scale  # then in place: one float array, not four
        dn += self.offset
        dtype = np.dtype(self.dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low = max(info.min, 1) if self.nodata == 0 else info.min
            return np.clip(np.rint(dn, out=dn), low, info.max, out=dn).astype(dtype)
        return dn.astype(dtype)

    def close(self) -> None:
        for ds in [*self._datasets, *self._thread_datasets]:
            ds.close()
        if self._shared is not None:
            self._shared.close()

    def __enter__(self) -> Sentinel2:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SharedHandles:
    """One set of dataset handles of a scene for every thread, used one read at a time and
    closed after every ``budget`` bytes read through it (reopened at the next read): closing
    drops its blocks from GDAL's block cache, so what a scene keeps there stays within the
    budget, whichever threads read it (each thread's own handles would each cache blocks)."""

    def __init__(self, band_sources: dict[str, tuple[object, int, int]], budget: int) -> None:
        self.band_sources, self.budget = band_sources, budget
        self.lock = threading.Lock()
        self.current: dict[str, tuple[object, int, int]] | None = None
        self.spent = 0  # bytes read through the current handles

    @contextmanager
    def sources(self, size: int) -> Iterator[dict[str, tuple[object, int, int]]]:
        """The handles, held for one read of ``size`` bytes."""
        with self.lock:
            if self.current is None:
                self.current = _reopened(self.band_sources)
            try:
                yield self.current
            finally:
                self.spent += size
                if self.spent >= self.budget:
                    self._close()

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        for dataset in {id(ds): ds for ds, _, _ in (self.current or {}).values()}.values():
            dataset.close()
        self.current, self.spent = None, 0


def _reopened(band_sources: dict[str, tuple[object, int, int]]
              ) -> dict[str, tuple[object, int, int]]:
    """``band_sources`` on new handles of their datasets."""
    handles: dict[str, object] = {}
    for dataset, _, _ in band_sources.values():
        if dataset.name not in handles:
            handles[dataset.name] = rasterio.open(dataset.name)
    return {band: (handles[ds.name], index, factor)
            for band, (ds, index, factor) in band_sources.items()}


def _read_sources(sources: dict[str, tuple[object, int, int]], bands: Sequence[str],
                  window: Window) -> tuple[np.ndarray, np.ndarray | None]:
    """``Sentinel2.read_dn`` through the dataset handles ``sources``."""
    h, w = int(window.height), int(window.width)
    raw: np.ndarray | None = None
    valid: np.ndarray | None = None  # None: every pixel valid so far
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
    # a band up to half its pixel short of the grid: its last pixel stands for the rest
    last_row, last_col = dataset.height - 1, dataset.width - 1
    top, left = min(r0 // factor, last_row), min(c0 // factor, last_col)
    src = Window(left, top, min((c1 - 1) // factor, last_col) - left + 1,
                 min((r1 - 1) // factor, last_row) - top + 1)
    data = checked_read(S2_INPUT, dataset, indexes, window=src)
    mask = _read_valid(dataset, indexes, src)
    rows = np.minimum(np.arange(r0, r1) // factor, last_row) - top
    cols = np.minimum(np.arange(c0, c1) // factor, last_col) - left
    return data[:, rows][:, :, cols], None if mask is None else mask[:, rows][:, :, cols]


def _read_valid(dataset, indexes: list[int], window: Window) -> np.ndarray | None:
    """Valid-pixel masks [n, h, w] of the bands; None where GDAL says every pixel is valid."""
    flags = dataset.mask_flag_enums
    if all(flags[i - 1] == [MaskFlags.all_valid] for i in indexes):
        return None
    return dataset.read_masks(indexes, window=window) > 0


def open_sentinel2(path: Path | str, offset: str | int | None = "auto",
                   level: str | None = "auto", what: str = S2_INPUT) -> Sentinel2:
    """Open a Sentinel-2 input: a GeoTIFF (or any GDAL raster) of named bands (any subset;
    unnamed: 13 in L1C order, 12 in L2A order), an L1C or L2A .SAFE folder, a folder of
    per-band files or a STAC item (``.json``) of local files or URLs; or an http(s) URL of a
    GeoTIFF (``.tif``: a COG reads fastest) or of a STAC item (any other URL), read by byte
    ranges (``remote.py``). ``level``: ``auto`` (from the metadata and the band set), ``L1C``
    or ``L2A``. ``what`` names the input in errors (e.g. "reference")."""
    offset = parse_offset(offset)
    forced = parse_level(level)
    s2 = _open_any(path, offset, forced, what)
    if offset:  # an offset given, not one the product's metadata states: is it in the data?
        try:
            s2.warn_doubtful_offset()
        except BaseException:
            s2.close()
            raise
    return s2


def _open_any(path: Path | str, offset: int | None, forced: str | None,
              what: str) -> Sentinel2:
    """``open_sentinel2`` of a URL or a path, by its kind."""
    url = as_url(path)
    if url is not None:  # a raster by its ending, else a STAC item
        if remote.names_raster(url):
            return _open_stack(url, offset, forced, what)
        return _open_band_files(url, "stac", stac_files(url), offset, forced, what)
    path = Path(path)
    if path.name in METADATA_FILES:
        path = path.parent
    check_input(path, what, folder=True if path.suffix.upper() == ".SAFE" else None)
    if path.is_dir():
        found = safe_files(path) if (path / "GRANULE").is_dir() else folder_files(path)
        kind = "safe" if (path / "GRANULE").is_dir() else "folder"
    elif path.suffix.lower() == ".json":
        found, kind = stac_files(path), "stac"
    else:
        found, kind = None, "stack"
    return (_open_stack(path, offset, forced, what) if found is None
            else _open_band_files(path, kind, found, offset, forced, what))


def _level(named: str | None, forced: str | None, bands: set[str]) -> tuple[str, bool]:
    """The processing level: as forced, else as the metadata name it, else L2A when the scene
    classification is there or B10 (which L2A products drop) is missing from a full set; and
    whether it was forced or named."""
    if forced or named:
        return forced or named, True
    if SCL in bands or (len(bands) >= 12 and "B10" not in bands):
        return "L2A", False
    return "L1C", False


#: Band orders taken for a stack without band names, by band count.
UNNAMED: dict[int, tuple[tuple[str, ...], str]] = {
    len(BANDS): (BANDS, "the 13-band L1C order B01..B12 (B8A 9th)"),
    len(L2A_BANDS): (L2A_BANDS, "the 12-band L2A order B01..B12 without B10 (B8A 9th)"),
}


def _open_stack(path: Path | Url, offset: int | None, forced: str | None,
                what: str) -> Sentinel2:
    ds = open_raster(path, what)
    try:
        names = [band_of_name(d) or canonical_band(d) for d in ds.descriptions]
        if any(names):
            sources = {}
            for i, name in enumerate(names):
                if name and name not in sources:
                    sources[name] = (ds, i + 1, 1)
        elif ds.count in UNNAMED:
            order, assumed = UNNAMED[ds.count]
            sources = {n: (ds, i + 1, 1) for i, n in enumerate(order)}
            described = sorted({d for d in ds.descriptions if d})
            if described:  # a band order of its own, perhaps: say what is assumed
                shown = ", ".join(described[:4]) + (", ..." if len(described) > 4 else "")
                log.warning("%s: band descriptions (%s) name no Sentinel-2 band; assuming %s",
                            path, shown, assumed)
            else:
                log.debug("%s: no band names, assuming %s", path, assumed)
        else:
            raise CloudfreeError(
                f"{path}: {ds.count} unnamed band(s); expected 13 bands in L1C order "
                "(B01..B12 with B8A ninth), 12 in L2A order (the same without B10) or band "
                "descriptions naming them (B1, B02, B8A...)"
            )
        check_georeferenced(ds, path)
        spectral = next(i for _, i, _ in (sources[b] for b in sources if b != SCL))
        dtype, nodata = ds.dtypes[spectral - 1], ds.nodata
        check_data_type(path, np.dtype(dtype), what)
        if np.issubdtype(np.dtype(dtype), np.floating):
            nodata = float("nan") if nodata is None else nodata  # NaN is nodata in float input
        tags = ds.tags()
        declared = gdal_scaling([(ds, i) for b, (_, i, _) in sources.items() if b != SCL],
                                    path)
        if declared is not None:
            dn_scale, offset = declared[0], declared[1] if offset is None else offset
        else:
            dn_scale = _dn_scale(ds, path, spectral, dtype)
            if offset is None:
                offset = _offset_from_tags(tags, path) if dn_scale != 1.0 else 0
        level, level_named = _level(_level_from_tags(tags), forced, set(sources))
        return Sentinel2(
            path=path, kind="geotiff", width=ds.width, height=ds.height, crs=ds.crs,
            transform=ds.transform, dtype=dtype, nodata=nodata, offset=offset,
            dn_scale=dn_scale, band_sources=sources,
            level=level, level_named=level_named, declared_scaling=declared is not None,
            _datasets=[ds],
        )
    except BaseException:
        ds.close()
        raise


def check_data_type(path: Path, dtype: np.dtype, what: str = S2_INPUT) -> None:
    """Refuse data types that cannot hold Sentinel-2 DNs or reflectance (complex, 8-bit)."""
    if dtype.kind == "f" or (dtype.kind in "iu" and dtype.itemsize >= 2):
        return
    raise CloudfreeError(f"{what} {path}: data type {dtype} is not Sentinel-2 data; give "
                         "uint16 or int16 digital numbers, or float reflectance or digital "
                         "numbers")


def gdal_scaling(bands: list[tuple[object, int]], path: Path) -> tuple[float, int] | None:
    """DN per unit reflectance and the DN offset that the GDAL scale and offset of the spectral
    ``bands`` (dataset, 1-based index) declare (reflectance = DN * scale + offset); None when
    every band has GDAL's default (scale 1, offset 0)."""
    pairs = {(ds.scales[i - 1], ds.offsets[i - 1]) for ds, i in bands}
    return _scaling_of(pairs, path, "the bands' GDAL scale and offset")


def _scaling_of(pairs: set[tuple[float | None, float | None]], path: Path,
                source: str) -> tuple[float, int] | None:
    """(DN per unit reflectance, DN offset) from (scale, offset) pairs, one for all bands."""
    pairs = {(1.0 if sc is None else float(sc), 0.0 if of is None else float(of))
             for sc, of in pairs}
    if pairs <= {(1.0, 0.0)}:
        return None
    if len(pairs) > 1:
        raise CloudfreeError(f"{path}: {source} differ between bands ({sorted(pairs)}); "
                             "cloudfree reads one scale and offset for all bands")
    scale, offset = pairs.pop()
    dn_offset = -offset / scale if scale else math.nan
    if not math.isfinite(dn_offset) or abs(dn_offset - round(dn_offset)) > 1e-3:
        raise CloudfreeError(f"{path}: {source} (scale {scale}, offset {offset}) do not "
                             "give a whole number of DN as offset; rescale the input to DN")
    return 1.0 / scale, int(round(dn_offset))


def _dn_scale(ds, path: Path, band: int, dtype: str) -> float:
    """DN per unit reflectance of an input that declares no scale: 10000 for integer DN, and
    for float input as :func:`_float_scale` finds."""
    if np.issubdtype(np.dtype(dtype), np.floating):
        return _float_scale(ds, path, band)
    return QUANTIFICATION


def _float_scale(ds, path: Path, band: int = 2) -> float:
    """Float input holds reflectance (0-1) or DN (0-10000): decide from an overview read of a
    spectral ``band`` (1-based)."""
    step = max(1, max(ds.width, ds.height) // 512)
    sample = checked_read(
        S2_INPUT, ds, band if ds.count > 1 else 1,
        out_shape=(max(1, ds.height // step), max(1, ds.width // step)), masked=True,
    ).astype(np.float64)
    values = sample.compressed()
    values = values[np.abs(values) <= MAX_DN]  # not NaN, inf or garbage
    if values.size and np.percentile(values, 99) < 3.0:
        log.debug("%s: float values near 0-1, read as reflectance", path)
        return 1.0
    log.debug("%s: float values in DN range, read as DN / 10000", path)
    return QUANTIFICATION


def _offset_from_tags(tags: dict[str, str], path: Path) -> int:
    """Offset from RADIO_ADD_OFFSET, BOA_ADD_OFFSET or PROCESSING_BASELINE tags; else 0."""
    for key, value in tags.items():
        if key.upper().startswith(("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET")):
            return int(round(-offset_number(value.strip(), f"{path}: tag {key}")))
    for key, value in tags.items():
        if key.upper() == "PROCESSING_BASELINE":
            number = offset_number(value.strip(), f"{path}: tag {key}")
            return BASELINE_OFFSET if number >= 4.0 else 0
    log.debug("%s: no processing-baseline metadata, assuming no radiometric offset "
              "(use --offset 1000 for baseline 04.00+ DNs that still carry it)", path)
    return 0


def _level_from_tags(tags: dict[str, str]) -> str | None:
    """L2A or L1C as tags name it (PROCESSING_LEVEL, PRODUCT_TYPE, BOA_ADD_OFFSET...)."""
    keys = {k.upper() for k in tags}
    if any(k.startswith("BOA_") for k in keys):
        return "L2A"
    if any(k.startswith("RADIO_ADD_OFFSET") for k in keys):
        return "L1C"
    said = " ".join(v for k, v in tags.items()
                    if k.upper() in ("PROCESSING_LEVEL", "PRODUCT_TYPE", "LEVEL")).upper()
    for level, marks in (("L2A", ("L2A", "2A")), ("L1C", ("L1C", "1C"))):
        if any(mark in said for mark in marks):
            return level
    return None


#: The codes a mask given for the scene may hold: cloudfree's classes, or those of Fmask,
#: of an L2A product's scene classification or of OmniCloudMask (``mask/given.py`` reads each).
MASK_CODES = ("cloudfree", "fmask", "scl", "omnicloudmask")
#: What to do when a mask given for the scene is not on its grid.
MASK_ADVICE = "put it on that grid first, e.g. rio warp MASK ALIGNED.tif --like SCENE " \
    "--resampling nearest"
#: What to do when a band file is not on the scene's grid.
GRID_ADVICE = "give band files of one scene that cover the same extent, each at its native " \
    "resolution"


def _scene_grid(datasets: list) -> object:
    """The dataset whose grid the scene takes: of the finest pixels, the grid (position and
    size) most of the finest bands share (the first of them on a tie), so that the band that
    differs is the one named."""
    finest = min(abs(ds.transform.a) for ds in datasets)
    candidates = [ds for ds in datasets if abs(ds.transform.a) == finest]
    for ds in candidates:
        check_georeferenced(ds, remote.shown(ds.name))
    shared = [(tuple(ds.transform), ds.width, ds.height) for ds in candidates]
    return max(candidates, key=lambda ds: shared.count((tuple(ds.transform), ds.width,
                                                        ds.height)))


def _units(crs) -> str:
    """How distances in ``crs`` read in a message: "m", "degrees" or its linear unit."""
    if crs.is_geographic:
        return "degrees"
    unit = crs.linear_units or "unknown"
    return "m" if unit.lower() in ("metre", "meter", "m", "unknown") else unit


def _moved(east: float, north: float, unit: str) -> str:
    """'50 m east and 20 m south' of a shift (either part left out when zero)."""
    parts = [f"{abs(v):g} {unit} {plus if v > 0 else minus}"
             for v, plus, minus in ((east, "east", "west"), (north, "north", "south")) if v]
    return " and ".join(parts)


def band_factor(ds, file: Path, what: str, grid, advice: str = GRID_ADVICE,
                crs_advice: str = f"{GRID_ADVICE}, in one CRS", finest: bool = True) -> int:
    """How many pixels of ``grid`` (the scene's, its finest band's) one pixel of band file
    ``ds`` spans across and down; one line naming the file and what differs when it is not on
    that grid: another CRS, pixels no whole multiple of the grid's, its top-left corner more
    than half its own pixel away from the grid's, or an extent other than the grid's (by more
    than half its pixel, beyond the extent of a size rounded up to whole pixels), ending with
    ``advice`` (``crs_advice`` for another CRS); ``what`` names what the file holds there
    ("band B02", "the mask"), and ``finest`` that the grid is the finest band's."""
    check_georeferenced(ds, file)
    name = remote.base_name(grid.name)
    g, t = grid.transform, ds.transform
    unit = _units(grid.crs) if grid.crs is not None else "m"
    of_grid = f"the scene's grid ({name}{', the finest band' * finest})"
    if ds.crs != grid.crs:
        raise CloudfreeError(f"{file}: {what} is in {ds.crs.to_string()}, {of_grid} in "
                             f"{grid.crs.to_string()}; {crs_advice}")
    factor = max(1, round(abs(t.a) / abs(g.a)))
    scaled = (g.a * factor, g.b * factor, g.d * factor, g.e * factor)
    if any(abs(x - y) > 1e-6 * abs(g.a) * factor for x, y in zip((t.a, t.b, t.d, t.e), scaled,
                                                                   strict=True)):
        raise CloudfreeError(f"{file}: {what} has pixels of {abs(t.a):g} x {abs(t.e):g} "
                             f"{unit}, not a whole multiple of the {abs(g.a):g} x {abs(g.e):g} "
                             f"{unit} of {of_grid}; {advice}")
    east, north = t.c - g.c, t.f - g.f
    if abs(east) > abs(t.a) / 2 or abs(north) > abs(t.e) / 2:
        raise CloudfreeError(f"{file}: {what} lies {_moved(east, north, unit)} of "
                             f"{of_grid}, more than half its {abs(t.a):g} {unit} pixel; "
                             f"{advice}")

    def fits(size: int, grid_size: int) -> bool:
        return size == -(-grid_size // factor) or 2 * abs(size * factor - grid_size) <= factor

    if not (fits(ds.width, grid.width) and fits(ds.height, grid.height)):
        raise CloudfreeError(
            f"{file}: {what} covers {ds.width * abs(t.a):g} x {ds.height * abs(t.e):g} "
            f"{unit} ({ds.width} x {ds.height} px of {abs(t.a):g} {unit}), not the "
            f"{grid.width * abs(g.a):g} x {grid.height * abs(g.e):g} {unit} of {of_grid}, "
            f"{grid.width} x {grid.height} px; {advice}")
    return factor


def check_one_kind_of_values(sources: dict[str, tuple], found: BandFiles) -> None:
    """Refuse spectral bands (band -> (dataset, index)) some of floating point values and some
    of integers: read as the first band's type, reflectance of 0-1 among digital numbers came
    out as nodata."""
    floating = {b: np.issubdtype(np.dtype(ds.dtypes[i - 1]), np.floating)
                for b, (ds, i) in sources.items()}
    odd = [b for b in sources if floating[b]] if sum(floating.values()) * 2 <= len(floating) \
        else [b for b in sources if not floating[b]]
    if not odd or len(odd) == len(sources):
        return
    ds, i = sources[odd[0]]
    rest = next(b for b in sources if b not in odd)
    other = sources[rest][0].dtypes[sources[rest][1] - 1]
    raise CloudfreeError(f"{found.files[odd[0]][0]}: band {odd[0]} holds {ds.dtypes[i - 1]} "
                         f"values, {rest} and the other bands {other}: give every band as the "
                         "same kind of values (digital numbers, or reflectance)")


def _open_band_files(path: Path | Url, kind: str, found: BandFiles, offset: int | None,
                     forced: str | None, what: str) -> Sentinel2:
    """A scene from per-band files (.SAFE, folder, STAC item) on the grid of its finest band."""
    for note in found.notes:
        log.debug("%s: %s", path.name, note)
    forced_offset = offset
    if offset is None:
        if found.offset_error is not None:
            raise found.offset_error
        offset = found.offset or 0
    datasets: dict[Path | Url, object] = {}
    try:
        for band, (file, index) in found.files.items():
            if file not in datasets:
                datasets[file] = open_raster(file, f"band {band}")
            if index > datasets[file].count:  # a STAC item's eo:bands name more than it has
                raise CloudfreeError(f"{path}: eo:bands names {band} as band {index} of "
                                     f"{file.name}, which has {datasets[file].count}; correct "
                                     "the item's eo:bands")
        # a STAC item's own asset order; L1C order for .SAFE products and folders (no order)
        order = {b: i for i, b in enumerate((*BANDS, SCL))}
        bands = list(found.files) if kind == "stac" else sorted(found.files, key=order.get)
        spectral = [b for b in bands if b != SCL]
        grid = _scene_grid([datasets[found.files[b][0]] for b in spectral])
        band_sources = {}
        factors: dict[Path, int] = {}
        for band in bands:
            file, index = found.files[band]
            if file not in factors:
                factors[file] = band_factor(datasets[file], file, f"band {band}", grid)
            band_sources[band] = (datasets[file], index, factors[file])
        check_one_kind_of_values({b: band_sources[b][:2] for b in spectral}, found)
        first = datasets[found.files[spectral[0]][0]]
        dtype = first.dtypes[found.files[spectral[0]][1] - 1]
        check_data_type(path, np.dtype(dtype), what)
        nodata = first.nodata if first.nodata is not None else 0
        declared = gdal_scaling([band_sources[b][:2] for b in spectral], path) \
            if found.scaling is None else \
            _scaling_of({found.scaling}, path, "the item's raster:bands scale and offset")
        if declared is not None:
            dn_scale, offset = declared[0], declared[1] if forced_offset is None else offset
        else:
            dn_scale = _dn_scale(first, path, found.files[spectral[0]][1], dtype)
        level, level_named = _level(found.level, forced, set(bands))
        return Sentinel2(
            path=path, kind=kind, width=grid.width, height=grid.height, crs=grid.crs,
            transform=grid.transform, dtype=dtype, nodata=nodata, offset=offset,
            dn_scale=dn_scale, band_sources=band_sources,
            level=level, level_named=level_named, declared_scaling=declared is not None,
            _datasets=list(datasets.values()),
        )
    except BaseException:
        for ds in datasets.values():
            ds.close()
        raise
