"""The default `remove`'s fill with other chunk shapes against the chunks it runs now (at most
``FILL_CHUNK_WIDTH`` px wide and ``FILL_CHUNK_HEIGHT`` px tall), on the same date's land.

    python benchmarks/chunk_width_quality.py               # 2048^2, chunks one strip tall
    python benchmarks/chunk_width_quality.py --size 4096
    python benchmarks/chunk_width_quality.py --former width   # as wide as a batch (8 tiles)

``--former``: ``height`` (default), chunks one strip of tiles tall (256 px) at the same width;
``width``, chunks as wide as a batch of 8 tiles (1824 px) at the same height.

The clear scene is a mosaic of the real clear S2/S1 pairs in ../shared/data, 512 px blocks in a
checkerboard: the Sen1Floods11 chip, and the SEN12MS-CR winter_112 cloud-free image mirrored
into 512 px (each block turned by a further 90 degrees along its row). Real clouds are pasted
over it: the SEN12MS-CR summer_19 cumulus image (about 50 % cloud), turned by 90 degrees and
mirrored across the scene, shifted off the blocks by 384 px, blended as ``clear + a * (cloudy -
clear)`` with the opacity ``a`` rising with its cloud score (``training/simulate.py``). Both runs
are the real ``remove_scene`` with the default model (S1 aligned, COG output). Printed: PSNR
(reflectance in [0, 1], 13 bands) over the pixels the clouds changed, over those of opaque cloud
(opacity 0.5 and more) and of thin cloud (less), and how much the two outputs differ in DN.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from metrics import psnr
from rasterio.transform import from_origin

from cloudfree.io.options import InputOptions
from cloudfree.mask.classify import classify
from cloudfree.pipeline.options import OutputOptions
from cloudfree.training.simulate import opacity, overlay

#: the module (the package's ``remove_scene`` is the function)
removal = importlib.import_module("cloudfree.pipeline.remove")
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SEN12MSCR = DATA / "sen12mscr"
SPAIN = DATA / "sen1floods11" / "Spain_7370579"
BLOCK = 512
#: A chunk width or height (px) past any the batch or the tiles allow: as wide as a batch
UNBOUNDED = 10**6
#: The chunks' height (px) when one strip of 256 px tiles tall
ONE_STRIP = 256


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read().astype(np.float32)


def mirrored(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` [C, h, w] mirrored into [C, size, size] (seamless, as a tile of 2h x 2w)."""
    two = np.concatenate([image, image[:, ::-1]], axis=1)
    two = np.concatenate([two, two[:, :, ::-1]], axis=2)
    reps = -(-size // two.shape[1]), -(-size // two.shape[2])
    return np.tile(two, (1, *reps))[:, :size, :size]


def clear_scene(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The clear mosaic: reflectance [13, size, size] and S1 dB [2, size, size]."""
    blocks = [(read(SPAIN.with_name(SPAIN.name + "_S2Hand.tif")) / 10000,
               read(SPAIN.with_name(SPAIN.name + "_S1Hand.tif"))),
              (mirrored(read(SEN12MSCR / "ROIs2017_winter_112_p797_s2_cloudfree.tif"), BLOCK)
               / 10000, mirrored(read(SEN12MSCR / "ROIs2017_winter_112_p797_s1.tif"), BLOCK))]
    s2 = np.empty((13, size, size), np.float32)
    s1 = np.empty((2, size, size), np.float32)
    for i in range(0, size, BLOCK):
        for j in range(0, size, BLOCK):
            k = (i // BLOCK + j // BLOCK) % 2
            turn = j // BLOCK
            s2[:, i:i + BLOCK, j:j + BLOCK] = np.rot90(blocks[k][0], turn, axes=(1, 2))
            s1[:, i:i + BLOCK, j:j + BLOCK] = np.rot90(blocks[k][1], turn, axes=(1, 2))
    return s2, s1


def clouds(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The real cloud field: reflectance [13, size, size] and its opacity [size, size]."""
    cloudy = read(SEN12MSCR / "ROIs1868_summer_19_p30_s2_cloudy.tif") / 10000
    cloudy = np.rot90(cloudy, axes=(1, 2))
    alpha = opacity(classify(cloudy, np.ones(cloudy.shape[1:], bool))[1])
    shift = 384
    field = mirrored(cloudy, size + shift)[:, shift:, shift:]
    return field, mirrored(alpha[None], size + shift)[0, shift:, shift:]


def write(path: Path, data: np.ndarray, dtype: str) -> Path:
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": len(data), "dtype": dtype, "crs": "EPSG:32631",
               "transform": from_origin(500000, 5000000, 10, 10), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
    return path


def run(s2: Path, s1: Path, out: Path, width: int, height: int) -> np.ndarray:
    """The default ``remove`` of the scene with chunks of at most ``width`` x ``height`` px, in
    DN."""
    removal.FILL_CHUNK_WIDTH, removal.FILL_CHUNK_HEIGHT = width, height
    removal.remove_scene(s2, s1, out, inputs=InputOptions(s1_aligned=True),
                         outputs=OutputOptions(overwrite=True), quiet=True)
    with rasterio.open(out) as src:
        return src.read().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--former", choices=("height", "width"), default="height")
    args = parser.parse_args()
    width, height = removal.FILL_CHUNK_WIDTH, removal.FILL_CHUNK_HEIGHT
    former = {"height": (f"one strip tall, at most {width} px wide", (width, ONE_STRIP)),
              "width": ("8 tiles (1824 px) wide", (UNBOUNDED, height))}[args.former]
    shapes = dict([former, (f"at most {width} x {height} px", (width, height))])
    clear, s1 = clear_scene(args.size)
    field, alpha = clouds(args.size)
    cloudy = np.clip(np.round(overlay(clear, field, alpha) * 10000), 1, 65535)
    truth = np.round(clear * 10000) / 10000
    changed = (cloudy / 10000 != truth).any(axis=0)
    where = {"cloud": changed, "opaque": changed & (alpha >= 0.5),
             "thin": changed & (alpha < 0.5)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        s2_path = write(folder / "s2.tif", cloudy, "uint16")
        s1_path = write(folder / "s1.tif", s1, "float32")
        outputs = {name: run(s2_path, s1_path, folder / "out.tif", *shape)
                   for name, shape in shapes.items()}
    print(f"{args.size}^2, {changed.mean():.1%} of the pixels under pasted cloud "
          f"({where['opaque'].mean():.1%} opaque)\n")
    a, b = outputs.values()
    diff = np.abs(a - b).max(axis=0)
    where["where the outputs differ"] = diff > 0
    print(f"| chunks | PSNR cloud (dB) | opaque | thin | where the outputs differ |\n"
          f"|{'---|' * 5}")
    for name, dn in outputs.items():
        cells = " | ".join(f"{psnr(dn / 10000, truth, w):.3f}" for w in where.values())
        print(f"| {name} | {cells} |")
    print(f"\nthe outputs differ on {(diff > 0).mean():.2%} of the pixels, by at most "
          f"{diff.max():.0f} DN (99th percentile of those: "
          f"{np.percentile(diff[diff > 0], 99) if (diff > 0).any() else 0:.0f})")


if __name__ == "__main__":
    main()
