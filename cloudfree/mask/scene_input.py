"""How the mask reads a scene: its bands, valid pixels and, where it has one and the options
take it, its scene classification; decoded from the input, or read back from a
:class:`~cloudfree.io.decoded_scene.DecodedScene`."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from rasterio.windows import Window, intersect

from cloudfree.io.decoded_scene import DecodedScene, Stored
from cloudfree.io.rasters import halo_pads, mirror_pads, mirrors_once, read_padded, within_scene
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.bright_land import ParallaxIndex
from cloudfree.mask.classified_scene import ClassifiedScene
from cloudfree.mask.classify import CLOUD, SNOW, SNOW_REACH, MaskParams, ShadowThresholds, classify
from cloudfree.mask.given import given_scl

#: The mask's input of a window: reflectance, valid pixels, scene classification (or None).
MaskInput = tuple[np.ndarray, np.ndarray, np.ndarray | None]
#: Pixels mirrored outside a window: (top, bottom), (left, right).
Pads = tuple[tuple[int, int], tuple[int, int]]
#: read(window, bands) -> reflectance [len(bands), h, w] and valid pixels, as
#: :meth:`Sentinel2.read` gives them.
S2Reader = Callable[[Window, Sequence[str]], tuple[np.ndarray, np.ndarray]]
#: reflectance(raw, valid, out=None) -> reflectance and valid pixels of stored values, as
#: :meth:`Sentinel2.reflectance` makes them.
Reflectance = Callable[..., tuple[np.ndarray, np.ndarray]]


class MaskedWindow(NamedTuple):
    """A window read with a margin around it: reflectance [C, H, W], valid pixels, the mask's
    classes and cloud score [H, W]."""

    refl: np.ndarray
    valid: np.ndarray
    classes: np.ndarray
    score: np.ndarray


class ClassifiedWindow(NamedTuple):
    """A window read with a margin around it and classified: reflectance [C, H, W], valid
    pixels, the scene classification the mask took (None: the score decided), the mask's
    classes and cloud score [H, W]."""

    refl: np.ndarray
    valid: np.ndarray
    scl: np.ndarray | None
    classes: np.ndarray
    score: np.ndarray


def classify_window(read: Callable[..., MaskInput], top: int, left: int, height: int,
                    width: int, scene: tuple[int, int], halo: int, params: MaskParams,
                    bands: Sequence[str], shadow: ShadowThresholds | None = None,
                    pads_itself: bool = True, index: ParallaxIndex | None = None
                    ) -> ClassifiedWindow:
    """Rows and columns [top, top+height) x [left, left+width) of a scene of ``scene`` (height,
    width) px, read by ``read`` (a :func:`mask_reader`) with ``halo`` px of context (mirrored
    outside the scene, see ``io.rasters.read_padded``), and classified as the mask does: the
    tests' squares count the scene's pixels alone, what lies beyond its edge as no data (a roof
    at the edge is judged by the land beside it, not by its own mirror image; ``classify``'s
    ``inside``), and the classes and score there are the mirror of those within. A window
    that holds snow and cloud is read again with the snow cores' context (``SNOW_REACH``)
    around the halo and classified with it; the caller's context stays the halo it asks for.
    ``index``: where the window's parallax index is kept (``classify``)."""
    refl, valid, scl = read_padded(read, top, left, height, width, *scene, halo,
                                   pads_itself=pads_itself)
    pads = halo_pads(top, left, height, width, *scene, halo)[1]
    classes, score = classify(refl, valid, params, bands, shadow, scl, cores=False,
                              index=index, inside=_inside(valid, pads))
    if scl is None and (classes == SNOW).any() and (classes == CLOUD).any():  # snow cores
        wide = read_padded(read, top, left, height, width, *scene, halo + SNOW_REACH,
                           pads_itself=pads_itself)
        inside = _inside(wide[1], halo_pads(top, left, height, width, *scene,
                                            halo + SNOW_REACH)[1])
        inner = (slice(SNOW_REACH, -SNOW_REACH), slice(SNOW_REACH, -SNOW_REACH))
        classes, score = (x[inner] for x in classify(*wide[:2], params, bands, shadow,
                                                     wide[2], inside=inside))
    return ClassifiedWindow(refl, valid, scl, mirror_pads(classes, pads),
                            mirror_pads(score, pads))


def _inside(valid: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]
            ) -> np.ndarray | None:
    """``classify``'s ``inside`` for a window read with ``pads`` mirrored beyond the scene's
    edge: None where it lies within the scene."""
    return within_scene(valid, pads) if any(sum(pads, ())) else None


