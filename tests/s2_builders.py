"""Build Sentinel-2 inputs in other shapes (SAFE folders, float stacks) from the real samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from cloudfree.sentinel2 import BANDS, RESOLUTION

MTD_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info>{start}<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
      {offsets}
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-1C_User_Product>
"""


def read_stack(path: Path, size: int) -> tuple[np.ndarray, dict]:
    """The top-left ``size`` x ``size`` pixels of a 13-band stack and its profile."""
    with rasterio.open(path) as ds:
        data = ds.read(window=((0, size), (0, size)))
        profile = {"crs": ds.crs, "transform": ds.transform}
    return data, profile


def coarsen_like_l1c(data: np.ndarray) -> np.ndarray:
    """Give each band its native resolution by keeping one pixel per 20/60 m cell, replicated."""
    out = data.copy()
    for i, band in enumerate(BANDS):
        f = RESOLUTION[band] // 10
        if f > 1:
            out[i] = np.repeat(np.repeat(data[i, ::f, ::f], f, 0), f, 1)
    return out


def write_safe(folder: Path, data: np.ndarray, profile: dict, offset: int,
               start: str | None = None) -> Path:
    """An L1C .SAFE folder: 13 lossless JP2 bands at native resolution plus MTD_MSIL1C.xml
    (with ``start`` as its PRODUCT_START_TIME, e.g. ``2017-12-11T10:10:31.026Z``)."""
    img = folder / "GRANULE" / "L1C_T31UFU_A000000_20220301T000000" / "IMG_DATA"
    img.mkdir(parents=True)
    t: Affine = profile["transform"]
    for i, band in enumerate(BANDS):
        f = RESOLUTION[band] // 10
        arr = (data[i, ::f, ::f].astype(np.int32) + offset).astype(np.uint16)
        with rasterio.open(
            img / f"T31UFU_20220301T000000_{band}.jp2", "w", driver="JP2OpenJPEG",
            width=arr.shape[1], height=arr.shape[0], count=1, dtype="uint16",
            crs=profile["crs"], transform=Affine(t.a * f, 0, t.c, 0, t.e * f, t.f),
            QUALITY=100, REVERSIBLE="YES",
        ) as dst:
            dst.write(arr, 1)
    offsets = "\n".join(
        f'<RADIO_ADD_OFFSET band_id="{i}">{-offset}</RADIO_ADD_OFFSET>' for i in range(13)
    ) if offset else ""
    baseline = "04.00" if offset else "02.09"
    start = f"<PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>" if start else ""
    (folder / "MTD_MSIL1C.xml").write_text(MTD_TEMPLATE.format(baseline=baseline, offsets=offsets,
                                                               start=start))
    return folder


def write_stack(path: Path, data: np.ndarray, profile: dict, *, dtype=None, nodata=None,
                descriptions=None) -> Path:
    """A multi-band GeoTIFF with optional band descriptions and nodata."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=dtype or data.dtype, crs=profile["crs"],
                       transform=profile["transform"], nodata=nodata) as dst:
        dst.write(data.astype(dtype or data.dtype))
        for i, name in enumerate(descriptions or []):
            dst.set_band_description(i + 1, name)
    return path
