"""The memory the chunks' kept edges (``cloudfree/dates/kept.py``) hold on a large scene.

    python benchmarks/kept_memory.py                     # 10980^2, probed at 512^2
    python benchmarks/kept_memory.py --size 2048 --probe 2048

`remove --s2 TARGET --reference R1 ... --reference R4` runs once, in this
process, on ``reference_speed.py``'s scene (the bundled series mirrored to ``--probe`` px),
noting for each store of kept edges (the temporal background's, the fill's) the blocks' margin
around their chunks, the rows and columns kept and the bytes a kept pixel takes, and the peak
bytes it held. The chunks of a ``--size`` x ``--size`` scene, on the same grid of tiles, are
then replayed through the same stores with parts of those bytes (no pixel computed): printed,
each store's peak. With ``--probe`` equal to ``--size`` the two peaks are the same.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
from reference_speed import make_scenes

from cloudfree.cli.launch import main as cli
from cloudfree.dates import kept
from cloudfree.dates.fill import ReferenceFill
from cloudfree.dates.temporal_mask import Background
from cloudfree.inference.tiling import TileGrid, chunks
from cloudfree.pipeline import remove


def nbytes(value: object) -> int:
    """The bytes of the arrays a kept part holds (the fill: once filled)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, Future):
        return nbytes(value.result()) if value.done() else 0
    if isinstance(value, tuple):
        return sum(nbytes(v) for v in value)
    return 0 if value is None else sum(nbytes(v) for v in vars(value).values())


def probe(size: int) -> tuple[remove.SceneRemoval, dict]:
    """Run `remove` on the probe scene; return its pipeline and, per store, what it kept."""
    stores: dict[int, dict] = {}
    pipes = []
    keep, init, fill = kept.KeptEdges.keep, remove.SceneRemoval.__init__, ReferenceFill.fill

    def noted(edges: kept.KeptEdges) -> None:
        """A store's bytes a pixel and its peak, from the parts it holds now (the fill's
        once filled)."""
        store = stores[id(edges)]
        held = [(nbytes(p.value), p.height * p.width) for p in edges.parts]
        store["pixel"] = max([store.get("pixel", 0)] + [b // n for b, n in held if b > n])
        store["peak"] = max(store["peak"], sum(b for b, _ in held))

    def noted_keep(self, top, left, height, width, rows, crop):
        keep(self, top, left, height, width, rows, crop)
        name = "temporal background" if isinstance(crop(slice(0, 1), slice(0, 1)),
                                                   Background) else "fill"
        stores.setdefault(id(self), {"peak": 0, "name": name}).update(height=height, keep=rows)
        noted(self)

    def noted_fill(self, plan, *args, **kwargs):
        block = fill(self, plan, *args, **kwargs)
        if id(self._kept) in stores:
            noted(self._kept)
        return block

    def noted_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        pipes.append(self)

    kept.KeptEdges.keep, remove.SceneRemoval.__init__ = noted_keep, noted_init
    ReferenceFill.fill = noted_fill
    with tempfile.TemporaryDirectory() as tmp:
        target, refs = make_scenes(Path(tmp), size)
        sys.argv = ["cloudfree", "remove", "--s2", str(target),
                    *(a for r in refs for a in ("--reference", str(r))),
                    "-o", str(Path(tmp) / "out.tif"), "--quiet"]
        try:
            cli()
        except SystemExit as exc:
            if exc.code:
                raise
    kept.KeptEdges.keep, remove.SceneRemoval.__init__, ReferenceFill.fill = keep, init, fill
    return pipes[0], stores


def replay(grid: TileGrid, tiles: int, store: dict) -> int:
    """The peak bytes a store holds over the chunks of ``grid``."""
    edges: kept.KeptEdges = kept.KeptEdges()
    margin, peak = (store["height"] - grid.tile) // 2, 0
    for chunk in chunks(grid, tiles):
        block = (chunk.top - margin, chunk.left - margin, chunk.height + 2 * margin,
                 chunk.width + 2 * margin)
        list(edges.overlapping(*block))
        edges.keep(*block, store["keep"], lambda rows, cols: np.empty(
            (rows.stop - rows.start) * (cols.stop - cols.start) * store["pixel"], np.uint8))
        peak = max(peak, sum(p.value.nbytes for p in edges.parts))
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--probe", type=int, default=512)
    args = parser.parse_args()
    pipe, stores = probe(args.probe)
    g = pipe.grid
    grid = TileGrid(args.size, args.size, g.tile, g.overlap, g.trim)
    print(f"| store | margin (px) | rows kept | bytes a pixel | peak at {args.probe}^2 (MB) "
          f"| peak at {args.size}^2 (MB) |\n|---|---|---|---|---|---|")
    for store in stores.values():
        print(f"| {store['name']} | {(store['height'] - g.tile) // 2} | {store['keep']} | "
              f"{store['pixel']} | {store['peak'] / 1e6:.1f} | "
              f"{replay(grid, pipe.chunk_tiles, store) / 1e6:.1f} |")


if __name__ == "__main__":
    main()
