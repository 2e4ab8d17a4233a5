"""A scene decoded once before the passes that read it: each window of a
:class:`~cloudfree.mask.scene_input.SceneCopy` decoded as it is, with no margin, and kept in its
:class:`~cloudfree.io.decoded_scene.DecodedScene`, for the passes to read back with the margins
they need."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from contextlib import closing
from pathlib import Path

from rasterio.windows import Window

from cloudfree.core.progress import progress
from cloudfree.core.stop import check_stop
from cloudfree.core.threads import ordered_map, usable_cores
from cloudfree.io.decoded_scene import DecodedScene, ScratchRoom, Stored
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.classify import MaskParams
from cloudfree.mask.scene_input import SceneCopy, stored_reader, takes_scl


def fill_copy(copy: SceneCopy, decode: Callable[[Window], Stored], quiet: bool,
               abandon: threading.Event | None = None, threads: int | None = None,
               desc: str = "read") -> None:
    """Decode each of ``copy``'s windows as it is, with no margin, and keep it, on ``threads``
    (default: every core), the windows of one tile of the input on one thread
    (``SceneCopy.tile_groups``), unless that leaves a thread idle. A JPEG2000 tile is
    decoded by each read that takes part of it, unless the same dataset handle read it just
    before: on the 2048^2 L1C ``.SAFE`` of ``benchmarks/safe_speed.py`` (1024 px tiles), 5 px
    margins on 2 threads took three times the CPU, and at 4096^2 the windows of a 20 m tile
    split over 2 threads twice the CPU. Once ``abandon`` is set (the caller failed), or a stop
    was asked for, it raises CancelledError, or Interrupted, after the windows being read."""
    threads = threads or usable_cores()
    groups = copy.tile_groups()
    if len(groups) < threads:  # a small scene: each thread decoding beats decoding once
        groups = [[index] for index in range(len(copy.windows))]

    def one(group: list[int]) -> None:
        for index in group:
            window = copy.windows[index]
            copy.store(index, window, decode(window))

    with closing(ordered_map(one, groups, threads)) as done:
        for _ in progress(done, len(groups), desc, quiet):
            check_stop()
            if abandon is not None and abandon.is_set():
                raise CancelledError


def decoded_copy(s2: Sentinel2, output: Path | str, bands: Sequence[str], params: MaskParams,
                 quiet: bool, threads: int | None = None, desc: str = "read",
                 room: ScratchRoom | None = None, every_format: bool = False
                 ) -> SceneCopy | None:
    """A JPEG2000 scene's ``bands`` (and the SCL the mask takes) decoded once, each window as
    it is (``fill_copy``), into a scratch beside ``output`` (``DecodedScene``, which the caller
    closes), for the passes to read back with the margins they need: read from the input, a
    margin decodes the tiles beside the window too. None for other inputs (a margin costs them
    a few rows) unless ``every_format`` (a reference, read by several passes: each would
    decode it again), or where the scratch has no room (the input is then read as it is): in
    ``room``, when given, the run's for all its scenes (``ScratchRoom``)."""
    if not (s2.jpeg2000 or every_format):
        return None
    decoded = DecodedScene.beside(output, s2, bands, takes_scl(s2, params), room)
    if decoded is None:
        return None
    copy = SceneCopy(s2, decoded)
    try:
        fill_copy(copy, stored_reader(s2, bands, params), quiet, threads=threads, desc=desc)
    except BaseException:
        decoded.close()
        raise
    finally:
        copy.end()
    return copy
