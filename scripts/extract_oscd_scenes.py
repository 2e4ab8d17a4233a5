"""Extract cloud-free built-up L1C scenes of the Onera Satellite Change Detection dataset.

    python scripts/extract_oscd_scenes.py REPO DEST

REPO is a clone (bare or not) of github:ChenHongruixuan/ChangeDetectionRepository, which held
the OSCD images at commit ``COMMIT`` (removed later). OSCD (Caye Daudt, Le Saux, Boulch and
Gousseau, IGARSS 2018, ONERA) is 24 towns and cities around the world, each at two dates of
2015-2018: real Sentinel-2 L1C tiles cropped to the town, one GeoTIFF a band (all 13, DN) at
the band's own resolution, in EPSG:4326. Towns, industrial estates, ports, airports,
greenhouses: the bright built-up land a cloud mask must leave clear.

Each image that shows no cloud (``CLOUDY`` lists the 8 of 48 left out, and why) is written to
DEST as a 13-band uint16 GeoTIFF on its B02 grid (the 20 m and 60 m bands by nearest neighbour,
as cloudfree's Sentinel-2 reader brings them to 10 m; bands named, tagged ``PROCESSING_LEVEL=L1C``),
``oscd_{TOWN}_{YYYYMMDD}.tif``.
DEST/SPLIT.tsv gives each scene's half, by town: OSCD's own training towns are the tuning half,
its test towns the held-out half; towns whose crops touch go to one half (``TOWNS``). A
manifest (name, bytes, sha256) of the files written goes to DEST/MANIFEST.tsv and is checked
against the committed ``oscd_scenes_manifest.tsv``.
"""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

import numpy as np
import rasterio
from extract_mask_pairs import against, files_under, write_manifest
from rasterio.io import MemoryFile
from rasterio.warp import Resampling, reproject

#: Where the scenes come from (the manifest's first line).
SOURCE = ("Onera Satellite Change Detection dataset (Caye Daudt, Le Saux, Boulch and Gousseau, "
          "IGARSS 2018; Copernicus Sentinel-2 L1C) from github:ChenHongruixuan/"
          "ChangeDetectionRepository at 020f7702f235001ea0b2abac054651ab28aeeb0f")
#: The commit of REPO that holds the dataset.
COMMIT = "020f7702f235001ea0b2abac054651ab28aeeb0f"
ROOT = "Dataset/OSCD/Onera Satellite Change Detection dataset - Images/"
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12")
#: Towns by half: OSCD's training towns tune, its test towns are held out, but for Saclay West,
#: which goes with Saclay East (their crops touch, from the same products).
TOWNS = {
    "tuning": ("abudhabi", "aguasclaras", "beihai", "beirut", "bercy", "bordeaux", "cupertino",
               "hongkong", "mumbai", "nantes", "paris", "pisa", "rennes", "saclay_e",
               "saclay_w"),
    "held-out": ("brasilia", "chongqing", "dubai", "lasvegas", "milano", "montpellier",
                 "norcia", "rio", "valencia"),
}
#: Images left out (town, folder), judged before any run of the mask: cloud seen in the RGB
#: quicklook, or cirrus by B10 (1375 nm), over 0.004 at its median (a veil over the whole crop:
#: the 29 August 2017 product of Bercy and Saclay; clear crops hold 0.0008-0.0024) or over 0.01
#: anywhere (the crops kept reach 0.008 at most).
CLOUDY = frozenset({
    ("bercy", "imgs_2"), ("saclay_e", "imgs_2"), ("saclay_w", "imgs_2"),  # cirrus veil
    ("paris", "imgs_2"),  # two cumulus and their shadows
    ("hongkong", "imgs_1"), ("milano", "imgs_2"),  # small wisps of cloud
    ("bordeaux", "imgs_2"), ("valencia", "imgs_2"),  # B10 over 0.01 in places
})
MANIFEST = Path(__file__).with_name("oscd_scenes_manifest.tsv")


