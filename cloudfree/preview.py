"""Quicklook of a ``remove`` run: input RGB | mask | output RGB, side by side in one PNG.

The three panels are sampled (every ``step``-th pixel, at most ``MAX_SIDE`` pixels a side) from
the blocks ``remove`` writes, so a preview costs no extra read and its memory does not grow with
the scene. RGB is B04, B03, B02, reflectance 0 to ``STRETCH`` mapped linearly to 0-255. The mask
panel shows the input dimmed, with clouds white, shadows purple and snow cyan (the colours of
``cloudfree mask``), nodata black.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from cloudfree.mask_scene import COLORMAP
from cloudfree.masking import CLEAR, NODATA
from cloudfree.rasterio_io import raster_output

MAX_SIDE = 768
STRETCH = 0.3
GAP = 8
RGB = ("B04", "B03", "B02")


class Preview:
    """Sampled input, classes and output of a scene, filled block by block."""

    def __init__(self, height: int, width: int, bands: Sequence[str]) -> None:
        self.step = max(1, math.ceil(max(height, width) / MAX_SIDE))
        shape = (math.ceil(height / self.step), math.ceil(width / self.step))
        self.rgb = [bands.index(b) for b in RGB]
        self.before = np.zeros((3, *shape), np.float32)
        self.after = np.zeros((3, *shape), np.float32)
        self.classes = np.full(shape, NODATA, np.uint8)

    def add(self, row: int, col: int, before: np.ndarray, classes: np.ndarray,
            after: np.ndarray) -> None:
        """Sample a block at (row, col): reflectance [bands, h, w] before and after, classes."""
        s = self.step
        r0, c0 = -row % s, -col % s
        sub = (slice(r0, None, s), slice(c0, None, s))
        block = classes[sub]
        at = (slice((row + r0) // s, (row + r0) // s + block.shape[0]),
              slice((col + c0) // s, (col + c0) // s + block.shape[1]))
        self.classes[at] = block
        self.before[(slice(None), *at)] = before[self.rgb][(slice(None), *sub)]
        self.after[(slice(None), *at)] = after[self.rgb][(slice(None), *sub)]

    def image(self) -> np.ndarray:
        """The three panels as uint8 RGB [3, h, 3 w + 2 GAP] on a white background."""
        before, after = _to_byte(self.before), _to_byte(self.after)
        mask = (before * 0.5).astype(np.uint8)
        for value, colour in COLORMAP.items():
            if value != CLEAR:
                mask[:, self.classes == value] = np.array(colour[:3], np.uint8)[:, None]
        for panel in (before, after):
            panel[:, self.classes == NODATA] = 0
        h, w = self.classes.shape
        out = np.full((3, h, 3 * w + 2 * GAP), 255, np.uint8)
        for i, panel in enumerate((before, mask, after)):
            out[:, :, i * (w + GAP): i * (w + GAP) + w] = panel
        return out

    def write(self, path: Path, overwrite: bool, inputs: Sequence[Path] = (),
              together: list[tuple[Path, Path]] | None = None) -> Path:
        """Write the PNG atomically (with ``together``, renamed with the other outputs)."""
        image = self.image()
        profile = {"driver": "PNG", "width": image.shape[2], "height": image.shape[1],
                   "count": 3, "dtype": "uint8"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with raster_output(Path(path), overwrite, inputs, profile, together) as dst:
                dst.write(image)
        return Path(path)


def _to_byte(reflectance: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(reflectance / STRETCH * 255), 0, 255).astype(np.uint8)
