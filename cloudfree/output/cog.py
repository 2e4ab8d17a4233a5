"""Cloud Optimized GeoTIFF from a finished, streamed GeoTIFF, by GDAL's own COG driver.

Outputs are streamed block by block into a tiled GeoTIFF (memory flat in the scene size); this
copies that file once through GDAL's COG driver, which adds internal overviews (halving until
they fit one block) and orders the file as the COG layout wants. The overviews are those made
from the blocks as they were written (:mod:`cloudfree.output.overviews`, the same as GDAL's), handed
to the driver as the file's own through a VRT, or else the driver makes them from the finished
file. GDAL streams both steps through its block cache, so memory stays bounded; disk needs about
1.4 times the output size again while the copy runs. Small outputs (masks) are streamed
uncompressed and compressed once, by the copy.
The compression, its level, the predictor and the block size of the output's profile (from
``--co``) carry over; the other creation options apply only with ``--no-cog``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from rasterio._err import CPLE_BaseError

#: Overview resampling by kind of data: averages for reflectance and dB, nearest for classes.
AVERAGE = "average"
NEAREST = "nearest"
#: TIFF predictor codes as the COG driver names them.
_PREDICTORS = {"1": "NO", "2": "STANDARD", "3": "FLOATING_POINT"}
#: The GeoTIFF creation option that the COG driver's LEVEL stands for, by compression.
_LEVELS = {"DEFLATE": "zlevel", "ZSTD": "zstd_level", "LZMA": "lzma_preset"}
#: The COG step's scratch files (the streamed image and the driver's overviews) stay
#: uncompressed, which saves compressing twice, while the raw image is at most this big: a mask
#: of a whole Sentinel-2 tile (115 MiB), not a 13-band output.
UNCOMPRESSED_SCRATCH_BYTES = 512 * 2**20
#: The COG driver's block side when the output's blocks are not square multiples of 16.
COG_DEFAULT_BLOCK = 512


def raw_scratch(profile: dict) -> bool:
    """Whether an output of ``profile`` is small enough for uncompressed scratch files."""
    size = profile["width"] * profile["height"] * profile["count"]
    return size * np.dtype(profile["dtype"]).itemsize <= UNCOMPRESSED_SCRATCH_BYTES


def scratch_profile(profile: dict) -> dict:
    """Profile of the streamed file that :func:`make_cog` copies into an output of ``profile``."""
    return {**profile, "compress": "none", "predictor": 1} if raw_scratch(profile) else profile


def cog_options(profile: dict, resampling: str) -> dict[str, str]:
    """COG creation options with the output profile's compression, level, predictor and tiling."""
    compress = str(profile.get("compress", "deflate")).upper()
    predictor = "1" if compress == "NONE" else str(profile.get("predictor", 1))
    options = {
        "compress": compress,
        "predictor": _PREDICTORS.get(predictor, "NO"),
        "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    level = _LEVELS.get(compress)
    if level in profile:
        options["level"] = str(profile[level])
    rows, cols = int(profile.get("blockysize", 0)), int(profile.get("blockxsize", 0))
    if rows == cols and rows > 0 and rows % 16 == 0:
        options["blocksize"] = str(rows)
    return options


def cog_block(profile: dict) -> int:
    """Side of the COG's blocks, which also ends its overviews (halved until one block)."""
    return int(cog_options(profile, AVERAGE).get("blocksize", COG_DEFAULT_BLOCK))


def make_cog(path: Path, resampling: str, profile: dict,
             overviews: Sequence[Path] | None = None) -> None:
    """Rewrite the streamed GeoTIFF at ``path`` in place as a COG with ``resampling`` overviews,
    compressed and tiled as ``profile`` (the output's GeoTIFF profile) asks; ``overviews``: its
    levels, already made (:class:`cloudfree.output.overviews.StreamedOverviews`), else GDAL makes
    them."""
    path = Path(path)
    cog = path.with_name(path.name + ".cog")
    vrt = path.with_name(path.name + ".vrt")
    scratch = "NONE" if raw_scratch(profile) else "LZW"  # LZW: the driver's own default
    try:
        source = path
        if overviews:
            with_overviews(path, overviews, vrt)
            source = vrt
        with rasterio.open(source) as src, rasterio.Env(COG_TMP_COMPRESSION=scratch):
            rasterio.shutil.copy(src, cog, driver="COG", **cog_options(profile, resampling))
        os.replace(cog, path)
    except CPLE_BaseError as exc:  # rasterio lets GDAL's own error types out of copy()
        raise rasterio.errors.RasterioIOError(f"the COG step failed: "
                                              f"{str(exc).replace(cog.name + ': ', '')}") from None
    finally:
        for leftover in (cog, cog.with_name(cog.name + ".aux.xml"), vrt, *(overviews or ())):
            leftover.unlink(missing_ok=True)


def with_overviews(path: Path, overviews: Sequence[Path], vrt: Path) -> None:
    """Write ``vrt``: the GeoTIFF at ``path`` with the rasters ``overviews`` (largest first, as
    many bands) as its overviews, which the COG driver then copies instead of making its own."""
    vrt.unlink(missing_ok=True)  # GDAL would delete an old one with the files it names
    with rasterio.open(path) as src:
        rasterio.shutil.copy(src, vrt, driver="VRT")
    tree = ElementTree.parse(vrt)
    for band in tree.getroot().iter("VRTRasterBand"):
        for level in overviews:
            overview = ElementTree.SubElement(band, "Overview")
            name = ElementTree.SubElement(overview, "SourceFilename", relativeToVRT="1")
            name.text = level.name
            ElementTree.SubElement(overview, "SourceBand").text = band.get("band")
    tree.write(vrt)
