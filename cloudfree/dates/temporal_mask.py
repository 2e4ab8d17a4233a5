"""Clouds, haze and shadows of a target found by comparing it with its reference dates.

With other dates of the place, a pixel is judged against what those dates say it should look
like, not by its own brightness alone (the idea of MAJA's multi-temporal cloud test, CNES, and of
Tmask, Zhu and Woodcock 2014):

1. background: every reference clear at the pixel (its own single-date mask) is mapped onto the
   target's radiometry by its fitted lines (``radiometry.py``); the median of the ``SLOTS``
   nearest in date is the pixel's background. References are read one at a time and only
   ``SLOTS`` predictions are kept per pixel, so memory does not grow with their number.
   In B10 (``SCENE_WIDE``) each reference predicts by its scene-wide line, not the local
   cells: B10 sees almost no ground, so a local line follows the dates' cirrus and takes up a
   veil that covers its cells (a thin cloud over most of the scene).
2. noise: the residual target - background over the pixels the single-date mask finds clear
   gives each band's noise, 1.4826 x its median absolute deviation (a scene-wide histogram,
   ``TemporalMask.calibrate``). Residuals are measured in these units (z). In ``SCENE_WIDE``
   bands the level of the clear land and the noise come from the lower tail alone (a normal
   distribution through its ``TAIL`` percentiles): a veil only brightens, and one over most of
   the scene would otherwise set both. In aerosol and blue (``TAIL_LEVEL``) the level comes
   from the lower tail too, never above 0, and the noise still from all the residuals: a thin
   cloud over much of a cell is clear to the single-date mask, so its line takes up part of
   the veil, which leaves the clear land below 0 and the veil less above it than it is (the
   pool's series: a cloud blended at 15-30 % over a third of a 128 px target, +0.024 in blue,
   stood +0.018 above the dates' prediction and the clear land -0.004 below); the refits then
   leave the veil found out of the lines. A veil only lowers the clear land: where its
   residuals reach further down than up the tail alone would raise the level, and the test
   would find less. The lower tail's spread is not the noise there: the clear land's
   residuals mostly reach further up than down (bright land that changed), and in that spread
   the test took clear land. Without the refits (no aerosol or cirrus: L2A) the level stays 0:
   there the lower level took about as much clear land as it gave back, and filled the same.
3. target: brightening in blue and aerosol (the smaller of their z above ``SIGMAS``) marks cloud
   and haze where it raises HOT = B02 - 0.5 B04 too (the haze optimised transform of Zhang,
   Guindon and Cihlar 2002, as in ``haze.py``): a veil of opacity t raises HOT by t x (HOT of
   cloud - HOT of the land), and cloud's HOT (about 0.26) is above any land's but snow's,
   while land that changed (a field harvested, soil laid bare) brightens red more than blue
   and lowers it. A cloud's own edge may lower it too (red and blue see the cloud from
   slightly different angles: a coloured fringe), and is taken by the growth below.
   Brightening in B10 marks cirrus (alone while the lines are refitted, so that the fits leave
   a veil out; in the final mask only where blue and aerosol rise by half as much, as the
   target's own thin cirrus of a clear date rises there little); darkening in both NIR and
   SWIR marks shadow, which grows by up to ``SHADOW_GROW`` pixels into neighbours darkened by
   half as much (its penumbra). ``remove`` fills only the shadows its clouds cast
   (``shadow.tied_shadows``), with the penumbra the test found around them (``penumbra``).
   The detection grows by up to ``GROW`` pixels into neighbours brightened by half as much,
   whatever their HOT (hysteresis); a pixel in the single-date mask's buffer needs only that
   half, and one the single-date score itself calls cloud stays cloud. The cloud then grows by
   up to ``FRINGE`` pixels (diagonals too) into the veiled fringe at its edge: neighbours
   brightened by ``FRINGE_Z`` in blue alone where HOT rises. Aerosol (B01) is sampled at 60 m,
   so a wisp or a haze a few 10 m pixels wide barely raises it, and the smaller of the two z
   left such wisps beside the cloud as clear land (the bundled series' cumulus of 5 July: 299
   kept pixels within 10 px of it brighter in blue than its four references by more than 0.03,
   and in HOT by 0.015, after the date's own offset; 20 with the fringe). A pixel so veiled
   within ``FRINGE`` px of the cloud that is darkened in NIR and SWIR by half the threshold
   too is cloud as well, whether or not veiled pixels link it to the cloud: a wisp over the
   cloud's shadow, whose blue the shadow holds down, so that the veiled pixels around it fall
   short of ``FRINGE_Z``; relit as shadow (texture kept), its veil came out brighter still
   (the bundled series: a wisp north-west of the cumulus 0.045-0.05 above the references'
   median in blue, after relighting, where the date's own offset is 0.015). Without B01 (L2A)
   no fringe is grown: blue alone is the test there already. Where no reference is
   clear, the single-date classes stand. Single-date snow stays snow where near dates show
   snow too (of the references read for the pixel's background before its ``SLOTS`` were
   filled, at least ``SNOW_DATES``, or as many as see the ground clear there): snow lies for
   days to months, a cloud moves on. Elsewhere it is judged as the other pixels are and is
   cloud where the test finds cloud: a snow test (NDSI) passed by a bright patch that near
   dates do not show and that brightened aerosol and blue and raised HOT against them is a
   cloud (one other date may show the same "snow": a cloud of ice there too), or a pixel that
   changed as much (snow fallen and gone between near dates), which is filled from them
   either way.
4. whole date (``TemporalMask.judge_date``): a haze over the whole target is taken up by every
   fitted line, so the date's level is compared with the other dates' before any fit. A date's
   level in a band is the median reflectance of its own clear pixels, its anomaly that level
   less the median level of the ``DATE_NEIGHBOURS`` clear dates nearest in time; the clear
   references' anomalies give the spread (1.4826 x their MAD). The target is hazy all over, and
   all cloud where the dates judge, when its anomaly exceeds ``SIGMAS`` spreads in aerosol and
   blue but not in B10: a veil B10 shares is cirrus, which clear dates of a place often carry
   over their whole extent, and judged as haze the whole date would be replaced.
5. references: the same test on every reference's fitted prediction against the background
   (``TemporalMask.agreement``): its weight at a pixel falls as a Gaussian of its brightening
   in blue and aerosol and its darkening in NIR and SWIR (in noise units), and is 0 beyond
   ``SIGMAS`` or where any of these four bands is off by more than ``2 x SIGMAS``. The weights
   are per pixel, so a reference hazy all over drops out by itself.

Steps 5 and the refitting of the lines without what the test finds cloud
(``statistics.REFITS``) need aerosol, blue and cirrus (``TemporalMask.weighs``). With blue
alone (the ten bands of L2A) the test flags clear land beside the clouds too: on the L2A
benchmark's small targets mostly under cloud, the refits left half of the truly clear pixels out
of the fits and the weights dropped every date at many pixels, 26.85 dB against 30.13 without
either (``benchmarks/l2a_pool.py --half odd --temporal-mask``); there the test decides only
what is filled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from scipy import ndimage

from cloudfree.core.progress import progress
from cloudfree.core.threads import ordered_map, usable_cores
from cloudfree.dates.kept import KeptEdges, mirrored
from cloudfree.dates.radiometry import FitField
from cloudfree.dates.references import Reference
from cloudfree.dates.window_backgrounds import WindowBackgrounds
from cloudfree.io.decoded_scene import ScratchRoom
from cloudfree.io.rasters import block_windows
from cloudfree.mask.classify import CLEAR, CLOUD, NODATA, SHADOW, SNOW
from cloudfree.mask.haze import hot

log = logging.getLogger("cloudfree")

#: Bands compared between dates: aerosol and blue brighten under cloud and haze, NIR and SWIR
#: darken in shadow, B10 (cirrus) brightens under high thin cloud; red, with blue, tells a veil
#: from land that changed (HOT, step 3 of the module docstring).
DETECT: tuple[str, ...] = ("B01", "B02", "B04", "B08", "B11", "B10")
BRIGHT, DARK, CIRRUS = ("B01", "B02"), ("B08", "B11"), ("B10",)
#: Bands predicted by each reference's scene-wide line and calibrated on the lower tail.
SCENE_WIDE: tuple[str, ...] = CIRRUS
#: Bands whose clear level (not their noise) comes from the lower tail of the residuals where
#: the lines are refitted without what the test finds (``weighs``): the veil a cell's line took
#: up in part (step 2 of the module docstring).
TAIL_LEVEL: tuple[str, ...] = BRIGHT
#: Predictions kept per pixel for the background (the references nearest in date).
SLOTS = 5
#: Threshold in noise units (z) of the residuals. Not tuned: set once, and the odd half of the
#: pool's series reported held out (``benchmarks/reference_fill.py --half odd``); the first even
#: cases were looked at while building the test.
SIGMAS = 4.0
#: Pixels a detection grows into neighbours brightened by at least half the threshold.
GROW = 3
#: Pixels a cloud then grows into neighbours brightened in blue alone by at least ``FRINGE_Z``
#: (z) where HOT rises too: the thin cloud and haze at its edges (step 3 of the module
#: docstring). Chosen on the bundled series' preview, not on the pool: 6 px through four
#: neighbours left the wisp north-west of the cumulus, whose veiled pixels are linked to the
#: cloud only diagonally past its coloured edge (where HOT falls); the pool's series checks it
#: (benchmarks/records/other-dates.md).
FRINGE, FRINGE_Z = 10, SIGMAS / 2
#: Pixels a shadow grows into neighbours darkened by at least half the threshold: its
#: penumbra, which left dark at the filled shadow's edge reads as a seam. Chosen on the bundled
#: series, not on the pool: the pixels 2 px outside its filled shadows kept 0.65 of the
#: references' NIR with none, 0.75 with 3 px, 0.78 with 6 (0.92 farther from them).
SHADOW_GROW = GROW
#: Neighbours of a pixel: the eight around it.
EIGHT = np.ones((3, 3), bool)
#: Pixels of context the test needs around a block to judge it exactly.
REACH = max(GROW + FRINGE, SHADOW_GROW)
#: Single-date snow lies (and stays snow) where at least this many of the references read for
#: the background show snow, or as many as show the ground clear: one date showing it among
#: others that see the ground may hold the same cloud, one the snow test passed too.
SNOW_DATES = 2
#: Fewest clear references for the background to judge a reference (a median of fewer is one
#: of them).
MIN_JUDGES = 3
#: Residual histogram for the noise: range and step (reflectance).
RESIDUAL_RANGE, RESIDUAL_STEP = 0.5, 1e-4
#: Smallest noise (reflectance): one DN of L1C.
NOISE_FLOOR = 1e-4
#: The whole-date test: clear dates nearest in time that give a date's expected level; the share
#: of its valid pixels a reference must see clear to be a clear date; the fewest clear dates
#: for the test; the histogram step of the levels (reflectance, from 0 to 1).
DATE_NEIGHBOURS = 4
CLEAR_DATE = 0.9
MIN_DATES = 5
LEVEL_STEP = 1e-4
#: Lower-tail percentiles of the clear residuals that give a ``SCENE_WIDE`` band's level and
#: noise, and the standard normal's quantiles there.
TAIL = (0.05, 0.25)
TAIL_Z = (-1.6449, -0.6745)


def weighs_with(bands: Sequence[str]) -> bool:
    """Whether the test of a target of ``bands`` weighs the references and refits the lines
    without what it finds cloud: with aerosol, blue and cirrus (module docstring)."""
    return {*BRIGHT, *CIRRUS} <= set(bands)


def judges_by_default(bands: Sequence[str]) -> bool:
    """Whether the dates judge the clouds of a target of ``bands`` unless told: with blue and
    red (HOT), as L1C and the ten bands of L2A have; on both the temporal mask beat the
    single-date one."""
    return {"B02", "B04"} <= set(bands)


def level_anomalies(levels: np.ndarray, days: np.ndarray, clear: Sequence[int]) -> np.ndarray:
    """Each date's level [dates, bands] less the median level of the ``DATE_NEIGHBOURS``
    ``clear`` dates nearest in ``days`` (itself left out), in spreads of the clear dates' own
    such anomalies (centred on their median, 1.4826 x their median absolute deviation)."""

    def anomaly(i: int) -> np.ndarray:
        others = sorted((j for j in clear if j != i), key=lambda j: abs(days[j] - days[i]))
        return levels[i] - np.median(levels[others[:DATE_NEIGHBOURS]], axis=0)

    spread = np.array([anomaly(i) for i in clear])
    centre = np.median(spread, axis=0)
    scale = np.maximum(1.4826 * np.median(np.abs(spread - centre), axis=0), NOISE_FLOOR)
    return np.array([(anomaly(i) - centre) / scale for i in range(len(levels))])

@dataclass
class Background:
    """The median of the nearest clear references' predictions [detect bands, h, w] (NaN where
    none is clear), how many entered it [h, w] and whether the references read for it (before
    its slots were filled) show snow lying there [h, w] (``SNOW_DATES``)."""

    values: np.ndarray
    count: np.ndarray
    snowy: np.ndarray

    def crop(self, rows: slice, cols: slice) -> Background:
        return Background(self.values[:, rows, cols], self.count[rows, cols],
                          self.snowy[rows, cols])

    def at(self, rows: np.ndarray, cols: np.ndarray) -> Background:
        """The background at n pixels (rows, cols), laid out as one row of n [.., 1, n]."""
        return Background(self.values[:, rows, cols][:, None], self.count[rows, cols][None],
                          self.snowy[rows, cols][None])


def nan_median(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=0)``, equal to it (the mean of the two middle values when
    their number is even), NaN where all are NaN, for the few values of a pixel's slots: sorted
    by a network of elementwise minima and maxima over whole planes (NaN as infinity, last),
    which costs far less than ``np.sort`` along the first axis; and without nanmedian's
    warning, which ``warnings.catch_warnings`` cannot silence safely on several threads."""
    if len(values) == 1:
        return values[0].copy()
    count = len(values) - np.isnan(values).sum(axis=0, dtype=np.uint8)
    ordered = list(np.fmin(values, np.float32(np.inf)))  # NaN as infinity
    spare = np.empty_like(ordered[0])
    for end in range(len(values) - 1, 0, -1):
        for i in range(end):
            np.minimum(ordered[i], ordered[i + 1], out=spare)
            np.maximum(ordered[i], ordered[i + 1], out=ordered[i + 1])
            ordered[i], spare = spare, ordered[i]
    if (count == len(values)).all():  # every slot filled: the same two places everywhere
        high = len(values) // 2
        median = ordered[high - (len(values) % 2 == 0)] + ordered[high]
        median /= 2
        return median
    high = count >> 1  # the middle values' places among the sorted ones
    low = high - (((count & 1) == 0) & (high > 0))
    median, upper = np.empty_like(ordered[0]), np.empty_like(ordered[0])
    for place in range(len(values) // 2 + 1):
        np.copyto(median, ordered[place], where=low == place)
        np.copyto(upper, ordered[place], where=high == place)
    median += upper
    median /= 2
    median[count == 0] = np.nan
    return median


def _copy_background(into: Background, source: Background) -> None:
    """Copy ``source`` into ``into`` (views of the same shape)."""
    into.values[...] = source.values
    into.count[...] = source.count
    into.snowy[...] = source.snowy


class TemporalMask:
    """The temporal test of one target against its fitted references."""

    def __init__(self, height: int, width: int, references: Sequence[Reference],
                 fields: dict[int, FitField], bands: Sequence[str],
                 acquired: date | None = None, name: str = "the scene") -> None:
        self.height, self.width = height, width
        self.name = name  # the target's, for messages
        self.references = list(references)  # nearest date first
        self.fields = fields
        self.detect = tuple(b for b in DETECT if b in bands)  # those the scenes have
        self.index = [list(bands).index(b) for b in self.detect]  # in the scenes' bands
        self.scene_wide = np.isin(self.detect, SCENE_WIDE)
        # refits the lines without what it finds cloud and weighs the references: only with
        # aerosol, blue and cirrus (module docstring)
        self.weighs = weighs_with(self.detect)
        self.noise = np.full(len(self.detect), np.inf)  # until calibrated: nothing is detected
        self.level = np.zeros(len(self.detect))  # the clear land's residual
        self.acquired = acquired  # the target's date
        self.hazy: bool | None = None  # the whole date, once judged (``judge_date``)
        self.settled = False  # whether the fits are final (``DateStatistics.fit``)
        #: the chunks' backgrounds at the edges of the blocks computed last (``background``)
        self._kept: KeptEdges[Background] = KeptEdges()
        #: the statistics pass's windows' backgrounds, computed once per fit (``keep_windows``)
        self._windows: WindowBackgrounds | None = None

    def keep_windows(self, folder: Path, block: int, room: ScratchRoom | None = None) -> None:
        """From now on, keep the background of each window of ``block`` px with the ``REACH``
        px around it once computed, until the next fit (``window_backgrounds.py``): in a
        scratch in ``folder``, where ``room`` holds it; else each is computed where asked for."""
        self._windows = WindowBackgrounds.beside(folder, self.height, self.width, block, REACH,
                                                 len(self.detect), room)

    def _extreme(self, z: np.ndarray, names: Sequence[str], largest: bool) -> np.ndarray:
        """The largest (or smallest) z [h, w] over the ``names`` the scenes have; -inf (or
        inf) when they have none."""
        rows = [self.detect.index(b) for b in names if b in self.detect]
        if not rows:
            return np.full(z.shape[1:], -np.inf if largest else np.inf, np.float32)
        return (np.max if largest else np.min)(z[rows], axis=0)

    @property
    def calibrated(self) -> bool:
        return bool(np.isfinite(self.noise).any())

    def refitted(self, references: Sequence[Reference], fields: dict[int, FitField]) -> None:
        """New fits, made on the pixels the test found clear: the clear land's residual is
        then near 0 (the level is measured again by ``calibrate``, the noise kept until)."""
        self.references, self.fields = list(references), fields
        self.level = np.zeros(len(self.detect))
        self._kept.clear()
        if self._windows is not None:
            self._windows.clear()

    def background(self, top: int, left: int, height: int, width: int,
                   halo: int = 0, keep: int = 0) -> Background:
        """The background of a block of the target grid with ``halo`` pixels of context (the
        block may reach beyond the scene: mirrored, as the target is). A pixel's background
        does not depend on the block: with ``keep``, the block's ``keep`` bottom rows and
        right columns (its halo included) are kept, and the next blocks compute only the
        rectangle around what they do not find kept (``kept.py``)."""
        top, left, height, width = top - halo, left - halo, height + 2 * halo, width + 2 * halo
        if not keep:
            return self._windows_or_computed(top, left, height, width)
        values = np.empty((len(self.detect), height, width), np.float32)
        count = np.empty((height, width), np.int64)
        snowy = np.empty((height, width), bool)
        out = Background(values, count, snowy)
        missing = np.ones((height, width), bool)
        for here, there, kept in self._kept.overlapping(top, left, height, width):
            _copy_background(out.crop(*here), kept.crop(*there))
            missing[here] = False
        rows, cols = np.nonzero(missing.any(axis=1))[0], np.nonzero(missing.any(axis=0))[0]
        if len(rows):
            box = (mirrored(top + rows[0], top + rows[-1] + 1, self.height, top, height),
                   mirrored(left + cols[0], left + cols[-1] + 1, self.width, left, width))
            block = (top + box[0].start, left + box[1].start, box[0].stop - box[0].start,
                     box[1].stop - box[1].start)
            # from the statistics pass's windows where the last fit's are all kept and cover it
            kept_windows = None if self._windows is None else self._windows.region(block)
            _copy_background(out.crop(*box), self._background(*block) if kept_windows is None
                             else Background(*kept_windows))
        self._kept.keep(top, left, height, width, keep,  # the counts as bytes (at most SLOTS)
                        lambda r, c: Background(values[:, r, c].copy(),
                                                count[r, c].astype(np.uint8), snowy[r, c].copy()))
        return out

    def _windows_or_computed(self, top: int, left: int, height: int, width: int
                             ) -> Background:
        """The background of a block from the kept windows' where it is made of them
        (``keep_windows``), else computed."""
        if self._windows is not None:
            kept = self._windows.get((top, left, height, width), self._arrays)
            if kept is not None:
                return Background(*kept)
        return self._background(top, left, height, width)

    def _arrays(self, top: int, left: int, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_background`'s arrays, as ``WindowBackgrounds`` keeps them."""
        background = self._background(top, left, height, width)
        return background.values, background.count, background.snowy

    def _fill_windows(self, quiet: bool) -> None:
        """Each kept window's background (``keep_windows``) computed, on every core: more
        windows than the calibration's, which then reads them back."""
        windows = self._windows
        if windows is None:
            return

        def one(block: tuple[int, int, int, int]) -> None:
            windows.get(block, self._arrays)

        with closing(ordered_map(one, windows.grown, usable_cores())) as results:
            for _ in progress(results, len(windows.grown), "temporal background", quiet):
                pass

    def close(self) -> None:
        """Give the kept windows' scratch back."""
        if self._windows is not None:
            self._windows.close()

    def _background(self, top: int, left: int, height: int, width: int) -> Background:
        """The background of a block of the target grid (see :meth:`background`)."""
        shape = (height, width)
        kept = max(1, min(SLOTS, len(self.references)))  # fewer references: fewer slots
        slots = np.full((kept, len(self.detect), *shape), np.nan, np.float32)
        count = np.zeros(shape, np.int64)
        snowy = np.zeros(shape, np.int64)  # the references read that show snow
        for filled, ref in enumerate(self.references):
            if (count >= kept).all():
                break
            refl, _, classes = ref.classes(top, left, height, width, with_shadow=False,
                                           planes=self.index)
            prediction = self.predict(ref, refl, top, left)
            open_slots = count < kept
            snowy += (classes == SNOW) & open_slots
            take = (classes == CLEAR) & open_slots
            for slot in range(min(filled + 1, kept)):  # each pixel's next free slot
                into = take & (count == slot)
                if into.any():
                    np.copyto(slots[slot], prediction, where=into)
            count += take
        snowy = (snowy >= SNOW_DATES) | ((snowy > 0) & (snowy >= count))
        return Background(nan_median(slots), count, snowy)

    def predict(self, ref: Reference, refl: np.ndarray, top: int, left: int) -> np.ndarray:
        """A reference's fitted prediction of the target in the compared bands (by its
        scene-wide line in ``SCENE_WIDE`` bands) from its reflectance in them [detect bands,
        h, w]."""
        field = self.fields[ref.index]
        gain, offset = field.line_at(top, left, *refl.shape[1:], self.index)
        if field.scene is not None:
            rows = np.nonzero(self.scene_wide)[0]
            gain[rows] = field.scene[0][self.index][rows, None, None]
            offset[rows] = field.scene[1][self.index][rows, None, None]
        gain *= refl
        gain += offset
        return gain

    def z(self, values: np.ndarray, background: Background) -> np.ndarray:
        """Residuals [detect bands, h, w] in noise units (NaN without background)."""
        return (values - background.values) / self.noise.astype(np.float32)[:, None, None]

    def judge_date(self, target_clear, quiet: bool) -> None:
        """Whether the target is hazy all over (step 4 of the module docstring), from its
        single-date clear pixels (``target_clear`` as for ``calibrate``) and each reference's
        own."""
        names = [b for b in (*BRIGHT, *CIRRUS) if b in self.detect]
        rows = [self.index[self.detect.index(b)] for b in names]
        dates = [r for r in self.references if r.acquired is not None]
        self.hazy = False
        if self.acquired is None or len(dates) < MIN_DATES or not set(BRIGHT) <= set(names):
            return
        bins = int(1 / LEVEL_STEP) + 1

        def histogram(values: np.ndarray) -> np.ndarray:
            index = np.clip(np.rint(values / LEVEL_STEP), 0, bins - 1).astype(np.int64)
            return np.stack([np.bincount(i, minlength=bins) for i in index])

        def one(window):
            top, left = int(window.row_off), int(window.col_off)
            h, w = int(window.height), int(window.width)
            refl, clear, _ = target_clear(top, left, h, w)
            counts = [histogram(refl[rows][:, clear])]
            valid = []
            for ref in dates:
                refl, ok, clear = ref.clear(top, left, h, w, with_shadow=False)
                counts.append(histogram(refl[rows][:, clear]))
                valid.append(ok.sum())
            return np.stack(counts), np.array(valid)

        counts = np.zeros((len(dates) + 1, len(rows), bins), np.int64)
        valid = np.zeros(len(dates), np.int64)
        windows = block_windows(self.width, self.height)
        with closing(ordered_map(one, windows, usable_cores())) as results:
            for part, ok in progress(results, len(windows), "date levels", quiet):
                counts += part
                valid += ok
        total = counts.sum(axis=2)
        clear = [i for i, r in enumerate(dates, 1) if total[i, 0] >= CLEAR_DATE * valid[i - 1]]
        if total[0, 0] == 0 or len(clear) < MIN_DATES:
            return
        median = np.argmax(np.cumsum(counts, axis=2) >= (total[..., None] + 1) / 2, axis=2)
        levels = median * LEVEL_STEP  # [1 + dates, bands]
        days = np.array([0] + [(r.acquired - self.acquired).days for r in dates])

        z = dict(zip(names, level_anomalies(levels, days, clear)[0], strict=True))
        log.debug("the scene's level against its %d clear dates, in their spreads: %s",
                  len(clear), ", ".join(f"{b} {v:+.1f}" for b, v in z.items()))
        self.hazy = bool(min(z[b] for b in BRIGHT) > SIGMAS
                         and all(z[b] <= SIGMAS for b in CIRRUS if b in z))
        if self.hazy:
            log.warning("%s is brighter in aerosol and blue than its clear reference dates "
                        "by %.1f to %.1f times their spread, all over: it is taken as hazy "
                        "and filled from them wherever they see clear", self.name,
                        *sorted(z[b] for b in BRIGHT))

    def calibrate(self, target_clear, quiet: bool) -> None:
        """Each compared band's noise from the residuals on the single-date clear pixels;
        ``target_clear(top, left, h, w)`` gives the target's reflectance, clear mask and the
        block's background when it computed one (else None)."""
        bins = int(2 * RESIDUAL_RANGE / RESIDUAL_STEP) + 1
        counts = np.zeros((len(self.detect), bins), np.int64)
        self._fill_windows(quiet)

        def one(window):
            top, left = int(window.row_off), int(window.col_off)
            h, w = int(window.height), int(window.width)
            refl, clear, bg = target_clear(top, left, h, w)
            if bg is None:
                bg = self.background(top, left, h, w)
            use = clear & (bg.count > 0)
            out = np.zeros_like(counts)
            for i, band in enumerate(self.index):
                r = refl[band][use] - bg.values[i][use]
                index = np.clip(np.rint((r + RESIDUAL_RANGE) / RESIDUAL_STEP), 0, bins - 1)
                out[i] = np.bincount(index.astype(np.int64), minlength=bins)
            return out

        windows = block_windows(self.width, self.height)
        with closing(ordered_map(one, windows, usable_cores())) as results:
            for part in progress(results, len(windows), "temporal noise", quiet):
                counts += part
        noise, level = self.noise.copy(), self.level.copy()  # kept where none is clear now
        centres = np.arange(bins) * RESIDUAL_STEP - RESIDUAL_RANGE
        for i, band in enumerate(self.detect):
            total = counts[i].sum()
            if not total:
                continue
            low, high = (centres[np.argmax(np.cumsum(counts[i]) >= q * total)] for q in TAIL)
            tail_noise = max((high - low) / (TAIL_Z[1] - TAIL_Z[0]), NOISE_FLOOR)
            tail_level = high - TAIL_Z[1] * tail_noise
            if self.scene_wide[i]:
                noise[i], level[i] = tail_noise, tail_level
                continue
            median = centres[np.argmax(np.cumsum(counts[i]) >= (total + 1) / 2)]
            deviation = np.abs(centres - median)
            order = np.argsort(deviation, kind="stable")
            mad = deviation[order][np.argmax(np.cumsum(counts[i][order]) >= (total + 1) / 2)]
            noise[i] = max(1.4826 * mad, NOISE_FLOOR)
            if band in TAIL_LEVEL and self.weighs:  # a veil taken up lowers the clear land
                level[i] = min(tail_level, 0.0)
        self.noise, self.level = noise, level

    def classify(self, refl: np.ndarray, bands: Sequence[str], classes: np.ndarray,
                 core: np.ndarray, background: Background) -> np.ndarray:
        """The target's classes [h, w] from its reflectance (``bands``), its single-date
        ``classes``, the single-date cloud before any buffer (``core``) and the background of
        the same block (module docstring); the single-date classes until the noise is
        known."""
        if not self.calibrated:
            return classes
        z = self.z(refl[[list(bands).index(b) for b in self.detect]]
                   - self.level.astype(np.float32)[:, None, None], background)
        judged = background.count > 0
        with np.errstate(invalid="ignore"):
            bright = self._extreme(z, BRIGHT, largest=False)
            seed = bright > SIGMAS
            fringe = np.zeros_like(seed)
            if {"B02", "B04"} <= set(self.detect):  # a veil raises HOT; changed land may not
                veil = hot(refl, tuple(bands)) > hot(background.values, self.detect)
                seed &= veil
                if "B01" in self.detect:  # blue alone sees what B01's 60 m pixels blur
                    fringe = veil & (z[self.detect.index("B02")] > FRINGE_Z)
            cirrus = self._extreme(z, CIRRUS, largest=True)
            dark = self._extreme(z, DARK, largest=True)
            # once the fits are settled, B10 marks cloud only where blue and aerosol rise too
            veiled = (bright > SIGMAS / 2) if self.settled else True
            strong = seed | ((cirrus > SIGMAS) & veiled)
            weak = (bright > SIGMAS / 2) | ((cirrus > SIGMAS / 2) & veiled)
            shadow = dark < -SIGMAS
        if SHADOW_GROW:  # the penumbra
            shadow |= ndimage.binary_dilation(shadow, iterations=SHADOW_GROW,
                                              mask=dark < -SIGMAS / 2)
        strong |= core | (weak & (classes == CLOUD)) | bool(self.hazy)
        cloud = ndimage.binary_dilation(strong, iterations=GROW, mask=weak) | strong
        if FRINGE and fringe.any():  # the cloud's veiled edge, and its veil over a shadow
            shaded = fringe & (dark < -SIGMAS / 2)
            if shaded.any():
                shaded &= ndimage.binary_dilation(cloud, EIGHT, iterations=FRINGE)
            cloud |= ndimage.binary_dilation(cloud, EIGHT, iterations=FRINGE, mask=fringe)
            cloud |= shaded
        out = classes.copy()
        here = judged & (classes != NODATA) & (classes != SNOW)
        out[here] = CLEAR
        out[here & shadow] = SHADOW
        out[here & cloud] = CLOUD
        # snow no near date shows, brightened as cloud brightens (module docstring, step 3)
        out[judged & (classes == SNOW) & ~background.snowy & cloud] = CLOUD
        return out

    @staticmethod
    def penumbra(judged: np.ndarray, tied: np.ndarray) -> np.ndarray:
        """The ``tied`` classes [h, w] (the shadows the clouds cast, ``shadow.tied_shadows``)
        with the shadow pixels the test ``judged`` within ``SHADOW_GROW`` px of their shadows
        made shadow again: the tie keeps only what is darkened as a shadow's core is, and the
        penumbra it let go, left dark beside the filled shadow, read as a seam."""
        if not SHADOW_GROW:
            return tied
        shadow = ndimage.binary_dilation(tied == SHADOW, iterations=SHADOW_GROW,
                                         mask=judged == SHADOW)
        return np.where(shadow, np.uint8(SHADOW), tied)

    def agreement(self, prediction: np.ndarray, background: Background) -> np.ndarray:
        """A reference's weight factor [h, w] in 0..1 from its fitted prediction [detect bands,
        h, w] against the background: exp(-(b^2 + d^2) / 2) for its brightening b in blue and
        aerosol and its darkening d in NIR and SWIR (z, 0 when of the other sign), 0 where any
        of these four bands is off by more than ``2 x SIGMAS`` or b or d exceeds ``SIGMAS``; 1
        where fewer than ``MIN_JUDGES`` references judge it."""
        z = self.z(prediction, background)
        with np.errstate(invalid="ignore"):
            bright = np.maximum(self._extreme(z, BRIGHT, largest=False), 0)
            dark = np.maximum(-self._extreme(z, DARK, largest=True), 0)
            local = np.abs(z[[self.detect.index(b) for b in (*BRIGHT, *DARK)
                              if b in self.detect]])
            off = (bright > SIGMAS) | (dark > SIGMAS) | (local > 2 * SIGMAS).any(axis=0)
            weight = np.exp(-0.5 * (bright**2 + dark**2))
        weight = np.where(off, 0, np.nan_to_num(weight, nan=1.0)).astype(np.float32)
        return np.where(background.count < MIN_JUDGES, np.float32(1), weight)
