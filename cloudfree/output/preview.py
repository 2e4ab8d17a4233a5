"""Quicklook of a ``remove`` run: input RGB | mask | output RGB (| confidence), side by side.

The three panels are sampled (every ``step``-th pixel, at most ``MAX_SIDE`` pixels a side) from
the blocks ``remove`` writes, so a preview costs no extra read and its memory does not grow with
the scene. RGB is B04, B03, B02, reflectance 0 to ``STRETCH`` mapped linearly to 0-255. The mask
panel shows the input dimmed, with clouds white, shadows purple and snow cyan (the colours of
``cloudfree mask``), nodata black. With ``remove --uncertainty-out``, a fourth panel shows the
confidence of the filled pixels: the mean sigma of the three RGB bands, from green (below
``SIGMA_LOW``) through yellow to red (``SIGMA_HIGH`` and above, reflectance), over the input
dimmed where the pixel is kept.

A legend strip of ``LEGEND`` rows lies below the panels (the panels above it are the same with
or without it): under the mask panel, a swatch of each class drawn (CLOUD white, SHADOW purple,
SNOW cyan, always the three); under the confidence panel, when there is one, the colour ramp
from ``SIGMA_LOW`` (green, left end) to ``SIGMA_HIGH`` (red, right end) on the same logarithmic
scale as the panel, its two ends marked by short ticks with their values beneath, and SIGMA.
The labels use a small bitmap font defined here (no font library).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from cloudfree.mask.classify import CLEAR, CLOUD, COLORMAP, NODATA, SHADOW, SNOW
from cloudfree.output.atomic import raster_output

MAX_SIDE = 768
STRETCH = 0.3
GAP = 8
RGB = ("B04", "B03", "B02")
#: Confidence panel: sigma (reflectance) shown green at or below the first, red at or above the
#: second.
SIGMA_LOW, SIGMA_HIGH = 0.005, 0.05
#: Rows of the legend strip below the panels.
LEGEND = 54
SCALE = 2  # pixels a font dot
SWATCH = 5 * SCALE  # a swatch is as tall as a label
INK = (40, 40, 40)
#: The legend's bitmap font: 5 rows a glyph, "#" inked.
FONT = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", "..#", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    ".": (".", ".", ".", ".", "#"), " ": ("..", "..", "..", "..", ".."),
    "A": (".#.", "#.#", "###", "#.#", "#.#"), "C": (".##", "#..", "#..", "#..", ".##"),
    "D": ("##.", "#.#", "#.#", "#.#", "##."), "G": (".##", "#..", "#.#", "#.#", ".##"),
    "H": ("#.#", "#.#", "###", "#.#", "#.#"), "I": ("###", ".#.", ".#.", ".#.", "###"),
    "L": ("#..", "#..", "#..", "#..", "###"), "M": ("#...#", "##.##", "#.#.#", "#...#", "#...#"),
    "N": ("#..#", "##.#", "#.##", "#..#", "#..#"), "O": (".#.", "#.#", "#.#", "#.#", ".#."),
    "S": (".##", "#..", ".#.", "..#", "##."), "U": ("#.#", "#.#", "#.#", "#.#", "###"),
    "W": ("#...#", "#...#", "#.#.#", "##.##", "#...#"),
}


class Preview:
    """Sampled input, classes and output of a scene, filled block by block."""

    def __init__(self, height: int, width: int, bands: Sequence[str],
                 confidence: bool = False) -> None:
        self.step = max(1, math.ceil(max(height, width) / MAX_SIDE))
        shape = (math.ceil(height / self.step), math.ceil(width / self.step))
        self.rgb = [bands.index(b) for b in RGB]
        self.before = np.zeros((3, *shape), np.float32)
        self.after = np.zeros((3, *shape), np.float32)
        self.classes = np.full(shape, NODATA, np.uint8)
        self.sigma = np.zeros(shape, np.float32) if confidence else None

    def add(self, row: int, col: int, before: np.ndarray, classes: np.ndarray,
            after: np.ndarray, sigma: np.ndarray | None = None) -> None:
        """Sample a block at (row, col): reflectance [bands, h, w] before and after, classes,
        and (with the confidence panel) sigma [bands, h, w] in reflectance."""
        s = self.step
        r0, c0 = -row % s, -col % s
        sub = (slice(r0, None, s), slice(c0, None, s))
        block = classes[sub]
        at = (slice((row + r0) // s, (row + r0) // s + block.shape[0]),
              slice((col + c0) // s, (col + c0) // s + block.shape[1]))
        self.classes[at] = block
        self.before[(slice(None), *at)] = before[self.rgb][(slice(None), *sub)]
        self.after[(slice(None), *at)] = after[self.rgb][(slice(None), *sub)]
        if self.sigma is not None and sigma is not None:
            self.sigma[at] = sigma[self.rgb][(slice(None), *sub)].mean(axis=0)

    def image(self) -> np.ndarray:
        """The panels and the legend strip below them, uint8 RGB [3, h + LEGEND, width]."""
        panels = self.panels()
        return np.concatenate([panels, self._legend(panels.shape[2])], axis=1)

    def panels(self) -> np.ndarray:
        """The panels as uint8 RGB [3, h, n w + (n - 1) GAP] on a white background."""
        before, after = _to_byte(self.before), _to_byte(self.after)
        mask = (before * 0.5).astype(np.uint8)
        for value, colour in COLORMAP.items():
            if value != CLEAR:
                mask[:, self.classes == value] = np.array(colour[:3], np.uint8)[:, None]
        for panel in (before, after):
            panel[:, self.classes == NODATA] = 0
        panels = [before, mask, after]
        if self.sigma is not None:
            panels.append(self._confidence(before))
        h, w = self.classes.shape
        n = len(panels)
        out = np.full((3, h, n * w + (n - 1) * GAP), 255, np.uint8)
        for i, panel in enumerate(panels):
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


    def _confidence(self, before: np.ndarray) -> np.ndarray:
        """The input dimmed, its filled pixels coloured by sigma: green, yellow, red."""
        panel = (before * 0.5).astype(np.uint8)
        filled = np.isfinite(self.sigma) & (self.sigma > 0)
        level = np.log(np.clip(self.sigma[filled], SIGMA_LOW, SIGMA_HIGH) / SIGMA_LOW) / \
            np.log(SIGMA_HIGH / SIGMA_LOW)
        panel[:, filled] = _ramp(level)
        panel[:, self.classes == NODATA] = 0
        return panel

    def _legend(self, width: int) -> np.ndarray:
        """The strip below the panels: the mask's swatches and, with confidence, the ramp."""
        legend = np.full((3, LEGEND, width), 255, np.uint8)
        w = self.classes.shape[1]
        x = w + GAP  # under the mask panel
        for i, (value, name) in enumerate(((CLOUD, "CLOUD"), (SHADOW, "SHADOW"),
                                           (SNOW, "SNOW"))):
            y = GAP + i * (SWATCH + 4)
            _fill(legend, y, x, SWATCH, SWATCH, (128, 128, 128))  # a border: clouds are white
            _fill(legend, y + 1, x + 1, SWATCH - 2, SWATCH - 2, COLORMAP[value][:3])
            _text(legend, name, y, x + SWATCH + 4)
        if self.sigma is not None:
            x = 3 * (w + GAP)  # under the confidence panel
            legend[:, GAP:GAP + 8, x:x + w] = _ramp(np.linspace(0, 1, w))[:, None]
            for tick in (x, x + w - 1):
                _fill(legend, GAP + 8, tick, 4, 1, INK)
            low, high = f"{SIGMA_LOW:g}", f"{SIGMA_HIGH:g}"
            y = GAP + 14
            _text(legend, low, y, x)
            _text(legend, high, y, x + w - _text_width(high))
            middle = x + (w - _text_width("SIGMA")) // 2
            if middle - x < _text_width(low) + 2 * SCALE or \
                    middle + _text_width("SIGMA") > x + w - _text_width(high) - 2 * SCALE:
                y += SWATCH + 4  # no room between the values: below them
            _text(legend, "SIGMA", y, middle)
        return legend