def archived(repo: Path) -> dict[str, bytes]:
    """The dataset's band files and dates at ``COMMIT``, by path under ``ROOT``."""
    return {name: content for name, content in files_under(repo, COMMIT, ROOT).items()
            if (name.endswith(".tif") or name.endswith("dates.txt")) and "/cm/" not in name}


def band_file(files: dict[str, bytes], town: str, folder: str, band: str) -> bytes:
    """The file of ``band`` in ``town/folder/`` (names end in ``_B01.tif`` and so on)."""
    found = [v for k, v in files.items()
             if k.startswith(f"{town}/{folder}/") and k.endswith(f"_{band}.tif")]
    if len(found) != 1:
        raise SystemExit(f"{town}/{folder}: {len(found)} files of band {band}, expected one")
    return found[0]


def stack(files: dict[str, bytes], town: str, folder: str) -> tuple[np.ndarray, dict]:
    """The image's 13 bands on its B02 grid [13, H, W] (float32) and that grid's profile."""
    with MemoryFile(band_file(files, town, folder, "B02")) as memory, memory.open() as grid:
        profile = {"height": grid.height, "width": grid.width, "crs": grid.crs,
                   "transform": grid.transform}
    out = np.zeros((len(BANDS), profile["height"], profile["width"]), np.float32)
    for i, band in enumerate(BANDS):
        with MemoryFile(band_file(files, town, folder, band)) as memory, memory.open() as src:
            reproject(src.read(1).astype(np.float32), out[i], src_transform=src.transform,
                      src_crs=src.crs, dst_transform=profile["transform"],
                      dst_crs=profile["crs"], resampling=Resampling.nearest)
    return out, profile


def dates(files: dict[str, bytes], town: str) -> dict[str, str]:
    """The dates of the town's two folders (``dates.txt``: ``date_1: YYYYMMDD``)."""
    text = files[f"{town}/dates.txt"].decode()
    return {f"imgs_{n}": re.search(rf"date_{n}:\s*(\d{{8}})", text).group(1) for n in (1, 2)}


def write_l1c(target: Path, dn: np.ndarray, grid: dict) -> None:
    """``dn`` [13, H, W] (uint16) as a GeoTIFF of the named L1C ``BANDS`` (nodata 0) on
    ``grid`` (its height, width, crs and transform)."""
    with rasterio.open(target, "w", driver="GTiff", count=len(BANDS), dtype="uint16", nodata=0,
                       **grid) as dst:
        dst.write(dn)
        dst.descriptions = BANDS
        dst.update_tags(PROCESSING_LEVEL="L1C")


def extract(repo: Path, dest: Path) -> list[Path]:
    """Write the cloud-free images and SPLIT.tsv under ``dest``; return the images."""
    files = archived(repo)
    dest.mkdir(parents=True, exist_ok=True)
    written, split = [], ["scene\thalf"]
    for half, towns in TOWNS.items():
        for town in towns:
            for folder, day in dates(files, town).items():
                if (town, folder) in CLOUDY:
                    continue
                dn, profile = stack(files, town, folder)
                target = dest / f"oscd_{town}_{day}.tif"
                write_l1c(target, np.clip(np.rint(dn), 0, 65535).astype(np.uint16), profile)
                written.append(target)
                split.append(f"{target.stem}\t{half}")
    (dest / "SPLIT.tsv").write_text("\n".join(split) + "\n")
    return written


def main() -> None:
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path,
                        help="clone of github:ChenHongruixuan/ChangeDetectionRepository")
    parser.add_argument("dest", type=Path, help="folder to write the scenes into")
    args = parser.parse_args()
    files = extract(args.repo, args.dest)
    write_manifest(args.dest, sorted([*files, args.dest / "SPLIT.tsv"]), SOURCE)
    print(f"{len(files)} scenes in {args.dest}; {against(args.dest, MANIFEST)}")


if __name__ == "__main__":
    main()
