"""The passes over a whole scene before ``remove`` fills it chunk by chunk: the shadow
thresholds, the offset from its clouds to their shadows, and its clear-sky statistics (the fill
spectrum and the bounds of its clear land), each window read with its context and classified on
every core (``classified_windows``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import closing
from dataclasses import replace
from typing import TypeVar

import numpy as np
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError
from cloudfree.core.progress import progress
from cloudfree.core.stop import check_stop
from cloudfree.core.threads import ordered_map, usable_cores
from cloudfree.fill.median import ClearHistogram, FillSpectrum, window_counts
from cloudfree.fill.restore import LandBounds, LandHistogram
from cloudfree.io.rasters import block_windows
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.bright_land import SEED_REACH, ParallaxIndex, confirmed_reach
from cloudfree.mask.classified_scene import ClassifiedScene
from cloudfree.mask.classify import (
    CLEAR,
    CLOUD,
    NODATA,
    SHADOW,
    MaskParams,
    ShadowThresholds,
)
from cloudfree.mask.decoded_copy import fill_copy
from cloudfree.mask.scene_input import (
    MaskedWindow,
    MaskInput,
    Pads,
    SceneCopy,
    mask_input,
    read_masked,
    stored_reader,
    takes_scl,
)
from cloudfree.mask.shadow import NEAR as SHADOW_NEAR
from cloudfree.mask.shadow import (
    OFFSET_REACH,
    offset_counts,
    scene_offset,
    shadow_like,
    tie_reach,
    tied_shadows,
)
from cloudfree.pipeline.mask import scene_shadow_thresholds

#: What a job returns for each window of a pass over the scene (``classified_windows``).
Result = TypeVar("Result")


def fill_mask(classes: np.ndarray, params: MaskParams) -> np.ndarray:
    """The pixels to replace: clouds, and shadows when the mask has them."""
    fill = classes == CLOUD
    if params.shadow:
        fill |= classes == SHADOW
    return fill


def corner(top: int, left: int, halo: int) -> tuple[int, int]:
    """Scene coordinates of the first pixel of a window whose own first pixel is at ``top``,
    ``left``, read with ``halo`` px around it."""
    return top - halo, left - halo


def first_passes(s2: Sentinel2, bands: tuple[str, ...], params: MaskParams, fill: bool,
                 tie_shadows: bool, quiet: bool, abandon: threading.Event | None = None,
                 copy: SceneCopy | None = None, kept: ClassifiedScene | None = None,
                 judged: bool = False
                 ) -> tuple[ShadowThresholds | None, tuple[FillSpectrum, LandBounds] | None]:
    """The passes over the scene that need no Sentinel-1, run beside its co-registration: the
    shadow thresholds (with ``params.shadow``) and, with ``tie_shadows``, the offset from the
    clouds to their shadows; then (with ``fill``) the clear-sky statistics
    (``scene_fill_spectrum``); with ``copy``, the
    scene (every band of ``bands``) is decoded and kept there first (``fill_copy``) and all
    read it back; with ``kept``, the first of them keeps the scene's classes there and the
    second reads them back (``classified_windows``); stopped early once ``abandon`` is set.
    ``judged``: other dates judge the clouds (``scene_shadow_offset``)."""
    shadow = None
    if params.shadow:
        read = None
        if copy is not None:  # the scene decoded and kept first, read back from then on
            fill_copy(copy, stored_reader(s2, bands, params), quiet, abandon)
            read = copy.read
        # decoded on one thread where none is kept: a JPEG2000 tile of B11 spans 2 x 2 windows,
        # and every thread reading part of it would decode it whole
        shadow = scene_shadow_thresholds(s2, block_windows(s2.width, s2.height), quiet,
                                         1 if read is None else usable_cores(), read)
        if tie_shadows:
            shadow = replace(shadow, offset=scene_shadow_offset(s2, bands, params, shadow,
                                                                quiet, abandon, copy, kept,
                                                                judged))
    if not fill:
        return shadow, None
    return shadow, scene_fill_spectrum(s2, bands, params, shadow, quiet, tie_shadows, abandon,
                                       copy, kept)


def classified_windows(s2: Sentinel2, bands: tuple[str, ...], params: MaskParams,
                       shadow: ShadowThresholds | None, halo: int,
                       job: Callable[[Window, MaskedWindow, ParallaxIndex], Result], label: str,
                       quiet: bool,
                       abandon: threading.Event | None = None,
                       copy: SceneCopy | None = None, kept: ClassifiedScene | None = None
                       ) -> Iterator[Result]:
    """``job(window, MaskedWindow, ParallaxIndex)`` on every block of the scene, read with
    ``halo`` px of context and classified (its parallax index kept where the mask computed
    it), on every core; yields the results in order. With ``copy``, the
    scene is kept there first (``fill_copy``; unless an earlier pass kept it) and the windows
    with their margins read back from it. With ``kept``, each window's classes are kept there
    as they are classified, or, where an earlier pass kept them all, read back from it instead.
    Once ``abandon`` is set (the caller failed), or a
    stop was asked for, it raises CancelledError, or Interrupted, after the windows being
    read."""
    decode = stored_reader(s2, bands, params)
    if copy is not None:
        if not copy.decoded.complete:
            fill_copy(copy, decode, quiet, abandon)
        if copy.decoded.complete:  # else (a write failed) decoded again, margins and all
            decode = copy.decoded.read
    windows = block_windows(s2.width, s2.height)
    storing = kept is not None and not kept.complete
    if storing and kept.windows != windows:
        raise ValueError("the kept classes are laid out in other windows than the pass's")

    def one(index: int) -> Result:
        win = windows[index]
        top, left, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)

        def read(grown: Window, pads: Pads | None = None) -> MaskInput:
            return mask_input(s2.reflectance, decode(grown), pads)

        parallax = ParallaxIndex()
        window = read_masked(read, top, left, h, w, (s2.height, s2.width), halo, params, bands,
                             shadow, None if storing else kept, parallax)
        if storing:
            inner = (slice(halo, halo + h), slice(halo, halo + w))
            kept.store(index, window.classes[inner], window.score[inner])
        return job(win, window, parallax)

    # windows are read and classified on every core; each thread returns only its result.
    # Closed (its threads joined) before the scene's datasets, even on a stop.
    with closing(ordered_map(one, range(len(windows)), usable_cores())) as results:
        for result in progress(results, len(windows), label, quiet):
            check_stop()  # this may run on a thread of its own, which signals do not reach
            if abandon is not None and abandon.is_set():
                raise CancelledError
            yield result


def scene_shadow_offset(s2: Sentinel2, bands: tuple[str, ...], params: MaskParams,
                        shadow: ShadowThresholds, quiet: bool,
                        abandon: threading.Event | None = None,
                        copy: SceneCopy | None = None, kept: ClassifiedScene | None = None,
                        judged: bool = False) -> tuple[int, int] | None:
    """First pass: the offset from the scene's clouds to their shadows (``shadow.scene_offset``;
    None: none is cast). Reads as ``classified_windows``. With the bright-land test, only
    confirmed clouds (``confirmed_reach``, with their parallax) cast shadows: what is left of bright
    land in the mask casts none. ``judged``: other dates judge the clouds (``temporal_mask.py``),
    and the clouds that cast are those their test starts from, without the bright-land test:
    every pixel scoring above the threshold, confirmed or not."""
    # the score is the same with the bright-land test or without: the cloud without it is every
    # pixel above the threshold (snow scores 0), where no scene classification gives the classes
    scored = judged and not takes_scl(s2, params)
    confirm = params.land and not judged  # which takes the classes exact SEED_REACH px around
    halo = params.halo + OFFSET_REACH + (SEED_REACH if confirm else 0)

    def job(win: Window, window: MaskedWindow, parallax: ParallaxIndex) -> np.ndarray:
        refl, valid, classes, score = window
        h, w = int(win.height), int(win.width)
        rows = np.arange(-halo, h + halo) + int(win.row_off)
        cols = np.arange(-halo, w + halo) + int(win.col_off)
        inside = valid & ((rows >= 0) & (rows < s2.height))[:, None] \
            & ((cols >= 0) & (cols < s2.width))[None, :]
        cloud = (score > params.threshold) & inside  # NaN: no cloud
        if not scored:
            cloud &= classes == CLOUD
        inner = (slice(halo, halo + h), slice(halo, halo + w))
        if confirm and cloud[inner].any():  # the confirmed clouds are among these
            cloud = confirmed_reach(refl, bands, cloud, score, valid, parallax) > 0
        if not cloud[inner].any():  # nothing to displace: the counts are 0
            return offset_counts(cloud, cloud, inner, inside)
        like = shadow_like(refl, classes == SHADOW, classes == CLEAR, bands,
                           corner(int(win.row_off), int(win.col_off), halo)) >= 0.5
        return offset_counts(like, cloud, inner, inside)

    return scene_offset(sum(classified_windows(s2, bands, params, shadow, halo, job,
                                               "shadow offset", quiet, abandon, copy, kept)))


def scene_fill_spectrum(s2: Sentinel2, bands: tuple[str, ...], params: MaskParams,
                        shadow: ShadowThresholds | None, quiet: bool,
                        tie_shadows: bool = False, abandon: threading.Event | None = None,
                        copy: SceneCopy | None = None, kept: ClassifiedScene | None = None
                        ) -> tuple[FillSpectrum, LandBounds]:
    """First pass: the clear-sky median of every band over the scene (``fill.py``) and the
    bounds of its clear land that restored land is held to (``restore.py``), the same for every
    chunk; ``tie_shadows``: flagged shadows not tied to a cloud (by ``shadow.offset``) count as
    clear, as restoring takes them (``shadow.tied_shadows``). Reads as
    ``classified_windows``."""
    if tie_shadows and tie_reach(shadow.offset):
        # the clouds whose shadows are tied around, and the mask's context: a tie's weights
        # change with the window beyond its reach, so read back or not, the same window
        halo = params.halo + SHADOW_NEAR
    else:  # the job reads the window alone: the mask's context only to classify it again
        halo = 0 if kept is not None and kept.complete else params.halo

    def job(win: Window, window: MaskedWindow, _: ParallaxIndex
            ) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray]]:
        refl, valid, classes, _ = window
        if tie_shadows:
            classes = tied_shadows(refl, classes, shadow.offset, bands,
                                   corner(int(win.row_off), int(win.col_off), halo))
        inner = (slice(halo, halo + int(win.height)), slice(halo, halo + int(win.width)))
        classes, valid, refl = classes[inner], valid[inner], refl[:, inner[0], inner[1]]
        clear = valid & ~fill_mask(classes, params) & (classes != NODATA)
        return (window_counts(refl, clear), int(valid.sum()),
                LandHistogram.window(refl, valid & (classes == CLEAR), bands))

    histogram, land = ClearHistogram(len(bands)), LandHistogram(bands)
    for counts, valid, land_counts in classified_windows(s2, bands, params, shadow, halo, job,
                                                         "fill statistics", quiet, abandon,
                                                         copy, kept):
        histogram.merge(counts, valid)
        land.merge(*land_counts)
    if histogram.valid == 0:  # said before any note on how the clouds would be filled
        raise CloudfreeError(f"{s2.path}: every pixel is nodata; nothing to do")
    return histogram.spectrum(bands=bands), land.bounds()
