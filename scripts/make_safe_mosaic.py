"""An L1C (or L2A) .SAFE folder from a 13-band L1C GeoTIFF stack (such as a mosaic of the real
samples), for timing `remove` on JPEG2000 input as Sentinel-2 products ship it.

    python scripts/make_safe_mosaic.py S2_STACK.tif OUT.SAFE
    python scripts/make_safe_mosaic.py S2_STACK.tif OUT.SAFE --level L2A

Each band is written at its native resolution (10, 20 or 60 m: one pixel of each 2x2 or 6x6
cell kept) as lossless JPEG2000 (GDAL's JP2OpenJPEG driver) in 1024 px tiles, as ESA's
products are tiled. L1C: the 13 bands in IMG_DATA, with an MTD_MSIL1C.xml of processing
baseline 02.09 (no offset). L2A: the 12 bands but B10 in IMG_DATA/R10m, R20m and R60m, DN + 1000
with the MTD_MSIL2A.xml of baseline 04.00 (BOA_ADD_OFFSET -1000), and a scene classification
(SCL, 20 m) made from cloudfree's own mask of the stack (clouds as high probability, shadows,
snow, the rest vegetation): the values stay those of the stack, so this is for timing, not
for measuring what L2A's surface reflectance changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from cloudfree.io.sentinel2 import BANDS, RESOLUTION, open_sentinel2
from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, SNOW, MaskParams, classify

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info><PROCESSING_BASELINE>02.09</PROCESSING_BASELINE></Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-1C_User_Product>
"""


#: An L2A product's MTD_MSIL2A.xml: its baseline and each band's BOA_ADD_OFFSET to fill in.
METADATA_L2A = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>
      <BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>
    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-2A_User_Product>
"""
#: L2A's radiometric offset (DN), from processing baseline 04.00 on.
L2A_OFFSET = 1000
#: Scene classification codes (ESA's SCL) of cloudfree's mask classes.
SCL_OF = {NODATA: 0, SHADOW: 3, CLEAR: 4, CLOUD: 9, SNOW: 11}


def _write_jp2(path: Path, data: np.ndarray, crs, t: Affine, factor: int) -> None:
    """One band at 1/``factor`` of the stack's resolution, lossless, in 1024 px tiles."""
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=data.shape[1],
                       height=data.shape[0], count=1, dtype=data.dtype, crs=crs,
                       transform=Affine(t.a * factor, 0, t.c, 0, t.e * factor, t.f),
                       QUALITY=100, REVERSIBLE="YES", BLOCKXSIZE=1024,
                       BLOCKYSIZE=1024) as dst:
        dst.write(data, 1)


def make_safe(stack: Path, out: Path, level: str = "L1C") -> Path:
    """Write ``out`` (a .SAFE folder of ``level``) from ``stack`` (13 bands in L1C order)."""
    granule = out / "GRANULE" / f"{level}_T31PCR_A000000_20200101T000000" / "IMG_DATA"
    with rasterio.open(stack) as src:
        t: Affine = src.transform
        for i, band in enumerate(BANDS):
            f = RESOLUTION[band] // 10
            data = src.read(i + 1)[::f, ::f]
            if level == "L1C":
                granule.mkdir(parents=True, exist_ok=True)
                _write_jp2(granule / f"T31PCR_20200101T000000_{band}.jp2", data, src.crs, t, f)
            elif band != "B10":
                folder = granule / f"R{RESOLUTION[band]}m"
                folder.mkdir(parents=True, exist_ok=True)
                dn = np.where(data > 0, data.astype(np.int32) + L2A_OFFSET, 0).astype(data.dtype)
                _write_jp2(folder / f"T31PCR_20200101T000000_{band}_{RESOLUTION[band]}m.jp2", dn,
                           src.crs, t, f)
        crs = src.crs
    if level == "L1C":
        (out / "MTD_MSIL1C.xml").write_text(METADATA)
        return out
    with open_sentinel2(stack) as s2:
        classes, _ = classify(*s2.read(), MaskParams(), s2.bands)
    scl = np.zeros(classes.shape, np.uint8)
    for kind, code in SCL_OF.items():
        scl[classes == kind] = code
    _write_jp2(granule / "R20m" / "T31PCR_20200101T000000_SCL_20m.jp2", scl[::2, ::2], crs, t, 2)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{i}">{-L2A_OFFSET}</BOA_ADD_OFFSET>'
                      for i in range(len(BANDS)))
    (out / "MTD_MSIL2A.xml").write_text(METADATA_L2A.format(baseline="04.00", offsets=offsets))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--level", choices=("L1C", "L2A"), default="L1C")
    args = parser.parse_args()
    make_safe(args.stack, args.out, args.level)


if __name__ == "__main__":
    main()
