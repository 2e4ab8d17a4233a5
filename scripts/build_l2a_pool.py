"""Rebuild the pool's L2A-style inputs for ``benchmarks/l2a_pool.py`` (measurement, not tests).

    pip download --no-deps --no-binary :all: bigearthnet-common==2.8.0 -d SDIST
    # fetch github:WorldCereal/worldcereal-classification, and github:Oriolac/cloud-removal
    python scripts/build_l2a_pool.py --sdist SDIST/bigearthnet-common-2.8.0.tar.gz \\
        --worldcereal WORLDCEREAL_CLONE --clouds ORIOLAC_CLONE DEST

Writes under DEST (see ../shared/docs/DATA.md for the sources):

- ``bigearthnet/<S2 patch>/``: the six BigEarthNet L2A example patches as they ship, one
  GeoTIFF per band (12 bands, no B10, 120 px; a folder of per-band files as cloudfree reads it),
  and ``bigearthnet/<S2 patch>_s1.tif``: the paired S1 patch's VV and VH (dB) in one file.
- ``worldcereal/s2_<date>.tif``: the WorldCereal monthly L2A composites (B02-B08, B11, B12 named,
  uint16, nodata 65535; 100 px, EPSG:32631), one file a month, and ``s1_<date>.tif``: VV and VH
  in dB (the file stores 10^((dB + 83) / 20) as uint16, as WorldCereal's own readers decode it;
  NaN nodata).
- with ``--clouds``: ``worldcereal/pasted/<date>_<donor>.tif``: each month with less than 1 %
  cloud (cloudfree's mask) with the real cloud of one of the pool's cloudy L1C patches
  (``eda/notebooks/imgs/cr/high_cp/s2_cloudy/``, its central 100 px, where cloudfree's mask finds
  cloud) pasted in, in the composite's bands; ``pasted/<date>_<donor>_cloud.tif`` is the pasted
  cloud (the truth of the fill's footprint). Only the files named here are read.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.windows import Window

from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask.classify import CLOUD, classify

BEN = "bigearthnet-common-2.8.0/src/bigearthnet_common/BigEarthNet-S{}-Example.tar.bz2"
NETCDF = "tests/worldcerealtests/testresources/worldcereal_preprocessed_inputs.nc"
WC_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
WC_NODATA = 65535
EPOCH = date(1990, 1, 1)  # the netCDF's time axis: days since 1990-01-01
CLOUD_DONORS = "eda/notebooks/imgs/cr/high_cp/s2_cloudy/"
#: Most cloud (cloudfree's mask) a month may have to be a clear target.
CLEAR_MAX = 0.01


def git_show(repo: Path, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True,
                          capture_output=True).stdout


def git_list(repo: Path, folder: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", "HEAD", folder],
                         check=True, capture_output=True, text=True).stdout
    return sorted(out.split())


def bigearthnet(sdist: Path, dest: Path) -> None:
    """The S2 patch folders, and each paired S1 patch's VV and VH stacked."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as outer:
        for kind in ("2", "1"):
            inner = outer.extractfile(BEN.format(kind)).read()
            with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
                tar.extractall(dest / f"S{kind}", filter="data")
    s2_root = next((dest / "S2").iterdir())
    for patch in sorted(s2_root.iterdir()):
        target = dest / patch.name
        if not target.exists():
            patch.rename(target)
    for patch in sorted(next((dest / "S1").iterdir()).iterdir()):
        meta = next(patch.glob("*_labels_metadata.json")).read_text()
        s2 = next(p for p in dest.iterdir() if p.is_dir() and f'"{p.name}"' in meta)
        layers = []
        for pol in ("VV", "VH"):
            with rasterio.open(next(patch.glob(f"*_{pol}.tif"))) as ds:
                layers.append(ds.read(1))
                profile = ds.profile | {"count": 2, "dtype": "float32", "driver": "GTiff"}
        with rasterio.open(dest / f"{s2.name}_s1.tif", "w", **profile) as dst:
            dst.write(np.stack(layers).astype(np.float32))
            dst.descriptions = ("VV", "VH")


