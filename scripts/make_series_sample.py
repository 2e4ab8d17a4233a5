"""Cut the bundled time-series sample (``examples/data/series/``) from the pool's SEN12MS-CR-TS
series.

    python scripts/extract_ts_series.py CLONE_OF_Oriolac_cloud-removal SERIES
    python scripts/make_series_sample.py SERIES examples/data/series

Five dates of the series (10 June to 30 July 2018), each cut to the same 128 x 128 pixels: the
date of 5 July has real cumulus and shadows there, the four others are the references the
README's ``--reference`` example gives it. Pixel values are unchanged; only the window is cut.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import rasterio
from rasterio.windows import Window

#: ImgNo of the dates in the series, and the window cut from each.
DATES = (13, 14, 15, 16, 17)
WINDOW = Window(128, 0, 128, 128)  # col_off, row_off, width, height


def cut(src_path: Path, window: Window, dst_path: Path, **creation) -> Path:
    """The pixels of ``window`` of a GeoTIFF, unchanged, as a strip-organised GeoTIFF on the
    window's grid (``creation``: options that replace the source's, e.g. compression)."""
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "width": window.width, "height": window.height,
                   "transform": src.window_transform(window), "tiled": False, **creation}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return dst_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", type=Path, help="folder of the extracted series")
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    for number in DATES:
        (path,) = args.series.glob(f"s2_*_ImgNo_{number}_*.tif")
        day = path.stem.split("_")[-3]  # s2_ROIs2017_146_ImgNo_N_YYYY-MM-DD_patch_0
        cut(path, WINDOW, args.dest / f"s2_{day}.tif", compress="deflate", predictor=2)


if __name__ == "__main__":
    main()
