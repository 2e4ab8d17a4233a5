"""Fill the target's masked pixels from reference dates (``remove --reference``).

Two passes over each reference, both by windows of the target grid, so memory depends neither
on the scene size nor on the number of references:

1. statistics (``ReferenceFill.fit``): for every window, the target and each reference are
   masked; on the pixels clear in both, each cell of the window gets a robust line per band
   (``radiometry.py``), each reference its scene-wide shadow statistics, and, with S1 of both
   dates, the histogram of their backscatter difference (its median is the change check's bias).
   A reference with fewer than ``radiometry.MIN_COMMON`` clear pixels of its own (or a tenth
   of a smaller target's; an overcast date) is left out, with a warning. When no reference
   shares that many with the target (a target almost all cloud), the fits count the target's
   clear pixels with a cloud buffer of ``FIT_BUFFER`` px only (the buffer bounds the fill, not
   the fit), and a date shared on few pixels leans towards itself taken as it is
   (``radiometry.CellFits.field``). Elsewhere the fits count the target's clear pixels with
   the same ``FIT_BUFFER`` when the ring its cloud buffer takes from them shows no haze
   (``ring_clear``: no brighter in blue, against each date, than the rest; ``RING_HAZE``);
   the same pass gathers both sums.
2. fill (``ReferenceFill.estimate``, called for each block the target pipeline composites): each
   reference clear at a masked target pixel (its own mask, and no S1 change) gives
   the value its smooth field of fits predicts; the references' predictions are averaged with
   weights (1 / residual variance of their fits there) ** ``WEIGHT_POWER`` x exp(-days apart /
   ``TIME_SCALE``, stretched where the dates would lean on too few, ``MIN_SPREAD``) x a ramp
   over ``EDGE_RAMP`` px from the reference's own masked pixels (``edge_ramp``), band by band
   (``COMBINE = "weighted"``: a reference that predicts the target well there counts much
   more), or the nearest date alone is taken (``"nearest"``, which measured worse). Where three
   or more are clear, the one the others contradict beyond what their residuals explain is
   dropped at that pixel (``agreement.py``, ``AGREEMENT``). Where the nearest mostly clear
   dates are all clear and none was dropped, a share ``SIMILAR`` of the fill comes from the
   target's clear pixels whose dates look alike (``similar_pixels.py``; their sample is
   gathered in the statistics pass). The source map names, per pixel, the reference with the
   largest weight (among those kept).

With the temporal mask (``temporal=True``; ``remove --reference`` on a target with B02 and B04
unless ``--no-temporal-mask``, ``mask --reference``), the dates also judge the target
(``temporal_mask.py``): after the first statistics pass, the test's noise is measured and the
pass runs again ``REFITS`` times without the pixels it finds cloud; a reference's weight at a
pixel is multiplied by its agreement with the others there. Both only with aerosol, blue and
cirrus (``TemporalMask.weighs``): without them the test decides what is filled, and the fill's
lines are fitted once more after it without what it finds where the single-date score rates
the pixel somewhat cloudy (``THIN_SCORE``; kept where that leaves out more than a trace,
``THIN_SHARE``), the test itself left as it is.

Each reference is registered to the target first (``references.register``); one given twice
is used once, and one covering less than ``PARTIAL`` of the scene (not counting the border
strips its applied shift and the resampling kernel leave without data) or without a date is
warned about.

Pixels no reference sees clear are left to the single-date model; clear target pixels are
never touched (the composite keeps them), and the fill ramps in over the feather at cloud edges
like the model's prediction.
"""

from __future__ import annotations

import colorsys
import filecmp
import functools
import json
import logging
import math
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import date
from itertools import combinations
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import as_url, check_input
from cloudfree.core.progress import progress
from cloudfree.core.threads import ordered_map, usable_cores
from cloudfree.coregister.s1_to_s2 import coregister_to_grid
from cloudfree.dates import joint_fit
from cloudfree.dates.agreement import MIN_AGREEING, Candidates
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
    CHANGE_BOX,
    Reference,
    acquisition_date,
    box_db,
    change_threshold_db,
    changed,
    open_reference,
    register,
)
from cloudfree.dates.similar_pixels import SimilarPixels, sample_grid, sample_stride
from cloudfree.dates.temporal_mask import GROW, Background, TemporalMask
from cloudfree.fill.uncertainty import DateTerms
from cloudfree.io.decoded_scene import DecodedScene, ScratchRoom
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import block_windows, read_padded
from cloudfree.io.sentinel2 import Sentinel2, open_sentinel2
from cloudfree.mask.classify import (
    CLEAR,
    CLOUD,
    MaskParams,
    ShadowThresholds,
    combine_shadow_stats,
    squared_distance,
)
from cloudfree.mask.classify import shadow_thresholds as window_shadow_stats
from cloudfree.mask.scene_input import mask_reader, read_classified
from cloudfree.output.provenance import BY_MODEL, FROM_REFERENCES, REFERENCES, input_path

log = logging.getLogger("cloudfree")