def read_classified(read: Callable[..., MaskInput], top: int, left: int, height: int,
                    width: int, scene: tuple[int, int], halo: int, params: MaskParams,
                    bands: Sequence[str], shadow: ShadowThresholds | None = None,
                    pads_itself: bool = True, index: ParallaxIndex | None = None
                    ) -> MaskedWindow:
    """:func:`classify_window`'s window without the scene classification."""
    window = classify_window(read, top, left, height, width, scene, halo, params, bands,
                             shadow, pads_itself, index)
    return MaskedWindow(window.refl, window.valid, window.classes, window.score)


def read_masked(read: Callable[..., MaskInput], top: int, left: int, height: int, width: int,
                scene: tuple[int, int], halo: int, params: MaskParams, bands: Sequence[str],
                shadow: ShadowThresholds | None = None, kept: ClassifiedScene | None = None,
                index: ParallaxIndex | None = None, pads_itself: bool = True,
                planes: Sequence[int] | None = None) -> MaskedWindow:
    """:func:`read_classified`'s window (``index``: where its parallax index is kept); where
    ``kept`` holds the whole scene's classes, only the reflectance is read (by ``read``) and
    the classes and score are read back from it: the same, exact to the window's edge. With
    ``planes``, the reflectance of those of ``bands`` only (indices): read alone where the
    classes are read back (``read`` takes ``planes`` then, and gives the valid pixels of these
    bands), else cut from the window classified."""
    if kept is None or not kept.complete:
        window = read_classified(read, top, left, height, width, scene, halo, params, bands,
                                 shadow, pads_itself, index)
        return window if planes is None else window._replace(refl=window.refl[planes])
    if planes is not None:
        read = functools.partial(read, planes=planes)
    refl, valid, _ = read_padded(read, top, left, height, width, *scene, halo,
                                 pads_itself=pads_itself)
    return MaskedWindow(refl, valid, *kept.around(top, left, height, width, halo))


def read_keeping(read: Callable[..., MaskInput], top: int, left: int, height: int, width: int,
                 scene: tuple[int, int], halo: int, params: MaskParams, bands: Sequence[str],
                 shadow: ShadowThresholds | None = None, kept: ClassifiedScene | None = None,
                 pads_itself: bool = True, same_read: bool = False,
                 planes: Sequence[int] | None = None) -> MaskedWindow:
    """A window with ``halo`` px around it whose classes are exact there: classified with the
    mask's context (``params.halo``) around the halo, then cropped to it, and kept in ``kept``
    where the window is one of its windows; or, once ``kept`` holds the whole scene's, read
    back from it, only the reflectance read, and without that context unless ``same_read``
    (a reader whose values depend on the window it fills, as a warp's rounding does). A
    window whose read mirrors more than the scene's edge (``mirrors_once``: a narrow window
    reaching far beyond the scene) is read and classified as if none were kept, its values
    there depending on the context read. ``planes``: as :func:`read_masked`'s."""
    complete = kept is not None and kept.complete
    back = complete and mirrors_once(top, left, height, width, *scene, params.halo + halo)
    narrow = back and not same_read and mirrors_once(top, left, height, width, *scene, halo)
    margin = 0 if narrow else params.halo
    context = margin + halo
    window = read_masked(read, top, left, height, width, scene, context, params, bands, shadow,
                         kept if back else None, pads_itself=pads_itself, planes=planes)
    place = None if kept is None or complete else kept.place(top, left, height, width)
    if place is not None:
        block = (slice(context, context + height), slice(context, context + width))
        kept.store(place, window.classes[block], window.score[block])
    if not margin:
        return window
    rows, cols = slice(margin, context + height + halo), slice(margin, context + width + halo)
    return MaskedWindow(window.refl[:, rows, cols], window.valid[rows, cols],
                        window.classes[rows, cols], window.score[rows, cols])


def takes_scl(s2: Sentinel2, params: MaskParams) -> bool:
    """Whether the mask takes the scene's classification."""
    return params.scl and s2.has_scl


def stored_reader(s2: Sentinel2, bands: Sequence[str], params: MaskParams
                  ) -> Callable[..., Stored]:
    """read(window, planes=None) -> the stored values of ``bands`` (with ``planes``, of those
    of them only: indices), their validity and the scene classification the mask takes (None:
    the score decides), decoded from the input."""
    use_scl = takes_scl(s2, params)
    if use_scl:
        s2.warn_unknown_scl()

    def read(window: Window, planes: Sequence[int] | None = None) -> Stored:
        raw, valid = s2.read_dn(window, bands if planes is None else [bands[i] for i in planes])
        if not use_scl:
            return raw, valid, None
        return raw, valid, given_scl(s2, window) if s2.given_mask else s2.read_scl(window)

    return read


