"""Real S1/S2 pairs of the training pool as uniform GeoTIFF pairs for the co-registration benchmark.

Each pair becomes ``OUT/<name>/s1.tif`` (VV, VH dB float32, named bands) and ``OUT/<name>/s2.tif``
(the S2 bands on their 10 m grid, named, as DN). Sources (see ../shared/docs/DATA.md):

- ``--oriolac``: a clone of Oriolac/cloud-removal. ``residual/{ID}_input.tif`` holds VV, VH then
  the 13 cloudy bands, ``{ID}_target.tif`` the 13 clear bands, both SEN12MS-CR patches without
  georeferencing: a nominal 10 m UTM grid is attached (S1 and S2 share it in SEN12MS-CR). The
  S1 with the clear bands is ``sen12mscr_{ID}``, with the cloudy ones ``sen12mscr_{ID}_cloudy``.
- ``--dsen2cr``: a clone of CodyKurpanek/dSen2CR_DSP (SEN12MS-CR triplets, s1 and s2_cloudFree).
- ``--rico-hdl``: a clone of kai-tub/rico-hdl (SSL4EO-S12: one file per band; each S1 product is
  paired with the L1C acquisition closest in date).
- ``--bigearthnet``: the bigearthnet-common sdist (BigEarthNet S1/S2 examples, 120 px, L2A).

A clone may be a bare mirror: files missing on disk are read with ``git show HEAD:path``.

    python scripts/extract_coregister_pairs.py -o pairs \\
        --oriolac REPO --dsen2cr REPO --rico-hdl REPO --bigearthnet bigearthnet-common-2.8.0.tar.gz
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
import warnings
from datetime import datetime
from pathlib import Path, PurePosixPath

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from rasterio.warp import Resampling, reproject

from cloudfree.io.sentinel2 import BANDS, canonical_band

#: The training-pool samples of Oriolac/cloud-removal (DATA.md); all others are held out.
ORIOLAC_IDS = (316, 581, 746, 1302, 2266, 2729, 3968, 4065, 4287, 4294)
#: Nominal grid attached to the ungeoreferenced SEN12MS-CR patches (relative positions only).
NOMINAL_CRS, NOMINAL_TRANSFORM = "EPSG:32631", rasterio.Affine(10, 0, 500000, 0, -10, 5000000)


def repo_bytes(repo: Path, path: str) -> bytes:
    """A file of a clone, or of a bare mirror through git."""
    if (repo / path).is_file():
        return (repo / path).read_bytes()
    git_dir = repo / "repo" if (repo / "repo").is_dir() else repo
    return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{path}"],
                          check=True, capture_output=True).stdout


def repo_files(repo: Path, prefix: str) -> list[str]:
    """Paths under ``prefix`` of a clone or a bare mirror."""
    if (repo / prefix).is_dir():
        return sorted(str(p.relative_to(repo)) for p in (repo / prefix).rglob("*") if p.is_file())
    git_dir = repo / "repo" if (repo / "repo").is_dir() else repo
    out = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only",
                          "HEAD", prefix], check=True, capture_output=True, text=True).stdout
    return out.split()


def read(data: bytes) -> tuple[np.ndarray, dict]:
    """All bands and the profile of an in-memory GeoTIFF (the Oriolac patches have no georef)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as ds:
            return ds.read(), ds.profile