def _ramp(level: np.ndarray) -> np.ndarray:
    """uint8 RGB [3, n] of levels 0 (green) to 1 (red), through yellow."""
    return np.stack([np.rint(255 * np.clip(2 * level, 0, 1)),
                     np.rint(255 * np.clip(2 - 2 * level, 0, 1)),
                     np.zeros_like(level)]).astype(np.uint8)


def _fill(image: np.ndarray, y: int, x: int, h: int, w: int, colour) -> None:
    """Paint a rectangle of ``image`` [3, rows, cols], clipped to it."""
    rows, cols = image.shape[1:]
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, rows), min(x + w, cols)
    if y0 < y1 and x0 < x1:
        image[:, y0:y1, x0:x1] = np.array(colour, np.uint8).reshape(-1, 1, 1)


def _text_width(text: str) -> int:
    return (sum(len(FONT[c][0]) + 1 for c in text) - 1) * SCALE


def _text(image: np.ndarray, text: str, y: int, x: int) -> None:
    """Write ``text`` (characters of ``FONT``) with its top left corner at (y, x), clipped."""
    for c in text:
        glyph = FONT[c]
        for r, line in enumerate(glyph):
            for k, dot in enumerate(line):
                if dot == "#":
                    _fill(image, y + r * SCALE, x + k * SCALE, SCALE, SCALE, INK)
        x += (len(glyph[0]) + 1) * SCALE


def _to_byte(reflectance: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(reflectance / STRETCH * 255), 0, 255).astype(np.uint8)