#: How references clear at the same pixel are combined: "weighted" or "nearest".
COMBINE = "weighted"
#: Weight of a reference at a pixel: (VARIANCE_UNIT / residual variance of its fit there) **
#: WEIGHT_POWER (the unit, a typical variance, keeps float32 in range). Measured on the pool's
#: series (docs/benchmarks/other-dates.md): powers 1, 2, 3 gave +2.7, +4.5, +5.1 dB over the
#: median fill on average, taking the nearest date alone +0.9 dB. With the residual counting
#: every pixel clear in both (``radiometry.py``), on the L2A benchmark's targets at odd places
#: in time order (docs/benchmarks/l2a.md) powers 2 to 6 gave 30.41, 30.41, 30.40, 30.39 and
#: 30.39 dB, the closest case +2.32, +2.66, +2.90, +3.07 and +3.18 dB over median fill and
#: +0.09, +0.19, +0.26, +0.31 and +0.36 over the naive mean; 4, the default, also lifts both
#: L1C series checks a little (34.32 to 34.35 dB with the ten L2A bands, 35.77 to 35.80 with
#: all 13).
WEIGHT_POWER = 4.0
VARIANCE_UNIT = 1e-4
#: Days over which a reference's weight falls by e (None: dates do not weigh). On 12 of the
#: benchmark's cases 30 days gave +5.21 dB over the median fill, 90 days +5.18, none +5.06.
TIME_SCALE: float | None = 30.0
#: Fewest dates' worth the time factors f of the used references must spread over (their
#: effective number, (sum f)^2 / sum f^2; half the dated references when fewer than twice
#: this): for a target whose near dates all lie on one side (the end of a series) or are few,
#: TIME_SCALE is stretched until they do, so that one date's change under the cloud is not
#: taken alone (monthly dates on both sides spread over about 4, dates 12 days apart with
#: gaps over 6 to 9). Chosen on the L2A benchmark's targets at odd places in time order
#: (docs/benchmarks/l2a.md):
#: None, 3, 4 and 5 gave 30.14, 30.20, 30.23 and 30.23 dB, at least the naive mean on 32, 34,
#: 34 and 35 of 35 cases (a TIME_SCALE of 60 days everywhere: 30.18, 34).
MIN_SPREAD: float | None = 5.0
#: The most TIME_SCALE is stretched by (to 90 days): a date days from the target still far
#: outweighs others half a year away, however few they are.
MAX_STRETCH = 3.0
#: Per-pixel agreement check (``agreement.py``): a reference whose prediction differs from the
#: others' by more than this many times what their residuals and scatter explain (mean over
#: bands of the squared standardised difference) is dropped there. None: no check. Chosen on
#: the benchmark's even half of clear targets (every 2nd case, 28): 4 cost 0.60 dB on average,
#: 16 0.02 dB and 64 nothing; 16 is the smallest that costs no more than that. On the odd half,
#: held out, it lifts the worst case from -1.35 to +1.98 dB over the median fill
#: (docs/benchmarks/other-dates.md).
AGREEMENT: float | None = 16.0
#: Share of the fill taken from the target's clear pixels whose dates look alike
#: (``similar_pixels.py``; the dates: the group of the nearest mostly clear ones,
#: ``joint_fit.WHOLE_CLEAR``), where all those dates are clear and the agreement check dropped
#: none; the weighted predictions keep the rest. None: not used.
SIMILAR: float | None = 0.3
#: Columns of a block filled at once: bounds the arrays each reference needs (a 256-row strip
#: of 512 columns holds about 7 MB per 13-band float array), whatever the chunk's width.
STRIP_COLUMNS = 512
#: Fits on the pixels the temporal test finds clear, after the first on the single-date mask.
REFITS = 2
#: Cloud buffer (px) of the target's clear pixels the fits count when the mask's buffer leaves
#: fewer than ``MIN_COMMON`` clear in both with every reference, or when the ring it takes from
#: them shows no haze (``RING_HAZE``). On the L2A benchmark's targets
#: at odd places in time order, 0, 1 and 2 px gave 29.81, 29.13 and 28.55 dB (5 px: 27.75;
#: ``radiometry.LINE_SHRINK`` 100).
FIT_BUFFER = 0
#: Pixels over which a reference's weight ramps up from its own masked pixels (``edge_ramp``;
#: 0: a step, where a date masked in a small patch left a disc of the other dates' colours with
#: a sharp rim). The mask's default cloud buffer; on the L2A benchmark's targets at odd places
#: in time order it moves no case by more than 0.04 dB (docs/benchmarks/l2a.md).
EDGE_RAMP = 5
#: Haze test of the ring the mask's cloud buffer takes from the fits (``ring_clear``): where
#: the target's pixels there are brighter in blue than the rest of its clear pixels, against
#: each date's scene-wide line, by less than this many residual standard deviations (the median
#: over the dates), no haze is taken to lie beside the clouds and the fits count the target's
#: clear pixels with a buffer of ``FIT_BUFFER`` px. None: no test (the buffer is kept). It
#: lies between the haze-free and hazy rings of the tuning halves (docs/benchmarks/l2a.md): the
#: L2A benchmark's small cloud at odd places in time order -0.05 to +0.42; the L1C series cut
#: to the L2A bands at even places -0.31 to +0.68, but +2.84 for the thin cloud of 10 February,
#: whose fill lost 3.7 dB with the ring counted. With this test the L2A benchmark's tuning
#: half rose from 30.96 to 31.14 dB.
RING_HAZE: float | None = 1.0
#: Where the temporal test does not weigh the references (no aerosol or cirrus band: L2A),
#: the fill's lines are fitted once more after it, without the pixels it finds cloud whose
#: single-date score exceeds this share of the mask's threshold: thin cloud the single-date mask
#: leaves clear bent every line towards it, a bias that followed the target whichever
#: reference was given (issue #64; docs/benchmarks/l2a.md). The score keeps in the fits the
#: clear land beside the clouds that blue alone also flags: without it the L2A benchmark's
#: tuning half lost 0.42 dB; with 0.5 (and 0.1) no tuning case moved by more than 0.06 dB.
THIN_SCORE = 0.5
#: The lines so fitted are kept only where they leave out at least this share of the pixels
#: clear in both for some date: a trace of thin cloud left out moved the fill little but could
#: tip a case on the edge of the agreement check (a held-out L2A case, 2 of 3046 pixels left
#: out, lost 1.87 dB).
THIN_SHARE = 0.01
#: Share of the scene a reference must cover not to be warned about.
PARTIAL = 0.99
#: Source-map codes besides the references' own 1..N.
OBSERVED, SINGLE_DATE, SOURCE_NODATA = 0, 254, 255
#: Days output where no dated source is known (the model, an undated reference, nodata).
DAYS_NODATA = -32768
#: Histogram of the S1 difference (dB) for its scene-wide median.
DIFF_RANGE, DIFF_STEP = 30.0, 0.05


@dataclass
class ReferenceBlock:
    """The references' fill of a block: reflectance [13, h, w] and the source [h, w] (0: no
    reference clear there, else the 1-based index of the reference that weighs most)."""

    values: np.ndarray
    source: np.ndarray
    #: the spread of the references' predictions and their fits' residuals (``estimate``'s
    #: ``terms``), for ``uncertainty.py``
    terms: DateTerms | None = None

    @property
    def covered(self) -> np.ndarray:
        return self.source > 0

    def crop(self, rows: slice, cols: slice) -> ReferenceBlock:
        return ReferenceBlock(self.values[:, rows, cols], self.source[rows, cols],
                              None if self.terms is None else self.terms.crop(rows, cols))


@dataclass
class Fitted:
    """What the statistics pass learnt of one reference."""

    field: FitField | None
    common: int  # pixels clear in both dates
    bias: np.ndarray = field(default_factory=lambda: np.zeros(2))  # S1 VV, VH dB (ref - target)