def write(path: Path, data: np.ndarray, crs, transform, names: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype, "crs": crs, "transform": transform,
               "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names


def to_grid(data: bytes, crs, transform, shape: tuple[int, int]) -> np.ndarray:
    """One band file resampled (bilinear) onto the 10 m grid."""
    with MemoryFile(data) as mem, mem.open() as ds:
        out = np.zeros(shape, np.float32)
        reproject(ds.read(1).astype(np.float32), out, src_transform=ds.transform,
                  src_crs=ds.crs, dst_transform=transform, dst_crs=crs,
                  resampling=Resampling.bilinear)
    return np.round(out).astype(np.uint16)


def write_band_files(out: Path, s1: dict[str, bytes], s2: dict[str, bytes]) -> None:
    """A pair stored one band per file: S1 as is, S2 bands onto the B02 grid."""
    vv, profile = read(s1["VV"])
    write(out / "s1.tif", np.concatenate([vv, read(s1["VH"])[0]]).astype(np.float32),
          profile["crs"], profile["transform"], ["VV", "VH"])
    b02, grid = read(s2["B02"])
    names = [b for b in BANDS if b in s2]
    stack = np.stack([to_grid(s2[b], grid["crs"], grid["transform"], b02.shape[1:])
                      for b in names])
    write(out / "s2.tif", stack, grid["crs"], grid["transform"], names)


def oriolac(repo: Path, out: Path) -> None:
    for sample in ORIOLAC_IDS:
        folder = "eda/notebooks/data/output/residual"
        s1 = read(repo_bytes(repo, f"{folder}/{sample}_input.tif"))[0][:2]
        s2 = read(repo_bytes(repo, f"{folder}/{sample}_target.tif"))[0]
        cloudy = read(repo_bytes(repo, f"{folder}/{sample}_input.tif"))[0][2:]
        for name, optical in ((f"sen12mscr_{sample}", s2), (f"sen12mscr_{sample}_cloudy", cloudy)):
            write(out / name / "s1.tif", s1.astype(np.float32), NOMINAL_CRS, NOMINAL_TRANSFORM,
                  ["VV", "VH"])
            write(out / name / "s2.tif", np.round(optical).astype(np.uint16), NOMINAL_CRS,
                  NOMINAL_TRANSFORM, list(BANDS))


def dsen2cr(repo: Path, out: Path) -> None:
    for path in repo_files(repo, "dsen2-cr/Data/s1"):
        name = PurePosixPath(path).name
        s1, profile = read(repo_bytes(repo, path))
        s2, _ = read(repo_bytes(repo, f"dsen2-cr/Data/s2_cloudFree/{name}"))
        folder = out / f"dsen2cr_{PurePosixPath(name).stem}"
        write(folder / "s1.tif", s1.astype(np.float32), profile["crs"], profile["transform"],
              ["VV", "VH"])
        write(folder / "s2.tif", s2, profile["crs"], profile["transform"], list(BANDS))


def _date(name: str) -> datetime:
    stamp = next(p for p in name.split("_") if len(p) == 15 and p[8] == "T")
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S")


def ssl4eo(repo: Path, out: Path) -> None:
    root = "integration_tests/tiffs/SSL4EO-S12"
    files = repo_files(repo, root)
    for location in sorted({PurePosixPath(f).parts[4] for f in files if "/s1/" in f}):
        s1_products = sorted({PurePosixPath(f).parts[5] for f in files
                              if f.startswith(f"{root}/s1/{location}/")})
        s2_dates = sorted({PurePosixPath(f).parts[5] for f in files
                           if f.startswith(f"{root}/s2c/{location}/")})
        for product in s1_products:
            date = min(s2_dates, key=lambda d: abs(_date(d) - _date(product)))
            s1 = {p: repo_bytes(repo, f"{root}/s1/{location}/{product}/{p}.tif")
                  for p in ("VV", "VH")}
            s2 = {canonical_band(PurePosixPath(f).stem): repo_bytes(repo, f) for f in files
                  if f.startswith(f"{root}/s2c/{location}/{date}/")}
            write_band_files(out / f"ssl4eo_{location}_{product[17:25]}", s1, s2)


def _tar_files(data: bytes) -> dict[str, bytes]:
    """Every file of an in-memory tar archive, by file name."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {PurePosixPath(m.name).name: archive.extractfile(m).read()
                for m in archive.getmembers() if m.isfile()}


def bigearthnet(sdist: Path, out: Path) -> None:
    with tarfile.open(sdist) as outer:
        members = {PurePosixPath(m.name).name: m for m in outer.getmembers()}
        files = {s: _tar_files(outer.extractfile(members[f"BigEarthNet-{s}-Example.tar.bz2"])
                               .read()) for s in ("S1", "S2")}
    for name in sorted(n for n in files["S1"] if n.endswith("_VV.tif")):
        patch = name[: -len("_VV.tif")]
        s2_patch = next(n.rsplit("_", 1)[0] for n in files["S2"]
                        if n.endswith("_B02.tif") and n.split("_")[-3:-1] == patch.split("_")[-2:])
        s1 = {p: files["S1"][f"{patch}_{p}.tif"] for p in ("VV", "VH")}
        s2 = {b: files["S2"][f"{s2_patch}_{b}.tif"] for b in BANDS
              if f"{s2_patch}_{b}.tif" in files["S2"]}
        write_band_files(out / f"bigearthnet_{'_'.join(patch.split('_')[-3:])}", s1, s2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--oriolac", type=Path)
    parser.add_argument("--dsen2cr", type=Path)
    parser.add_argument("--rico-hdl", type=Path)
    parser.add_argument("--bigearthnet", type=Path)
    args = parser.parse_args()
    for source, extract in ((args.oriolac, oriolac), (args.dsen2cr, dsen2cr),
                            (args.rico_hdl, ssl4eo), (args.bigearthnet, bigearthnet)):
        if source is not None:
            extract(source, args.output)
    print("\n".join(sorted(p.name for p in args.output.iterdir())))


if __name__ == "__main__":
    main()
