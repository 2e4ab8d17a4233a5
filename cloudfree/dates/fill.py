"""Fill the target's masked pixels from reference dates (``remove --reference``).

The references are opened (``opening.py``) and fitted by the statistics pass
(``statistics.py``); then ``ReferenceFill.estimate`` fills each block the target pipeline
composites (planned in the blocks' order, filled beside the blocks before and after it), by
strips of ``STRIP_COLUMNS`` columns, one reference after another, so memory depends neither
on the scene size nor on the number of references: each reference clear at a
masked target pixel (its own mask, and no S1 change) gives the value its smooth field of fits
predicts; the references' predictions are averaged with weights (``weights.py``: 1 / residual
variance of their fits there) ** ``WEIGHT_POWER`` x exp(-days apart / ``TIME_SCALE``, stretched
where the dates would lean on too few, ``MIN_SPREAD``) x a ramp over ``EDGE_RAMP`` px from the
reference's own masked pixels (``edge_ramp``), band by band (``COMBINE = "weighted"``: a
reference that predicts the target well there counts much more), or the nearest date alone is
taken (``"nearest"``, which measured worse). The groups of dates fitted jointly
(``joint_fit.py``) add their predictions where all their dates are clear. Where three or more
are clear, the one the others contradict beyond what their residuals explain is dropped at that
pixel (``agreement.py``, ``AGREEMENT``). Where the nearest mostly clear dates are all clear and
none was dropped, a share ``similar_pixels.SIMILAR`` of the fill comes from the target's clear
pixels whose dates look alike (``similar_pixels.py``; their sample is gathered in the
statistics pass), at the pixels filled only: the clear pixels whose residual ``residual.py``
carries in are predicted by the dates alone, and not searched for. The source map
(``report.py``) names, per pixel, the reference with the largest weight (among those kept).

With the temporal mask, a reference's weight at a pixel is multiplied by its agreement with the
others there (``temporal_mask.py``); only with aerosol, blue and cirrus
(``TemporalMask.weighs``): without them the test decides only what is filled.

Pixels no reference sees clear are left to the single-date model; clear target pixels are
never touched (the composite keeps them), and the fill ramps in over the feather at cloud edges
like the model's prediction.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from cloudfree.core.distance import squared_distance
from cloudfree.dates import similar_pixels
from cloudfree.dates.agreement import MIN_AGREEING, Candidates
from cloudfree.dates.dehaze import HazeField, haze_field
from cloudfree.dates.kept import KeptEdges, Slices, mirrored
from cloudfree.dates.radiometry import CELL, MIN_COMMON
from cloudfree.dates.references import CHANGE_BOX, Reference, change_threshold_db, changed
from cloudfree.dates.residual import Limits, penumbra_bands
from cloudfree.dates.statistics import DateStatistics
from cloudfree.dates.temporal_mask import Background
from cloudfree.dates.weights import TimeWeights, reference_weight
from cloudfree.fill.uncertainty import DateTerms

log = logging.getLogger("cloudfree")

#: How references clear at the same pixel are combined: "weighted" or "nearest".
COMBINE = "weighted"
#: Per-pixel agreement check (``agreement.py``): a reference whose prediction differs from the
#: others' by more than this many times what their residuals and scatter explain (mean over
#: bands of the squared standardised difference) is dropped there. None: no check. Chosen on
#: the benchmark's even half of clear targets (every 2nd case, 28): 4 cost 0.60 dB on average,
#: 16 0.02 dB and 64 nothing; 16 is the smallest that costs no more than that. On the odd half,
#: held out, it lifts the worst case from -1.35 to +1.98 dB over the median fill
#: (benchmarks/records/other-dates.md).
AGREEMENT: float | None = 16.0
#: Columns of a block filled at once: bounds the arrays each reference needs (a 256-row strip
#: of 512 columns holds about 7 MB per 13-band float array), whatever the chunk's width.
STRIP_COLUMNS = 512
#: Pixels over which a reference's weight ramps up from its own masked pixels (``edge_ramp``;
#: 0: a step, where a date masked in a small patch left a disc of the other dates' colours with
#: a sharp rim). The mask's default cloud buffer; on the L2A benchmark's targets at odd places
#: in time order it moves no case by more than 0.04 dB (benchmarks/records/l2a.md).
EDGE_RAMP = 5


class Moments(NamedTuple):
    """A strip's sums for the terms of its fill [.., 1, n] (``_accumulate``): the weighted
    squared predictions in the ``bands`` (all: a slice) [B, 1, n], the weighted residual
    variances of the fits [C, 1, n], and the lowest prediction [C, 1, n] (None: not kept)."""

    bands: slice | list[int]
    squares: np.ndarray
    variances: np.ndarray
    lowest: np.ndarray | None

    @classmethod
    def zeros(cls, count: int, bands: slice | list[int], n: int, lowest: bool) -> Moments:
        """Empty sums of ``count`` bands at n pixels, the squares in ``bands``."""
        variances = np.zeros((count, 1, n), np.float32)
        return cls(bands, np.zeros_like(variances[bands]), variances,
                   np.full_like(variances, np.inf) if lowest else None)


@dataclass
class ReferenceBlock:
    """The references' fill of a block: reflectance [13, h, w] and the source [h, w] (0: no
    reference clear there, else the 1-based index of the reference that weighs most)."""

    values: np.ndarray
    source: np.ndarray
    #: the spread of the references' predictions and their fits' residuals (``estimate``'s
    #: ``terms``), for ``uncertainty.py``
    terms: DateTerms | None = None
    #: the RMS over bands [h, w] by which the fill may be off: its fits' residual and the
    #: spread of its predictions (``estimate``'s ``error``), for the restoration of thin cloud
    error: np.ndarray | None = None
    #: what the residual carried in reads of the fill (``estimate``'s ``limits``,
    #: ``residual.py``)
    limits: Limits | None = None

    @property
    def covered(self) -> np.ndarray:
        return self.source > 0

    def crop(self, rows: slice, cols: slice) -> ReferenceBlock:
        return ReferenceBlock(self.values[:, rows, cols], self.source[rows, cols],
                              None if self.terms is None else self.terms.crop(rows, cols),
                              None if self.error is None else self.error[rows, cols],
                              None if self.limits is None else self.limits.crop(rows, cols))


@dataclass
class FillPlan:
    """A block of :meth:`ReferenceFill.plan`: at (``top``, ``left``) of the target grid, the
    pixels asked for [h, w] and those it fills itself (``todo``); ``taken``: (where in the
    block, where in the kept part, the pixels [h', w'], the part's fill once filled) of those it
    takes from the blocks before it; ``promised``: (rows, columns, fill) of what it keeps;
    ``similar``: the pixels [h, w] whose fill takes the similar pixels' share (None: all)."""

    top: int
    left: int
    need: np.ndarray
    todo: np.ndarray
    taken: list[tuple[Slices, Slices, np.ndarray, Future[ReferenceBlock]]]
    similar: np.ndarray | None = None
    promised: list[tuple[slice, slice, Future[ReferenceBlock]]] = field(default_factory=list)

    def promise(self, rows: slice, cols: slice
                ) -> tuple[np.ndarray, Future[ReferenceBlock]]:
        """What the block keeps of its ``rows`` and ``cols`` (``KeptEdges.keep``): the pixels
        asked for there now, their fill once :meth:`ReferenceFill.fill` has it."""
        kept: Future[ReferenceBlock] = Future()
        self.promised.append((rows, cols, kept))
        return self.need[rows, cols].copy(), kept


class ReferenceFill:
    """The references' fill of a target scene's blocks, from what the statistics pass learnt
    of them (``dates``)."""

    def __init__(self, dates: DateStatistics, dehaze: bool = False) -> None:
        self.dates = dates
        self.combine = COMBINE
        self.weights = TimeWeights(dates.target_date, dates.references, dates.used)
        #: the whole-date haze the output is lowered by (``dehaze.py``; None: none)
        self.haze: HazeField | None = None
        if dehaze:
            judges = [r for r in dates.used if dates.fitted[r.index].common >= MIN_COMMON]
            self.haze = haze_field([dates.fitted[r.index].shift for r in judges],
                                   [self.weights.factor(r) for r in judges], dates.bands, CELL)
            if self.haze is not None:
                blue = dates.bands.index("B02")
                log.info("%s is hazy all over against its references (blue %+.4f, %.1f times "
                         "what they differ by): lowered to their level",
                         dates.target.scene.path.name, self.haze.excess[blue],
                         self.haze.spreads)
        self.threshold_db = change_threshold_db()
        self._by_index = {r.index: r for r in dates.references}
        #: the dates whose reflectance a block's groups (and the similar pixels) read
        self.members = {i for fit in dates.joint_fits for i in fit.dates} | set(
            () if dates.similar is None else dates.similar.dates)
        #: the pixels filled [h, w] and their fill (once filled) at the edges of the blocks
        #: planned last
        self._kept: KeptEdges[tuple[np.ndarray, Future[ReferenceBlock]]] = KeptEdges()

    def estimate(self, top: int, left: int, height: int, width: int,
                 need: np.ndarray, background: Background | None = None,
                 terms: bool = False, error: bool = False, limits: bool = False, keep: int = 0
                 ) -> ReferenceBlock | None:
        """The references' fill of the ``need`` pixels of a block of the target grid (it may
        reach beyond the scene: mirrored, as the target is); None when nothing is needed.
        Computed on strips of ``STRIP_COLUMNS`` columns, one reference after another, at the
        ``need`` pixels only; a reference pixel the temporal test finds off the ``background``
        of the block (computed when not given) is not taken. With ``terms``, the block carries
        the references' terms of the uncertainty; with ``error``, the error of its fill
        (``ReferenceBlock.error``); with ``limits``, what the residual reads of it. A pixel's
        fill does not depend on the block (to float rounding): with ``keep``, the block takes
        what the blocks before it kept, and keeps that of its ``keep`` bottom rows and right
        columns for the next ones (``kept.py``: the blocks in their order). :meth:`plan` then
        :meth:`fill`."""
        plan = self.plan(top, left, height, width, need, keep)
        return None if plan is None else self.fill(plan, background, terms, error, limits)

    def plan(self, top: int, left: int, height: int, width: int, need: np.ndarray,
             keep: int = 0, similar: np.ndarray | None = None) -> FillPlan | None:
        """What :meth:`estimate` fills of a block and what it takes from the blocks before it,
        which need not have filled it yet: called in the blocks' order, whereas their
        :meth:`fill` may run at once, each waiting for the fill it takes only once its own is
        done. None when nothing is needed (the block then keeps nothing). ``similar``: the
        pixels whose fill takes the similar pixels' share (None: all of them); a pixel's must
        not depend on the block."""
        if not self.dates.used or not need.any():
            return None
        todo, taken = need.copy(), []
        if keep:
            for here, there, (done, kept) in self._kept.overlapping(top, left, *need.shape):
                take = todo[here] & done[there]
                if take.any():
                    taken.append((here, there, take, kept))
                    todo[here] &= ~take
        plan = FillPlan(top, left, need, todo, taken, similar=similar)
        if keep:
            self._kept.keep(top, left, *need.shape, keep, plan.promise)
        return plan

    def fill(self, plan: FillPlan, background: Background | None = None, terms: bool = False,
             error: bool = False, limits: bool = False) -> ReferenceBlock:
        """The fill of a :meth:`plan`'s block (see :meth:`estimate`): its own pixels, then
        those it takes from the blocks before it once they have them; what it keeps for the
        next ones is then theirs (or, where this fails, the error)."""
        try:
            block = self._fill(plan, background, terms, error, limits)
        except BaseException as failed:
            for _, _, kept in plan.promised:
                kept.set_exception(failed)
            raise
        for rows, cols, kept in plan.promised:
            kept.set_result(_copied(block.crop(rows, cols)))
        return block

    def _fill(self, plan: FillPlan, background: Background | None, terms: bool, error: bool,
              limits: bool) -> ReferenceBlock:
        """See :meth:`fill`."""
        top, left, todo = plan.top, plan.left, plan.todo
        height, width = todo.shape
        bands = self.dates.bands
        values = np.zeros((len(bands), height, width), np.float32)
        source = np.zeros((height, width), np.uint8)
        block = ReferenceBlock(
            values, source,
            DateTerms(np.zeros_like(values), np.zeros_like(values)) if terms else None,
            np.zeros((height, width), np.float32) if error else None,
            Limits.empty(bands, height, width) if limits else None)
        # the spread in every band where the uncertainty or the error reads it, else in those
        # the residual's limits read
        spread_bands = slice(None) if terms or error else penumbra_bands(bands)
        scene = self.dates.target.scene
        for c0 in range(0, width, STRIP_COLUMNS):
            strip = todo[:, c0:c0 + STRIP_COLUMNS]
            rows, cols = np.nonzero(strip.any(axis=1))[0], np.nonzero(strip.any(axis=0))[0]
            if not len(rows):
                continue
            # the rectangle around the pixels to fill (grown to what its part beyond the
            # scene mirrors, as the block reads it, also where that lies in the strips beside):
            # the references are read on it alone, the strip's own pixels filled
            rows = mirrored(top + rows[0], top + rows[-1] + 1, scene.height, top, height)
            cols = mirrored(left + c0 + cols[0], left + c0 + cols[-1] + 1, scene.width, left,
                            width)
            span = np.arange(cols.start, cols.stop)
            own = (span >= c0) & (span < c0 + STRIP_COLUMNS)
            at = np.nonzero(todo[rows, cols] & own)
            h, w = rows.stop - rows.start, cols.stop - cols.start
            judge = None
            if self.dates.temporal is not None and self.dates.temporal.weighs:
                judge = (self.dates.temporal.background(top + rows.start, left + cols.start, h, w)
                         if background is None else background.crop(rows, cols))
            moments = Moments.zeros(len(bands), spread_bands, len(at[0]), limits) if (
                terms or error or limits) else None
            pixels = (at[0] + rows.start, at[1] + cols.start)
            similar = None if plan.similar is None else plan.similar[pixels][None]
            values[:, pixels[0], pixels[1]], source[pixels] = self._strip(
                self.dates.used, top + rows.start, left + cols.start, h, w, at, judge, moments,
                similar)
            if terms:
                block.terms.spread[:, pixels[0], pixels[1]] = moments.squares[:, 0]
                block.terms.residual[:, pixels[0], pixels[1]] = moments.variances[:, 0]
            if error:
                block.error[pixels] = fill_error(moments.squares, moments.variances)[0]
            if limits:
                spread = moments.squares[penumbra_bands(bands)] if terms or error \
                    else moments.squares
                bounds = Limits.of(spread, moments.variances, moments.lowest, bands)
                block.limits.error[:, pixels[0], pixels[1]] = bounds.error[:, 0]
                block.limits.floor[:, pixels[0], pixels[1]] = bounds.floor[:, 0]
        for here, there, take, kept in plan.taken:  # none of them filled above
            _copy_where(block.crop(*here), kept.result().crop(*there), take)
        return block

    def _strip(self, used: list[Reference], top: int, left: int, height: int, width: int,
               at: tuple[np.ndarray, np.ndarray], background: Background | None,
               moments: Moments | None = None, similar: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The fill [13, n] and source [n] of one strip (see :meth:`estimate`) at its n pixels
        ``at`` (rows, columns in the strip); with ``moments``, the predictions' weighted
        spread (in its bands), the fits' weighted mean residual variance and the lowest
        prediction written into them (including a date the agreement check drops: its
        disagreement is part of the spread); ``similar``: the pixels [1, n] that take the
        similar pixels' share (None: all).
        The pixels' arrays are laid out as one row of n, [.., 1, n]."""
        bands, n = len(self.dates.bands), len(at[0])
        total = np.zeros((bands, 1, n), np.float32)
        weights = np.zeros((bands, 1, n), np.float32)
        best = np.zeros((1, n), np.float32)
        source = np.zeros((1, n), np.uint8)
        need = np.ones((1, n), bool)
        if background is not None:
            background = background.at(*at)
        candidates = None
        if AGREEMENT is not None and self.combine == "weighted" and len(used) >= MIN_AGREEING:
            candidates = Candidates(bands, 1, n)
        target_s1 = None
        members: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the groups' dates
        for ref in used:
            open_ = need & (source == 0) if self.combine == "nearest" else need
            if not open_.any():
                break
            if self.dates.checks_change(ref) and target_s1 is None:
                target_s1 = self.dates.s1_block(self.dates.s1, top, left, height, width)
            score = self._add(ref, top, left, height, width, at, open_, target_s1, total,
                              weights, candidates, members, background, moments)
            if score is not None:
                _name_source(ref.index, score, best, source)
        alike = None
        if self.combine == "weighted":
            for index, score in self._add_groups(members, total, weights, moments):
                _name_source(index, score, best, source)
            alike = self._similar(members, similar)
        del members
        if moments is not None:  # the sums before the agreement check, which may drop a date
            share = np.where(weights > 0, weights, 1)
            mean = total[moments.bands] / share[moments.bands]
            spread = moments.squares
            np.sqrt(np.maximum(spread / share[moments.bands] - mean * mean, 0), out=spread)
            np.divide(moments.variances, share, out=moments.variances)
            del mean
        dropped = None
        if candidates is not None:
            dropped = candidates.drop_outlier(AGREEMENT, reference_weight, total, weights,
                                              source)
        total /= np.where(weights > 0, weights, 1)
        if alike is not None:
            prediction, take = alike
            if dropped is not None:
                prediction = prediction[:, ~dropped[take]]
                take &= ~dropped
            total[:, take] += np.float32(similar_pixels.SIMILAR) * (prediction - total[:, take])
        return total[:, 0], source[0]

    def _add(self, ref: Reference, top: int, left: int, height: int, width: int,
             at: tuple[np.ndarray, np.ndarray], open_: np.ndarray,
             target_s1: np.ndarray | None, total: np.ndarray,
             weights: np.ndarray, candidates: Candidates | None, members: dict,
             background: Background | None,
             moments: Moments | None = None) -> np.ndarray | None:
        """Add one reference's weighted prediction at the ``open_`` pixels it sees clear to
        ``total`` and its weight to ``weights`` (and offer it to ``candidates``), the strip's
        pixels ``at`` laid out as in ``_strip``; return its mean weight per pixel (None where it
        adds nothing). A reference of a fitted group also
        leaves its reflectance and pixels taken in ``members``. In place, so that one
        reference's arrays are held at a time (besides the groups' members). Pixels where the
        temporal test finds it off the ``background`` are not taken."""
        refl, _, clear = ref.clear(top, left, height, width, halo=EDGE_RAMP)
        ramp = _gather(edge_ramp(clear), at, EDGE_RAMP)
        refl = _gather(refl, at, EDGE_RAMP)
        take = open_ & _gather(clear, at, EDGE_RAMP)
        if self.dates.checks_change(ref) and take.any():
            ref_s1 = self.dates.s1_block(ref.s1, top, left, height, width)
            moved = changed(target_s1, ref_s1, self.dates.fitted[ref.index].bias, self.threshold_db)
            take &= ~_gather(moved, at, CHANGE_BOX // 2)
        if not take.any():
            return None
        prediction, offset, variance = (
            _gather(f, at) for f in self.dates.fitted[ref.index].field.at(top, left, height, width))
        prediction *= refl  # gain x reference + offset
        prediction += offset
        del offset
        factor: float | np.ndarray = ramp * np.float32(self.weights.factor(ref))
        del ramp
        if background is not None:
            temporal = self.dates.temporal
            agreement = temporal.agreement(prediction[temporal.index], background)
            take &= agreement > 0
            if not take.any():
                return None
            factor = agreement * np.float32(factor)
        if ref.index in self.members:
            members[ref.index] = refl, take
        del refl
        return _accumulate(ref.index, prediction, variance, factor, take, total, weights,
                           candidates, moments)

    def _add_groups(self, members: dict, total: np.ndarray, weights: np.ndarray,
                    moments: Moments | None = None
                    ) -> list[tuple[int, np.ndarray]]:
        """Add each fitted group's prediction where all its dates were taken (see ``_add``);
        return, per group that adds something, its nearest date's index and mean weight.
        Groups are not offered to the agreement check: where it drops a date, the fill is
        rebuilt from the single dates that agree, without the groups."""
        scores = []
        for fit in self.dates.joint_fits:
            if not all(i in members for i in fit.dates):
                continue
            take = np.logical_and.reduce([members[i][1] for i in fit.dates])
            if not take.any():
                continue
            prediction = fit.predict([members[i][0] for i in fit.dates])
            variance = np.broadcast_to(fit.variance.astype(np.float32)[:, None, None],
                                       prediction.shape).copy()
            factor = math.prod(self.weights.factor(self._by_index[i]) for i in fit.dates) ** (
                1 / len(fit.dates))
            score = _accumulate(fit.dates[0], prediction, variance, factor, take, total,
                                weights, None, moments)
            scores.append((fit.dates[0], score))
        return scores

    def _similar(self, members: dict, wanted: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
        """The similar pixels' prediction [bands, n] at the n pixels where all their dates
        were taken (see ``_add``) among those ``wanted`` (None: all), and where those are
        [h, w]; None where nowhere."""
        similar = self.dates.similar
        if similar is None or not all(i in members for i in similar.dates):
            return None
        take = np.logical_and.reduce([members[i][1] for i in similar.dates]
                                     + ([] if wanted is None else [wanted]))
        if not take.any():
            return None
        return similar.predict([members[i][0] for i in similar.dates], take), take

    def close(self) -> None:
        self.dates.close()


def fill_error(spread: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The RMS over bands [...] by which the references' fill may be off, from the weighted
    spread of their predictions and the weighted mean residual variance of their fits
    [C, ...] (reflectance, and squared)."""
    error = np.square(spread)
    error += residual
    return np.sqrt(error.mean(axis=0))


def _gather(values: np.ndarray, at: tuple[np.ndarray, np.ndarray], halo: int = 0
            ) -> np.ndarray:
    """``values`` [..., h, w] (read with ``halo`` pixels around) at the pixels ``at`` (rows,
    columns inside the halo), laid out as one row of n [..., 1, n]: by flat index, twice as
    fast as by rows and columns."""
    flat = (at[0] + halo) * values.shape[-1] + (at[1] + halo)
    return values.reshape(*values.shape[:-2], -1).take(flat, axis=-1)[..., None, :]


def _copied(block: ReferenceBlock) -> ReferenceBlock:
    return ReferenceBlock(block.values.copy(), block.source.copy(), None if block.terms is None
                          else DateTerms(block.terms.spread.copy(), block.terms.residual.copy()),
                          None if block.error is None else block.error.copy(),
                          None if block.limits is None
                          else Limits(block.limits.error.copy(), block.limits.floor.copy()))


def _copy_where(into: ReferenceBlock, source: ReferenceBlock, where: np.ndarray) -> None:
    """Copy ``source``'s fill into ``into`` (views of the same shape) at ``where`` [h, w]."""
    np.copyto(into.values, source.values, where=where)
    np.copyto(into.source, source.source, where=where)
    if into.terms is not None and source.terms is not None:
        np.copyto(into.terms.spread, source.terms.spread, where=where)
        np.copyto(into.terms.residual, source.terms.residual, where=where)
    if into.error is not None and source.error is not None:
        np.copyto(into.error, source.error, where=where)
    if into.limits is not None and source.limits is not None:
        np.copyto(into.limits.error, source.limits.error, where=where)
        np.copyto(into.limits.floor, source.limits.floor, where=where)


def _name_source(index: int, score: np.ndarray, best: np.ndarray, source: np.ndarray) -> None:
    """Name ``index`` in ``source`` where its mean weight ``score`` is the largest so far."""
    wins = score > best
    source[wins] = index
    best[wins] = score[wins]


def _accumulate(index: int, prediction: np.ndarray, variance: np.ndarray,
                factor: float | np.ndarray,
                take: np.ndarray, total: np.ndarray, weights: np.ndarray,
                candidates: Candidates | None,
                moments: Moments | None = None) -> np.ndarray:
    """Add a prediction [bands, h, w] with its weights at the ``take`` pixels to ``total`` and
    ``weights`` (and offer it to ``candidates`` as reference ``index``); return its mean weight
    per pixel. ``prediction`` is used up. ``moments``: the weighted squared predictions (in
    its bands) and residual variances are added to them too, and the lowest prediction kept
    (where it keeps one)."""
    weight = reference_weight(variance, factor)
    weight[:, ~take] = 0
    score = weight.mean(axis=0)
    if candidates is not None:
        candidates.offer(index, score, prediction, variance, factor)
    if moments is not None:
        bands, squares, variances, lowest = moments
        squares += weight[bands] * prediction[bands] * prediction[bands]
        variances += weight * variance
        if lowest is not None:
            np.minimum(lowest, np.where(take, prediction, np.inf), out=lowest)
    del variance
    prediction *= weight
    total += prediction
    weights += weight
    return score


def edge_ramp(clear: np.ndarray) -> np.ndarray:
    """float32 [h, w]: a reference's weight factor near its own masked pixels, its distance
    to the nearest of them over ``EDGE_RAMP`` (1/EDGE_RAMP next to one, 1 from EDGE_RAMP px
    on), so that where it is masked the others take over gradually."""
    if not EDGE_RAMP:
        return np.ones(clear.shape, np.float32)
    distance = np.sqrt(squared_distance(~clear, EDGE_RAMP).astype(np.float32))
    return np.minimum(distance / EDGE_RAMP, 1, out=distance)
