"""GeoTIFF outputs: creation options (checked before any work) and profiles."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import numpy as np
import rasterio
import rasterio.io
import rasterio.transform

from cloudfree.core.arguments import check_kind
from cloudfree.core.errors import UsageError
from cloudfree.io.rasters import OUTPUT_BLOCK, gdal_messages

#: Deflate level of outputs (``--co ZLEVEL=`` overrides): a 4096^2 13-band uint16 scene is
#: written in 3.7 s of CPU at level 1 against 8.4 s at GDAL's default 6, for a file 1.7 % bigger.
DEFLATE_LEVEL = 1

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

def check_options_kind(creation_options: object) -> None:
    """Refuse creation options that are not a dict of NAME: VALUE (or None)."""
    check_kind("creation_options", creation_options, Mapping | None,
               "a dict of GDAL creation options, such as {'compress': 'zstd'}, or None")


def check_geotiff_output(count: int, dtype: str, creation_options: dict[str, str] | None
                         ) -> None:
    """Refuse, before any work, creation options that cannot write a GeoTIFF of ``count`` bands
    of ``dtype`` (e.g. PREDICTOR=3 for integers), or any output (see
    :func:`check_creation_options`)."""
    check_options_kind(creation_options)
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