def mask_input(reflectance: Reflectance, stored: Stored, pads: Pads | None = None
               ) -> MaskInput:
    """The mask's input from stored values, converted by ``reflectance`` (a scene's
    :meth:`Sentinel2.reflectance`); with ``pads`` (rows, cols), mirrored that far outside (as
    ``io.rasters.read_padded``), the reflectance converted into the middle of its padded array
    rather than copied there."""
    raw, valid, scl = stored
    if pads is None:
        return (*reflectance(raw, valid), scl)
    (top, bottom), (left, right) = pads
    h, w = raw.shape[1:]
    refl = np.empty((raw.shape[0], top + h + bottom, left + w + right), np.float32)
    _, valid = reflectance(raw, valid, refl[:, top:top + h, left:left + w])
    return mirror_pads(refl, pads), np.pad(valid, pads, mode="symmetric"), \
        None if scl is None else np.pad(scl, pads, mode="symmetric")


def mask_reader(s2: Sentinel2, bands: Sequence[str], params: MaskParams,
                decoded: DecodedScene | None = None
                ) -> Callable[..., MaskInput]:
    """read(window, pads=None, planes=None) -> the reflectance of ``bands`` (with ``planes``,
    of those of them only: indices, the valid pixels then those of these bands), the valid
    pixels and the scene classification the mask takes (None: the score decides), padded as
    :func:`mask_input`; read back from ``decoded`` when it holds the whole scene in these
    bands, else decoded from the input."""
    kept = decoded is not None and decoded.complete and decoded.bands == tuple(bands)
    source = decoded.read if kept else stored_reader(s2, bands, params)

    def read(window: Window, pads: Pads | None = None, planes: Sequence[int] | None = None
             ) -> MaskInput:
        return mask_input(s2.reflectance, source(window, planes), pads)

    return read


class SceneCopy:
    """Windows of a scene as :meth:`Sentinel2.read` gives them, taken from the
    :class:`~cloudfree.io.decoded_scene.DecodedScene` a first pass fills (:meth:`store`) while it
    is being filled, a read waiting for the windows it needs, rather than decoded again (the
    co-registration's, beside the clear-sky statistics). Decoded where the copy cannot give
    them exactly: bands it lacks, a window where the input's masks leave out a pixel (the
    validity kept is that of all its bands together, not of the bands asked for), or once the
    pass has ended without storing them (:meth:`end`) or keeping it failed."""

    def __init__(self, s2: Sentinel2, decoded: DecodedScene) -> None:
        self.s2, self.decoded = s2, decoded
        #: windows a tile of the input spans across and down (``Sentinel2.tiles_across``)
        self.across = s2.tiles_across(int(decoded.windows[0].width))
        self._changed = threading.Condition()
        self._stored: set[int] = set()
        self._ended = False

    @property
    def windows(self) -> list[Window]:
        """The windows the pass stores, in order (the decoded scene's)."""
        return self.decoded.windows

    def store(self, index: int, grown: Window, stored: Stored) -> None:
        """``DecodedScene.store``, then wake the reads waiting for window ``index``."""
        self.decoded.store(index, grown, stored)
        with self._changed:
            self._stored.add(index)
            self._changed.notify_all()

    def tile_groups(self) -> list[list[int]]:
        """The indices of :attr:`windows` by the input's tiles (:attr:`across`), in order:
        read one after the other on one thread, a tile is decoded once."""
        cols = sum(window.row_off == 0 for window in self.windows)
        groups: dict[tuple[int, int], list[int]] = {}
        for index in range(len(self.windows)):
            row, col = divmod(index, cols)
            groups.setdefault((row // self.across, col // self.across), []).append(index)
        return list(groups.values())

    def wait(self) -> None:
        """Until every window is stored, or the first pass has ended (:meth:`end`)."""
        with self._changed:
            self._changed.wait_for(lambda: self._ended
                                   or len(self._stored) == len(self.windows))

    def end(self) -> None:
        """The first pass is over (done, failed or stopped): reads wait no longer."""
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def read(self, window: Window, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Reflectance [len(bands), h, w] and valid pixels of ``window``."""
        decoded = self.decoded
        if set(bands) <= set(decoded.bands):
            needed = {i for i, tile in enumerate(decoded.windows) if intersect(tile, window)}
            with self._changed:
                self._changed.wait_for(lambda: self._ended or needed <= self._stored)
                kept = needed <= self._stored
            if kept and not decoded.failed:
                try:
                    raw, valid, _ = decoded.read(window, [decoded.bands.index(b) for b in bands])
                except OSError:  # its file emptied by a failed write meanwhile
                    raw = valid = None
                # checked after the read: a write failing during it voids what it read
                if valid is not None and not decoded.failed and valid.all():
                    return self.s2.reflectance(raw, None)
        return self.s2.read(window, bands)
