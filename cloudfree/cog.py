"""Cloud Optimized GeoTIFF from a finished, streamed GeoTIFF, by GDAL's own COG driver.

Outputs are streamed block by block into a tiled GeoTIFF (memory flat in the scene size); this
copies that file once through GDAL's COG driver, which adds internal overviews (halving until
they fit one block) and orders the file as the COG layout wants. GDAL streams both steps through
its block cache, so memory stays bounded; disk needs about 1.4 times the output size again while
the copy runs. The streamed file's compression, predictor and block size (from ``--co``) carry
over; the other creation options apply only with ``--no-cog``.
"""

from __future__ import annotations

import os
from pathlib import Path

import rasterio
import rasterio.shutil

#: Overview resampling by kind of data: averages for reflectance and dB, nearest for classes.
AVERAGE = "average"
NEAREST = "nearest"
#: TIFF predictor codes as the COG driver names them.
_PREDICTORS = {"1": "NO", "2": "STANDARD", "3": "FLOATING_POINT"}


def cog_options(src: rasterio.DatasetReader, resampling: str) -> dict[str, str]:
    """COG creation options that keep the streamed file's compression and tiling."""
    structure = src.tags(ns="IMAGE_STRUCTURE")
    options = {
        "compress": structure.get("COMPRESSION", "DEFLATE"),
        "predictor": _PREDICTORS.get(structure.get("PREDICTOR", "1"), "NO"),
        "overview_resampling": resampling,
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",
    }
    rows, cols = src.block_shapes[0]
    if rows == cols and rows % 16 == 0:
        options["blocksize"] = str(rows)
    return options


def make_cog(path: Path, resampling: str) -> None:
    """Rewrite the GeoTIFF at ``path`` in place as a COG with ``resampling`` overviews."""
    path = Path(path)
    cog = path.with_name(path.name + ".cog")
    try:
        with rasterio.open(path) as src:
            rasterio.shutil.copy(src, cog, driver="COG", **cog_options(src, resampling))
        os.replace(cog, path)
    finally:
        for leftover in (cog, cog.with_name(cog.name + ".aux.xml")):
            leftover.unlink(missing_ok=True)
