"""Extract the cloud-free L1C scenes of DSen2's demo data for ``benchmarks/clear_scenes.py``.

    python scripts/extract_dsen2_scenes.py REPO DEST

REPO is a clone (bare or not) of github:lanha/DSen2 (Lanaras et al. 2018; the data are
Copernicus Sentinel-2 L1C, CC BY 4.0 as its ``data/LICENSE.md`` says). Its ``data/`` folder holds
MATLAB v7.3 (HDF5) crops of real L1C products: ``im10`` (B04, B03, B02, B08; 600 px at 10 m),
``im20`` (B05, B06, B07, B8A, B11, B12; 300 px at 20 m) and ``im60`` (B01, B09; 100 px at 60 m);
B10 is not there. MATLAB stores them column-major, so each is transposed back. Only the crops
the repository keeps in its git objects under 4 MiB are used (the project's mirror lacks larger
files):

- ``S2A_MSIL1C_20170527_T33UUB``: a village among fields and farmsteads (27 May 2017);
- ``S2B_MSIL1C_20171022_T49JGM``: a coast of red dunes with bright white gypsum pans and
  shallow turbid water (22 October 2017).

Both look cloud-free. Each is written to DEST as a 12-band uint16 GeoTIFF in L2A band order
(B01..B12 without B10, named in the band descriptions, tagged ``PROCESSING_LEVEL=L1C``), the 20 m
and 60 m bands repeated onto the 10 m grid. The crops carry no georeferencing: the grid is made
up in the UTM zone of the product's tile. A manifest (name, bytes, sha256) of the source files
and of the files written goes to DEST/MANIFEST.tsv and is checked against the committed
``dsen2_scenes_manifest.tsv``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from extract_mask_pairs import against, git_dir, write_manifest
from rasterio.crs import CRS
from rasterio.transform import from_origin

#: Where the scenes come from (the manifest's first line).
SOURCE = ("DSen2 demo data (Lanaras et al. 2018; Copernicus Sentinel-2 L1C, CC BY 4.0) from "
          "github:lanha/DSen2, data/")
#: The crops used, with the EPSG code of their tile's UTM zone.
SCENES = {"S2A_MSIL1C_20170527_T33UUB": 32633, "S2B_MSIL1C_20171022_T49JGM": 32749}
#: Each resolution's MATLAB variable, bands and factor to 10 m.
GROUPS = (("im10", ("B04", "B03", "B02", "B08"), 1),
          ("im20", ("B05", "B06", "B07", "B8A", "B11", "B12"), 2),
          ("im60", ("B01", "B09"), 6))
#: Band order written (L2A's: L1C's without B10).
ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
MANIFEST = Path(__file__).with_name("dsen2_scenes_manifest.tsv")


def source(repo: Path, name: str) -> bytes:
    """``data/NAME.mat`` at the repository's HEAD."""
    return subprocess.run(["git", f"--git-dir={git_dir(repo)}", "show", f"HEAD:data/{name}.mat"],
                          check=True, capture_output=True).stdout


def bands(mat: Path) -> np.ndarray:
    """The crop's 12 bands [12, H, W] on the 10 m grid, in ``ORDER``."""
    found = {}
    for variable, names, factor in GROUPS:
        with rasterio.open(f"HDF5:{mat}://{variable}") as src:
            stack = np.swapaxes(src.read(), 1, 2)  # MATLAB's column-major (x, y) to rows
        for band, data in zip(names, stack, strict=True):
            found[band] = np.repeat(np.repeat(data, factor, axis=0), factor, axis=1)
    return np.stack([found[b] for b in ORDER])


def write_scene(dn: np.ndarray, epsg: int, target: Path) -> None:
    """``dn`` as a uint16 GeoTIFF (0 kept for nodata) on a made-up 10 m grid in ``epsg``."""
    north = 7000000.0 if epsg > 32700 else 6000000.0
    with rasterio.open(target, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1],
                       count=len(ORDER), dtype="uint16", nodata=0, crs=CRS.from_epsg(epsg),
                       transform=from_origin(300000.0, north, 10.0, 10.0)) as dst:
        dst.write(np.clip(np.rint(dn), 1, 65535).astype(np.uint16))
        dst.descriptions = ORDER
        dst.update_tags(PROCESSING_LEVEL="L1C")


def extract(repo: Path, dest: Path) -> list[Path]:
    """Write the sources' copies under DEST/source and the scenes under DEST; return both."""
    (dest / "source").mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, epsg in SCENES.items():
            mat = dest / "source" / f"{name}.mat"
            mat.write_bytes(source(repo, name))
            scene = dest / f"dsen2_{name}.tif"
            local = Path(tmp) / mat.name  # GDAL's HDF5 driver reads local files only
            local.write_bytes(mat.read_bytes())
            write_scene(bands(local), epsg, scene)
            written += [mat, scene]
    return written


def main() -> None:
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="clone of github:lanha/DSen2")
    parser.add_argument("dest", type=Path, help="folder to write the scenes into")
    args = parser.parse_args()
    files = extract(args.repo, args.dest)
    write_manifest(args.dest, sorted(files), SOURCE)
    print(f"{len(SCENES)} scenes in {args.dest}; {against(args.dest, MANIFEST)}")


if __name__ == "__main__":
    main()