class ReferenceFill:
    """The references of one target scene: fitted, ordered, and read block by block."""

    def __init__(self, target: Sentinel2, references: list[Reference], params: MaskParams,
                 shadow: ShadowThresholds | None, s1=None, combine: str = COMBINE,
                 skipped: Sequence[dict] = (), bands: Sequence[str] | None = None,
                 temporal: bool = False) -> None:
        self.target, self.references, self.params, self.shadow = target, references, params, \
            shadow
        self.bands = tuple(bands or target.bands)  # read, fitted and filled, in this order
        self.s1 = s1  # the target's S1 on its grid (None: no change check)
        self.combine = combine
        self.target_date: date | None = acquisition_date(target)
        self.fitted: dict[int, Fitted] = {}
        self.skipped = list(skipped)  # references passed over: path, reason (open_references)
        self.threshold_db = change_threshold_db()
        self._by_index = {r.index: r for r in references}
        nearest = sorted(references, key=self._distance)[: joint_fit.NEAREST]
        self._groups = [group for size in joint_fit.SIZES  # nearest date first
                        for group in combinations([r.index for r in nearest], size)]
        whole = joint_fit.whole_group(nearest)
        if len(whole) > max(joint_fit.SIZES, default=1):
            self._groups.append(whole)
        #: the dates whose clear pixels alike predict the target (``similar_pixels.py``)
        self._similar_dates = whole if SIMILAR is not None and len(whole) >= 2 else ()
        self.joint_fits: list[JointFit] = []  # after ``fit``: the groups the fill uses
        self.similar: SimilarPixels | None = None  # after ``fit``, when there are such dates
        self.judge = temporal  # whether the dates judge the target's clouds (temporal_mask.py)
        self.temporal: TemporalMask | None = None  # after ``fit``, when they do
        self.fit_buffer: int | None = None  # the target's cloud buffer in the fits, if not its own
        self.ring_tested = False  # whether ``ring_clear`` has judged the buffer's ring
        #: whether no date shares ``MIN_COMMON`` clear pixels with the target beyond its
        #: cloud buffer (a target almost all cloud)
        self.few_clear = False
        self.time_scale = TIME_SCALE  # after ``fit``: stretched to MIN_SPREAD dates' worth
        #: the target as a first pass decoded it, read back where it holds ``bands``
        self.decoded: DecodedScene | None = None

    @property
    def used(self) -> list[Reference]:
        """References with a fit, nearest date first (undated ones after, in the order given)."""
        refs = [r for r in self.references if self.fitted.get(r.index) and
                self.fitted[r.index].field is not None]
        return sorted(refs, key=self._distance)

    def _distance(self, ref: Reference) -> tuple[float, int]:
        if ref.acquired is None or self.target_date is None:
            return math.inf, ref.index
        return abs((ref.acquired - self.target_date).days), ref.index

    def _time_factor(self, ref: Reference) -> float:
        """exp(-days / the time scale, TIME_SCALE stretched by ``fit``); an undated reference
        counts as far as the farthest dated one (1 when none is dated, or the target is not)."""
        if self.time_scale is None:
            return 1.0
        days = self._distance(ref)[0]
        if math.isinf(days):
            dated = [d for d in (self._distance(r)[0] for r in self.references)
                     if not math.isinf(d)]
            days = max(dated, default=0.0)
        return math.exp(-days / self.time_scale)

    def _spread_scale(self) -> float | None:
        """TIME_SCALE, stretched (geometrically, up to MAX_STRETCH times) until the used dated
        references' time factors spread over MIN_SPREAD dates' worth (half of them, when fewer
        than twice that)."""
        if TIME_SCALE is None or MIN_SPREAD is None:
            return TIME_SCALE
        days = np.array([d for d in (self._distance(r)[0] for r in self.used)
                         if not math.isinf(d)])
        want = min(MIN_SPREAD, len(days) / 2)
        scale = TIME_SCALE
        while days.size and scale < MAX_STRETCH * TIME_SCALE:
            f = np.exp(-(days - days.min()) / scale)
            if f.sum() ** 2 / (f * f).sum() >= want:
                break
            scale *= 1.05
        return min(scale, MAX_STRETCH * TIME_SCALE)

    def _checks_change(self, ref: Reference) -> bool:
        return self.s1 is not None and ref.s1 is not None

    def fit(self, quiet: bool) -> None:
        """The statistics pass (see the module docstring) and the temporal test: fitted first
        on the pixels the single-date mask finds clear in the target, then again on those the
        temporal test does not find cloud (thin cloud the single date misses no longer bends
        the lines), ``REFITS`` times; the test's noise is measured after each fit."""
        self._statistics(quiet)
        if self.judge:
            self._judge(quiet)
        self.time_scale = self._spread_scale()

    def _judge(self, quiet: bool) -> None:
        """The temporal test, calibrated, with its refits."""
        self.temporal = TemporalMask(self.target.height, self.target.width, self.used,
                                     self._fields(), self.bands, self.target_date,
                                     name=self.target.path.name)
        self.temporal.judge_date(self._target_clear, quiet)
        self.temporal.calibrate(self._target_clear, quiet)
        for _ in range(REFITS if self.temporal.weighs else 0):
            if not self.temporal.calibrated:
                break
            self._statistics(quiet)
            self.temporal.refitted(self.used, self._fields())
            self.temporal.calibrate(self._target_clear, quiet)
        self.temporal.settled = True
        if not self.temporal.weighs and self.temporal.calibrated:
            # the lines without the thin cloud the test finds, where it is more than a trace
            kept = dict(self.fitted), self.joint_fits, self.similar
            self._statistics(quiet)
            if all(self.fitted[i].common >= (1 - THIN_SHARE) * f.common
                   for i, f in kept[0].items()):
                self.fitted, self.joint_fits, self.similar = kept

    def _fields(self) -> dict[int, FitField]:
        return {r.index: self.fitted[r.index].field for r in self.used}

    def _statistics(self, quiet: bool) -> None:
        """One statistics pass over the target and every reference."""
        h, w = self.target.height, self.target.width
        cells = (math.ceil(h / CELL), math.ceil(w / CELL))
        fits = {r.index: CellFits(len(self.bands), *cells) for r in self.references}
        shadows: dict[int, list] = {r.index: [] for r in self.references}
        diffs = {r.index: np.zeros((2, int(2 * DIFF_RANGE / DIFF_STEP) + 1), np.int64)
                 for r in self.references if self._checks_change(r)}
        windows = block_windows(w, h, 8 * CELL)
        groups = {group: JointSums.zeros(len(group), len(self.bands)) for group in self._groups}
        own_clear, own_valid = dict.fromkeys(fits, 0), dict.fromkeys(fits, 0)
        inner_valid = dict.fromkeys(fits, 0)  # inside the border strips its shift explains
        tests_ring = self._tests_ring
        sets = [(fits, groups)]  # with the ring test, the same sums counting the ring too
        if tests_ring:
            sets.append(({r.index: CellFits(len(self.bands), *cells) for r in self.references},
                         {group: JointSums.zeros(len(group), len(self.bands))
                          for group in self._groups}))
        samples: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in sets]
        with closing(ordered_map(self._window_stats, windows, usable_cores())) as results:
            for stats, joint_sums, window_samples in progress(
                    results, len(windows), "reference statistics", quiet):
                for (_, into), window_sums in zip(sets, joint_sums, strict=True):
                    for group, sums in window_sums.items():
                        into[group] += sums
                for into, sample in zip(samples, window_samples, strict=True):
                    into.append(sample)
                for index, (cells_, shadow_stats, diff, clear, valid, inner) in stats.items():
                    own_clear[index] += clear
                    own_valid[index] += valid
                    inner_valid[index] += inner
                    for (into, _), window_cells in zip(sets, cells_, strict=True):
                        for row, col, sums, fitted in window_cells:
                            into[index].add(row, col, sums, fitted)
                    shadows[index].append(shadow_stats)
                    if diff is not None:
                        diffs[index] += diff
        if (self.fit_buffer is None and self.params.buffer > FIT_BUFFER and fits
                and max(f.common for f in fits.values()) < MIN_COMMON):
            self.fit_buffer, self.few_clear = FIT_BUFFER, True
            return self._statistics(quiet)
        if tests_ring:
            self.ring_tested = True
            if ring_clear(fits, sets[1][0], self.bands.index("B02")):
                self.fit_buffer = FIT_BUFFER
                fits, groups = sets[1]
                samples = samples[1:]
        # a date sharing too few clear pixels with the target to be fitted weighs as the worst
        # fitted one; when none is, as the worst of those sharing a cell's worth (as all the
        # others, when none does: then dates alone weigh them)
        prior = np.full(len(self.bands), VARIANCE_UNIT)
        for fewest in (MIN_COMMON, MIN_PIXELS):
            fitted = [f.scene_variance for f in fits.values() if f.common >= fewest]
            if fitted:
                prior = np.max(fitted, axis=0)
                break
        for ref in self.references:
            top, bottom, left, right = ref.shift_strip()
            inner = max(h - top - bottom, 0) * max(w - left - right, 0)
            if self.temporal is None and inner_valid[ref.index] < PARTIAL * inner:
                log.warning("%s: reference %s covers only %.0f%% of the scene: the rest is "
                            "filled from the other dates or the model", self.target.path.name,
                            ref.path.name, 100 * own_valid[ref.index] / (h * w))
            ref.shadow = combine_shadow_stats(shadows[ref.index])
            overcast = own_clear[ref.index] < min(MIN_COMMON, h * w // 10)
            result = Fitted(None if overcast else fits[ref.index].field(prior),
                            fits[ref.index].common)
            if ref.index in diffs:
                result.bias = histogram_median(diffs[ref.index])
            self.fitted[ref.index] = result
            if overcast:
                log.warning("%s: reference %s: only %d clear pixels; not used",
                            self.target.path.name, ref.path.name, own_clear[ref.index])
            elif result.common < MIN_COMMON:
                log.warning("%s: reference %s: only %d pixels clear in both dates; its fit "
                            "leans towards the date taken as it is", self.target.path.name,
                            ref.path.name, result.common)
        self.joint_fits = self._fit_groups(groups)
        self.similar = self._fit_similar(samples[0])

    def _fit_similar(self, samples: list[tuple[np.ndarray, np.ndarray]]
                     ) -> SimilarPixels | None:
        """The search of the target's clear pixels alike in the ``_similar_dates`` (None
        without such dates, or when one of them has no fit)."""
        dates = self._similar_dates
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
            solved = sums.solve(self._group_stride, fewest)
            if solved is not None and all(self.fitted[i].field is not None for i in group):
                fits.append(JointFit(group, *solved))
        return sorted(fits, key=lambda f: f.variance.mean())[: joint_fit.KEPT]

    @property
    def _tests_ring(self) -> bool:
        """Whether this statistics pass also gathers the buffer ring's sums (``RING_HAZE``)."""
        return (RING_HAZE is not None and not self.ring_tested and self.fit_buffer is None
                and "B02" in self.bands and self.params.buffer > FIT_BUFFER)

    @property
    def _group_stride(self) -> int:
        """The groups' sums count every pixel where the target is almost all cloud (the fits'
        own buffer), else every ``joint_fit.STRIDE``-th."""
        return 1 if self.few_clear else joint_fit.STRIDE

    @property
    def joint_members(self) -> set[int]:
        """The dates whose reflectance a block's groups (and the similar pixels) read."""
        return {i for fit in self.joint_fits for i in fit.dates} | set(
            () if self.similar is None else self.similar.dates)

    def _window_stats(self, window: Window) -> tuple[dict, list[dict], list[tuple]]:
        """Per reference: the cells' robust sums, shadow statistics, S1 difference histogram,
        own clear and valid pixel counts; per candidate group of dates, its sums (every
        ``_group_stride``-th row and column); the similar pixels' sample (``_similar_dates``'
        features [n, f] and the target [n, bands] on the sample grid, where all are clear).
        With the ring test (``_tests_ring``), the cells' and groups' sums and the sample also
        counting the ring the cloud buffer takes from the fits."""
        top, left = int(window.row_off), int(window.col_off)
        height, width = int(window.height), int(window.width)
        target, target_clear, _ = self._target_clear(top, left, height, width, self.fit_buffer)
        # the target's clear pixels: as the fits count them and, with the ring test, with the
        # ring its cloud buffer takes from them
        masks = [target_clear]
        if self._tests_ring:
            masks.append(self._target_clear(top, left, height, width, FIT_BUFFER)[1])
        target_s1 = None
        out = {}
        step = slice(None, None, self._group_stride)
        counted = np.zeros_like(target_clear)  # the target's clear pixels the groups count
        counted[step, step] = masks[-1][step, step]
        sampled = {}  # the groups' dates there: reflectance and clear
        members = {i for group in self._groups for i in group}
        grid = sample_grid(top, left, height, width,
                           sample_stride(self.target.height, self.target.width))
        alike = {}  # the similar pixels' dates on the sample grid: reflectance and clear
        for ref in self.references:
            refl, valid, clear = ref.clear(top, left, height, width, with_shadow=False)
            if ref.index in members:
                sampled[ref.index] = refl[:, counted], clear[counted]
            if ref.index in self._similar_dates:
                alike[ref.index] = refl[:, grid], clear[grid]
            cells = [_cell_sums(refl, target, mask & clear, top, left) for mask in masks]
            diff = None
            if self._checks_change(ref):
                if target_s1 is None:
                    target_s1 = box_db(self._s1_block(self.s1, top, left, height, width))
                delta = box_db(self._s1_block(ref.s1, top, left, height, width)) - target_s1
                diff = difference_histogram(delta)
            out[ref.index] = (cells, window_shadow_stats(refl, valid, self.bands), diff,
                              int(clear.sum()), int(valid.sum()),
                              int(valid[_inside(ref, top, left, height, width)].sum()))
        joint_sums = []
        values = target[:, counted]
        for mask in masks:
            kept = mask[counted]
            joint_sums.append({})
            for group in self._groups:
                common = np.logical_and.reduce([sampled[i][1] for i in group]) & kept
                if common.any():
                    joint_sums[-1][group] = JointSums.of(
                        [sampled[i][0][:, common] for i in group], values[:, common])
        samples = []
        dates, seen = self._similar_dates, target[:, grid]
        for mask in masks:
            common = np.logical_and.reduce([mask[grid], *(alike[i][1] for i in dates)])
            samples.append((np.concatenate([alike[i][0][:, common] for i in dates]).T,
                            seen[:, common].T) if dates else None)
        return out, joint_sums, samples

    def _target_clear(self, top: int, left: int, height: int, width: int,
                      buffer: int | None = None):
        """The target's reflectance and clear mask of a block: by the single-date mask (with
        ``buffer``, when given), less what the temporal test finds cloud once it is calibrated
        (where the test does not weigh the references, only where the single-date score is
        above ``THIN_SCORE`` of its threshold); and the background that judged it (None
        before)."""
        refl, single, judged, score, background = self._classes(top, left, height, width, buffer)
        cloud = judged == CLOUD
        if self.temporal is not None and not self.temporal.weighs:
            cloud &= score > THIN_SCORE * self.params.threshold
        return refl, np.where(cloud, CLOUD, single) == CLEAR, background

    def target_classes(self, top: int, left: int, height: int, width: int,
                       buffer: int | None = None):
        """The target's reflectance, single-date classes, classes by the temporal test (the
        single-date ones before it is calibrated) and single-date score of a block (the mask's
        cloud buffer ``buffer``, when given)."""
        return self._classes(top, left, height, width, buffer)[:4]

    def _classes(self, top: int, left: int, height: int, width: int, buffer: int | None):
        """``target_classes`` and the block's background (None before the temporal test is
        calibrated)."""
        judging = self.temporal is not None and self.temporal.calibrated
        params = self.params if buffer is None else replace(self.params, buffer=buffer)
        halo = params.halo + (GROW if judging else 0)
        refl, valid, classes, score = read_classified(
            mask_reader(self.target, self.bands, params, self.decoded), top, left, height,
            width, (self.target.height, self.target.width), halo, params, self.bands,
            self.shadow)
        judged, background = classes, None
        inner = (slice(halo, halo + height), slice(halo, halo + width))
        if judging:
            background = self.temporal.background(top, left, height, width, halo)
            judged = self.temporal.classify(refl, self.bands, classes,
                                            score > self.params.threshold, background)
            background = background.crop(*inner)
        return refl[:, inner[0], inner[1]], classes[inner], judged[inner], score[inner], \
            background

    def _s1_block(self, s1, top: int, left: int, height: int, width: int) -> np.ndarray:
        """S1 dB of a block of the target grid with the boxcar's context, cropped back after
        ``box_db``: callers crop with ``_crop``."""
        (block,) = read_padded(lambda w: (s1.read(w),), top, left, height, width,
                               self.target.height, self.target.width, CHANGE_BOX // 2)
        return block

    def estimate(self, top: int, left: int, height: int, width: int,
                 need: np.ndarray, background: Background | None = None,
                 terms: bool = False) -> ReferenceBlock | None:
        """The references' fill of the ``need`` pixels of a block of the target grid (it may
        reach beyond the scene: mirrored, as the target is); None when nothing is needed.
        Computed on strips of ``STRIP_COLUMNS`` columns, one reference after another, at the
        ``need`` pixels only; a reference pixel the temporal test finds off the ``background``
        of the block (computed when not given) is not taken."""
        used = self.used
        if not used or not need.any():
            return None
        values = np.zeros((len(self.bands), height, width), np.float32)
        source = np.zeros((height, width), np.uint8)
        spread = residual = None
        if terms:
            spread, residual = np.zeros_like(values), np.zeros_like(values)
        for c0 in range(0, width, STRIP_COLUMNS):
            cols = slice(c0, min(width, c0 + STRIP_COLUMNS))
            at = np.nonzero(need[:, cols])
            if not len(at[0]):
                continue
            judge = None
            if self.temporal is not None and self.temporal.weighs:
                judge = (self.temporal.background(top, left + c0, height, cols.stop - c0)
                         if background is None else background.crop(slice(None), cols))
            moments = None if spread is None else (
                np.zeros((len(self.bands), 1, len(at[0])), np.float32),
                np.zeros((len(self.bands), 1, len(at[0])), np.float32))
            pixels = (at[0], at[1] + c0)
            values[:, pixels[0], pixels[1]], source[pixels] = self._strip(
                used, top, left + c0, height, cols.stop - c0, at, judge, moments)
            if moments is not None:
                spread[:, pixels[0], pixels[1]], residual[:, pixels[0], pixels[1]] = (
                    part[:, 0] for part in moments)
        return ReferenceBlock(values, source,
                              None if spread is None else DateTerms(spread, residual))

    def _strip(self, used: list[Reference], top: int, left: int, height: int, width: int,
               at: tuple[np.ndarray, np.ndarray], background: Background | None,
               moments: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The fill [13, n] and source [n] of one strip (see :meth:`estimate`) at its n pixels
        ``at`` (rows, columns in the strip); with ``moments`` ([13, 1, n]), the predictions'
        weighted spread and the fits' weighted mean residual variance written into them
        (including a date the agreement check drops: its disagreement is part of the spread).
        The pixels' arrays are laid out as one row of n, [.., 1, n]."""
        bands, n = len(self.bands), len(at[0])
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
            if self._checks_change(ref) and target_s1 is None:
                target_s1 = self._s1_block(self.s1, top, left, height, width)
            score = self._add(ref, top, left, height, width, at, open_, target_s1, total,
                              weights, candidates, members, background, moments)
            if score is not None:
                _name_source(ref.index, score, best, source)
        alike = None
        if self.combine == "weighted":
            for index, score in self._add_groups(members, total, weights, moments):
                _name_source(index, score, best, source)
            alike = self._similar(members)
        del members
        if moments is not None:  # the sums before the agreement check, which may drop a date
            share = np.where(weights > 0, weights, 1)
            mean = total / share
            spread, residual = moments
            np.sqrt(np.maximum(spread / share - mean * mean, 0), out=spread)
            residual /= share
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
            total[:, take] += np.float32(SIMILAR) * (prediction - total[:, take])
        return total[:, 0], source[0]

    def _add(self, ref: Reference, top: int, left: int, height: int, width: int,
             at: tuple[np.ndarray, np.ndarray], open_: np.ndarray,
             target_s1: np.ndarray | None, total: np.ndarray,
             weights: np.ndarray, candidates: Candidates | None, members: dict,
             background: Background | None,
             moments: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray | None:
        """Add one reference's weighted prediction at the ``open_`` pixels it sees clear to
        ``total`` and its weight to ``weights`` (and offer it to ``candidates``), the strip's
        pixels ``at`` laid out as in ``_strip``; return its mean weight per pixel (None where it
        adds nothing). A reference of a fitted group also
        leaves its reflectance and pixels taken in ``members``. In place, so that one
        reference's arrays are held at a time (besides the groups' members). Pixels where the
        temporal test finds it off the ``background`` are not taken."""
        refl, _, clear = ref.clear(top, left, height, width, halo=EDGE_RAMP)
        ramp = _crop(edge_ramp(clear), EDGE_RAMP)[at][None]
        refl = _crop(refl, EDGE_RAMP)[:, at[0], at[1]][:, None]
        take = open_ & _crop(clear, EDGE_RAMP)[at][None]
        if self._checks_change(ref) and take.any():
            ref_s1 = self._s1_block(ref.s1, top, left, height, width)
            moved = changed(target_s1, ref_s1, self.fitted[ref.index].bias, self.threshold_db)
            take &= ~_crop(moved, CHANGE_BOX // 2)[at][None]
        if not take.any():
            return None
        prediction, offset, variance = (
            f[:, at[0], at[1]][:, None]
            for f in self.fitted[ref.index].field.at(top, left, height, width))
        prediction *= refl  # gain x reference + offset
        prediction += offset
        del offset
        factor: float | np.ndarray = ramp * np.float32(self._time_factor(ref))
        del ramp
        if background is not None:
            agreement = self.temporal.agreement(prediction[self.temporal.index], background)
            take &= agreement > 0
            if not take.any():
                return None
            factor = agreement * np.float32(factor)
        if ref.index in self.joint_members:
            members[ref.index] = refl, take
        del refl
        return _accumulate(ref.index, prediction, variance, factor, take, total, weights,
                           candidates, moments)

    def _add_groups(self, members: dict, total: np.ndarray, weights: np.ndarray,
                    moments: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> list[tuple[int, np.ndarray]]:
        """Add each fitted group's prediction where all its dates were taken (see ``_add``);
        return, per group that adds something, its nearest date's index and mean weight.
        Groups are not offered to the agreement check: where it drops a date, the fill is
        rebuilt from the single dates that agree, without the groups."""
        scores = []
        for fit in self.joint_fits:
            if not all(i in members for i in fit.dates):
                continue
            take = np.logical_and.reduce([members[i][1] for i in fit.dates])
            if not take.any():
                continue
            prediction = fit.predict([members[i][0] for i in fit.dates])
            variance = np.broadcast_to(fit.variance.astype(np.float32)[:, None, None],
                                       prediction.shape).copy()
            factor = math.prod(self._time_factor(self._by_index[i]) for i in fit.dates) ** (
                1 / len(fit.dates))
            score = _accumulate(fit.dates[0], prediction, variance, factor, take, total,
                                weights, None, moments)
            scores.append((fit.dates[0], score))
        return scores

    def _similar(self, members: dict) -> tuple[np.ndarray, np.ndarray] | None:
        """The similar pixels' prediction [bands, n] at the n pixels where all their dates
        were taken (see ``_add``), and where those are [h, w]; None where nowhere."""
        similar = self.similar
        if similar is None or not all(i in members for i in similar.dates):
            return None
        take = np.logical_and.reduce([members[i][1] for i in similar.dates])
        if not take.any():
            return None
        return similar.predict([members[i][0] for i in similar.dates], take), take

    def report(self, source_counts: np.ndarray) -> list[dict]:
        """Per reference: path, date, pixels clear in both, whether used, pixels it filled."""
        return [{"path": str(r.path), "date": None if r.acquired is None else
                 r.acquired.isoformat(), "index": r.index,
                 "common_clear_pixels": self.fitted[r.index].common,
                 "used": self.fitted[r.index].field is not None,
                 "filled_pixels": int(source_counts[r.index]),
                 **({} if r.shift is None else {
                     "shift_px": [round(r.shift.dx, 2), round(r.shift.dy, 2)],
                     "shift_applied": r.shift_applied}),
                 **({"s1_bias_db": [round(float(b), 2) for b in self.fitted[r.index].bias]}
                    if self._checks_change(r) else {})}
                for r in self.references]

    def tags(self, source_counts: np.ndarray) -> dict[str, str]:
        """GeoTIFF tags: the references (path, date, pixels filled) and pixels per source."""
        return {REFERENCES: json.dumps([
                    {"path": input_path(r.path), "date": None if r.acquired is None
                     else r.acquired.isoformat(), "used": self.fitted[r.index].field is not None,
                     "filled_pixels": int(source_counts[r.index])} for r in self.references]),
                "REFERENCE_COMBINE": self.combine,
                FROM_REFERENCES: str(int(source_counts[1:SINGLE_DATE].sum())),
                BY_MODEL: str(int(source_counts[SINGLE_DATE]))}

    def days_table(self) -> np.ndarray:
        """int16 [256]: days from the target to each source-map code's date (0 observed,
        ``DAYS_NODATA`` where unknown), as FORCE's compositing records them."""
        table = np.full(256, DAYS_NODATA, np.int16)
        table[OBSERVED] = 0
        for ref in self.references:
            if ref.acquired is not None and self.target_date is not None:
                table[ref.index] = (ref.acquired - self.target_date).days
        return table

    def close(self) -> None:
        for ref in self.references:
            ref.close()


def _cell_sums(refl: np.ndarray, target: np.ndarray, both: np.ndarray, top: int, left: int
               ) -> list[tuple]:
    """Each cell's (row, column, ``cell_sums``) of a window at (``top``, ``left``, multiples
    of ``CELL``), on the pixels ``both`` clear in the reference (``refl``) and the target; all
    the window's cells at once (``grouped_sums``)."""
    order, cells = _cell_major(*both.shape)
    taken = order[both.ravel()[order]]  # the pixels both clear, one cell after another
    cols = -(-both.shape[1] // CELL)
    sums = grouped_sums(np.take(refl.reshape(len(refl), -1), taken, axis=1),
                        np.take(target.reshape(len(target), -1), taken, axis=1),
                        np.bincount(cells[taken], minlength=-(-both.shape[0] // CELL) * cols))
    return [(top // CELL + k // cols, left // CELL + k % cols, *cell)
            for k, cell in enumerate(sums)]


@functools.lru_cache(maxsize=8)
def _cell_major(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of a window (flat indices) one ``CELL`` after another, each cell's in rows,
    and the cell of each pixel (row-major cell index)."""
    rows, cols = np.indices((height, width))
    cells = (rows // CELL * -(-width // CELL) + cols // CELL).ravel()
    return np.argsort(cells, kind="stable"), cells


def _inside(ref: Reference, top: int, left: int, height: int, width: int
            ) -> tuple[slice, slice]:
    """The part of a window of the target grid inside the border strips that the reference's
    shift may leave without data (``Reference.shift_strip``), as slices into the window."""
    strip_top, strip_bottom, strip_left, strip_right = ref.shift_strip()
    rows = (max(strip_top - top, 0), max(min(ref.grid.height - strip_bottom - top, height), 0))
    cols = (max(strip_left - left, 0), max(min(ref.grid.width - strip_right - left, width), 0))
    return slice(*rows), slice(*cols)


def ring_clear(fits: dict[int, CellFits], with_ring: dict[int, CellFits], band: int) -> bool:
    """Whether the target's pixels in the ring its cloud buffer takes from the fits (the
    difference between the sums of ``with_ring`` and of ``fits``, each date's over every pixel)
    are brighter in ``band`` than the rest of its clear pixels, against each date's scene-wide
    line, by less than ``RING_HAZE`` residual standard deviations (the median over the dates
    sharing ``MIN_PIXELS`` pixels of the ring and of the rest)."""
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
    log.debug("the ring the cloud buffer takes from the fits is %+.2f residual sd brighter in "
              "blue than the rest (median of %d dates)", median, len(excess))
    return median < RING_HAZE


def _name_source(index: int, score: np.ndarray, best: np.ndarray, source: np.ndarray) -> None:
    """Name ``index`` in ``source`` where its mean weight ``score`` is the largest so far."""
    wins = score > best
    source[wins] = index
    best[wins] = score[wins]


def _accumulate(index: int, prediction: np.ndarray, variance: np.ndarray,
                factor: float | np.ndarray,
                take: np.ndarray, total: np.ndarray, weights: np.ndarray,
                candidates: Candidates | None,
                moments: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Add a prediction [bands, h, w] with its weights at the ``take`` pixels to ``total`` and
    ``weights`` (and offer it to ``candidates`` as reference ``index``); return its mean weight
    per pixel. ``prediction`` is used up. ``moments``: the weighted squared predictions and
    residual variances are added to them too."""
    weight = reference_weight(variance, factor)
    weight[:, ~take] = 0
    score = weight.mean(axis=0)
    if candidates is not None:
        candidates.offer(index, score, prediction, variance, factor)
    if moments is not None:
        squares, variances = moments
        squares += weight * prediction * prediction
        variances += weight * variance
    del variance
    prediction *= weight
    total += prediction
    weights += weight
    return score


def reference_weight(variance: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    """A reference's weight: ``factor`` (its time factor) x (variance / VARIANCE_UNIT) **
    -WEIGHT_POWER, from the residual variance of its fit."""
    weight = _inverse_power(variance / VARIANCE_UNIT, WEIGHT_POWER)
    weight *= factor
    return weight


def _inverse_power(x: np.ndarray, power: float) -> np.ndarray:
    """float32 ``x ** -power``; for a whole ``power``, by squaring in float64 (a few times
    faster than float32's ``pow``, and as exact once rounded)."""
    if power != int(power) or power < 1:
        return x ** np.float32(-power)
    base, out, n = x.astype(np.float64), None, int(power)
    while n:  # binary exponentiation, lowest bit first
        last = n == 1
        if n & 1:  # base itself when it is not squared again (no copy: a fresh array faults)
            out = (base if last else base.copy()) if out is None else \
                np.multiply(out, base, out=out)
        n >>= 1
        if n:
            base *= base
    return np.reciprocal(out, out=out).astype(np.float32)


def edge_ramp(clear: np.ndarray) -> np.ndarray:
    """float32 [h, w]: a reference's weight factor near its own masked pixels, its distance
    to the nearest of them over ``EDGE_RAMP`` (1/EDGE_RAMP next to one, 1 from EDGE_RAMP px
    on), so that where it is masked the others take over gradually."""
    if not EDGE_RAMP:
        return np.ones(clear.shape, np.float32)
    distance = np.sqrt(squared_distance(~clear, EDGE_RAMP).astype(np.float32))
    return np.minimum(distance / EDGE_RAMP, 1, out=distance)


def _crop(a: np.ndarray, halo: int) -> np.ndarray:
    return a[..., halo : a.shape[-2] - halo, halo : a.shape[-1] - halo]


def difference_histogram(delta: np.ndarray) -> np.ndarray:
    """Counts [2, bins] of the finite differences of VV and VH (inner part of the block)."""
    delta = _crop(delta, CHANGE_BOX // 2)
    bins = int(2 * DIFF_RANGE / DIFF_STEP) + 1
    out = np.zeros((2, bins), np.int64)
    for pol in range(2):
        values = delta[pol][np.isfinite(delta[pol])]
        index = np.clip(np.rint((values + DIFF_RANGE) / DIFF_STEP), 0, bins - 1).astype(np.int64)
        out[pol] = np.bincount(index, minlength=bins)
    return out


def histogram_median(counts: np.ndarray) -> np.ndarray:
    """The median difference of each polarisation (0 where nothing was counted)."""
    medians = np.zeros(2)
    for pol in range(2):
        total = counts[pol].sum()
        if total:
            bin_ = int(np.argmax(np.cumsum(counts[pol]) >= (total + 1) // 2))
            medians[pol] = bin_ * DIFF_STEP - DIFF_RANGE
    return medians


def check_references(paths: Sequence[Path | str], reference_s1: Sequence[Path | str | None],
                     has_s1: bool, target: Path | str | None = None) -> None:
    """Refuse reference options that cannot go together, or missing files, before any work."""
    for what, path in [("reference", p) for p in paths] + [("reference S1", p)
                                                           for p in reference_s1 if p]:
        check_input(path, what, url=True)
    if as_url(target) is not None and target in paths:
        raise UsageError(f"reference {target} is the target scene itself: give other dates of "
                         "the place", "references", "s2_path")
    if target is not None and as_url(target) is None and Path(target).exists():
        for path in (p for p in paths if as_url(p) is None):
            if Path(path).samefile(target):
                raise UsageError(f"reference {Path(path).name} is the target scene itself: give "
                                 "other dates of the place", "references", "s2_path")
            if Path(path).is_file() and Path(target).is_file() and filecmp.cmp(path, target,
                                                                               shallow=False):
                raise UsageError(f"reference {Path(path).name} is a copy of the target scene "
                                 "(the same bytes): give other dates of the place",
                                 "references", "s2_path")
    if reference_s1 and len(reference_s1) != len(paths):
        raise UsageError(f"{len(reference_s1)} reference_s1=S1 for {len(paths)} references: give "
                         "one per reference, in the same order (none for a reference without "
                         "S1)", "reference_s1")
    if any(p is not None for p in reference_s1) and not has_s1:
        raise UsageError("reference_s1=S1 needs the target's Sentinel-1 too (s1_path=PATH): the "
                         "change check compares the two dates", "reference_s1", "s1_path")


def open_references(paths: Sequence[Path | str], target: Sentinel2, params: MaskParams,
                    shadow: ShadowThresholds | None, inputs: InputOptions = InputOptions(), *,
                    s1=None, reference_s1: Sequence[Path | str | None] = (),
                    quiet: bool = False, count: int | None = None,
                    bands: Sequence[str] | None = None, temporal: bool = False,
                    scratch: Path | str | None = None, decoded: DecodedScene | None = None,
                    room: ScratchRoom | None = None) -> ReferenceFill:
    """Open every reference (and its S1) on the target grid, read as ``inputs`` say, and run
    the statistics pass.

    ``reference_s1`` pairs an S1 file (or None) with each reference, in order (checked by
    :func:`check_references`); the change check needs the target's S1 too (``s1``). With
    ``count``, only the first ``count`` references that can serve are opened: one that does
    not overlap the target or cannot be read is skipped with a warning (batch's nearest dates,
    where one scene must not fail another); without, such a reference is an error.
    ``bands``: the target's bands the fill reads and returns, in order (default: all of them).
    With ``temporal``, the dates also judge the target's clouds (``temporal_mask.py``).
    ``scratch``: the output beside which a JPEG2000 reference is kept decoded
    (``references.open_reference``); ``decoded``: the target as a first pass decoded it,
    read back rather than decoded again where it holds ``bands``; ``room``: which references
    the run keeps decoded (``ScratchRoom``; default: each one that has room when it comes).
    """
    bands = tuple(bands or target.bands)
    references: list[Reference] = []
    skipped: list[dict] = []
    try:
        for position, path in enumerate(paths):
            if count is not None and len(references) == count:
                break
            twin = next((r.path for r in references if same_file(r.path, Path(path))), None)
            if twin is not None:
                log.warning("%s: reference %s is the same as %s: used once",
                            target.path.name, Path(path).name, twin.name)
                skipped.append({"path": str(path), "reason": f"the same as {twin}"})
                continue
            s1_path = reference_s1[position] if reference_s1 else None
            try:
                references.append(open_one(len(references) + 1, path, s1_path, target, params,
                                           inputs, quiet, bands=bands,
                                           count=min(count or len(paths), len(paths)),
                                           scratch=scratch, decoded=decoded, room=room))
            except UsageError:
                raise
            except CloudfreeError as exc:
                if count is None:
                    raise
                log.warning("%s: reference %s skipped, the next one taken: %s",
                            target.path.name, Path(path).name, exc)
                skipped.append({"path": str(path), "reason": str(exc)})
        fill = ReferenceFill(target, references, params, shadow, s1, COMBINE, skipped, bands,
                             temporal)
        fill.decoded = decoded
        fill.fit(quiet)
        return fill
    except BaseException:
        for ref in references:
            ref.close()
        raise


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths are one file, or two files with the same bytes."""
    if a.exists() and b.exists() and a.samefile(b):
        return True
    return a.is_file() and b.is_file() and a.stat().st_size == b.stat().st_size and \
        filecmp.cmp(a, b, shallow=False)


def open_one(index: int, path: Path | str, s1_path: Path | str | None, target: Sentinel2,
             params: MaskParams, inputs: InputOptions, quiet: bool, *,
             bands: Sequence[str] | None = None, count: int = 1,
             scratch: Path | str | None = None, decoded: DecodedScene | None = None,
             room: ScratchRoom | None = None) -> Reference:
    """One reference (and its S1, if given) on the target grid, read in ``bands``, registered
    to it (the target read back from ``decoded``, when given); one of ``count`` opened
    together (kept decoded beside ``scratch``: see ``open_reference``)."""
    scene = open_sentinel2(path, inputs.offset, inputs.level)
    try:
        ref = open_reference(index, scene, target, params, bands, count, scratch, quiet, room)
        register(ref, target, params, decoded=decoded)
    except BaseException:
        scene.close()
        raise
    if ref.acquired is None:
        log.warning("%s: reference %s has no date (in its name or tags): it weighs as the "
                    "farthest dated one", target.path.name, ref.path.name)
    if s1_path is not None:
        try:
            ref.s1 = coregister_to_grid(s1_path, target, inputs, quiet=quiet)
        except BaseException:
            ref.close()
            raise
    return ref


def source_map(valid: np.ndarray, filled: np.ndarray, reference: np.ndarray | None
               ) -> np.ndarray:
    """Where each output pixel came from: OBSERVED, 1..N (a reference), SINGLE_DATE (the
    model) or SOURCE_NODATA; uint8 [h, w]."""
    out = np.where(filled, SINGLE_DATE, OBSERVED).astype(np.uint8)
    if reference is not None:
        out = np.where(filled & (reference > 0), reference, out).astype(np.uint8)
    out[~valid] = SOURCE_NODATA
    return out


def source_colormap(count: int) -> dict[int, tuple[int, int, int, int]]:
    """Colour table of the source map: observed grey, references in distinct hues, the
    single-date model red, nodata black."""
    table = {OBSERVED: (160, 160, 160, 255), SINGLE_DATE: (220, 30, 30, 255),
             SOURCE_NODATA: (0, 0, 0, 0)}
    for index in range(1, count + 1):
        hue = (index - 1) * 0.618034 % 1.0
        r, g, b = (int(255 * c) for c in colorsys.hsv_to_rgb(0.2 + 0.6 * hue, 0.7, 0.9))
        table[index] = (r, g, b, 255)
    return table
