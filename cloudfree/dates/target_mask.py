"""The target scene's mask block by block, as the reference dates see it: the single-date mask,
less what the dates' temporal test (``temporal_mask.py``) finds cloud once it is calibrated.

With the shadow test and ``tie_shadows`` (``remove``), only the shadows the target's clouds
cast (``shadow.tied_shadows``) stay shadow in the single-date mask: they leave the fits and the
test's noise, while the rest of the dark land the scene-relative test flags (dark fields and
forest every date shows dark) is land to fit on. Left in, the shadows of the bundled series'
cumulus of 5 July (a fifth of the scene) pulled the local lines down to them and made the NIR and
SWIR noise five times larger, and the test found none of them dark against the dates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np
from scipy import ndimage

from cloudfree.dates.temporal_mask import REACH, Background, TemporalMask
from cloudfree.io.decoded_scene import DecodedScene
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.classified_scene import ClassifiedScene
from cloudfree.mask.classify import CLEAR, CLOUD, SHADOW, MaskParams, ShadowThresholds
from cloudfree.mask.scene_input import mask_reader, read_keeping
from cloudfree.mask.shadow import tie_reach, tied_shadows

#: Where the temporal test does not weigh the references (no aerosol or cirrus band: L2A), the
#: pixels it finds cloud leave the fits' clear pixels only where their single-date score
#: exceeds this share of the mask's threshold: thin cloud the single-date mask leaves clear
#: bent every line towards it, a bias that followed the target whichever reference was given
#: (benchmarks/records/l2a.md). The score keeps in the fits the clear land beside the clouds that
#: blue alone also flags: without it the L2A benchmark's tuning half lost 0.42 dB; with 0.5
#: (and 0.1) no tuning case moved by more than 0.06 dB.
THIN_SCORE = 0.5
#: Where the temporal test does not weigh the references, the fits' clear pixels may also leave
#: out the pixels within this many px of the cloud they leave out (``TargetMask.fringe``), when
#: those pixels are hazy (``statistics.ring_clear``): the veiled edge of a thin cloud that
#: neither mask sees lies there, in the cells whose lines fill the cloud.
FRINGE = 5
#: Pixels around the shadows the target's clouds cast that leave the fits with them: the
#: penumbra, darkened less than the shadow test asks, pulled the lines down as the shadows did.
#: Chosen on the bundled series, not on the pool: of its shadows the test then found 38 % with
#: 5 px, 76 % with 10.
SHADOW_BUFFER = 10


class TargetMask:
    """The target's reflectance and classes of any block, in ``bands``."""

    def __init__(self, scene: Sentinel2, bands: Sequence[str], params: MaskParams,
                 shadow: ShadowThresholds | None, decoded: DecodedScene | None = None,
                 tie_shadows: bool = False) -> None:
        self.scene, self.bands, self.params, self.shadow = scene, tuple(bands), params, shadow
        #: whether only the shadows its clouds cast (``shadow.offset``) are shadow, as
        #: ``remove`` fills them; else all the dark land the shadow test flags, as ``mask``
        self.tie_shadows = tie_shadows
        #: the target as a first pass decoded it, read back where it holds ``bands``
        self.decoded = decoded
        #: the dates' test, once the statistics pass has made it (``DateStatistics.fit``)
        self.temporal: TemporalMask | None = None
        #: px around the cloud the test finds that ``clear`` leaves out with it (0: none)
        self.fringe = 0
        #: its single-date classes and score by cloud buffer, kept as the first pass over the
        #: scene classifies them (``keep_classes``), read back by every later one
        self.classified: dict[int, ClassifiedScene] = {}

    def keep_classes(self, block: int, buffers: Iterable[int | None]) -> None:
        """From now on, keep its classes with each cloud buffer of ``buffers`` (None: the
        mask's) as a pass over the scene in windows of ``block`` px classifies them, for the
        later passes to read back: in scratches beside its decoded copy, whose room holds them
        too (``ClassifiedScene.beside``); without one, or where one cannot be made or a write
        fails, it is classified each time."""
        if self.decoded is None:
            return
        for buffer in buffers:
            buffer = self.params.buffer if buffer is None else buffer
            if buffer not in self.classified:
                kept = ClassifiedScene.beside(self.decoded.folder, self.scene.height,
                                              self.scene.width, block)
                if kept is not None:
                    self.classified[buffer] = kept

    def classes(self, top: int, left: int, height: int, width: int, buffer: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The target's reflectance, single-date classes, classes by the temporal test (the
        single-date ones before it is calibrated) and single-date score of a block (the mask's
        cloud buffer ``buffer``, when given)."""
        return self._read(top, left, height, width, buffer)[:4]

    def clear(self, top: int, left: int, height: int, width: int, buffer: int | None = None,
              fringe: int | None = None) -> tuple[np.ndarray, np.ndarray, Background | None]:
        """The target's reflectance and clear mask of a block: by the single-date mask (with
        ``buffer``, when given), less what the temporal test finds cloud once it is calibrated
        (where the test does not weigh the references, only where the single-date score is
        above ``THIN_SCORE`` of its threshold, and with a ``fringe``, default ``self.fringe``,
        the pixels within ``fringe`` px of that too); and the background that judged it (None
        before)."""
        refl, clear, _, background = self.clears(top, left, height, width, buffer, fringe)
        return refl, clear, background

    def clears(self, top: int, left: int, height: int, width: int, buffer: int | None = None,
               fringe: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Background | None]:
        """As ``clear``, with the single-date mask's clear pixels (with ``buffer``) between the
        reflectance and the background: the clear mask is a part of them."""
        fringe = self.fringe if fringe is None else fringe
        judging = self.temporal is not None and self.temporal.calibrated
        refl, single, judged, score, background = self._read(
            top, left, height, width, buffer, fringe if judging else 0)
        cloud = judged == CLOUD
        if self.temporal is not None and not self.temporal.weighs:
            cloud &= score > THIN_SCORE * self.params.threshold
        if fringe and judging:
            cloud = ndimage.distance_transform_edt(~cloud) <= fringe
            inner = (slice(fringe, fringe + height), slice(fringe, fringe + width))
            cloud, background = cloud[inner], background.crop(*inner)
        clear = single == CLEAR
        return refl, clear & ~cloud, clear, background

    def _read(self, top: int, left: int, height: int, width: int, buffer: int | None,
              fringe: int = 0):
        """``classes`` and the block's background (None before the temporal test is
        calibrated); with a ``fringe``, the classes by the temporal test and the background
        reach ``fringe`` px beyond the block."""
        judging = self.temporal is not None and self.temporal.calibrated
        params = self.params if buffer is None else replace(self.params, buffer=buffer)
        halo = REACH + fringe if judging else 0
        tying = params.shadow and self.tie_shadows
        tie = tie_reach(self.shadow.offset) if tying else 0  # none where no cloud casts one
        if tie:  # and the penumbra's
            tie += SHADOW_BUFFER
        refl, _, classes, score = read_keeping(
            mask_reader(self.scene, self.bands, params, self.decoded), top, left, height,
            width, (self.scene.height, self.scene.width), halo + tie, params, self.bands,
            self.shadow, self.classified.get(params.buffer))
        if tying:
            classes = tied_shadows(refl, classes, self.shadow.offset, self.bands,
                                   (top - halo - tie, left - halo - tie))
        if tie:
            if SHADOW_BUFFER:  # and their penumbra
                penumbra = ndimage.binary_dilation(classes == SHADOW, iterations=SHADOW_BUFFER)
                classes = np.where(penumbra & (classes == CLEAR), SHADOW, classes).astype(
                    classes.dtype)
            window = (slice(tie, -tie), slice(tie, -tie))
            refl, classes, score = refl[:, window[0], window[1]], classes[window], score[window]
        inner = (slice(halo, halo + height), slice(halo, halo + width))
        judged, background = classes[inner], None
        if judging:
            # the test judges the block from the REACH px around it, whose classes are exact:
            # the background there alone, so that the references are read with their mask's
            # context around that, not around the mask's context too
            reach = REACH + fringe
            background = self.temporal.background(top, left, height, width, reach)
            judged = self.temporal.classify(refl, self.bands, classes,
                                            score > self.params.threshold, background)
            within = (slice(REACH, REACH + height + 2 * fringe),
                      slice(REACH, REACH + width + 2 * fringe))
            judged, background = judged[within], background.crop(*within)
        scored = (slice(halo - fringe, halo + height + fringe),
                  slice(halo - fringe, halo + width + fringe))
        return refl[:, inner[0], inner[1]], classes[inner], judged, score[scored], background

    def close(self) -> None:
        """Give the kept classes' and backgrounds' scratches back."""
        for kept in self.classified.values():
            kept.close()
        if self.temporal is not None:
            self.temporal.close()
