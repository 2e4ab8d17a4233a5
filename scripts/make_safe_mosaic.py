"""An L1C .SAFE folder from a 13-band L1C GeoTIFF stack (such as a mosaic of the real samples),
for timing `remove` on JPEG2000 input as Sentinel-2 products ship it.

    python scripts/make_safe_mosaic.py S2_STACK.tif OUT.SAFE

Each band is written at its native resolution (10, 20 or 60 m: one pixel of each 2x2 or 6x6
cell kept) as lossless JPEG2000 (GDAL's JP2OpenJPEG driver) in 1024 px tiles, as ESA's
products are tiled, with an MTD_MSIL1C.xml of processing baseline 02.09 (no offset).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import rasterio
from rasterio.transform import Affine

from cloudfree.sentinel2 import BANDS, RESOLUTION

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


def make_safe(stack: Path, out: Path) -> Path:
    """Write ``out`` (a .SAFE folder) from ``stack`` (13 bands in L1C order)."""
    img = out / "GRANULE" / "L1C_T31PCR_A000000_20200101T000000" / "IMG_DATA"
    img.mkdir(parents=True)
    with rasterio.open(stack) as src:
        t: Affine = src.transform
        for i, band in enumerate(BANDS):
            f = RESOLUTION[band] // 10
            data = src.read(i + 1)[::f, ::f]
            with rasterio.open(img / f"T31PCR_20200101T000000_{band}.jp2", "w",
                               driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0],
                               count=1, dtype=data.dtype, crs=src.crs,
                               transform=Affine(t.a * f, 0, t.c, 0, t.e * f, t.f),
                               QUALITY=100, REVERSIBLE="YES", BLOCKXSIZE=1024,
                               BLOCKYSIZE=1024) as dst:
                dst.write(data, 1)
    (out / "MTD_MSIL1C.xml").write_text(METADATA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    make_safe(args.stack, args.out)


if __name__ == "__main__":
    main()
