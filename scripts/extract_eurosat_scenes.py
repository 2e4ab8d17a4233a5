"""Extract the cloud-free built-up EuroSAT tiles: industrial estates, housing and motorways.

    python scripts/extract_eurosat_scenes.py REPO DEST

REPO is a clone (bare or not) of github:shrey160/EuroSAT_MS_Deep_Learning, which holds a
subset of EuroSAT's multispectral tiles at commit ``COMMIT`` (``ROOT``: 270 tiles in
``train/`` and ``test/`` folders by class). EuroSAT (Helber, Bischke, Dengel and Borth, IEEE
JSTARS 12(7), 2019; github:phelber/EuroSAT) is 64 x 64 px crops of real Sentinel-2 L1C products
over Europe, all 13 bands (DN) at 10 m in UTM, labelled by land use. Its ``Industrial``,
``Residential`` and ``Highway`` crops are the roofs, yards and roads a cloud mask must leave
clear, at the scale of a European town.

Each tile of those three classes that shows no cloud (``CLOUDY``, judged before any run of the
mask) is written to DEST as a 13-band uint16 GeoTIFF in cloudfree's band order (the tiles hold
B8A last; bands named, tagged ``PROCESSING_LEVEL=L1C``), ``eurosat_{CLASS}_{N}.tif``.
DEST/SPLIT.tsv gives each tile's half: the repository's ``train/`` tiles tune, its ``test/``
tiles are held out (no held-out built-up tile lies within 5 km of a tuning one). A manifest
(name, bytes, sha256) of the files written goes to DEST/MANIFEST.tsv and is checked against the
committed ``eurosat_scenes_manifest.tsv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from extract_mask_pairs import against, files_under, write_manifest
from extract_oscd_scenes import BANDS, write_l1c
from rasterio.io import MemoryFile

#: Where the tiles come from (the manifest's first line).
SOURCE = ("EuroSAT (Helber, Bischke, Dengel and Borth, IEEE JSTARS 2019; Copernicus Sentinel-2 "
          "L1C) from github:shrey160/EuroSAT_MS_Deep_Learning at "
          "95c6739c0ec8940772510c78d1a17c7e394d3f6a")
#: The commit of REPO that holds the tiles.
COMMIT = "95c6739c0ec8940772510c78d1a17c7e394d3f6a"
ROOT = "data/Euro_MS_Test_red/"
#: The built-up classes kept.
CLASSES = ("Industrial", "Residential", "Highway")
#: The tiles' band order (cloudfree's is ``BANDS``).
TILE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11",
              "B12", "B8A")
#: Tiles left out, judged by their RGB quicklook before any run of the mask: a milky veil over
#: the whole crop, B01 above B02 (1758 against 1409 DN at the medians).
CLOUDY = frozenset({"Highway_1335"})
HALVES = {"train": "tuning", "test": "held-out"}
MANIFEST = Path(__file__).with_name("eurosat_scenes_manifest.tsv")


def archived(repo: Path) -> dict[str, bytes]:
    """The tiles of ``CLASSES`` at ``COMMIT``, by path under ``ROOT`` (``train/Industrial/...``)."""
    return {name: content for name, content in files_under(repo, COMMIT, ROOT).items()
            if name.endswith(".tif") and name.split("/")[1] in CLASSES}


def extract(repo: Path, dest: Path) -> list[Path]:
    """Write the cloud-free tiles and SPLIT.tsv under ``dest``; return the tiles."""
    order = [TILE_BANDS.index(b) for b in BANDS]
    dest.mkdir(parents=True, exist_ok=True)
    written, split = [], ["scene\thalf"]
    for name, content in sorted(archived(repo).items()):
        folder, _, file = name.split("/")
        if file.removesuffix(".tif") in CLOUDY:
            continue
        with MemoryFile(content) as memory, memory.open() as src:
            if src.count != len(TILE_BANDS):
                raise SystemExit(f"{name}: {src.count} bands, expected {len(TILE_BANDS)}")
            dn = src.read()[order].astype(np.uint16)
            grid = {"height": src.height, "width": src.width, "crs": src.crs,
                    "transform": src.transform}
        target = dest / f"eurosat_{file}"
        write_l1c(target, dn, grid)
        written.append(target)
        split.append(f"{target.stem}\t{HALVES[folder]}")
    (dest / "SPLIT.tsv").write_text("\n".join(split) + "\n")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path,
                        help="clone of github:shrey160/EuroSAT_MS_Deep_Learning")
    parser.add_argument("dest", type=Path, help="folder to write the tiles into")
    args = parser.parse_args()
    files = extract(args.repo, args.dest)
    write_manifest(args.dest, sorted([*files, args.dest / "SPLIT.tsv"]), SOURCE)
    print(f"{len(files)} tiles in {args.dest}; {against(args.dest, MANIFEST)}")


if __name__ == "__main__":
    main()
