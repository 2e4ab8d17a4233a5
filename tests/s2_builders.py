"""Build Sentinel-2 inputs in other shapes (SAFE folders, float stacks) from the real samples."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from helpers import FLOODS_S2, SUMMER_S2
from rasterio.transform import Affine
from rasterio.windows import Window

from cloudfree.io.sentinel2 import BANDS, RESOLUTION

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_safe_mosaic import METADATA_L2A as MTD_L2A_TEMPLATE  # noqa: E402

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


#: The bands of an L2A product (no B10) and the folder of each (its native resolution).
L2A_BANDS = tuple(b for b in BANDS if b != "B10")


def write_l2a_safe(folder: Path, data: np.ndarray, profile: dict, offset: int,
                   scl: np.ndarray | None = None) -> Path:
    """An L2A .SAFE folder: the 12 L2A bands of a 13-band stack ``data`` as lossless JP2 in
    IMG_DATA/R10m, R20m and R60m at their native resolution (DN + ``offset``), the scene
    classification ``scl`` (10 m values, sampled to 20 m) and MTD_MSIL2A.xml."""
    granule = folder / "GRANULE" / "L2A_T31UFU_A000000_20220301T000000" / "IMG_DATA"
    t: Affine = profile["transform"]
    layers = [(band, data[BANDS.index(band)].astype(np.int32) + offset) for band in L2A_BANDS]
    if scl is not None:
        layers.append(("SCL", scl))
    for band, full in layers:
        metres = 20 if band == "SCL" else RESOLUTION[band]
        f = metres // 10
        sub = granule / f"R{metres}m"
        sub.mkdir(parents=True, exist_ok=True)
        arr = full[::f, ::f]
        dtype = "uint8" if band == "SCL" else "uint16"
        with rasterio.open(
            sub / f"T31UFU_20220301T000000_{band}_{metres}m.jp2", "w", driver="JP2OpenJPEG",
            width=arr.shape[1], height=arr.shape[0], count=1, dtype=dtype,
            crs=profile["crs"], transform=Affine(t.a * f, 0, t.c, 0, t.e * f, t.f),
            QUALITY=100, REVERSIBLE="YES",
        ) as dst:
            dst.write(arr.astype(dtype), 1)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">{-offset}</BOA_ADD_OFFSET>'
                      for i in range(13))
    (folder / "MTD_MSIL2A.xml").write_text(
        MTD_L2A_TEMPLATE.format(baseline="04.00" if offset else "02.14", offsets=offsets))
    return folder


def write_band_folder(folder: Path, data: np.ndarray, profile: dict, bands: tuple[str, ...],
                      names: dict[str, str] | None = None, scl: np.ndarray | None = None,
                      nodata: int | None = 0) -> Path:
    """One GeoTIFF per band of a 13-band stack ``data`` at the band's native resolution (its
    file named ``names[band]``, default ``band``.tif), and ``SCL.tif`` (20 m) if given."""
    folder.mkdir(parents=True, exist_ok=True)
    t: Affine = profile["transform"]
    layers = [(b, data[BANDS.index(b)], RESOLUTION[b] // 10) for b in bands]
    if scl is not None:
        layers.append(("SCL", scl, 2))
    for band, full, f in layers:
        arr = full[::f, ::f]
        name = (names or {}).get(band, band)
        with rasterio.open(folder / f"{name}.tif", "w", driver="GTiff", width=arr.shape[1],
                           height=arr.shape[0], count=1, dtype=arr.dtype, crs=profile["crs"],
                           transform=Affine(t.a * f, 0, t.c, 0, t.e * f, t.f),
                           nodata=None if band == "SCL" else nodata) as dst:
            dst.write(arr, 1)
    return folder


def write_stac_item(path: Path, assets: dict[str, Path], bbox: tuple[float, ...],
                    properties: dict, raster_offset: tuple[float, float] | None = None) -> Path:
    """A STAC item at ``path`` whose assets (key -> file) have hrefs relative to it; with
    ``raster_offset`` (scale, offset) each band asset carries ``raster:bands`` with them."""
    import pystac
    from shapely.geometry import box, mapping

    item = pystac.Item("scene", mapping(box(*bbox)), list(bbox), None,
                       {"start_datetime": "2022-03-01T00:00:00Z",
                        "end_datetime": "2022-03-01T00:00:00Z", **properties})
    for key, file in assets.items():
        extra = {}
        if raster_offset and key != "scl":
            extra["raster:bands"] = [{"scale": raster_offset[0], "offset": raster_offset[1]}]
        rel = Path(file).relative_to(path.parent).as_posix()
        item.add_asset(key, pystac.Asset(rel, media_type=pystac.MediaType.GEOTIFF,
                                         roles=["data"], extra_fields=extra))
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
    return path


#: Windows of a 252 x 252 scene kept in 100 px blocks: whole, across blocks and edges, a corner
#: pixel, a strip of the partial last blocks.
WINDOWS = (Window(0, 0, 252, 252), Window(37, 91, 150, 120), Window(251, 251, 1, 1),
           Window(0, 199, 252, 53), Window(99, 0, 2, 252))


def summer_with_nodata(tmp_path: Path, dtype: str = "uint16") -> Path:
    """The real summer scene (252 px) with a nodata corner (0 DN, or NaN in float)."""
    data, profile = read_stack(SUMMER_S2, 252)
    data = data.astype(dtype)
    data[:, :30, :45] = np.nan if dtype == "float32" else 0
    return write_stack(tmp_path / f"s2_{dtype}.tif", data, profile,
                       nodata=None if dtype == "float32" else 0)


def l1c_safe(tmp_path: Path) -> Path:
    data, profile = read_stack(SUMMER_S2, 252)
    return write_safe(tmp_path / "S2A_MSIL1C_20220301_N0400.SAFE", coarsen_like_l1c(data),
                      profile, offset=1000)


def l2a_safe(tmp_path: Path) -> Path:
    data, profile = read_stack(SUMMER_S2, 252)
    scl = (data[1] // 300 % 12).astype(np.uint8)  # every class, from the real blue band
    return write_l2a_safe(tmp_path / "S2A_MSIL2A_20220301_N0400.SAFE", coarsen_like_l1c(data),
                          profile, offset=1000, scl=scl)


def floods(tmp_path: Path) -> Path:  # int16, named bands, nodata 0, 512 px: cropped to 252
    with rasterio.open(FLOODS_S2) as ds:
        data, profile = ds.read(window=Window(0, 0, 252, 252)), ds.profile
    profile.update(width=252, height=252, transform=ds.window_transform(Window(0, 0, 252, 252)))
    data[:, 200:, :20] = 0
    with rasterio.open(tmp_path / "floods.tif", "w", **profile) as dst:
        dst.write(data)
    return tmp_path / "floods.tif"


INPUTS = {"uint16 GeoTIFF with nodata": summer_with_nodata,
          "float32 with NaN": lambda p: summer_with_nodata(p, "float32"),
          "L1C SAFE (JPEG2000, 20/60 m bands)": l1c_safe,
          "L2A SAFE with SCL": l2a_safe, "int16 named bands": floods}
