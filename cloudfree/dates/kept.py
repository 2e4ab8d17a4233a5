"""Parts of blocks kept for the next blocks that ask for the same pixels again.

The chunks of a scene come row by row of blocks from the top left, each read with a margin
that overlaps its neighbours'; where what is computed at a pixel does not depend on the block
(the references' fill, the temporal background: to float rounding, as the fits' fields are
interpolated by matrix products), the next blocks take it from the bottom rows and right
columns of the blocks before them instead of computing it again. What a block takes depends on
what the blocks before it kept: they must come in their order, also when computed on several
threads (``remove``'s chunks take turns, ``core.threads.Turnstile``), or the output would
depend on the threads' timing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
Slices = tuple[slice, slice]


@dataclass
class Part(Generic[T]):
    """What was computed on a rectangle (top, left, height, width) of the target grid, by a
    block whose top row was ``origin``."""

    top: int
    left: int
    height: int
    width: int
    value: T
    origin: int
    #: its block's right columns (else its bottom rows)
    right: bool


class KeptEdges(Generic[T]):
    """The ``keep`` bottom rows and right columns of the blocks computed last, as long as a
    later block may ask for them: the bottom rows of the blocks' current row and of the row
    before it (of that row, those not yet passed), the right columns above them of the block
    before. About ``keep`` rows of the scene's width: 215 MB for the chunks of a 10980^2
    scene with four references, 142 MB of it the background's (``benchmarks/kept_memory.py``)."""

    def __init__(self) -> None:
        self.parts: list[Part[T]] = []

    def overlapping(self, top: int, left: int, height: int, width: int
                    ) -> Iterator[tuple[Slices, Slices, T]]:
        """The kept parts overlapping a block: where in the block, where in the part, and the
        part. The blocks go down, row by row, each row from the left: forgotten are the parts
        of the rows of blocks above the one before this block's (that row's reach further),
        those wholly above the block, those of an earlier row or of right columns wholly left
        of it, and the right columns of an earlier row (where a block of a later row reaches
        them, the bottom rows of their row hold the same)."""
        previous = max((p.origin for p in self.parts if p.origin < top), default=top)
        self.parts = [p for p in self.parts
                      if p.origin >= previous and p.top + p.height > top
                      and not (p.right and p.origin < top)
                      and not ((p.right or p.origin < top) and p.left + p.width <= left)]
        for part in self.parts:
            here, there = overlap((top, left, height, width),
                                  (part.top, part.left, part.height, part.width))
            if here is not None:
                yield here, there, part.value

    def keep(self, top: int, left: int, height: int, width: int, keep: int,
             crop: Callable[[slice, slice], T]) -> None:
        """Keep ``crop(rows, cols)`` (a copy) of the ``keep`` bottom rows and the right columns
        above them of a block."""
        above = max(0, height - keep)
        for rows, cols, right in ((slice(above, height), slice(0, width), False),
                                  (slice(0, above), slice(max(0, width - keep), width), True)):
            if rows.stop > rows.start:
                self.parts.append(Part(top + rows.start, left + cols.start,
                                       rows.stop - rows.start, cols.stop - cols.start,
                                       crop(rows, cols), top, right))

    def clear(self) -> None:
        self.parts = []


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]
            ) -> tuple[Slices, Slices] | tuple[None, None]:
    """Where rectangles (top, left, height, width) ``a`` and ``b`` overlap, in each one's own
    coordinates; None, None where they do not."""
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if bottom <= top or right <= left:
        return None, None
    return ((slice(top - a[0], bottom - a[0]), slice(left - a[1], right - a[1])),
            (slice(top - b[0], bottom - b[0]), slice(left - b[1], right - b[1])))


def mirrored(start: int, stop: int, size: int, block_start: int, block_size: int) -> slice:
    """The span [start, stop) of a block's rows (or columns) on the target grid grown so
    that it reads the scene (``size``) wherever its part beyond an edge mirrors it, as the
    block (at ``block_start``, ``block_size`` long) does; as a slice into the block."""
    if start < 0:
        stop = max(stop, min(-start, size))
    if stop > size:
        start = min(start, max(2 * size - stop, 0))
    start, stop = min(start, size - 1), max(stop, 1)  # it must reach the scene
    start, stop = max(start, block_start), min(stop, block_start + block_size)
    return slice(start - block_start, stop - block_start)
