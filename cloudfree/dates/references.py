"""Reference dates: other Sentinel-2 scenes of the target's place, on its grid, masked, dated.

A reference is an L1C GeoTIFF or ``.SAFE`` folder of another date, in any CRS or grid that
overlaps the target. It is read window by window on the target's grid: directly when the grids
are the same, otherwise resampled (bilinear, NaN nodata) with the machinery that puts Sentinel-1
on the grid (``coregister.warp_onto``); one kept decoded (``open_reference``) is resampled so
once, window by window, as it is registered (``settle``), and read directly after that. Its
radiometric offset is its own (``--offset auto`` reads each product's metadata or tags). Its
mask is the target's (same method, thresholds and buffer). Its cloud shadows are not masked
by default (``REFERENCE_SHADOW``): the scene-relative shadow test also takes dark ground (23 %
of the clear winter sample), and on the pool's series masking them lowered the fill's mean
gain over the median fill from +4.5 to +3.6 dB (12 of the benchmark's cases, weight power 2;
benchmarks/records/other-dates.md).

Its date, as the provenance tags find a scene's (``provenance.acquisition_time``): the name of
the file or ``.SAFE`` folder (SAFE naming ``..._MSIL1C_20200604T101031_...``, SEN12MS-CR-TS
naming ``..._ImgNo_3_2018-02-10_patch_0.tif``), else the ``PRODUCT_START_TIME`` of a
``.SAFE`` folder's ``MTD_MSIL1C.xml`` or a date tag of the GeoTIFF
(``ACQUISITION_DATE``, ``SENSING_TIME``, ...; ``TIFFTAG_DATETIME``, often the time the file was
written, last). A reference with no date is allowed; it comes after the dated ones, in the order
given (``weights.days_apart``).

Registration (``register``): the reference's gradient orientations in ``REGISTER_BANDS`` are
correlated with the target's on their common clear land, over the central
``coregister.ESTIMATION_WINDOW`` px (``shift_estimation.py``, the significance and halves rule
of the S1 co-registration); a trusted shift of at least ``MIN_APPLIED`` px is applied by reading
the reference that far over (bilinear), and reported.

S1 change check: given the Sentinel-1 of the target date and of a reference date, both on the
target's grid, a pixel does not take that reference where the backscatter changed by more than
speckle explains. Both are averaged in linear power over a ``CHANGE_BOX`` x ``CHANGE_BOX``
boxcar; the log-ratio of two independent means of L'-look gamma intensities has the standard
deviation (10 / ln 10) sqrt(2 psi1(L')) dB (psi1 the trigamma function; e.g. Lee and Pottier,
Polarimetric Radar Imaging, 2009, ch. 4). L' = ``ENL`` x boxcar pixels / ``CORRELATION``: the
equivalent number of looks of IW GRD high resolution (4.4, ESA Sentinel-1 product definition)
times the independent samples in the box (GRD pixels of 10 m over a resolution of about 20 x 22 m
are correlated in groups of about 4). A change beyond ``CHANGE_SIGMAS`` of these in VV or VH,
after removing the scene-wide median difference of each polarisation (orbit and incidence),
excludes the pixel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from scipy import ndimage, special

from cloudfree.core.errors import CloudfreeError
from cloudfree.core.progress import progress
from cloudfree.core.stop import check_stop
from cloudfree.core.threads import ordered_map, usable_cores
from cloudfree.coregister.s1_to_s2 import (
    ESTIMATION_WINDOW,
    Grid,
    choose_resampling,
    source_window,
    warp_onto,
)
from cloudfree.coregister.shift_estimation import ShiftEstimate, estimate_shift, orientation_field
from cloudfree.io.decoded_scene import DecodedScene, ScratchRoom, has_room, scratch_bytes
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import check_map_crs, crop_halo, mirrors_once, read_padded
from cloudfree.io.sentinel1 import db_to_linear
from cloudfree.io.sentinel2 import Sentinel2, open_sentinel2
from cloudfree.mask.classified_scene import ClassifiedScene
from cloudfree.mask.classify import CLEAR, MaskParams, ShadowThresholds
from cloudfree.mask.decoded_copy import decoded_copy
from cloudfree.mask.scene_input import (
    MaskInput,
    SceneCopy,
    mask_input,
    mask_reader,
    read_classified,
    read_keeping,
    takes_scl,
)
from cloudfree.output.provenance import acquisition_time

log = logging.getLogger("cloudfree")

#: Whether a reference's cloud shadows are masked too (from its own scene-wide thresholds).
REFERENCE_SHADOW = False
#: Bands whose gradient orientations register a reference to the target, the largest shift
#: searched (px), and the smallest shift applied (px).
REGISTER_BANDS: tuple[str, ...] = ("B04", "B08", "B11")
MAX_REFERENCE_SHIFT = 5.0
MIN_APPLIED = 0.25
#: Boxcar (pixels) of the S1 change check, the looks of IW GRD high resolution, the pixels per
#: independent sample, and the threshold in standard deviations of the speckle log-ratio.
CHANGE_BOX = 5
ENL = 4.4
CORRELATION = 4.0
CHANGE_SIGMAS = 3.0
#: GDAL block cache (MB) the references' reads hold at most together, shared out evenly: each
#: reads through one set of handles, closed after reading its share
#: (``Sentinel2.share_handles``). Else GDAL's cache (``io.rasters.GDAL_CACHE_MB``, the room the
#: output's blocks need) fills with every reference's blocks, once per reading thread, and
#: memory grows with the number of references.
REFERENCE_CACHE_MB = 64
#: Histogram of the S1 difference (dB) for its scene-wide median (``difference_histogram``).
DIFF_RANGE, DIFF_STEP = 30.0, 0.05


def change_threshold_db(box: int = CHANGE_BOX, enl: float = ENL,
                        correlation: float = CORRELATION, sigmas: float = CHANGE_SIGMAS) -> float:
    """The |dB| change between two boxcar means that speckle exceeds with ~0.3 % chance."""
    looks = enl * box * box / correlation
    return float(sigmas * 10 / np.log(10) * np.sqrt(2 * special.polygamma(1, looks)))


def acquisition_date(s2: Sentinel2) -> date | None:
    """The date of a scene: from its name (file or ``.SAFE`` folder), else its date tags."""
    found = acquisition_time(s2.path)
    return None if found is None else found.date()


#: Half-width in pixels of each resampling kernel, by which a shifted reference's border pixels
#: may miss data (``Reference.shift_strip``).
KERNEL_RADIUS = {Resampling.nearest: 0.5, Resampling.bilinear: 1.0, Resampling.cubic: 2.0,
                 Resampling.cubic_spline: 2.0, Resampling.lanczos: 3.0}


@dataclass
class Reference:
    """One reference date, read on the target grid. ``index`` is its 1-based place on the
    command line (its code in the source map)."""

    index: int
    s2: Sentinel2
    grid: Grid
    acquired: date | None
    resampling: Resampling | None  # None: the same grid as the target, read directly
    params: MaskParams  # its mask: the target's, with shadows
    bands: tuple[str, ...]  # the target's, in its order
    s1: object | None = None  # its Sentinel-1 on the target grid (read(window) -> dB [2, h, w])
    shadow: ShadowThresholds | None = None  # set by the statistics pass
    shift: ShiftEstimate | None = None  # its measured shift against the target (``register``)
    shift_applied: bool = False
    #: its ``bands`` (and SCL) decoded once and kept (``decoded_copy``), read back by every pass
    kept: SceneCopy | None = None
    #: the share of the window ``register`` reads that its mask finds clear (None: not read)
    sampled_clear: float | None = None
    #: its classes on the target grid, kept as the first pass over the grid classifies them
    #: (``keep_classes``), read back by every later one (None, or not complete: classified)
    classified: ClassifiedScene | None = None
    #: a resampled one's reflectance and validity on the target grid (float32), resampled
    #: once (``settle``) and read back directly by every pass (None: resampled by each read)
    on_grid: DecodedScene | None = None

    @property
    def path(self) -> Path:
        return self.s2.path

    def shift_strip(self) -> tuple[int, int, int, int]:
        """Width in pixels of the border strips (top, bottom, left, right) of the target grid
        that the applied shift, plus the resampling kernel, may leave without data: the side
        the reference is read over from, ``ceil(|shift| + kernel half-width)``; none unshifted."""
        if not self.shift_applied or self.shift is None:
            return 0, 0, 0, 0
        radius = KERNEL_RADIUS.get(self.resampling, 1.0)

        def width(d: float) -> int:
            return math.ceil(abs(d) + radius)

        dx, dy = self.shift.dx, self.shift.dy
        return (width(dy) if dy < 0 else 0, width(dy) if dy > 0 else 0,
                width(dx) if dx < 0 else 0, width(dx) if dx > 0 else 0)

    def read(self, window, planes: Sequence[int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Reflectance [bands, h, w] and valid mask [h, w] on a window of the target grid; with
        ``planes``, of those of its bands only (indices)."""
        if self.on_grid is not None:
            return self.on_grid.read(window, planes)[:2]
        read = self.s2.read if self.kept is None else self.kept.read
        bands = self.bands if planes is None else tuple(self.bands[i] for i in planes)
        if self.resampling is None:
            return read(window, bands)

        def source(win):
            refl, valid = read(win, bands)
            refl[:, ~valid] = np.nan
            return refl

        out = warp_onto(self.s2, source, len(bands), self.grid,
                        window_transform(window, self.grid.transform), window,
                        self.resampling, 1)
        valid = np.isfinite(out).all(axis=0)
        out[:, ~valid] = 0.0
        return out, valid

    def clear(self, top: int, left: int, height: int, width: int,
              with_shadow: bool = True, halo: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reflectance, valid and clear masks of a block of the target grid with ``halo`` pixels
        around it (mirrored beyond its edges), classified with the context the mask needs.
        Without ``with_shadow`` (the statistics pass, before the shadow thresholds are known)
        only clouds are masked."""
        refl, valid, classes = self.classes(top, left, height, width, with_shadow, halo)
        return refl, valid, classes == CLEAR

    def classes(self, top: int, left: int, height: int, width: int,
                with_shadow: bool = True, halo: int = 0, planes: Sequence[int] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``clear``, with the single-date classes [h, w] in place of the clear mask: read
        back from ``classified`` once it holds the whole grid's (the classes with shadows
        masked are classified each time), else classified and, for a window of its, kept
        there. With ``planes``, the reflectance of those of its bands only (indices; where the
        classes are read back, only those are read)."""
        params = self.params if with_shadow else replace(self.params, shadow=False)
        direct = self.resampling is None or self.on_grid is not None
        refl, valid, classes, _ = read_keeping(
            self._mask_reader(params), top, left, height, width,
            (self.grid.height, self.grid.width), halo, params, self.bands,
            self.shadow if with_shadow else None,
            None if params.shadow else self.classified,  # kept: the classes without shadows
            pads_itself=direct, same_read=not direct, planes=planes)
        return refl, valid, classes

    def sampled(self, top: int, left: int, height: int, width: int, step: int
                ) -> tuple[np.ndarray, np.ndarray] | None:
        """The reflectance and clear mask of ``clear`` without shadows, of every ``step``-th row
        and column of a block of the target grid from its top left pixel alone: read back
        where its classes are kept (``keep_classes``) and it is read directly from a scratch,
        which ``clear`` would then read back too; else None."""
        params = replace(self.params, shadow=False)
        classified = self.classified
        if classified is None or not classified.complete or not mirrors_once(
                top, left, height, width, self.grid.height, self.grid.width, params.halo):
            return None  # classified by ``clear``
        if self.on_grid is not None:
            scratch, reflectance = self.on_grid, as_reflectance
        elif (self.resampling is None and self.kept is not None and self.kept.decoded.complete
              and self.kept.decoded.bands == self.bands):
            scratch, reflectance = self.kept.decoded, self.s2.reflectance
        else:
            return None  # decoded or resampled by ``clear``
        window = Window(left, top, width, height)
        raw, valid, _ = scratch.read(window, step=step)
        refl, _ = reflectance(raw, valid)
        return refl, classified.read(window)[0][::step, ::step] == CLEAR

    def _mask_reader(self, params: MaskParams) -> Callable[..., MaskInput]:
        """What ``classes`` reads: where it is read directly, a reader that pads itself, with
        its own scene classification on the target's grid; resampled (once, or by each read),
        without (the score decides)."""
        if self.on_grid is not None:
            on_grid = self.on_grid
            return lambda window, pads=None, planes=None: mask_input(
                as_reflectance, on_grid.read(window, planes), pads)
        if self.resampling is None:
            return mask_reader(self.s2, self.bands, params,
                               None if self.kept is None else self.kept.decoded)
        return lambda window, planes=None: (*self.read(window, planes), None)

    def keep_classes(self, block: int) -> None:
        """From now on, keep its classes as a pass over the whole target grid in windows of
        ``block`` px classifies them (``classes``), for the later passes to read back: in a
        scratch beside its decoded copy, whose room holds it too (``ClassifiedScene.beside``);
        without one, or where it cannot be made or a write fails, it is classified each
        time."""
        scratch = self.on_grid or (None if self.kept is None else self.kept.decoded)
        if scratch is not None and self.classified is None:
            self.classified = ClassifiedScene.beside(scratch.folder, self.grid.height,
                                                     self.grid.width, block)

    def close(self) -> None:
        if self.classified is not None:
            self.classified.close()
        if self.on_grid is not None:
            self.on_grid.close()
        if self.kept is not None:
            self.kept.decoded.close()
        self.s2.close()
        if self.s1 is not None:
            self.s1.close()


def as_reflectance(raw: np.ndarray, valid: np.ndarray, out: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``Sentinel2.reflectance`` for values that are reflectance already (``Reference.on_grid``):
    copied into ``out`` where given."""
    if out is None:
        return raw, valid
    out[...] = raw
    return out, valid


def settle(ref: Reference, quiet: bool = True) -> None:
    """Resample a registered reference that the run keeps decoded (``Reference.kept``) onto the
    target grid once, window by window as ``Reference.read`` resamples each (the same kernel
    and source margin), into a scratch of float32 reflectance and validity beside its decoded
    copy, which it then replaces: every later read is direct. Where the room the run granted it
    (``ScratchRoom``, else twice its size free) cannot hold the scratch too, or a write fails,
    each read resamples it as before."""
    if ref.resampling is None or ref.kept is None or ref.on_grid is not None:
        return
    kept = ref.kept.decoded
    try:
        on_grid = DecodedScene((ref.grid.height, ref.grid.width), np.float32, ref.bands, False,
                               kept.folder, room=kept.room)
    except OSError:
        return
    size = int(on_grid.offsets[-1])
    if not has_room(kept.room, kept.folder, size):
        log.info("%s has no room for reference %s resampled onto the target grid (%.0f MB): "
                 "resampled by each read instead", kept.folder, ref.path.name, size / 2**20)
        on_grid.close()
        return

    def one(index: int) -> None:
        window = on_grid.windows[index]
        on_grid.store(index, window, (*ref.read(window), None))

    try:
        with closing(ordered_map(one, range(len(on_grid.windows)), usable_cores())) as done:
            for _ in progress(done, len(on_grid.windows), f"resample reference {ref.index}",
                              quiet):
                check_stop()
    except BaseException:
        on_grid.close()
        raise
    if not on_grid.complete:  # a write failed: resampled by each read
        on_grid.close()
        return
    ref.on_grid = on_grid
    kept.close()
    ref.kept = None


def overlaps(reference: Sentinel2, target: Sentinel2) -> bool:
    """Whether ``reference`` covers any of the target's grid (in any CRS)."""
    grid = Grid.of(target)
    return source_window(reference, grid.crs, grid.transform, grid.width, grid.height,
                         0) is not None


def open_reference(index: int, s2: Sentinel2, target: Sentinel2, params: MaskParams,
                   bands: Sequence[str] | None = None, count: int = 1,
                   scratch: Path | str | None = None, quiet: bool = True,
                   room: ScratchRoom | None = None) -> Reference:
    """A reference opened on the target's grid, read in the target's ``bands`` (default: all
    the target's); it must overlap the target. ``count``: the references opened with it, which
    share ``REFERENCE_CACHE_MB``. With ``scratch`` (an output), a reference is decoded once
    into a scratch beside it (``decoded_copy``): its passes (registration, statistics, each
    refit, the temporal test, the fill) would each decode it again, and a JPEG2000 one the
    tiles beside each window too, for its margin; where ``room`` (the run's) granted it one.
    On the bundled series mirrored to 1024^2 (four references, ``benchmarks/reference_speed.py``)
    this took the run's CPU from 26.2 to 24.1 s."""
    bands = tuple(bands or target.bands)
    s2.require(bands, "a reference", "give references with the bands of the target")
    grid = Grid.of(target)
    same = (s2.crs == target.crs and (s2.width, s2.height) == (target.width, target.height)
            and s2.transform.almost_equals(target.transform,
                                           precision=1e-6 * abs(target.transform.a)))
    resampling = None
    if not same:
        if s2.crs != target.crs:  # the reference goes onto the target's grid through both
            check_map_crs(s2.crs, s2.path, "reference")
            check_map_crs(target.crs, target.path, "Sentinel-2 input")
        if not overlaps(s2, target):
            raise CloudfreeError(f"reference {s2.path.name} does not overlap the Sentinel-2 "
                                 f"grid of {target.path.name}; give dates of the same place")
        resampling = choose_resampling(s2, grid)
    acquired = acquisition_date(s2)
    params = replace(params, shadow=REFERENCE_SHADOW)
    # each thread through handles of its own while it decodes the whole scene
    kept = None if scratch is None else decoded_copy(s2, scratch, bands, params, quiet,
                                                     desc=f"read reference {index}", room=room,
                                                     every_format=True)
    s2.share_handles(REFERENCE_CACHE_MB * 2**20 // max(count, 1))
    return Reference(index, s2, grid, acquired, resampling, params, bands, kept=kept)


def scratch_room(output: Path | str, target: Sentinel2 | None, paths: Sequence[Path | str],
                 params: MaskParams, bands: Sequence[str], inputs: InputOptions
                 ) -> ScratchRoom:
    """The run's room for its inputs kept decoded beside ``output``: ``target``'s, when the run
    keeps it, and that of each reference of ``paths`` (``open_reference``, read as ``inputs``
    say); one that cannot be opened is left to ``open_references`` to report."""
    sizes = {} if target is None else {
        target.path: scratch_bytes(target, bands, takes_scl(target, params))}
    for path in paths:
        try:
            with open_sentinel2(path, inputs.offset, inputs.level) as s2:
                sizes[s2.path] = scratch_bytes(s2, bands, takes_scl(s2, params))
        except CloudfreeError:
            continue
    return ScratchRoom(output, sizes)


def register(ref: Reference, target: Sentinel2, params: MaskParams,
             max_shift: float = MAX_REFERENCE_SHIFT, decoded: DecodedScene | None = None
             ) -> None:
    """Measure the sub-pixel shift of a reference against the target on their common clear
    land, and read it shifted back when the shift is trusted and at least ``MIN_APPLIED``;
    the target read back from ``decoded`` (as a first pass decoded it) when it holds
    ``ref.bands``.

    Orientation correlation (``shift_estimation.py``, with its significance and halves rule)
    of ``REGISTER_BANDS`` over the central ``ESTIMATION_WINDOW`` px of the target grid."""
    size_h, size_w = min(ESTIMATION_WINDOW, target.height), min(ESTIMATION_WINDOW, target.width)
    top, left = (target.height - size_h) // 2, (target.width - size_w) // 2
    bands = [b for b in REGISTER_BANDS if b in ref.bands]
    if not bands:
        return
    # the land the shadow test flags (dark fields and forest, most of it) is land to register on
    params = replace(params, shadow=False)
    halo = params.halo
    refl, valid, classes, _ = read_classified(mask_reader(target, ref.bands, params, decoded),
                                              top, left, size_h, size_w,
                                              (target.height, target.width), halo, params,
                                              ref.bands)
    inner = (slice(halo, halo + size_h), slice(halo, halo + size_w))
    target_clear = classes[inner] == CLEAR
    ref_refl, _, ref_clear = ref.clear(top, left, size_h, size_w, with_shadow=False)
    ref.sampled_clear = float(ref_clear.mean())
    common = target_clear & ref_clear
    fields = {}
    for image, name in ((ref_refl, "reference"), (refl[:, inner[0], inner[1]], "target")):
        fields[name] = {b: orientation_field(image[ref.bands.index(b)].astype(np.float64),
                                             common) for b in bands}
    ref.shift = estimate_shift(fields["reference"], fields["target"], max_shift)
    if not ref.shift.reliable or math.hypot(ref.shift.dx, ref.shift.dy) < MIN_APPLIED:
        return
    # the reference's content lies (dx, dy) px from the target's: read it that far over
    ref.grid = replace(ref.grid, transform=ref.grid.transform * Affine.translation(
        ref.shift.dx, ref.shift.dy))
    ref.resampling = ref.resampling or Resampling.bilinear
    ref.shift_applied = True
    log.debug("%s: reference %s: shifted by (%.2f, %.2f) px onto the target",
              target.path.name, ref.path.name, ref.shift.dx, ref.shift.dy)


def changed(target_s1: np.ndarray, reference_s1: np.ndarray, bias: np.ndarray,
            threshold: float) -> np.ndarray:
    """Pixels [h, w] whose boxcar-averaged VV or VH differ by more than ``threshold`` dB after
    the scene-wide difference ``bias`` [2]; inputs dB [2, h, w] (NaN: unknown, never changed)."""
    diff = box_db(reference_s1) - box_db(target_s1) - bias[:, None, None]
    with np.errstate(invalid="ignore"):
        return (np.abs(diff) > threshold).any(axis=0)


def box_db(s1_db: np.ndarray) -> np.ndarray:
    """Boxcar mean in linear power of each polarisation over its valid pixels, in dB; NaN where
    fewer than half the box is valid."""
    linear = db_to_linear(s1_db.astype(np.float64))
    valid = np.isfinite(linear)
    size = (1, CHANGE_BOX, CHANGE_BOX)
    total = ndimage.uniform_filter(np.where(valid, linear, 0.0), size=size, mode="reflect")
    share = ndimage.uniform_filter(valid.astype(np.float64), size=size, mode="reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(share >= 0.5, 10 * np.log10(total / share), np.nan)


def s1_block(s1, top: int, left: int, height: int, width: int, scene: tuple[int, int]
             ) -> np.ndarray:
    """S1 dB of a block of the target grid (``scene``: its height and width) with the boxcar's
    context, cropped back after ``box_db``: callers crop with ``crop_halo``."""
    (block,) = read_padded(lambda w: (s1.read(w),), top, left, height, width, *scene,
                           CHANGE_BOX // 2)
    return block


def difference_histogram(delta: np.ndarray) -> np.ndarray:
    """Counts [2, bins] of the finite differences of VV and VH (inner part of the block)."""
    delta = crop_halo(delta, CHANGE_BOX // 2)
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
