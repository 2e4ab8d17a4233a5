"""Extract the real cloudy / cloud-free L1C pairs used by ``benchmarks/mask_quality.py``.

    python scripts/extract_mask_pairs.py REPO DEST

REPO is a clone (bare or not) of github:Oriolac/cloud-removal (training pool, see
../shared/docs/DATA.md). All are SEN12MS-CR patches (Ebel et al., TUM, CC-BY 4.0), 13-band L1C
DN, 256 px. DEST receives folders of ``s2_cloudy/`` and ``s2/`` (cloud-free) twins:
- ``high_cp/``, ``low_cp/``: the 30 georeferenced pairs of ``eda/notebooks/imgs/cr/``;
- ``ok/``: the 2 pairs of ``eda/notebooks/imgs/cr/ok/``;
- ``residual/``: the 10 triplets of ``eda/notebooks/data/output/residual/`` with an ID below 4400
  (the cloudy bands 3-15 of ``{ID}_input.tif`` and ``{ID}_target.tif``; not georeferenced);
- ``series/``: date pairs of the SEN12MS-CR-TS series ``eda/notebooks/data/ts/sample_imgs/`` (Ebel
  et al. 2022; 30 dates of one patch, EPSG:4326). A date is clear when under 1 % of its pixels are
  brighter than the series' per-pixel median by more than 0.05 in the mean of B02-B04 (the truth
  of the benchmark, against the median instead of a twin), else cloudy. Each cloudy date is paired
  with the nearest clear date 5 to 15 days away (the earlier on a tie); cloudy dates without one
  are left out. The pairs, with their dates, go to ``series/PAIRS.tsv``.
Only the files named here are read from the repository. A manifest (name, bytes, sha256) is
written to DEST/MANIFEST.tsv and checked against the committed ``mask_pairs_manifest.tsv``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import tarfile
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile

FOLDERS = ("high_cp", "low_cp", "ok")
PREFIX = "eda/notebooks/imgs/cr/"
RESIDUAL = "eda/notebooks/data/output/residual/"
SERIES = "eda/notebooks/data/ts/sample_imgs/"
#: Series dates: clear below this fraction of pixels brightened by more than ``BRIGHTER``.
CLEAR_FRACTION, BRIGHTER = 0.01, 0.05
#: Days between a cloudy date and its clear twin.
MIN_DAYS, MAX_DAYS = 5, 15
#: The residual triplets of the training pool (IDs 4400 and above are reserved: never add them).
RESIDUAL_IDS = (316, 581, 746, 1302, 2266, 2729, 3968, 4065, 4287, 4294)
MANIFEST = Path(__file__).with_name("mask_pairs_manifest.tsv")


def git_dir(repo: Path) -> Path:
    """The git directory of a clone or of a bare mirror."""
    return repo / ".git" if (repo / ".git").is_dir() else repo


def files_under(repo: Path, commit: str, root: str) -> dict[str, bytes]:
    """The files under the folder ``root`` (ending in /) at ``commit``, by path under it."""
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir(repo)}", "archive", "--format=tar", commit, root],
        check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name.removeprefix(root): tar.extractfile(m).read() for m in tar.getmembers()
                if m.isfile()}


def archived(repo: Path, paths: list[str]) -> dict[str, bytes]:
    """The .tif files under ``paths`` at the repository's HEAD, by path."""
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir(repo)}", "archive", "--format=tar", "HEAD", *paths],
        check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()
                if m.isfile() and m.name.endswith(".tif")}


def write_pairs(files: dict[str, bytes], dest: Path) -> list[Path]:
    """The imgs/cr files under ``dest``; ``ok/`` split into its cloudy and clear twins."""
    written = []
    for name, content in files.items():
        relative = Path(name.removeprefix(PREFIX))
        if relative.parts[0] == "ok":
            kind = "s2_cloudy" if "_s2_cloudy_" in relative.name else "s2"
            relative = Path("ok", kind, relative.name)
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        written.append(target)
    return written


def write_residual(files: dict[str, bytes], dest: Path) -> list[Path]:
    """Each residual triplet as a cloudy / clear pair of 13-band uint16 GeoTIFFs."""
    written = []
    for sample in RESIDUAL_IDS:
        cloudy = _bands(files[f"{RESIDUAL}{sample}_input.tif"])[2:]  # after VV, VH
        clear = _bands(files[f"{RESIDUAL}{sample}_target.tif"])
        for kind, data in (("s2_cloudy", cloudy), ("s2", clear)):
            target = dest / "residual" / kind / f"residual_{kind}_{sample}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(target, "w", driver="GTiff", width=data.shape[2],
                               height=data.shape[1], count=13, dtype="uint16") as dst:
                dst.write(np.clip(np.rint(data), 0, 65535).astype(np.uint16))
            written.append(target)
    return written


