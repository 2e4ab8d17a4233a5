"""The bytes cloudfree fetches from an HTTP server for a STAC item of per-band COGs: a window of
the scene, and the whole scene, against the files' size.

    python benchmarks/remote_reads.py

Builds a 1020 x 1020 px scene from the bundled summer sample (tiled 4 x 4, each band at its
native resolution, one COG per band with 256 px tiles and deflate, an item pointing at them),
serves it on 127.0.0.1 with the tests' range server (``tests/range_server.py``) and reads it
through ``open_sentinel2`` by URL, each read from a copy of its own (GDAL keeps what it fetched
for the process). Prints the bytes served and the requests. Feeds guides/inputs.md.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import rasterio
import rasterio.shutil
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import SUMMER_S2, mosaic  # noqa: E402
from range_server import RangeServer  # noqa: E402
from s2_builders import coarsen_like_l1c, write_band_folder, write_stac_item  # noqa: E402

from cloudfree.io.sentinel2 import BANDS, open_sentinel2  # noqa: E402

SIZE, TILE = 1020, 256
WINDOW = Window(256, 512, 256, 256)


def build(root: Path) -> tuple[Path, int]:
    """The item of per-band COGs under ``root`` and the bytes of its files."""
    tiled = mosaic(SUMMER_S2, root / "tiled.tif", 4)
    with rasterio.open(tiled) as ds:
        data, profile = ds.read()[:, :SIZE, :SIZE], {"crs": ds.crs, "transform": ds.transform}
    tiled.unlink()
    files = write_band_folder(root / "scene" / "assets", coarsen_like_l1c(data), profile, BANDS)
    for path in files.glob("*.tif"):
        cog = path.with_suffix(".cog")
        rasterio.shutil.copy(path, cog, driver="COG", BLOCKSIZE=TILE, COMPRESS="DEFLATE")
        cog.replace(path)
    with rasterio.open(files / "B02.tif") as ds:
        bbox = tuple(ds.bounds)
    item = write_stac_item(root / "scene" / "item.json", {b: files / f"{b}.tif" for b in BANDS},
                           bbox, {})
    return item, sum(p.stat().st_size for p in files.glob("*.tif"))


def main() -> None:
    root = Path(tempfile.mkdtemp())
    item, total = build(root)
    with RangeServer(root, root / "requests.jsonl") as server:
        for copy, (what, window) in enumerate(((f"window {WINDOW.width} x {WINDOW.height} px",
                                                 WINDOW), ("whole scene", None))):
            shutil.copytree(item.parent, root / f"copy{copy}")
            server.reset()
            with open_sentinel2(f"{server.url}/copy{copy}/{item.name}") as s2:
                s2.read(window)
            print(f"{what} of {SIZE} x {SIZE}: {server.sent} of {total} bytes "
                  f"({server.sent / total:.1%}) in {len(server.requests)} requests")


if __name__ == "__main__":
    main()
