"""The statistics pass over the target's reference dates (``remove --reference``,
``mask --reference``): what the fill (``fill.py``) and the temporal mask learn of each date.

By windows of the target grid, so memory depends neither on the scene size nor on the number of
references: for every window, the target and each reference are masked; on the pixels clear in
both, each cell of the window gets a robust line per band (``radiometry.py``; from every
``CELL_STRIDE``-th row and column of them), each reference its scene-wide shadow statistics,
and, with S1 of both dates, the histogram of their backscatter difference (its median is the
change check's bias, ``references.histogram_median``). The same pass gathers the sums of the
groups of the nearest dates fitted jointly (``joint_fit.py``) and the sample of the target's
clear pixels whose dates look alike (``similar_pixels.py``); where the temporal test refits the
lines (below), only the last refit does, as the fill takes its. A mask alone
(``mask --reference``) takes neither, and no pass gathers them. What the first pass learns of
each reference alone (``OwnStatistics``: its shadow statistics, S1 difference and pixel counts,
from every pixel) no later pass changes: the passes after it take it as it is and read each
reference only on the cells' sample (``Reference.sampled``), where the groups' sums and the
similar pixels' sample lie on it too.

A reference with fewer than ``radiometry.MIN_COMMON`` clear pixels of its own (or a tenth of a
smaller target's; an overcast date) is left out, with a warning. When no reference shares that
many with the target (a target almost all cloud), the fits count the target's clear pixels with
a cloud buffer of ``FIT_BUFFER`` px only (the buffer bounds the fill, not the fit), and a date
shared on few pixels leans towards itself taken as it is (``radiometry.CellFits.field``).
Elsewhere the fits count the target's clear pixels with the same ``FIT_BUFFER`` when the ring
its cloud buffer takes from them shows no haze (``ring_clear``: no brighter in blue, against
each date, than the rest; ``RING_HAZE``); the same pass gathers both sums. A reference covering
less than ``PARTIAL`` of the scene (not counting the border strips its applied shift and the
resampling kernel leave without data) is warned about.

With the temporal mask (``temporal=True``; ``remove --reference`` on a target with B02 and B04
unless ``--no-temporal-mask``, ``mask --reference``), the dates also judge the target
(``temporal_mask.py``, read through ``target_mask.py``): after the first statistics pass, the
test's noise is measured and the pass runs again ``REFITS`` times without the pixels it finds
cloud; these refits only with aerosol, blue and cirrus (``TemporalMask.weighs``): without them
the test decides what is filled, and the lines are fitted once more after it without what it
finds where the single-date score rates the pixel somewhat cloudy (``target_mask.THIN_SCORE``;
kept where that leaves out more than a trace, ``THIN_SHARE``), the test itself left as it is.
That fit also leaves out the pixels within ``target_mask.FRINGE`` px of that cloud where they
are hazy (``ring_clear``, against the same fit counting them; the same pass gathers both): the
veiled edge of a thin cloud, which neither mask finds.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from rasterio.windows import Window

from cloudfree.core.progress import progress
from cloudfree.core.threads import ordered_map, usable_cores
from cloudfree.dates import joint_fit, similar_pixels
from cloudfree.dates.dehaze import CellShift, cell_shift
from cloudfree.dates.joint_fit import JointFit, JointSums
from cloudfree.dates.radiometry import (
    CELL,
    MIN_COMMON,
    MIN_PIXELS,
    CellFits,
    FitField,
    grouped_sums,
)
from cloudfree.dates.references import (
    DIFF_RANGE,
    DIFF_STEP,
    Reference,
    acquisition_date,
    box_db,
    difference_histogram,
    histogram_median,
    s1_block,
)
from cloudfree.dates.similar_pixels import SimilarPixels, sample_grid, sample_stride
from cloudfree.dates.target_mask import FRINGE, TargetMask
from cloudfree.dates.temporal_mask import TemporalMask, weighs_with
from cloudfree.dates.weights import VARIANCE_UNIT, days_apart
from cloudfree.io.rasters import block_windows
from cloudfree.mask.classify import combine_shadow_stats
from cloudfree.mask.classify import shadow_thresholds as window_shadow_stats

log = logging.getLogger("cloudfree")

#: Fits on the pixels the temporal test finds clear, after the first on the single-date mask.
REFITS = 2
#: Cloud buffer (px) of the target's clear pixels the fits count when the mask's buffer leaves
#: fewer than ``MIN_COMMON`` clear in both with every reference, or when the ring it takes from
#: them shows no haze (``RING_HAZE``). On the L2A benchmark's targets
#: at odd places in time order, 0, 1 and 2 px gave 29.81, 29.13 and 28.55 dB (5 px: 27.75;
#: ``radiometry.LINE_SHRINK`` 100).
FIT_BUFFER = 0
#: Haze test of the ring the mask's cloud buffer takes from the fits (``ring_clear``): where
#: the target's pixels there are brighter in blue than the rest of its clear pixels, against
#: each date's scene-wide line, by less than this many residual standard deviations (the median
#: over the dates), no haze is taken to lie beside the clouds and the fits count the target's
#: clear pixels with a buffer of ``FIT_BUFFER`` px. None: no test (the buffer is kept). It
#: lies between the haze-free and hazy rings of the tuning halves (benchmarks/records/l2a.md): the
#: L2A benchmark's small cloud at odd places in time order -0.05 to +0.42; the L1C series cut
#: to the L2A bands at even places -0.31 to +0.68, but +2.84 for the thin cloud of 10 February,
#: whose fill lost 3.7 dB with the ring counted. With this test the L2A benchmark's tuning
#: half rose from 30.96 to 31.14 dB.
RING_HAZE: float | None = 1.0
#: The statistics pass's windows (px), whole cells; the first pass keeps the classes of the
#: target and of each reference in them (``keep_classes``), read back by the later passes,
#: the temporal test and the fill.
WINDOW = 8 * CELL
#: The cells' robust lines (``radiometry.grouped_sums``) from every ``CELL_STRIDE``-th row and
#: column of the pixels clear in both, each standing for ``CELL_STRIDE``^2 pixels; every pixel
#: where the target is almost all cloud (``few_clear``), as the groups' sums
#: (``joint_fit.STRIDE``).
CELL_STRIDE = 2
#: Share of the scene a reference must cover not to be warned about.
PARTIAL = 0.99
#: Where the temporal test does not weigh the references, the lines fitted once more without
#: the thin cloud it finds (``target_mask.THIN_SCORE``) are kept only where they leave out at
#: least this share of the pixels clear in both for some date: a trace of thin cloud left out
#: moved the fill little but could tip a case on the edge of the agreement check (an L2A case,
#: 2 of 3046 pixels left out, lost 1.87 dB).
THIN_SHARE = 0.01


@dataclass
class OwnStatistics:
    """What the first statistics pass learns of each reference alone, by index, which no later
    pass changes: its own clear and valid pixel counts, its valid pixels inside the border
    strips its shift explains and, with S1 of both dates, the histogram of the backscatter
    difference (the shadow thresholds it sets on the reference itself, ``Reference.shadow``)."""

    clear: dict[int, int]
    valid: dict[int, int]
    inner: dict[int, int]
    diffs: dict[int, np.ndarray]


@dataclass
class Fitted:
    """What the statistics pass learnt of one reference."""

    field: FitField | None
    common: int  # pixels clear in both dates
    bias: np.ndarray = field(default_factory=lambda: np.zeros(2))  # S1 VV, VH dB (ref - target)
    shift: CellShift | None = None  # the target's level over the reference's (``dehaze.py``)


class DateStatistics:
    """The references of one target scene, fitted (``fit``) and ordered."""

    def __init__(self, target: TargetMask, references: list[Reference], s1=None,
                 skipped: Sequence[dict] = (), temporal: bool = False,
                 fills: bool = True) -> None:
        self.target, self.references = target, references
        self.s1 = s1  # the target's S1 on its grid (None: no change check)
        self.target_date = acquisition_date(target.scene)
        self.fitted: dict[int, Fitted] = {}
        self.skipped = list(skipped)  # references passed over: path, reason (open_references)
        #: whether a fill takes the groups' sums and the similar pixels' sample (a mask alone
        #: takes neither: no pass gathers them)
        self.fills = fills
        nearest = sorted(references, key=self._distance)[: joint_fit.NEAREST] if fills else []
        self.groups = [group for size in joint_fit.SIZES  # nearest date first
                       for group in combinations([r.index for r in nearest], size)]
        whole = joint_fit.whole_group(nearest)
        if len(whole) > max(joint_fit.SIZES, default=1):
            self.groups.append(whole)
        #: the dates whose clear pixels alike predict the target (``similar_pixels.py``)
        self.similar_dates = (whole if similar_pixels.SIMILAR is not None and len(whole) >= 2
                              else ())
        self.joint_fits: list[JointFit] = []  # after ``fit``: the groups the fill uses
        self.similar: SimilarPixels | None = None  # after ``fit``, when there are such dates
        self.judge = temporal  # whether the dates judge the target's clouds (temporal_mask.py)
        self.fit_buffer: int | None = None  # the target's cloud buffer in the fits, if not its own
        self.ring_tested = False  # whether ``ring_clear`` has judged the buffer's ring
        #: whether no date shares ``MIN_COMMON`` clear pixels with the target beyond its
        #: cloud buffer (a target almost all cloud)
        self.few_clear = False
        #: during ``fit``, the cells' sums of the pass on the target's single-date mask: its
        #: cloud buffer and the sums by (reference, window's top, left), which the later passes
        #: take for the cells whose pixels clear in both are the same (``WindowSums``)
        self.first: tuple[int, dict[tuple[int, int, int], list[tuple]]] | None = None
        #: after the first statistics pass, what it learnt of each reference alone: the later
        #: passes read the references only where their sums take them (``WindowSums``)
        self.own: OwnStatistics | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        """The target's bands read, fitted and filled, in this order."""
        return self.target.bands

    @property
    def temporal(self) -> TemporalMask | None:
        """The dates' test of the target's clouds, after ``fit`` when they judge it."""
        return self.target.temporal

    @property
    def used(self) -> list[Reference]:
        """References with a fit, nearest date first (undated ones after, in the order given)."""
        refs = [r for r in self.references if self.fitted.get(r.index) and
                self.fitted[r.index].field is not None]
        return sorted(refs, key=self._distance)

    @property
    def clear_share(self) -> float:
        """The largest share of the scene clear in both the target and one used reference:
        what the dates' fits rest on (``fill/uncertainty.py``); 0 when none is used."""
        scene = self.target.scene
        common = max((self.fitted[r.index].common for r in self.used), default=0)
        return common / (scene.height * scene.width)

    def _distance(self, ref: Reference) -> tuple[float, int]:
        return days_apart(ref, self.target_date)

    def checks_change(self, ref: Reference) -> bool:
        """Whether the S1 change check applies to ``ref`` (S1 of both dates)."""
        return self.s1 is not None and ref.s1 is not None

    def s1_block(self, s1, top: int, left: int, height: int, width: int) -> np.ndarray:
        """``references.s1_block`` of ``s1`` on the target grid."""
        return s1_block(s1, top, left, height, width,
                        (self.target.scene.height, self.target.scene.width))

    def fit(self, quiet: bool) -> None:
        """The statistics pass (see the module docstring) and the temporal test: fitted first
        on the pixels the single-date mask finds clear in the target, then again on those the
        temporal test does not find cloud (thin cloud the single date misses no longer bends
        the lines), ``REFITS`` times; the test's noise is measured after each fit. The first
        pass keeps the classes of the target (with each cloud buffer the fits count it with)
        and of each reference for the others to read back."""
        self.target.keep_classes(WINDOW, (self.fit_buffer, FIT_BUFFER))
        for ref in self.references:
            ref.keep_classes(WINDOW)
        self._statistics(quiet, gather=not self._refitting)
        if self.judge:
            self._judge(quiet)
        self.first = None

    def _judge(self, quiet: bool) -> None:
        """The temporal test, calibrated, with its refits."""
        scene = self.target.scene
        temporal = self.target.temporal = TemporalMask(
            scene.height, scene.width, self.used, self._fields(), self.bands, self.target_date,
            name=scene.path.name)
        if self.target.decoded is not None:  # its windows' backgrounds kept beside it
            temporal.keep_windows(self.target.decoded.folder, WINDOW, self.target.decoded.room)
        temporal.judge_date(self.target.clear, quiet)
        temporal.calibrate(self.target.clear, quiet)
        for refit in range(REFITS if temporal.weighs else 0):
            if not temporal.calibrated:
                break
            # once calibrated it stays so: only the last refit's groups and sample are kept
            self._statistics(quiet, gather=refit == REFITS - 1)
            temporal.refitted(self.used, self._fields())
            temporal.calibrate(self.target.clear, quiet)
        if self._refitting and not temporal.calibrated:  # no refit: the first pass's fits stand
            self._statistics(quiet)  # the same pass again, gathering them
        temporal.settled = True
        if not temporal.weighs and temporal.calibrated:
            # the lines without the thin cloud the test finds, where it is more than a trace,
            # or without all it finds and its fringe, where that is hazy (``_ring``)
            kept = dict(self.fitted), self.joint_fits, self.similar
            self.target.fringe = FRINGE
            self._statistics(quiet)
            if all(self.fitted[i].common >= (1 - THIN_SHARE) * f.common
                   for i, f in kept[0].items()):
                self.fitted, self.joint_fits, self.similar = kept
                self.target.fringe = 0

    @property
    def _refitting(self) -> bool:
        """Whether the temporal test refits the lines once it is calibrated and a fill takes the
        last refit's groups and sample, not the first pass's."""
        return self.fills and self.judge and REFITS > 0 and weighs_with(self.bands)

    def _fields(self) -> dict[int, FitField]:
        return {r.index: self.fitted[r.index].field for r in self.used}

    def _statistics(self, quiet: bool, gather: bool = True) -> None:
        """One statistics pass over the target and every reference; without ``gather``, the
        groups' sums and the similar pixels' sample are not gathered (a pass whose fits only
        the temporal test takes up: the last pass's are the ones used) and ``joint_fits`` and
        ``similar`` stay as they are."""
        scene, bands = self.target.scene, len(self.bands)
        h, w = scene.height, scene.width
        cells = (math.ceil(h / CELL), math.ceil(w / CELL))
        windows = block_windows(w, h, WINDOW)
        ring = self._ring
        tests_ring = ring is not None
        # with the ring test, the same sums counting the ring too; and each window's cells
        sets = [({r.index: CellFits(bands, *cells) for r in self.references},
                 {group: JointSums.zeros(len(group), bands) for group in self.groups}, {})
                for _ in range(1 + tests_ring)]
        fits, groups, _ = sets[0]
        own = self.own
        if own is None:  # the first pass: each reference's own statistics too
            own = OwnStatistics(dict.fromkeys(fits, 0), dict.fromkeys(fits, 0),
                                dict.fromkeys(fits, 0),
                                {r.index: np.zeros((2, int(2 * DIFF_RANGE / DIFF_STEP) + 1),
                                                   np.int64)
                                 for r in self.references if self.checks_change(r)})
        shadows: dict[int, list] = {r.index: [] for r in self.references}
        samples: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in sets]
        with closing(ordered_map(WindowSums(self, ring, gather).sums, windows,
                                 usable_cores())) as results:
            for window, (stats, joint_sums, window_samples) in zip(windows, progress(
                    results, len(windows), "reference statistics", quiet), strict=True):
                for (_, into, _), window_sums in zip(sets, joint_sums, strict=True):
                    for group, sums in window_sums.items():
                        into[group] += sums
                for into, sample in zip(samples, window_samples, strict=True):
                    into.append(sample)
                for index, (cells_, alone) in stats.items():
                    for (into, _, kept), window_cells in zip(sets, cells_, strict=True):
                        kept[index, int(window.row_off), int(window.col_off)] = window_cells
                        for row, col, sums, fitted in window_cells:
                            into[index].add(row, col, sums, fitted)
                    if alone is not None:
                        shadow_stats, diff, clear, valid, inner = alone
                        own.clear[index] += clear
                        own.valid[index] += valid
                        own.inner[index] += inner
                        shadows[index].append(shadow_stats)
                        if diff is not None:
                            own.diffs[index] += diff
        if self.own is None:
            self.own = own
            for ref in self.references:
                ref.shadow = combine_shadow_stats(shadows[ref.index])
        fringe = self.target.fringe  # left out only where it is hazy and leaves enough
        if fringe and (not fits or max(f.common for f in fits.values()) < MIN_COMMON
                       or ring_clear(fits, sets[1][0], self.bands.index("B02"))):
            self.target.fringe = 0
            sets, samples = sets[1:], samples[1:]
            fits, groups, _ = sets[0]
        if (self.fit_buffer is None and self.target.params.buffer > FIT_BUFFER and fits
                and max(f.common for f in fits.values()) < MIN_COMMON):
            self.fit_buffer, self.few_clear = FIT_BUFFER, True
            return self._statistics(quiet, gather)
        if tests_ring and not fringe:
            self.ring_tested = True
            if ring_clear(fits, sets[1][0], self.bands.index("B02")):
                self.fit_buffer = FIT_BUFFER
                sets, samples = sets[1:], samples[1:]
                fits, groups, _ = sets[0]
        if self.temporal is None or not self.temporal.calibrated:
            self.first = self.cloud_buffer(self.fit_buffer), sets[0][2]
        # a date sharing too few clear pixels with the target to be fitted weighs as the worst
        # fitted one; when none is, as the worst of those sharing a cell's worth (as all the
        # others, when none does: then dates alone weigh them)
        prior = np.full(bands, VARIANCE_UNIT)
        for fewest in (MIN_COMMON, MIN_PIXELS):
            fitted = [f.scene_variance for f in fits.values() if f.common >= fewest]
            if fitted:
                prior = np.max(fitted, axis=0)
                break
        for ref in self.references:
            top, bottom, left, right = ref.shift_strip()
            inner = max(h - top - bottom, 0) * max(w - left - right, 0)
            if self.temporal is None and own.inner[ref.index] < PARTIAL * inner:
                log.warning("%s: reference %s covers only %.0f%% of the scene: the rest is "
                            "filled from the other dates or the model", scene.path.name,
                            ref.path.name, 100 * own.valid[ref.index] / (h * w))
            overcast = own.clear[ref.index] < min(MIN_COMMON, h * w // 10)
            result = Fitted(None if overcast else fits[ref.index].field(prior),
                            fits[ref.index].common,
                            shift=None if overcast else cell_shift(fits[ref.index]))
            if ref.index in own.diffs:
                result.bias = histogram_median(own.diffs[ref.index])
            self.fitted[ref.index] = result
            if overcast:
                log.warning("%s: reference %s: only %d clear pixels; not used",
                            scene.path.name, ref.path.name, own.clear[ref.index])
            elif result.common < MIN_COMMON:
                log.warning("%s: reference %s: only %d pixels clear in both dates; its fit "
                            "leans towards the date taken as it is", scene.path.name,
                            ref.path.name, result.common)
        if gather:
            self.joint_fits = self._fit_groups(groups)
            self.similar = self._fit_similar(samples[0])

    def _fit_similar(self, samples: list[tuple[np.ndarray, np.ndarray]]
                     ) -> SimilarPixels | None:
        """The search of the target's clear pixels alike in the ``similar_dates`` (None
        without such dates, or when one of them has no fit)."""
        dates = self.similar_dates
        if not dates or not all(self.fitted[i].field is not None for i in dates):
            return None
        return SimilarPixels.fit(dates, np.concatenate([f for f, _ in samples]),
                                 np.concatenate([t for _, t in samples]))

    def _fit_groups(self, groups: dict[tuple[int, ...], JointSums]) -> list[JointFit]:
        """The ``joint_fit.KEPT`` groups of used references with the smallest mean residual
        variance."""
        fewest = joint_fit.FEW_PIXELS if self.few_clear else MIN_COMMON
        fits = []
        for group, sums in groups.items():
            solved = sums.solve(self.group_stride, fewest)
            if solved is not None and all(self.fitted[i].field is not None for i in group):
                fits.append(JointFit(group, *solved))
        return sorted(fits, key=lambda f: f.variance.mean())[: joint_fit.KEPT]

    @property
    def _ring(self) -> tuple[int | None, int] | None:
        """The cloud buffer and fringe (``TargetMask.clear``) with which this statistics pass
        also counts the target's clear pixels, to test the ring the first count leaves out for
        haze (``ring_clear``): the buffer's (``RING_HAZE``) or the fringe's; None: no test."""
        if self.target.fringe:
            return self.fit_buffer, 0
        if (RING_HAZE is not None and not self.ring_tested and self.fit_buffer is None
                and "B02" in self.bands and self.target.params.buffer > FIT_BUFFER):
            return FIT_BUFFER, 0
        return None

    def cloud_buffer(self, buffer: int | None) -> int:
        """The target's cloud buffer (px) counted as ``buffer`` (None: its mask's)."""
        return self.target.params.buffer if buffer is None else buffer

    @property
    def cell_stride(self) -> int:
        """The cells' sums count every ``CELL_STRIDE``-th row and column, every pixel where
        the target is almost all cloud."""
        return 1 if self.few_clear else CELL_STRIDE

    @property
    def group_stride(self) -> int:
        """The groups' sums count every pixel where the target is almost all cloud (the fits'
        own buffer), else every ``joint_fit.STRIDE``-th."""
        return 1 if self.few_clear else joint_fit.STRIDE

    def close(self) -> None:
        self.target.close()
        for ref in self.references:
            ref.close()


class WindowSums:
    """What one statistics pass of ``dates`` gathers from each window of the target grid
    (``sums``), the target's clear pixels counted as the pass counts them (``fit_buffer``) and,
    with a ``ring`` (``DateStatistics._ring``), also with that buffer and fringe; without
    ``gather``, neither the groups' sums nor the similar pixels' sample. A cell's
    sums are those of the first pass (``DateStatistics.first``), or of the first count of the
    same pass, where its pixels clear in both are the same (the sums of a cell depend on its
    pixels alone): the temporal test and the ring change only the cells near clouds."""

    def __init__(self, dates: DateStatistics, ring: tuple[int | None, int] | None,
                 gather: bool = True) -> None:
        self.dates = dates
        self.views = [(dates.fit_buffer, None)] + ([] if ring is None else [ring])
        first = dates.first  # the first pass's sums where a view counts its cloud buffer
        self.first = [first[1] if first is not None and first[0] == dates.cloud_buffer(buffer)
                      else None for buffer, _ in self.views]
        self.stride = dates.group_stride
        self.cell_stride = dates.cell_stride
        self.members = {i for group in dates.groups for i in group} if gather else set()
        self.similar = dates.similar_dates if gather else ()
        self.sample_stride = sample_stride(dates.target.scene.height, dates.target.scene.width)
        #: whether it gathers each reference's own statistics, from every pixel (the first pass)
        self.alone = dates.own is None
        #: the later passes take the references' pixels on the cells' sample alone where the
        #: groups' sums and the similar pixels' sample lie on it too (every ``step``-th row and
        #: column of each window: multiples of ``WINDOW`` apart), and read only those
        strides = [self.cell_stride, *([self.stride] if self.members else []),
                   *([self.sample_stride] if self.similar else [])]
        self.step = self.cell_stride if not self.alone and WINDOW % self.cell_stride == 0 \
            and all(s % self.cell_stride == 0 for s in strides) else 1

    def sums(self, window: Window) -> tuple[dict, list[dict], list[tuple]]:
        """Per reference: the cells' robust sums and, in the first pass (``alone``), its
        shadow statistics, S1 difference histogram, own clear and valid pixel counts (else
        None); per candidate group of dates, its sums (every ``stride``-th row and column);
        the similar pixels' sample (``similar_dates``' features [n, f] and the target
        [n, bands] on the sample grid, where all are clear). Each sum and the sample once per
        buffer of the target's clear pixels (``buffers``)."""
        dates = self.dates
        top, left = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        target, target_clear, single, _ = dates.target.clears(top, left, height, width,
                                                              *self.views[0])
        masks, singles = [target_clear], [single]
        for view in self.views[1:]:
            _, mask, single, _ = dates.target.clears(top, left, height, width, *view)
            masks.append(mask)
            singles.append(single)
        target_s1 = None
        out = {}
        step = slice(None, None, self.stride)
        counted = np.zeros_like(target_clear)  # the target's clear pixels the groups count
        counted[step, step] = masks[-1][step, step]
        sampled = {}  # the groups' dates there: reflectance and clear
        grid = sample_grid(top, left, height, width, self.sample_stride)
        alike = {}  # the similar pixels' dates on the sample grid: reflectance and clear
        for ref in dates.references:
            step, read = self.step, None
            if step > 1:  # its pixels on the cells' sample alone, where it is read back
                read = ref.sampled(top, left, height, width, step)
            if read is None:
                step = 1
                refl, valid, clear = ref.clear(top, left, height, width, with_shadow=False)
            else:
                refl, clear = read
            on = (slice(None, None, step),) * 2  # the window's pixels read
            if ref.index in self.members:
                sampled[ref.index] = refl[:, counted[on]], clear[counted[on]]
            if ref.index in self.similar:
                alike[ref.index] = refl[:, grid[on]], clear[grid[on]]
            if step > 1:  # clear where read (the sums take no other pixel)
                clear = np.zeros_like(target_clear)
                clear[on] = read[1]
            cells: list[list[tuple]] = []
            for mask, single, first in zip(masks, singles, self.first, strict=True):
                base = None  # a count whose cells' sums this one takes where it is the same
                if first is not None and (ref.index, top, left) in first:
                    base = single & clear, first[ref.index, top, left]
                elif cells:
                    base = masks[0] & clear, cells[0]
                cells.append(_cell_sums(refl, target, mask & clear, top, left, base,
                                        self.cell_stride, step))
            alone = None
            if self.alone:
                diff = None
                if dates.checks_change(ref):
                    if target_s1 is None:
                        target_s1 = box_db(dates.s1_block(dates.s1, top, left, height, width))
                    delta = box_db(dates.s1_block(ref.s1, top, left, height, width)) - target_s1
                    diff = difference_histogram(delta)
                alone = (window_shadow_stats(refl, valid, dates.bands), diff, int(clear.sum()),
                         int(valid.sum()),
                         int(valid[_inside(ref, top, left, height, width)].sum()))
            out[ref.index] = cells, alone
        joint_sums: list[dict] = [{} for _ in masks]
        if self.members:
            values = target[:, counted]
            for mask, into in zip(masks, joint_sums, strict=True):
                kept = mask[counted]
                for group in dates.groups:
                    common = np.logical_and.reduce([sampled[i][1] for i in group]) & kept
                    if common.any():
                        into[group] = JointSums.of([sampled[i][0][:, common] for i in group],
                                                   values[:, common])
        samples = []
        similar, seen = self.similar, target[:, grid]
        for mask in masks:
            common = np.logical_and.reduce([mask[grid], *(alike[i][1] for i in similar)])
            samples.append((np.concatenate([alike[i][0][:, common] for i in similar]).T,
                            seen[:, common].T) if similar else None)
        return out, joint_sums, samples


def _cell_sums(refl: np.ndarray, target: np.ndarray, both: np.ndarray, top: int, left: int,
               base: tuple[np.ndarray, list[tuple]] | None = None, stride: int = 1,
               step: int = 1) -> list[tuple]:
    """Each cell's (row, column, ``cell_sums``) of a window at (``top``, ``left``, multiples
    of ``CELL``), on the pixels ``both`` clear in the reference (``refl``: of every ``step``-th
    row and column of the window alone, ``step`` a divisor of ``stride``) and the target in
    every ``stride``-th row and column; all the window's cells at once (``grouped_sums``).
    With a ``base`` (pixels clear in both, and this function's result on them, of the same
    window, dates and stride), the cells whose pixels counted are the same take its sums
    instead."""
    order, cells = _cell_major(*both.shape, stride)
    if base is not None:
        changed = np.zeros(len(base[1]), bool)
        changed[cells[order[(both != base[0]).ravel()[order]]]] = True
        if not changed.any():
            return base[1]
        both = both & changed[cells].reshape(both.shape)
    taken = order[both.ravel()[order]]  # the pixels both clear, one cell after another
    # by row and column: the windows are slices of a larger block, which a flat index copies
    rows, columns = np.divmod(taken, both.shape[1])
    cols = -(-both.shape[1] // CELL)
    ours = refl[:, rows, columns] if step == 1 else refl[:, rows // step, columns // step]
    sums = grouped_sums(ours, target[:, rows, columns],
                        np.bincount(cells[taken], minlength=-(-both.shape[0] // CELL) * cols),
                        stride * stride)
    return [base[1][k] if base is not None and not changed[k] else
            (top // CELL + k // cols, left // CELL + k % cols, *cell)
            for k, cell in enumerate(sums)]


@functools.lru_cache(maxsize=8)
def _cell_major(height: int, width: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of a window (flat indices) in every ``stride``-th row and column, one
    ``CELL`` after another, each cell's in rows, and the cell of every pixel (row-major cell
    index)."""
    rows, cols = np.indices((height, width))
    cells = (rows // CELL * -(-width // CELL) + cols // CELL).ravel()
    order = np.argsort(cells, kind="stable")
    if stride > 1:
        order = order[((rows % stride == 0) & (cols % stride == 0)).ravel()[order]]
    return order, cells


def _inside(ref: Reference, top: int, left: int, height: int, width: int
            ) -> tuple[slice, slice]:
    """The part of a window of the target grid inside the border strips that the reference's
    shift may leave without data (``Reference.shift_strip``), as slices into the window."""
    strip_top, strip_bottom, strip_left, strip_right = ref.shift_strip()
    rows = (max(strip_top - top, 0), max(min(ref.grid.height - strip_bottom - top, height), 0))
    cols = (max(strip_left - left, 0), max(min(ref.grid.width - strip_right - left, width), 0))
    return slice(*rows), slice(*cols)


def ring_clear(fits: dict[int, CellFits], with_ring: dict[int, CellFits], band: int) -> bool:
    """Whether the target's pixels in the ring its cloud buffer or the fringe (``_ring``)
    takes from the fits (the difference between the sums of ``with_ring`` and of ``fits``, each
    date's over every pixel) are brighter in ``band`` than the rest of its clear pixels,
    against each date's scene-wide line, by less than ``RING_HAZE`` residual standard
    deviations (the median over the dates sharing ``MIN_PIXELS`` pixels of the ring and of the
    rest)."""
    excess = []
    for index, wider in with_ring.items():
        pooled = fits[index].pooled
        ring = wider.pooled.every[:, band] - pooled.every[:, band]
        n = ring[5]
        if n < MIN_PIXELS or pooled.every[5, band] < MIN_PIXELS:
            continue
        gain = pooled.line()[0][band]
        rx, ry = ring[:2] / n
        px, py = pooled.every[:2, band] / pooled.every[5, band]
        excess.append(((ry - py) - gain * (rx - px))
                      / math.sqrt(fits[index].scene_variance[band]))
    if not excess:
        return False
    median = float(np.median(excess))
    log.debug("the ring taken from the fits is %+.2f residual sd brighter in "
              "blue than the rest (median of %d dates)", median, len(excess))
    return median < RING_HAZE
