"""Overviews made from the streamed blocks against GDAL's own, and what each costs the COG step.

    python benchmarks/cog_overviews.py                        # 10980^2 (a Sentinel-2 tile), 1 band
    python benchmarks/cog_overviews.py --size 2048 --bands 13 --rounds 3

A size^2 mosaic of the bundled sample's first ``--bands`` bands (mirrored, as in
`remove_pipeline.py`) is streamed as `remove` streams its output with the default model (strips
of 224 rows, its 256 px tiles less their 32 px overlap, in blocks of 1792 columns, a chunk of 8
tiles), into the scratch file the COG step copies, then made a COG in two ways, alternating over
``--rounds``:
- GDAL's: the COG driver makes the overviews itself, from the finished file;
- streamed: the overviews are made from the blocks as they are written
  (`cloudfree.output.overviews.StreamedOverviews`) and handed to the COG driver.
Printed per round: the CPU seconds of making the overviews from the blocks and of each COG step.
Then, per overview level: the largest and mean absolute difference in DN between the two, and
the share of pixels that differ, against GDAL's COG step as `remove` runs it and against GDAL
with a compressed scratch file for its overviews (the COG driver's own default, which
`remove` uses for outputs over 512 MiB), and whether each file is a valid COG (rio-cogeo).
Where the sides do not halve evenly (10980 -> 5490 -> 2745 -> 1372), each overview pixel
averages a window of 2.0007 pixels, weighting the edge pixels by the part inside; GDAL's run
with an uncompressed scratch file cuts some windows where its processing chunks end.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from cloudfree.io.rasters import scene_io_env
from cloudfree.output.cog import AVERAGE, cog_block, cog_options, make_cog, scratch_profile
from cloudfree.output.geotiff import geotiff_profile
from cloudfree.output.overviews import StreamedOverviews, read_levels

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data" / "s2.tif"
#: `remove`'s released blocks with the default model: stride of 256 px tiles overlapping by
#: 32, and a chunk of 8 of them less the overlap still to come.
STRIP, BLOCK_COLS = 224, 1792


def cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


class Mosaic:
    """Blocks of a size^2 mosaic of the sample's first ``bands`` bands, mirrored."""

    def __init__(self, size: int, bands: int) -> None:
        with rasterio.open(SAMPLE) as ds:
            data, self.crs, self.transform = ds.read(list(range(1, bands + 1))), ds.crs, \
                ds.transform
        tile = np.concatenate([data, data[:, :, ::-1]], axis=2)
        self.tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
        self.size = size

    def block(self, window: Window) -> np.ndarray:
        rows = np.arange(window.row_off, window.row_off + window.height) % self.tile.shape[1]
        cols = np.arange(window.col_off, window.col_off + window.width) % self.tile.shape[2]
        return self.tile[:, rows][:, :, cols]

    def profile(self) -> dict:
        return geotiff_profile(width=self.size, height=self.size, crs=self.crs,
                               transform=self.transform, count=self.tile.shape[0],
                               dtype=self.tile.dtype.name, nodata=None)


def stream(scene: Mosaic, path: Path, streamed: bool) -> tuple[list[Path] | None, float]:
    """Write the scratch file as `remove` does; the streamed overviews and their CPU seconds."""
    profile = scene.profile()
    scratch = scratch_profile(profile)
    spent = 0.0
    with rasterio.open(path, "w", **scratch) as dst:
        overviews = (StreamedOverviews(path, profile, scratch, False, cog_block(profile))
                     if streamed else None)
        for row in range(0, scene.size, STRIP):
            for col in range(0, scene.size, BLOCK_COLS):
                window = Window(col, row, min(BLOCK_COLS, scene.size - col),
                                min(STRIP, scene.size - row))
                block = scene.block(window)
                dst.write(block, window=window)
                if overviews is not None:
                    start = cpu()
                    overviews.add(block, window)
                    spent += cpu() - start
    return (None if overviews is None else overviews.finish()), spent


def compare(ours: Path, theirs: Path, label: str) -> None:
    print(f"\nstreamed overviews against {label}")
    print("| level | size | largest difference (DN) | mean difference (DN) | pixels differing |\n"
          "|---|---|---|---|---|")
    for i, (a, b) in enumerate(zip(read_levels(ours), read_levels(theirs), strict=True)):
        diff = np.abs(a.astype(np.int64) - b)
        print(f"| 1/{2 ** (i + 1)} | {a.shape[2]} x {a.shape[1]} | {diff.max()} | "
              f"{diff.mean():.6f} | {np.count_nonzero(diff) / diff.size:.4%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--bands", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", type=Path, help="folder for the files (default: a temporary one)")
    args = parser.parse_args()
    scene = Mosaic(args.size, args.bands)
    profile = scene.profile()
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        work = Path(folder)
        gdal, ours = work / "gdal.tif", work / "streamed.tif"
        print(f"{args.size}^2 x {args.bands} band(s), COG blocks {cog_block(profile)} px")
        print("| round | way | overviews from the blocks (CPU s) | COG step (CPU s) | "
              "COG step (wall s) |\n|---|---|---|---|---|")
        row_bytes = args.size * args.bands * 2
        for round_ in range(1, args.rounds + 1):
            for path, streamed in ((gdal, False), (ours, True)):
                made, spent = stream(scene, path, streamed)
                start, wall = cpu(), time.perf_counter()
                with scene_io_env(row_bytes):
                    make_cog(path, AVERAGE, profile, made)
                print(f"| {round_} | {'streamed' if streamed else 'GDAL'} | "
                      f"{spent:.2f} | {cpu() - start:.2f} | {time.perf_counter() - wall:.2f} |")
        compressed = work / "gdal_compressed.tif"
        plain = work / "plain.tif"
        stream(scene, plain, False)
        with rasterio.open(plain) as src, rasterio.Env(COG_TMP_COMPRESSION="LZW"):
            rasterio.shutil.copy(src, compressed, driver="COG", **cog_options(profile, AVERAGE))
        with rasterio.open(ours) as a, rasterio.open(gdal) as b:
            same = all(np.array_equal(a.read(window=w), b.read(window=w))
                       for _, w in a.block_windows(1))
        print(f"\nfull resolution identical: {same}")
        compare(ours, gdal, "GDAL's, as `remove` runs the COG step (scratch as above)")
        compare(ours, compressed, "GDAL's with a compressed scratch file for its overviews")
        for path in (ours, gdal, compressed):
            valid, errors, _ = cog_validate(str(path), quiet=True)
            print(f"{path.name}: valid COG {valid} {errors or ''}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