def worldcereal(clone: Path, dest: Path) -> list[Path]:
    """One S2 and one S1 GeoTIFF a month from the netCDF; returns the S2 files."""
    dest.mkdir(parents=True, exist_ok=True)
    nc = dest / "worldcereal_preprocessed_inputs.nc"
    nc.write_bytes(git_show(clone, NETCDF))
    with rasterio.open(f"netcdf:{nc}:S2-L2A-B02") as ds:
        days = [int(d) for d in ds.tags()["NETCDF_DIM_t_VALUES"].strip("{}").split(",")]
        grid = {"crs": ds.crs, "transform": ds.transform, "width": ds.width,
                "height": ds.height, "driver": "GTiff"}
    s2 = np.stack([rasterio.open(f"netcdf:{nc}:S2-L2A-{b}").read() for b in WC_BANDS], 1)
    s1 = np.stack([rasterio.open(f"netcdf:{nc}:S1-SIGMA0-{p}").read().astype(np.float64)
                   for p in ("VV", "VH")], 1)
    with np.errstate(divide="ignore"):
        db = np.where((s1 > 0) & (s1 < WC_NODATA), 20 * np.log10(s1) - 83, np.nan)
    files = []
    for i, day in enumerate(days):
        when = (EPOCH + timedelta(days=day)).isoformat()
        path = dest / f"s2_{when}.tif"
        with rasterio.open(path, "w", **grid, count=len(WC_BANDS), dtype="uint16",
                           nodata=WC_NODATA) as dst:
            dst.write(s2[i].astype(np.uint16))
            dst.descriptions = WC_BANDS
        with rasterio.open(dest / f"s1_{when}.tif", "w", **grid, count=2, dtype="float32",
                           nodata=float("nan")) as dst:
            dst.write(db[i].astype(np.float32))
            dst.descriptions = ("VV", "VH")
        files.append(path)
    return files


def cloud_donors(clone: Path, size: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, DN [13, size, size], cloud [size, size]) of the pool's cloudy high_cp patches."""
    donors = []
    for path in git_list(clone, CLOUD_DONORS):
        with MemoryFile(git_show(clone, path)) as mem, mem.open() as ds:
            off = (ds.width - size) // 2
            dn = ds.read(window=Window(off, off, size, size))
        refl = dn.astype(np.float32) / 10000
        cloud = classify(refl, None)[0] == CLOUD
        donors.append((Path(path).stem, dn, cloud))
    return donors


def pasted(months: list[Path], donors: list, dest: Path) -> None:
    """Each clear month with each donor's cloud pasted in (the composite's own bands)."""
    dest.mkdir(parents=True, exist_ok=True)
    index = [BANDS.index(b) for b in WC_BANDS]
    for month in months:
        with open_sentinel2(month) as s2:
            refl, valid = s2.read()
            classes = classify(refl, valid, bands=s2.bands)[0]
        if not valid.all() or (classes == CLOUD).mean() > CLEAR_MAX:
            continue
        with rasterio.open(month) as ds:
            dn, profile = ds.read(), ds.profile
        for name, donor, cloud in donors:
            if not 0.05 <= cloud.mean() <= 0.95:
                continue
            out = np.where(cloud, donor[index], dn).astype(np.uint16)
            stem = f"{month.stem}_{name}"
            with rasterio.open(dest / f"{stem}.tif", "w", **profile) as dst:
                dst.write(out)
                dst.descriptions = WC_BANDS
            with rasterio.open(dest / f"{stem}_cloud.tif", "w", **(profile | {
                    "count": 1, "dtype": "uint8", "nodata": None})) as dst:
                dst.write(cloud.astype(np.uint8), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--sdist", type=Path, help="bigearthnet-common-2.8.0.tar.gz")
    parser.add_argument("--worldcereal", type=Path, help="clone of worldcereal-classification")
    parser.add_argument("--clouds", type=Path, help="clone of Oriolac/cloud-removal")
    args = parser.parse_args()
    if args.sdist:
        bigearthnet(args.sdist, args.dest / "bigearthnet")
    if args.worldcereal:
        months = worldcereal(args.worldcereal, args.dest / "worldcereal")
        if args.clouds:
            pasted(months, cloud_donors(args.clouds, 100), args.dest / "worldcereal" / "pasted")


if __name__ == "__main__":
    main()
