"""A mosaic of real S1/S2 pairs whose S1 carries a known smooth deformation (tests, benchmarks).

Blocks of 512 px alternate in a checkerboard between the Sen1Floods11 pair and the SEN12MS-CR
winter pair (tiled 2 x 2). Each pair's own misregistration (measured by the library on the pair
alone) is taken out, and the S1 is sampled at q - d(q), so that its content is displaced by the
quadratic field d of ``deformation``. Both files are written one row of blocks at a time, so any
size can be built in bounded memory; they share a nominal 10 m UTM grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from cloudfree.coregister.s1_to_s2 import coregister_to_grid
from cloudfree.coregister.shift_field import ShiftField
from cloudfree.io.sentinel1 import db_to_linear, linear_to_db
from cloudfree.io.sentinel2 import open_sentinel2

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIRS = ((DATA / "sen1floods11" / "Spain_7370579_S1Hand.tif",
          DATA / "sen1floods11" / "Spain_7370579_S2Hand.tif"),
         (DATA / "sen12mscr" / "ROIs2017_winter_112_p797_s1.tif",
          DATA / "sen12mscr" / "ROIs2017_winter_112_p797_s2_cloudfree.tif"))
BLOCK = 512
S2_BANDS = (2, 3, 4, 8)  # B02, B03, B04, B08: band numbers in the 13-band order
TRANSFORM = rasterio.Affine(10, 0, 500000, 0, -10, 5000000)
MARGIN = 12  # rows read beyond a block row for the sampling


def deformation(cols, rows, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The known field (dx, dy) in pixels: up to about 4 px, affine plus quadratic terms."""
    u, v = 2 * np.asarray(cols) / size - 1, 2 * np.asarray(rows) / size - 1
    return 1.0 + 1.5 * u - 0.8 * v + 0.6 * u * v, -0.5 + 0.7 * u + 1.2 * v ** 2


def field_error(out: Path, size: int) -> np.ndarray:
    """Distance (px) between the deformation and the field ``coregister`` wrote into ``out``
    (its ``COREGISTER_FIELD`` tag), on a 25 x 25 grid."""
    with rasterio.open(out) as ds:
        tag = json.loads(ds.tags()["COREGISTER_FIELD"])
    field = ShiftField(tuple(tag["coef_x"]), tuple(tag["coef_y"]), tag["degree"],
                       tuple(tag["size"]))
    cols, rows = np.meshgrid(np.linspace(0, size, 25), np.linspace(0, size, 25))
    fx, fy = field.at(cols, rows)
    tx, ty = deformation(cols, rows, size)
    return np.hypot(fx - tx, fy - ty)


def _blocks() -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[float, float]]]:
    """S1 (linear power) and S2 blocks of 512 px of each pair, and each pair's own shift."""
    s1s, s2s, owns = [], [], []
    for s1_path, s2_path in PAIRS:
        with rasterio.open(s1_path) as s1, rasterio.open(s2_path) as s2:
            reps = BLOCK // s2.width
            s1s.append(np.tile(db_to_linear(s1.read().astype(np.float64)), (1, reps, reps)))
            s2s.append(np.tile(s2.read(S2_BANDS).astype(np.uint16), (1, reps, reps)))
        with open_sentinel2(s2_path) as scene, coregister_to_grid(s1_path, scene) as pair:
            field = pair.estimate.field
            owns.append((field.coef_x[0], field.coef_y[0]))
    return s1s, s2s, owns


def _pick(blocks: list[np.ndarray], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The mosaic's pixels at integer rows x cols (checkerboard of the two pairs)."""
    r, c = rows[:, None] % BLOCK, cols[None, :] % BLOCK
    first = ((rows[:, None] // BLOCK + cols[None, :] // BLOCK) % 2) == 0
    return np.where(first, blocks[0][:, r, c], blocks[1][:, r, c])


def write_mosaic(folder: Path, size: int, deform: bool = True) -> tuple[Path, Path]:
    """S1 (VV, VH dB) and S2 (B02, B03, B04, B08 DN) mosaics of size x size px."""
    s1s, s2s, owns = _blocks()
    common = {"driver": "GTiff", "width": size, "height": size, "crs": "EPSG:32631",
              "transform": TRANSFORM, "tiled": True, "blockxsize": 256, "blockysize": 256,
              "compress": "deflate"}
    s1_path, s2_path = folder / "s1_mosaic.tif", folder / "s2_mosaic.tif"
    cols = np.arange(size)
    with rasterio.open(s1_path, "w", count=2, dtype="float32", nodata=float("nan"),
                       **common) as s1_out, \
            rasterio.open(s2_path, "w", count=len(S2_BANDS), dtype="uint16", **common) as s2_out:
        s1_out.descriptions = ("VV", "VH")
        s2_out.descriptions = tuple(f"B{b:02d}" for b in S2_BANDS)
        for top in range(0, size, BLOCK):
            rows = np.arange(top, min(size, top + BLOCK))
            window = rasterio.windows.Window(0, top, size, len(rows))
            s2_out.write(_pick(s2s, rows, cols), window=window)
            source = _pick(s1s, np.arange(top - MARGIN, rows[-1] + MARGIN + 1), cols)
            q_rows, q_cols = np.meshgrid(rows + 0.5, cols + 0.5, indexing="ij")
            first = ((q_rows // BLOCK + q_cols // BLOCK) % 2) == 0
            own_x = np.where(first, owns[0][0], owns[1][0])
            own_y = np.where(first, owns[0][1], owns[1][1])
            dx, dy = deformation(q_cols, q_rows, size) if deform else (0.0, 0.0)
            at_rows = rows[:, None] - dy + own_y - (top - MARGIN)
            at_cols = cols[None, :] - dx + own_x
            sampled = [ndimage.map_coordinates(band, [at_rows, at_cols], order=3,
                                               mode="nearest") for band in source]
            s1_out.write(linear_to_db(np.maximum(np.stack(sampled), 1e-6)).astype(np.float32),
                         window=window)
    return s1_path, s2_path