def series_dates(files: dict[str, bytes]) -> dict[date, str]:
    """The series' files by acquisition date (``..._YYYY-MM-DD_patch_0.tif``)."""
    dates = {}
    for name in files:
        day = re.search(r"_(\d{4})-(\d{2})-(\d{2})_", name)
        dates[date(*map(int, day.groups()))] = name
    return dict(sorted(dates.items()))


def clear_dates(files: dict[str, bytes], dates: dict[date, str]) -> set[date]:
    """Dates with under ``CLEAR_FRACTION`` of pixels brighter than the series median."""
    visible = {d: _bands(files[name])[1:4].astype(np.float32).mean(0) / 10000
               for d, name in dates.items()}
    median = np.median(np.stack(list(visible.values())), axis=0)
    return {d for d, v in visible.items() if ((v - median) > BRIGHTER).mean() < CLEAR_FRACTION}


def series_pairs(files: dict[str, bytes]) -> list[tuple[date, date]]:
    """(cloudy date, clear date) pairs: the nearest clear date 5-15 days away, earlier on a tie."""
    dates = series_dates(files)
    clear = clear_dates(files, dates)
    pairs = []
    for day in sorted(set(dates) - clear):
        near = [c for c in sorted(clear) if MIN_DAYS <= abs((c - day).days) <= MAX_DAYS]
        if near:
            pairs.append((day, min(near, key=lambda c: abs((c - day).days))))
    return pairs


def write_series(files: dict[str, bytes], dest: Path) -> list[Path]:
    """Each series pair as ``series/s2_cloudy/`` and ``series/s2/`` twins, and ``PAIRS.tsv``."""
    dates = series_dates(files)
    written, rows = [], ["cloudy\tclear\tdays"]
    for cloudy, clear in series_pairs(files):
        stem = f"ROIs2017_146_p0_{cloudy:%Y%m%d}"
        for kind, day in (("s2_cloudy", cloudy), ("s2", clear)):
            target = dest / "series" / kind / f"series_{kind}_{stem}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[dates[day]])
            written.append(target)
        rows.append(f"{cloudy}\t{clear}\t{(clear - cloudy).days}")
    (dest / "series" / "PAIRS.tsv").write_text("\n".join(rows) + "\n")
    return written


def _bands(content: bytes) -> np.ndarray:
    with MemoryFile(content) as memory, memory.open() as ds:
        return ds.read()


def extract(repo: Path, dest: Path) -> list[Path]:
    """Write the pair folders under ``dest``; return the files written."""
    pairs = archived(repo, [PREFIX + f for f in FOLDERS])
    residual = archived(repo, [f"{RESIDUAL}{i}_{kind}.tif" for i in RESIDUAL_IDS
                               for kind in ("input", "target")])
    series = archived(repo, [SERIES])
    return sorted(write_pairs(pairs, dest) + write_residual(residual, dest)
                  + write_series(series, dest))


def write_manifest(dest: Path, files: list[Path], source: str | None = None) -> None:
    """DEST/MANIFEST.tsv: each of ``files`` by path, bytes and sha256, after a comment line
    naming the ``source`` where one is given."""
    lines = [f"{p.relative_to(dest)}\t{p.stat().st_size}\t"
             f"{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files]
    head = f"# {source}\n" if source else ""
    (dest / "MANIFEST.tsv").write_text(f"{head}path\tbytes\tsha256\n" + "\n".join(lines) + "\n")


def against(dest: Path, manifest: Path) -> str:
    """Whether DEST/MANIFEST.tsv is the committed ``manifest``, in words."""
    same = (dest / "MANIFEST.tsv").read_text() == manifest.read_text()
    return f"{'as in' if same else 'DIFFERENT FROM'} {manifest.name}"


def main() -> None:
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="clone of github:Oriolac/cloud-removal")
    parser.add_argument("dest", type=Path, help="folder to write the pairs into")
    args = parser.parse_args()
    files = extract(args.repo, args.dest)
    write_manifest(args.dest, files)
    print(f"{len(files)} files ({len(files) // 2} pairs) in {args.dest}; "
          f"{against(args.dest, MANIFEST)}")


if __name__ == "__main__":
    main()
