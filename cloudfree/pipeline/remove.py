"""`cloudfree remove`: stream a scene through a network in blended tiles and composite the result.

read S2 (offset) -> mask -> S1 on the S2 grid (built-up land out of the mask) -> scale -> tiles
-> network -> blend -> unscale -> composite -> write, chunk by chunk (see tiling.py), with the
next chunks read and prepared on loader threads (``loader_threads``) while the network runs on
the current one, and the last finished block composited and written on a writer thread
meanwhile.

Models built on the classical fill (``engine.uses_mask``: the default ``median-fill`` and
``fillnet``) get one more pass first, for the scene's clear-sky median (``fill.py``); their input
has the masked pixels replaced by it, and the fill mask goes with it. The passes over the whole
scene before the chunks are in ``scene_passes.py``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from rasterio.windows import Window
from scipy import ndimage

from cloudfree.core.arguments import check_path, check_switch
from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.memory import HeapReleases, check_batch_memory, releasing_as_it_grows
from cloudfree.core.progress import progress
from cloudfree.core.threads import (
    Turnstile,
    one_blas_thread,
    ordered_map,
    thread_pool,
    usable_cores,
)
from cloudfree.coregister.s1_to_s2 import open_s1_on_grid
from cloudfree.dates import dehaze
from cloudfree.dates.fill import ReferenceBlock, ReferenceFill
from cloudfree.dates.opening import OpenedDates, check_references, fit_dates, open_dates
from cloudfree.dates.references import scratch_room
from cloudfree.dates.report import (
    DAYS_NODATA,
    OBSERVED,
    SINGLE_DATE,
    SOURCE_NODATA,
    days_table,
    reference_report,
    reference_tags,
    source_colormap,
    source_map,
)
from cloudfree.dates.residual import CONTEXT, carry_residual, lenders, sources_near
from cloudfree.dates.temporal_mask import REACH as TEMPORAL_REACH
from cloudfree.dates.temporal_mask import Background, judges_by_default
from cloudfree.fill.local import (
    LocalFillParams,
    correction_bound,
    haze_region,
    local_fill,
    source_weight,
)
from cloudfree.fill.median import (
    FEW_CLEAR_FRACTION,
    MAX_CORRECTION,
    FillSpectrum,
    fill_masked,
)
from cloudfree.fill.restore import LandBounds, RestoreParams, hold, restore
from cloudfree.fill.uncertainty import (
    FROM_DATES,
    KEPT,
    SIGMA_MEANING,
    SINGLE_DATE_FILL,
    UNCERTAINTY_NODATA,
    PixelTerms,
    SigmaModel,
    UncertaintyBlock,
    days_to,
    pixel_terms,
)
from cloudfree.inference.bundled import FILL_MODEL
from cloudfree.inference.engines import (
    Engine,
    check_precision,
    resolve_device,
)
from cloudfree.inference.tiling import (
    DEFAULT_TILE,
    BlendedBlock,
    Blender,
    Chunk,
    TileGrid,
    chunk_number,
    chunks,
    tiles_within,
)
from cloudfree.io.decoded_scene import DecodedScene
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import OUTPUT_BLOCK, read_padded, scene_io_env
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.bands import SHADOW_BANDS
from cloudfree.mask.bright_land import SEED_REACH, cloud_parallax
from cloudfree.mask.classified_scene import ClassifiedScene
from cloudfree.mask.classify import (
    BUILT_BOX,
    CLEAR,
    CLOUD,
    NODATA,
    SHADOW,
    MaskParams,
    ShadowThresholds,
    built_up,
)
from cloudfree.mask.given import check_given
from cloudfree.mask.haze import reach as haze_reach
from cloudfree.mask.scene_input import (
    SceneCopy,
    mask_reader,
    read_masked,
    takes_scl,
)
from cloudfree.mask.shadow import (
    footprint,
    tie_reach,
    tied_shadows,
)
from cloudfree.output.atomic import GridOutputs, check_distinct, check_output
from cloudfree.output.cog import AVERAGE, NEAREST, raw_scratch
from cloudfree.output.geotiff import check_geotiff_output
from cloudfree.output.preview import Preview
from cloudfree.output.provenance import MODEL, cloud_fraction_tags, provenance_tags
from cloudfree.pipeline.mask import mask_source, require_mask_bands, scene_mask_params
from cloudfree.pipeline.options import (
    OPTIONAL_OUTPUTS,
    EngineOptions,
    FillOptions,
    OutputOptions,
    ReferenceOptions,
    check_kinds,
)
from cloudfree.pipeline.scene_passes import corner, fill_mask, first_passes

log = logging.getLogger("cloudfree")
#: Threads loading chunks ahead of a network on CPU, and at most elsewhere (``loader_threads``).
LOADERS = 2
MAX_LOADERS = 16
#: Chunks whose fill from other dates runs at once, at most: the arrays of each are held
#: meanwhile (the chunks take their places in chunk order, so that the earliest never waits
#: for a later one).
FILLS_AT_ONCE = 2
#: Widest chunk of the network-free fill (px; 5 tiles of 256): what a 1024^2 scene's chunks
#: span, so that larger scenes' chunks hold no more. With a batch of 8 tiles (1824 px) instead,
#: the default peaked at 1.46x from 1024^2 to 4096^2 against 1.28x (benchmarks/remove_speed.py,
#: medians of 3 runs), for the same PSNR under real clouds pasted on real clear land
#: (benchmarks/chunk_width_quality.py; 3.4 % of the pixels change, by 20 DN at the 99th
#: percentile of those).
FILL_CHUNK_WIDTH = 1152
#: Tallest chunk of the network-free fill without other dates (px; 2 strips of 256 px tiles at
#: a stride of 224). Each chunk is read, masked and classified with some 200 px of margin (the
#: built-up test's square, the shadows' tie, the haze ring's seeding, the fill's sources):
#: chunks one strip tall read each scene pixel about 3.6 times, 480 px tall ones 2.6 times, 928
#: px tall ones 2.0. At 2048^2 (benchmarks/remove_stages.py, one run each) the default took
#: 30.3 CPU s with 480 px, 28.1 with 928 and 31.7 with one strip; at 4096^2 it peaked at 649 MB
#: with 480 px, 873 with 928 and 637 with one strip (benchmarks/remove_speed.py). Same PSNR
#: under real clouds pasted on real clear land (benchmarks/chunk_width_quality.py: 7.3 % of the
#: pixels change, inside large clouds, by 17 DN at the 99th percentile of those).
FILL_CHUNK_HEIGHT = 480
#: Whether the shadows the target's clouds cast are found and filled by default with other
#: dates too, as they are relit with one (``remove_scene``'s ``mask_params.shadow=None``): on
#: the pool's series, shadows cast with real clouds +6.2 dB on 8 tuning cases and +6.1 on 9
#: held out, the other kinds of case unchanged (docs/benchmarks/other-dates.md, "Shadows").
SHADOW_WITH_DATES = True


def loader_threads(device: str, network: bool = True) -> int:
    """Threads loading chunks ahead of the network: ``LOADERS`` where a network runs on the
    CPU and needs the cores; on a GPU, or with no network (the default fill), every core but
    two (the main thread's feeder and the writer), since reading, masking and the fill are
    then the work (the default model kept an H100 1-2 % busy with two loaders, and on 16 cores
    the default fill ran 5 of them busy), up to ``MAX_LOADERS``: the look-ahead holds
    loaders + 2 chunks, each a few hundred MB at batch 16 (6.4 GB peak RSS with 14 loaders)."""
    if device == "cpu" and network:
        return LOADERS
    return min(MAX_LOADERS, max(LOADERS, usable_cores() - 2))


class S1Source(Protocol):
    """Sentinel-1 on the S2 grid, read by windows of the S2 grid as float32 dB [2, h, w]."""

    def read(self, window: Window) -> np.ndarray: ...


class NoS1:
    """No Sentinel-1 (``remove --reference`` without ``--s1``): zeros for a model that reads
    none (``median-fill``)."""

    def read(self, window: Window) -> np.ndarray:
        return np.zeros((2, int(window.height), int(window.width)), np.float32)


@dataclass(frozen=True)
class InferenceSettings:
    """How the network runs over the scene: tiles, batches and the composite."""

    tile: int
    overlap: int
    batch_size: int = 8
    composite: bool = True
    feather: int = 2
    #: Bound on a fill model's correction, as a share of the base it corrects (None: none).
    max_correction: float | None = None


@dataclass
class LoadedChunk:
    """Everything the network and the composite need for one chunk (padded to its extent)."""

    chunk: Chunk
    s2: np.ndarray  # scaled network input [13, H, W] (the network-free fill: its output)
    s1: np.ndarray | None  # scaled network input [2, H, W]; None without a network
    reflectance: np.ndarray  # [13, H, W]
    valid: np.ndarray  # [H, W]
    classes: np.ndarray  # [H, W] uint8
    alpha: np.ndarray  # [H, W] share of the prediction in the composite
    #: [1, H, W] float32, 1 where the classical fill replaced the input; None without a network
    mask: np.ndarray | None
    no_s1: np.ndarray  # [H, W] no Sentinel-1 value under the pixel (outside its coverage)
    #: [1, H, W] per-pixel bound on the network's correction (local fill), else None: the
    #: options' max_correction everywhere
    bound: np.ndarray | None = None
    reference: ReferenceBlock | None = None  # the fill from other dates (remove --reference)
    terms: PixelTerms | None = None  # what the filled pixels' sigma comes from (uncertainty.py)


def choose_tiling(engine: Engine, tile: int | None, overlap: int | None,
                  scene: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """Tile, overlap and trim for an engine, checking user choices against its constraints.

    With the ``scene``'s (height, width), a tile larger than both the scene and the model's
    default is cut down to the scene (rounded up to the model's size multiple): a larger one
    only costs memory. An ONNX model's fixed tile cannot be cut: one far larger than the scene
    is refused (``check_fixed_tile``).
    """
    if engine.tile is not None and tile not in (None, engine.tile):
        raise UsageError(f"tile={tile}: this ONNX model runs {engine.tile} px tiles only; leave "
                         "the tile size unset or export the model again for this one", "tile")
    if tile is not None and tile < 1:
        raise UsageError(f"tile={tile} must be at least 1 pixel", "tile")
    tile = tile or engine.default_tile
    m = engine.size_multiple
    if tile % m:
        raise UsageError(f"tile={tile} is not a multiple of {m}, which this model needs", "tile")
    if scene is not None and engine.tile is not None:
        check_fixed_tile(engine.tile, scene, m)
    if scene is not None and engine.tile is None:
        fits = max(engine.default_tile, -(-max(scene) // m) * m)
        if tile > fits:
            log.info("tile %d px is larger than the %dx%d px scene: using %d", tile, scene[1],
                     scene[0], fits)
            tile = fits
    rf = engine.receptive_field
    if overlap is None:
        wanted = 2 * rf + 2 if engine.fully_convolutional else tile // 4
        overlap = min(tile // 2, max(tile // 8, wanted))
    if not 0 <= overlap <= tile // 2:
        raise UsageError(f"overlap={overlap} must be between 0 and half the tile ({tile // 2})",
                         "overlap")
    trim = min(rf, (overlap - 1) // 2) if engine.fully_convolutional else overlap // 4
    return tile, overlap, max(0, trim)


#: Most pixels an ONNX model's fixed tiles may cover per pixel of the scene, when larger than
#: the default tile: on the bundled 256 px sample, fillnet exported at 1024 px (16 times the
#: pixels) took 12 CPU s and 2.0 GB peak against 7 CPU s and 0.7 GB at 256 px (medians of 3
#: alternated runs); time and memory grow with the tile's area.
MAX_TILE_EXCESS = 4


def check_fixed_tile(tile: int, scene: tuple[int, int], multiple: int) -> None:
    """Refuse a fixed ``tile`` whose tiles over the (height, width) ``scene`` cover more than
    ``MAX_TILE_EXCESS`` times its pixels, the scene padded to them."""
    h, w = scene
    covered = math.ceil(h / tile) * math.ceil(w / tile) * tile**2
    if tile > DEFAULT_TILE and covered > MAX_TILE_EXCESS * h * w:
        fits = max(DEFAULT_TILE, -(-min(scene) // multiple) * multiple)
        raise UsageError(f"this ONNX model runs {tile} px tiles only, {covered / (h * w):.0f} "
                         f"times the pixels of the {w}x{h} px scene: export it again with a "
                         f"smaller tile (cloudfree export-onnx --tile {fits}), or run its "
                         "checkpoint (checkpoint=PATH), which takes any tile", "checkpoint")


def warn_weak_tiling(engine: Engine, grid: TileGrid) -> None:
    """Warn when tiles are narrower than what the model sees around a pixel and than its
    default tile, or overlap less than by default: the output then changes near every tile
    border. cloudfree-fillnet sees 44 px each side; on the bundled sample, against one
    whole-scene tile, the largest change is 452 DN at 16 px tiles, 245 at 64, 57 at 88 and 27
    at 128 (146, 9, 7 and 1 with --fill median, where only the network's tiling differs), and
    360 DN at 128 px tiles without overlap (benchmarks/tiling_dependence.py --size 256)."""
    m = engine.size_multiple
    least = -(-2 * engine.receptive_field // m) * m
    if grid.rows * grid.cols == 1:
        return
    if grid.tile < min(least, engine.default_tile):
        log.warning("tile %d px is narrower than what this model sees around each pixel (%d px "
                    "across), so the output changes near every tile border (overlap %d px); "
                    "give a tile of at least %d px (--tile %d; default %d)", grid.tile,
                    2 * engine.receptive_field, grid.overlap, least, least, engine.default_tile)
        return
    wanted = choose_tiling(engine, grid.tile, None)[1]
    if grid.overlap < wanted:
        log.warning("overlap %d px is less than the %d px this model's %d px tiles get by "
                    "default, so the output changes near every tile border; leave the overlap "
                    "unset or give at least %d (--overlap %d)", grid.overlap, wanted, grid.tile,
                    wanted, wanted)


def check_engine_options(engine: EngineOptions) -> Engine:
    """Refuse a model, device, precision or tiling that cannot run, before any scene is read
    (``batch`` checks once for all its scenes); return the model, opened on the CPU so that
    this takes no GPU memory (an ONNX model's fixed tile is checked against the scenes later:
    ``check_fixed_tile``)."""
    check_precision(engine.precision, resolve_device(engine.device))
    model = replace(engine, precision="fp32").open(device="cpu")
    choose_tiling(model, engine.tile, engine.overlap)
    return model


#: Cloud opacities up to which the land seen through thin cloud is taken, and from which the
#: other dates' prediction is, where they fill (``restore_dates``): lower than against the
#: single-date fill, whose prediction is poorer. On 6 thin-cloud cases of the benchmark's even
#: half (``benchmarks/reference_fill.py --half even --kinds thin --every 3``, the first 6)
#: 0.05-0.2 gave 35.91 dB on average, 0.1-0.3 35.78 and no restoring 34.88.
DATES_HANDOVER = (0.05, 0.2)


def restore_dates(reference: ReferenceBlock, reflectance: np.ndarray, region: np.ndarray,
                  classes: np.ndarray, valid: np.ndarray, params: RestoreParams,
                  bands: tuple[str, ...], bounds: LandBounds | None = None,
                  corner: tuple[int, int] = (0, 0)) -> None:
    """Where the other dates fill the ``region``, what still shows through thin cloud and haze
    is restored against their prediction as the land expected there (``restore.py``), and only
    the rest taken from them; ``reference.values`` is changed in place. Used where the dates
    judge the clouds (the temporal mask): with the single-date mask's buffer and haze ring in
    the region, the veil's opacity is smoothed over clear pixels, read too low at the edges of
    small clouds, and their own pixels restored (on the benchmark's odd half, up to 4.4 dB
    lost on a case with a small cloud). With ``reference.error``, no restored land is
    trusted much further from the prediction than the prediction's own error: a veil taken
    off as white where it is not (the edge of a cumulus over green land, bright in NIR) left
    the land off the prediction by more than that, and one exact reference's fill 40 DN too
    bright in blue. ``bounds``: the scene's; ``corner``: the scene coordinates of the block's
    first pixel (``restore``)."""
    covered = region & reference.covered
    if covered.any():
        if params.haze is not None:  # the caller's smoothing and trust, the dates' hand-over
            t_restore, t_fill = DATES_HANDOVER
            params = replace(params, haze=replace(params.haze, t_restore=t_restore,
                                                  t_fill=t_fill))
        values, _ = restore(reflectance, reference.values, covered,
                            covered & (classes == SHADOW), valid & (classes == CLEAR), params,
                            bands, bounds, error=reference.error, corner=corner)
        reference.values[:, covered] = values[:, covered]


def _inside(start: int, size: int, scene: int, pad: int) -> slice:
    """The part of a block's span [start, start + size) on the grid that lies ``CONTEXT`` px
    inside its own ends and at most ``pad - CONTEXT`` px beyond the scene's (0, ``scene``)."""
    reach = pad - CONTEXT
    lo = max(CONTEXT, -reach - start)
    return slice(lo, max(lo, min(size - CONTEXT, scene + reach - start)))


#: Largest feather + 1 for which ``composite_alpha`` visits the offsets nearer than it instead
#: of a distance transform: on a 420 x 2048 chunk the visit took 9 ms at feather 2 against
#: 57 ms, 27 ms against 80 at feather 7 (192 offsets), and longer than the transform at 15.
MAX_VISITED_REACH = 8


def composite_alpha(fill: np.ndarray, feather: int) -> np.ndarray:
    """1 deep inside the filled region, ramping to 0 at its edge over ``feather`` pixels.

    The ramp runs inward so every pixel outside the region keeps its original value exactly.
    """
    if not fill.any():
        return np.zeros(fill.shape, np.float32)
    reach = feather + 1
    if reach > MAX_VISITED_REACH:
        depth = ndimage.distance_transform_edt(fill)
        return np.clip(depth / reach, 0, 1).astype(np.float32)
    # the distance to the nearest pixel outside matters below ``reach`` only: each offset
    # nearer than that, nearest first, sets the pixels that see the outside through it
    alpha = np.where(fill, np.float32(1), np.float32(0))
    outside = np.pad(~fill, reach, constant_values=False)
    rows, cols = fill.shape
    unset = fill.copy()
    for squared, offsets in _offsets_within(reach):
        seen = np.zeros_like(fill)
        for dy, dx in offsets:
            seen |= outside[reach + dy: reach + dy + rows, reach + dx: reach + dx + cols]
        seen &= unset
        alpha[seen] = np.float32(min(1.0, np.sqrt(squared) / reach))
        unset &= ~seen
    return alpha


def _offsets_within(radius: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The pixel offsets nearer than ``radius`` but the origin, by squared distance, nearest
    first."""
    near: dict[int, list[tuple[int, int]]] = {}
    for dy in range(-radius + 1, radius):
        for dx in range(-radius + 1, radius):
            if 0 < dy * dy + dx * dx < radius * radius:
                near.setdefault(dy * dy + dx * dx, []).append((dy, dx))
    return sorted(near.items())


class SceneRemoval:
    """One scene through one engine."""

    def __init__(self, s2: Sentinel2, s1: S1Source, engine: Engine, options: InferenceSettings,
                 trim: int, params: MaskParams, shadow: ShadowThresholds | None,
                 fill: FillSpectrum | None = None, local: LocalFillParams | None = None,
                 references: ReferenceFill | None = None,
                 restoring: RestoreParams | None = None,
                 uncertainty: SigmaModel | None = None, decoded: DecodedScene | None = None,
                 bounds: LandBounds | None = None, kept: ClassifiedScene | None = None):
        self.s2, self.s1, self.engine, self.references = s2, s1, engine, references
        #: what restored land is held to, from the scene's clear land (``scene_fill_spectrum``)
        self.bounds = bounds
        #: the scene as the first pass decoded it, read back by the chunks (None: decoded)
        self.decoded = decoded
        #: the scene's classes as the first pass kept them, read back by the chunks (None, or
        #: not complete: classified again)
        self.kept = kept
        #: the map from terms to each filled pixel's sigma (None: no uncertainty output)
        self.uncertainty = uncertainty
        #: the bands read, filled and written: the input's own for the network-free fill, the
        #: network's otherwise
        self.bands = engine.bands if engine.runs_network else s2.bands
        self.options, self.params, self.shadow, self.fill = options, params, shadow, fill
        self.local = local if fill is not None else None
        self.restoring = restoring if self.local is not None else None
        #: how far the restoration of thin cloud reads the fill around a pixel (0: none)
        self.restore_reach = 0 if self.restoring is None or self.restoring.haze is None else \
            haze_reach(self.restoring.haze.sigma)
        self.grid = TileGrid(s2.height, s2.width, options.tile, options.overlap, trim)
        self.batch_size = options.batch_size
        #: tiles per chunk: a batch for a network; for the network-free fill, whose chunks'
        #: arrays are the memory that grows with them, at most ``FILL_CHUNK_WIDTH`` px of them
        self.chunk_tiles = self.batch_size if engine.runs_network else \
            min(self.batch_size, tiles_within(self.grid, FILL_CHUNK_WIDTH))
        #: strips per chunk: one for a network or with other dates (whose fill keeps what a
        #: strip leaves to the next one); up to ``FILL_CHUNK_HEIGHT`` px of them otherwise
        self.chunk_strips = 1 if engine.runs_network or references is not None else \
            tiles_within(self.grid, FILL_CHUNK_HEIGHT)
        self.tiles_run = self.tiles_skipped = 0
        self.filled = self.filled_without_s1 = 0  # pixels taking (some of) the prediction
        #: the chunks' turns at the dates' background and at planning their fill, each in
        #: chunk order (``_dates_turn``)
        self._background_turns, self._fill_turns = Turnstile(), Turnstile()
        #: the chunks whose dates' fill runs at once, at most (``_from_dates``)
        self._fills = threading.BoundedSemaphore(FILLS_AT_ONCE)

    @contextmanager
    def _dates_turn(self, turns: Turnstile, chunk: Chunk) -> Iterator[None]:
        """``chunk``'s turn at a stage of the dates, in chunk order: what a chunk keeps for
        the next ones (``dates/kept.py``) is there, or promised, before they look, whatever
        the loaders' timing, so that the output does not depend on it."""
        with turns.through(self._number(chunk)):
            yield

    def _number(self, chunk: Chunk) -> int:
        """The chunk's place (from 0) in the order the chunks run."""
        return chunk_number(chunk, self.chunk_tiles, self.chunk_strips)

    def load(self, chunk: Chunk) -> LoadedChunk:
        """Read and prepare a chunk: S2 with mask context, S1, scaling, composite weight."""
        try:
            return self._load(chunk)
        finally:  # a chunk that skipped a stage of the dates, or failed, lets the next ones by
            number = self._number(chunk)
            for turns in (self._background_turns, self._fill_turns):
                turns.past(number)

    def _load(self, chunk: Chunk) -> LoadedChunk:
        """See :meth:`load`."""
        s2, g, local = self.s2, self.grid, self.local
        network = self.engine.runs_network
        context = self.params.halo  # what classifying the pixels around the chunk takes
        if self.kept is not None and self.kept.complete and local is not None:
            context = 0  # none: the classes are read back
        temporal = None if self.references is None else self.references.dates.temporal
        judging = temporal is not None and temporal.calibrated  # the dates judge the classes
        # what the tests on the classes read around the pixels they decide: tying the shadows
        # (none where no cloud casts one) and, where the dates judge, their test (whose
        # classes the tie reads in turn: its reach, where it has one, stands for both)
        tie = tie_reach(self.shadow.offset) if self.params.shadow else 0
        tests = max(tie, TEMPORAL_REACH) if judging else tie
        halo = context + self.options.feather + 1 + tests
        if local is not None:  # the haze ring and the local fill's sources around the chunk
            halo = (context + local.ring + SEED_REACH
                    + max(self.options.feather + 1, local.reach) + tests)
        if self.references is not None:  # what the dates' fill reads around the chunk
            halo = max(halo, CONTEXT + self.restore_reach)
        vetoes = self.params.built_up and not isinstance(self.s1, NoS1)
        if vetoes:  # the built-up test's square around the pixels the mask classes exactly
            halo += BUILT_BOX // 2
        refl, valid, classes, score = read_masked(
            mask_reader(s2, self.bands, self.params, self.decoded), chunk.top, chunk.left,
            chunk.height, chunk.width, (s2.height, s2.width), halo, self.params, self.bands,
            self.shadow, self.kept)
        # S1 reads on every loader at once (a dataset handle per thread)
        (s1,) = read_padded(lambda w: (self.s1.read(w),), chunk.top, chunk.left,
                            chunk.height, chunk.width, g.height, g.width, halo)
        if vetoes:  # built-up land by its backscatter, with no confident cloud near, is clear
            classes = np.where(built_up(classes, score, self.params.threshold, s1[0]),
                               np.uint8(CLEAR), classes)
        background = None
        if judging:  # dates judge where they see clear
            with self._dates_turn(self._background_turns, chunk):  # what the next chunks
                background = temporal.background(  # read again is kept for them
                    chunk.top, chunk.left, chunk.height, chunk.width, halo,
                    keep=g.tile - g.stride + 2 * halo)
            classes = temporal.classify(refl, self.bands, classes,
                                        score > self.params.threshold, background)
        if ties_shadows(self.s2, self.params):  # the rest is dark land
            judged, classes = classes, tied_shadows(refl, classes, self.shadow.offset,
                                                    self.bands, corner(chunk.top, chunk.left, halo))
            if background is not None:  # with the penumbra the dates find around the shadows
                classes = temporal.penumbra(judged, classes)
        region = fill_mask(classes, self.params)
        if local is not None:  # the haze ring, only where no other date judges the pixel
            parallax = (cloud_parallax(refl, self.bands, classes == CLOUD) if self.params.land
                        else None)
            ring = haze_region(region, score, valid, local, parallax)
            region = ring if background is None else region | (ring & (background.count == 0))
            # the fill, the restoration and the dates' fill take their sources this near the
            # chunk: the wider margin the classes and the ring needed to be exact is let go
            near = max(self.options.feather + 1, local.reach)
            if self.references is not None:
                near = max(near, CONTEXT + self.restore_reach)
            if near < halo:
                cut = (slice(halo - near, near - halo),) * 2
                refl = np.ascontiguousarray(refl[:, cut[0], cut[1]])
                valid, classes, score, region = (x[cut] for x in (valid, classes, score, region))
                s1 = s1[:, cut[0], cut[1]]
                background = None if background is None else background.crop(*cut)
                halo = near
        alpha = (composite_alpha(region, self.options.feather)
                 if self.options.composite else np.zeros(classes.shape, np.float32))
        if background is not None and self.options.composite:
            # the temporal mask is tight where the dates judge: its edge pixels are cloud too,
            # replaced in full
            alpha = np.where(background.count > 0, region, alpha).astype(np.float32)
        inner = (slice(halo, halo + chunk.height), slice(halo, halo + chunk.width))
        network_input, mask, bound = refl, np.zeros(classes.shape, bool), None
        support = filled = eased = scored = None
        if self.fill is not None:
            mask = region
            if local is not None and self.fill.source == "scene" and region[inner].any():
                clear = valid & (classes == CLEAR)
                here = np.zeros_like(region)  # the halo only lends sources
                here[inner] = region[inner]
                offset = None if self.shadow is None else self.shadow.offset
                cast = None if offset is None else footprint(classes == CLOUD, offset)
                sources = source_weight(refl, region, clear, local, self.bands, cast,
                                        corner(chunk.top, chunk.left, halo))
                network_input, support = local_fill(refl, here, sources, s1, self.fill.values,
                                                    local, self.bands)
                if self.restoring is not None:  # what still shows is restored, not filled
                    # a pixel that scores as cloud itself keeps the feather against it as seen:
                    # bright land the mask took for cloud grows no buffer, and is right as seen
                    scored = score > self.params.threshold  # NaN (nodata) scores none
                    eased = np.where(scored, np.float32(1), alpha) if self.options.composite \
                        else None
                    network_input, filled = restore(
                        refl, network_input, here, here & (classes == SHADOW), clear,
                        self.restoring, self.bands, self.bounds, eased,
                        corner=corner(chunk.top, chunk.left, halo))
                    mask = region & ~(here & (filled < 0.5))
                if self.options.max_correction is not None and network:
                    bound = correction_bound(support[inner], self.options.max_correction)[None]
            else:
                network_input = fill_masked(refl, region, self.fill)
        terms = None
        if self.uncertainty is not None:
            terms = pixel_terms(refl, valid & (classes == CLEAR) & ~region, support,
                                filled).crop(*inner)
        s1 = s1[:, inner[0], inner[1]]
        reference = None
        if self.references is not None:
            reference = self._from_dates(chunk, halo, refl, valid, classes, region,
                                         (alpha > 0) & valid, background, score)
        scaling = self.engine.scaling
        # scaled (a new array) first, so that the padded fill is let go before the copy below
        network_input = scaling.scale_s2(network_input[:, inner[0], inner[1]])
        # a copy, not a view: the chunk keeps its reflectance until written, not the halo's
        refl, valid = np.ascontiguousarray(refl[:, inner[0], inner[1]]), valid[inner]
        classes, alpha, mask = classes[inner], alpha[inner], mask[inner]
        if eased is not None:  # the feather of the land restored; the dates' fill keeps its own
            kept = scored[inner] if reference is None else scored[inner] | reference.covered
            alpha = np.where(kept, alpha, eased[inner])
        if reference is not None and self.options.composite:
            # the feather eases the dates' fill in over the buffer: a cloud pixel they fill is
            # replaced in full (a small cloud grows no buffer, and would keep part of itself).
            # One date keeps the feather there: such a pixel may be a bright roof, half kept
            alpha = np.where((classes == CLOUD) & reference.covered, np.float32(1), alpha)
        # the network's other inputs only where there is one (chunks in flight are smaller)
        return LoadedChunk(chunk, network_input,
                           scaling.scale_s1(s1) if network else None, refl, valid, classes,
                           alpha, mask[None].astype(np.float32) if network else None,
                           np.isnan(s1).any(axis=0), bound, reference, terms)

    def _from_dates(self, chunk: Chunk, halo: int, refl: np.ndarray, valid: np.ndarray,
                    classes: np.ndarray, region: np.ndarray, need: np.ndarray,
                    background: Background | None, score: np.ndarray) -> ReferenceBlock | None:
        """The references' fill of the chunk's ``need`` pixels (arrays with ``halo``), with the
        residual of the target's clear pixels beside them carried in (``carry_residual``; where
        the dates do not weigh the references, none from those whose single-date ``score`` is
        above ``residual.LEND_SCORE`` of the threshold, nor from the clouds' fringe where the
        fits leave it out, ``residual.lenders``; none from a cloud's penumbra, and none that
        takes the fill below the references' lowest prediction, ``residual.PENUMBRA`` and
        ``FLOOR``) and, where the dates judge the clouds, what shows through thin cloud
        restored (``restore_dates``). Both read pixels around the chunk, which are filled here
        too, so that a pixel comes out the same whatever chunk it falls in."""
        restoring = self.restoring is not None and background is not None
        # the region beyond the chunk whose fill the restoration's smoothing reads
        pad = CONTEXT + (self.restore_reach if restoring else 0)
        around = (slice(halo - pad, halo + chunk.height + pad),
                  slice(halo - pad, halo + chunk.width + pad))
        height, width = chunk.height + 2 * pad, chunk.width + 2 * pad
        # filled: the chunk and what the restoration reads around it, no farther beyond the
        # scene's edges than that (the rest of a chunk past the scene is never written)
        within = np.zeros((height, width), bool)
        within[_inside(chunk.top - pad, height, self.s2.height, pad),
               _inside(chunk.left - pad, width, self.s2.width, pad)] = True
        temporal, target = self.references.dates.temporal, self.references.dates.target
        clear = lenders(valid & (classes == CLEAR) & ~region, score, self.params.threshold,
                        temporal is not None and temporal.weighs, classes == CLOUD,
                        target.fringe)[around]
        need = need[around] & within
        asked = need | sources_near(need, clear)
        background = None if background is None else background.crop(*around)
        # planned in chunk order (what the next chunks reread is promised to them), taking a
        # place among the fills that run at once; filled beside the chunk before, whose kept
        # fill this one waits for only once its own pixels are filled
        with self._dates_turn(self._fill_turns, chunk):
            plan = self.references.plan(chunk.top - pad, chunk.left - pad, height, width,
                                        asked, keep=self.grid.tile - self.grid.stride + 2 * pad,
                                        similar=need)
            if plan is not None:
                self._fills.acquire()
        if plan is None:
            return None
        try:
            reference = self.references.fill(plan, background,
                                             terms=self.uncertainty is not None,
                                             error=restoring, limits=True)
        finally:
            self._fills.release()
        covered = reference.covered
        refl = refl[:, around[0], around[1]]
        carry_residual(reference.values, refl, clear & covered, region[around], need & covered,
                       self.bands, reference.limits)
        reference.limits = None  # the residual's alone
        reference.source[~need] = 0  # the clear pixels only lent their residual
        if restoring:
            restore_dates(reference, refl, region[around], classes[around], valid[around],
                          self.restoring, self.bands, self.bounds,
                          corner(chunk.top, chunk.left, pad))
        return reference.crop(slice(pad, pad + chunk.height), slice(pad, pad + chunk.width))

    def predict(self, loaded: LoadedChunk) -> dict[tuple[int, int], np.ndarray]:
        """Network output (scaled) for every tile of the chunk that needs one."""
        t = self.grid.tile
        wanted = []
        alpha = loaded.alpha if loaded.reference is None else \
            np.where(loaded.reference.covered, 0, loaded.alpha)  # the model fills the rest
        for dy, dx in loaded.chunk.tile_offsets():
            at = (slice(dy, dy + t), slice(dx, dx + t))
            if not loaded.valid[at].any():
                continue  # all nodata
            if self.options.composite and not alpha[at].any():
                continue  # nothing to fill: the composite keeps the original here
            wanted.append(at)
        self.tiles_skipped += len(loaded.chunk.tile_offsets()) - len(wanted)
        self.tiles_run += len(wanted)
        if not self.engine.runs_network:  # the network-free fill returns its (filled) input:
            return {(r.start, c.start): loaded.s2[:, r, c] for r, c in wanted}  # no forward
        out: dict[tuple[int, int], np.ndarray] = {}
        for i in range(0, len(wanted), self.batch_size):
            ats = wanted[i : i + self.batch_size]
            s2 = np.stack([loaded.s2[:, r, c] for r, c in ats])
            s1 = np.stack([loaded.s1[:, r, c] for r, c in ats])
            mask = np.stack([loaded.mask[:, r, c] for r, c in ats])
            bound = self.options.max_correction if loaded.bound is None else \
                np.stack([loaded.bound[:, r, c] for r, c in ats])
            for (r, c), tile_pred in zip(ats, self._run(s2, s1, mask, bound), strict=True):
                out[r.start, c.start] = tile_pred
        return out

    def _run(self, s2: np.ndarray, s1: np.ndarray, mask: np.ndarray,
             bound: float | np.ndarray | None) -> np.ndarray:
        """engine.predict, halving the batch on GPU out-of-memory."""
        import torch  # the networks' engines have loaded it

        try:
            return self.engine.predict(s2, s1, mask, bound)
        except torch.cuda.OutOfMemoryError:
            if len(s2) == 1:
                raise CloudfreeError("GPU out of memory even at batch size 1; use a smaller "
                                     "tile=SIZE or device=cpu", "tile", "device") from None
        # retried outside the handler: until it is left, the traceback keeps the failed
        # batch's activations alive on the GPU (batch 1 then ran out of memory too)
        self.batch_size = max(1, len(s2) // 2)
        log.warning("GPU out of memory at batch size %d; continuing with %d",
                    len(s2), self.batch_size)
        torch.cuda.empty_cache()
        half = len(s2) // 2
        bounds = (bound, bound) if not isinstance(bound, np.ndarray) else \
            (bound[:half], bound[half:])
        return np.concatenate([self._run(s2[:half], s1[:half], mask[:half], bounds[0]),
                               self._run(s2[half:], s1[half:], mask[half:], bounds[1])])

    def finish(self, final: BlendedBlock, loaded: LoadedChunk
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
                          np.ndarray | None]:
        """Composite and convert a released block to output DN; also return its classes, its
        input reflectance, (with references) its source map and (with ``uncertainty``) the
        sigma of each pixel's error in DN."""
        c = loaded.chunk
        rows = slice(final.row - c.top, final.row - c.top + final.values.shape[1])
        cols = slice(final.col - c.left, final.col - c.left + final.values.shape[2])
        original = loaded.reflectance[:, rows, cols]
        valid, classes, alpha = loaded.valid[rows, cols], loaded.classes[rows, cols], \
            loaded.alpha[rows, cols]
        predicted = self.engine.scaling.unscale_s2(final.values)
        if self.engine.runs_network and self.bounds is not None:
            # the network's fill held within the scene's clear land, as the restored land is:
            # its corrections left pixels darker or bluer than any clear land (dark specks)
            hold(predicted, self.bounds, self.bands, loaded.mask[0, rows, cols] > 0)
        have = final.weight > 0
        from_dates = np.zeros(have.shape, bool)
        if loaded.reference is not None:
            from_dates = loaded.reference.covered[rows, cols]
            predicted = np.where(from_dates, loaded.reference.values[:, rows, cols], predicted)
            have |= from_dates
        filled = have & valid & (alpha > 0 if self.options.composite else True)
        self.filled += int(filled.sum())
        self.filled_without_s1 += int((filled & ~from_dates & loaded.no_s1[rows, cols]).sum())
        sources = None if self.references is None else source_map(
            valid, filled, None if loaded.reference is None else
            loaded.reference.source[rows, cols])
        taken, blend = have, predicted  # a new array, blended in place
        if self.options.composite:
            taken = have & (alpha > 0)
            blend *= alpha
            keep = 1 - alpha
            for band, values in zip(blend, original, strict=True):  # no block-sized temporary
                band += keep * values
        np.copyto(blend, original, where=~taken)
        haze = None if self.references is None else self.references.haze
        if haze is not None:  # the whole date, kept pixels and fill, brought to the dates' level
            blend -= haze.at(final.row, final.col, *blend.shape[1:])
        dn = self.s2.to_dn(blend)  # one conversion of the block
        if not self.s2.exact_reflectance and haze is None:  # a float input in DN: its own
            # values, read again
            window = Window(final.col, final.row, original.shape[2], original.shape[1])
            kept = valid & ~taken
            dn = np.where(kept, self.s2.read_dn(window, self.bands)[0], dn)
        if self.s2.nodata is not None:
            dn[:, ~valid] = self.s2.nodata
        sigma = None
        if self.uncertainty is not None:
            sigma = self._sigma(final, loaded, (rows, cols), valid, filled, from_dates, sources)
        return dn, classes, original, sources, sigma

    def _sigma(self, final: BlendedBlock, loaded: LoadedChunk, at: tuple[slice, slice],
               valid: np.ndarray, filled: np.ndarray, from_dates: np.ndarray,
               sources: np.ndarray | None) -> np.ndarray:
        """sigma [C, h, w] in DN of a block's pixels (``uncertainty.py``): 0 where kept, NaN
        at nodata."""
        kind = np.where(filled, np.where(from_dates, FROM_DATES, SINGLE_DATE_FILL), KEPT)
        kind[~valid] = UNCERTAINTY_NODATA
        reference = loaded.reference
        days = None if sources is None else days_to(days_table(self.references.dates), sources)
        dates = None if self.references is None else self.references.dates
        block = UncertaintyBlock(final.row, final.col, self.bands, kind.astype(np.uint8),
                                 loaded.terms.crop(*at),
                                 None if reference is None or reference.terms is None
                                 else reference.terms.crop(*at), days,
                                 0 if dates is None else len(dates.references),
                                 1.0 if dates is None else dates.clear_share)
        return self.uncertainty.sigma(block) * np.float32(self.s2.dn_scale)


def fill_description(spectrum: FillSpectrum, fill: FillOptions, model: Engine, with_s1: bool,
                     references: bool, temporal_mask: bool, mask_params: MaskParams) -> str:
    """How ``remove`` fills the cloud pixels, in words (for the log)."""
    base = spectrum.describe()
    if fill.fill_method == "local" and spectrum.source == "scene":
        match = " with similar Sentinel-1 backscatter" if with_s1 else ""
        base = f"nearby clear pixels{match} (where none is near: {base})"
    how = (f"filled by the {model.arch} network, starting from {base}"
           if model.runs_network else f"filled from {base}, no network")
    judged = "found by comparing the dates, " if temporal_mask else ""
    steps = [f"{judged}taken from the other dates where they are clear"] \
        if references else []
    if fill.restoring is not None and fill.fill_method == "local":
        steps.append("where the land shows through thin cloud or haze, the veil taken off"
                     + (", shadows relit" if mask_params.shadow else ""))
    return "; ".join([*steps, f"the rest {how}"]) if steps else how


def check_request(s2_path: Path | str, s1_path: Path | str | None, output: Path | str,
                  engine: EngineOptions, mask_params: MaskParams, fill: FillOptions,
                  inputs: InputOptions, dates: ReferenceOptions, outputs: OutputOptions
                  ) -> tuple[Path, list[Path], Engine]:
    """Refuse ``remove_scene``'s arguments that cannot run together, before reading any
    scene; return the output's path, the inputs' paths and the model opened."""
    for name, path in (("s2_path", s2_path), ("s1_path", s1_path), ("output", output)):
        check_path(name, path, optional=name == "s1_path")
    check_kinds({"engine": engine, "mask_params": mask_params, "fill": fill, "inputs": inputs,
                 "dates": dates, "outputs": outputs})
    output = Path(output)
    references = dates.references
    input_paths = [Path(p) for p in (s2_path, s1_path, inputs.mask_in, *references,
                                     *dates.reference_s1) if p is not None]
    check_distinct({"output": output, "mask output": outputs.mask_out,
                    "source output": outputs.source_out, "days output": outputs.days_out,
                    "uncertainty output": outputs.uncertainty_out})
    check_output(output, outputs.overwrite, input_paths, geotiff=True)
    for name in ("source_out", "days_out"):
        if getattr(outputs, name) is not None and not references:
            raise UsageError(f"{name}=PATH needs references=S2 (other dates): without them "
                             "every filled pixel comes from the model", name, "references")
    if dates.temporal_mask and not references:
        raise UsageError("temporal_mask=True needs references=S2 (other dates): the temporal "
                         "mask compares the scene with them", "temporal_mask", "references")
    if dates.dehaze and not references:
        raise UsageError("dehaze=True needs references=S2 (other dates): they judge the "
                         "scene's haze", "dehaze", "references")
    if inputs.mask_in is not None and not mask_params.scl:
        raise UsageError("scl=False makes the mask from the bands, leaving mask_in=PATH "
                         "unread: give one of them", "scl", "mask_in")
    if inputs.mask_in is not None and dates.temporal_mask:
        raise UsageError("temporal_mask=True has the dates find the clouds instead of "
                         "mask_in=PATH: give one of them (the dates fill what a given mask "
                         "marks)", "temporal_mask", "mask_in")
    check_references(references, dates.reference_s1, s1_path is not None, s2_path)
    if inputs.s1_aligned and s1_path is None:
        raise UsageError("s1_aligned=True needs s1_path=PATH: there is no Sentinel-1 to take as "
                         "aligned", "s1_aligned", "s1_path")
    for name in OPTIONAL_OUTPUTS:
        extra = getattr(outputs, name)
        if extra is not None:
            check_output(extra, outputs.overwrite, input_paths, geotiff=name != "preview")
    model = engine.open()
    if s1_path is None and model.runs_network:
        raise UsageError(f"model {engine.name} needs Sentinel-1: give s1_path=PATH, or "
                         "model=median-fill", "s1_path", "model")
    if fill.max_correction != MAX_CORRECTION and not (model.uses_mask and model.runs_network):
        log.warning("--max-correction (max_correction) changes nothing with model %s: it "
                    "bounds a fill network's correction of its base, and this model has none",
                    engine.name)
    # refuse impossible choices before reading anything
    choose_tiling(model, engine.tile, engine.overlap)
    return output, input_paths, model


def ties_shadows(s2: Sentinel2, params: MaskParams) -> bool:
    """Whether only the shadows the clouds cast are relit or filled (``shadow.tied_shadows``):
    all the flagged ones but those of a mask given for the scene, taken as it marks them."""
    return bool(params.shadow) and not (s2.given_mask and params.scl_shadows)


def remove_scene(
    s2_path: Path | str,
    s1_path: Path | str | None,
    output: Path | str,
    *,
    engine: EngineOptions = EngineOptions(),
    mask_params: MaskParams = MaskParams(buffer=5),
    fill: FillOptions = FillOptions(),
    inputs: InputOptions = InputOptions(),
    dates: ReferenceOptions = ReferenceOptions(),
    outputs: OutputOptions = OutputOptions(),
    quiet: bool = False,
) -> dict:
    """Remove clouds from ``s2_path`` with the help of ``s1_path``; write ``output``.

    The options come in groups, each checked when it is made (a wrong type or a value out of
    the command line's range is a ``UsageError`` naming the field)::

        remove_scene("s2.tif", "s1.tif", "clear.tif",
                     engine=EngineOptions(model="cloudfree-fillnet", device="cuda"),
                     dates=ReferenceOptions(references=["june.tif", "august.tif"]),
                     outputs=OutputOptions(mask_out="mask.tif", overwrite=True))

    Parameters
    ----------
    s2_path : path
        Sentinel-2 L1C or L2A scene: a GeoTIFF of named bands (unnamed: 13 in L1C order, 12
        in L2A order), a ``.SAFE`` folder, a folder of per-band files or a STAC item of local
        files. The networks need the 13 L1C bands; ``median-fill`` (the default for an input
        without them, or an L2A one) fills any band set, and the output has the input's bands
        in its order.
    s1_path : path or None
        Sentinel-1 GeoTIFF with VV and VH (dB or linear power), in any CRS overlapping the S2.
        None only with references (pixels no reference fills then take ``median-fill``) or
        with the model ``median-fill``, which reads no S1.
    output : path
        GeoTIFF to write, on the S2 grid with its data type and nodata.
    engine : EngineOptions
        The model (bundled, checkpoint or ONNX), device, precision, tiles and batch size.
        Default: ``EngineOptions()``, the bundled ``median-fill`` on the GPU when one is usable.
    mask_params : MaskParams
        The cloud mask: method, thresholds, buffer in pixels, shadow; with ``s1_path``,
        ``built_up`` leaves clear what scores as cloud on built-up backscatter with no confident
        cloud near. With ``shadow``, the shadows the scene's clouds cast are relit (filled
        without ``fill.restoring``; ``shadow.tied_shadows``), the rest of the dark land the
        shadow test flags is kept; with references where the dates judge, those they see
        darker in NIR and SWIR, with their penumbra, are filled from them.
        ``shadow=None`` (the default) is on (``SHADOW_WITH_DATES`` with references). Default:
        the ``score`` method with a 5 px buffer, the built-up test on.
    fill : FillOptions
        The fill's base (local or median), the composite and its feather, the bound on a fill
        network's correction, the restoration of thin cloud. Default: ``FillOptions()``.
    inputs : InputOptions
        How the inputs are read: the S2's radiometric offset and processing level, the S1's
        units, whether it is already on the S2 grid, the shift refinement. Default:
        ``InputOptions()``.
    dates : ReferenceOptions
        Other dates of the place to fill from (and their S1), how many to take, the temporal
        mask. Default: none.
    outputs : OutputOptions
        The optional outputs (mask, quicklook, source and days maps, uncertainty), overwrite,
        GDAL creation options, COG. Default: ``OutputOptions()``, the output alone.
    quiet : bool
        No progress bar. Default: False.

    Returns
    -------
    dict
        Summary: output, model, tiles, cloud and shadow fractions, co-registration report,
        seconds; with references also ``references`` (per reference: path, date, pixels
        clear in both, used, pixels filled), ``references_skipped`` (path, reason) and
        ``pixels_by_source``.
    """
    started = time.perf_counter()
    check_switch("quiet", quiet)
    output, input_paths, model = check_request(s2_path, s1_path, output, engine, mask_params,
                                               fill, inputs, dates, outputs)
    references = dates.references
    uncertainty_out, preview = outputs.uncertainty_out, outputs.preview
    with inputs.open_scene(s2_path) as s2, ExitStack() as stack:
        stack.enter_context(one_blas_thread())
        if mask_params.shadow is None:
            mask_params = replace(mask_params, shadow=not references or SHADOW_WITH_DATES)
        missing = sorted({"B03", *SHADOW_BANDS} - set(s2.bands))
        if mask_params.shadow and missing:
            log.info("%s has no %s: its cloud shadows are left as they are", s2.path.name,
                     " or ".join(missing))
            mask_params = replace(mask_params, shadow=False)
        mask_params = scene_mask_params(s2, mask_params, bool(references))
        bands = check_bands(s2, model, engine.name, mask_params)
        if s2.given_mask:  # its clouds are the caller's: no test takes any of them back; where
            # it marks no shadow, the bands find those its clouds cast
            mask_params = replace(mask_params, built_up=False,
                                  scl_shadows=check_given(s2, inputs.mask_in))
        temporal_mask = dates.temporal_mask
        if temporal_mask is None:
            temporal_mask = bool(references) and judges_by_default(s2.bands) \
                and not s2.given_mask
        check_geotiff_output(len(bands), s2.dtype, outputs.creation_options)
        # GDAL's block cache bounded by what the outputs' blocks need (from here on: the
        # first passes read the whole scene): two rows of them where an output is streamed
        # compressed, none where every one goes to the COG step's raw scratch file
        per_pixel = len(bands) * (np.dtype(s2.dtype).itemsize + 4 * (uncertainty_out is not None))
        per_pixel += ((outputs.mask_out is not None) + (outputs.source_out is not None)
                      + 2 * (outputs.days_out is not None))
        largest = {"width": s2.width, "height": s2.height, "count": len(bands),
                   "dtype": "float32" if uncertainty_out is not None else s2.dtype}
        row_bytes = 0 if outputs.cog and raw_scratch(largest) else s2.width * per_pixel
        stack.enter_context(scene_io_env(row_bytes, int(
            (outputs.creation_options or {}).get("blockysize", OUTPUT_BLOCK))))
        releases = stack.enter_context(releasing_as_it_grows())  # and after each chunk
        tile, overlap, trim = choose_tiling(model, engine.tile, engine.overlap,
                                            (s2.height, s2.width))
        grid = TileGrid(s2.height, s2.width, tile, overlap, trim)
        warn_weak_tiling(model, grid)
        check_batch_memory(grid.tile, grid.cols, engine.batch_size, len(bands))
        s1, s1_tags, s1_report = NoS1(), {}, None
        restoring = fill.restoring
        tie = ties_shadows(s2, mask_params)
        abandon = threading.Event()
        decoded = copy = kept = None  # the scene as the first passes decode and classify it
        scl = takes_scl(s2, mask_params)
        # a pass over the scene before the chunks (the shadows' thresholds and offset, the
        # statistics) keeps what it decodes, which the chunks read back; and with the fill, what
        # it classifies (a network's chunks classify their own: their classes beyond the
        # scene's edge, which weigh in the tiles there, are those of its mirrored margin)
        passes_over = model.uses_mask or mask_params.shadow
        room = scratch_room(output, s2 if passes_over else None,
                            references[:dates.reference_count], mask_params, bands,
                            inputs) if references else None
        if passes_over:
            decoded = DecodedScene.beside(output, s2, bands, scl, room)
            if decoded is not None:
                stack.callback(decoded.close)
                # and for the co-registration beside them, as they go
                copy = SceneCopy(s2, decoded)
                if model.uses_mask:
                    kept = ClassifiedScene.beside(output.parent, s2.height, s2.width)
                if kept is not None:
                    stack.callback(kept.close)
        # where the dates judge, they judge bright land too (a roof is bright on every date):
        # their fits and the target's cloud they start from are the single-date mask's
        # without the bright-land test, which takes some thin veils for land
        dates_params = replace(mask_params, land=False) if temporal_mask else mask_params
        # the passes that need no S1, beside its co-registration and the references' opening
        # and registration (which need none of them: they read the target's decoded copy
        # back once the passes have filled it)
        with thread_pool(2 if references else 1) as first:
            passes = first.submit(first_passes, s2, bands, mask_params, model.uses_mask, tie,
                                  quiet or s1_path is not None or bool(references), abandon,
                                  copy, kept, temporal_mask)
            passes.add_done_callback(lambda done: _failed(done) and abandon.set())
            if copy is not None:
                passes.add_done_callback(lambda _: copy.end())
            opening = None if not references else first.submit(
                open_dates, references, s2, dates_params, inputs,
                reference_s1=dates.reference_s1, quiet=quiet, count=dates.reference_count,
                bands=bands, scratch=output, decoded=decoded, room=room,
                ready=None if copy is None else copy.wait, abandon=abandon)
            try:
                if s1_path is not None:
                    s1, s1_tags, s1_report = open_s1_on_grid(
                        s1_path, s2, inputs, quiet,
                        read_s2=None if copy is None else copy.read)
                    stack.callback(s1.close)
                shadow, statistics = passes.result()
                opened = None if opening is None else opening.result()
            except BaseException:
                abandon.set()  # its error first, without waiting for the passes
                if opening is not None:  # the references opened meanwhile are closed
                    opening.add_done_callback(_close_opened)
                raise
        spectrum, bounds = (None, None) if statistics is None else statistics
        if spectrum is not None:
            log.debug("cloud pixels: %s", fill_description(
                spectrum, fill, model, s1_path is not None, bool(references), temporal_mask,
                mask_params))
        from_dates = None
        if opened is not None:
            fitted = fit_dates(opened, s2, dates_params, shadow,
                               s1=None if s1_path is None else s1, quiet=quiet, bands=bands,
                               temporal=temporal_mask, tie_shadows=tie, decoded=decoded)
            stack.callback(fitted.close)
            from_dates = ReferenceFill(fitted, dehaze.BY_DEFAULT if dates.dehaze is None
                                       else dates.dehaze)
        settings = InferenceSettings(tile, overlap, engine.batch_size, fill.composite,
                                     fill.feather, fill.max_correction)
        local = LocalFillParams() if fill.fill_method == "local" else None
        sigma_model = None
        if uncertainty_out is not None:
            sigma_model = fill.uncertainty_model or SigmaModel.load()
        pipe = SceneRemoval(s2, s1, model, settings, trim, mask_params, shadow, spectrum, local,
                            from_dates, restoring, sigma_model, decoded, bounds, kept)
        tags = {
            **provenance_tags("remove", s2_path, s1_path, model=engine.name,
                              model_path=engine.weights(), arch=model.arch, area=s2.area),
            "TILE": str(tile), "OVERLAP": str(overlap), "COMPOSITE": str(fill.composite),
            "FEATHER": str(fill.feather), "MASK_METHOD": mask_params.method,
            "HOT_TEST": str(mask_params.hot), "BRIGHT_LAND_TEST": str(mask_params.land),
            "S1_BUILT_UP_TEST": str(mask_params.built_up and s1_path is not None),
            "CLOUD_THRESHOLD": str(mask_params.threshold),
            "MASK_SOURCE": mask_source(s2, mask_params), "PROCESSING_LEVEL": s2.level,
            "RADIOMETRIC_OFFSET": str(s2.offset),
            "SHADOW_FILLED": str(mask_params.shadow),
            **({"FILL_METHOD": fill.fill_method, "FILL_SOURCE": spectrum.source,
                "RESTORED": str(pipe.restoring is not None),
                "FILL_CLEAR_FRACTION": f"{spectrum.clear_fraction:.4f}"}
               if spectrum is not None else {}),
            **s1_tags,
        }
        counts, sources = write_scene(pipe, output, outputs, tags, quiet, input_paths, releases)
        used = None if from_dates is None else reference_report(from_dates.dates, sources)
    valid = int(counts.sum() - counts[NODATA])
    without_s1 = pipe.filled_without_s1 / max(pipe.filled, 1)
    if pipe.filled_without_s1:
        log.warning("%s: %.1f%% of the filled pixels (%d) have no Sentinel-1 under them: "
                    "filled from the optical context alone", Path(s2_path).name,
                    100 * without_s1, pipe.filled_without_s1)
    if spectrum is not None and spectrum.clear_fraction < FEW_CLEAR_FRACTION \
            and from_dates is None and pipe.filled:
        warn_little_clear(Path(s2_path).name, spectrum, model.runs_network)
    return {
        "input": str(s2_path), "s1": None if s1_path is None else str(s1_path),
        "output": str(output),
        "preview": None if preview is None else str(preview),
        "uncertainty_out": None if uncertainty_out is None else str(uncertainty_out),
        "model": tags[MODEL], "arch": model.arch, "tile": tile, "overlap": overlap,
        "device": model.device, "tiles_run": pipe.tiles_run,
        "tiles_skipped": pipe.tiles_skipped, "cloud_fraction": counts[CLOUD] / valid,
        "shadow_fraction": counts[SHADOW] / valid, "filled_pixels": pipe.filled,
        "filled_without_s1_fraction": without_s1, "s1_coregistration": s1_report,
        "fill": None if spectrum is None else {"source": spectrum.source,
                                               "clear_fraction": spectrum.clear_fraction},
        **({} if from_dates is None else {
            "references": used, "references_skipped": from_dates.dates.skipped,
            "temporal_mask": temporal_mask,
            "haze_removed": None if from_dates.haze is None else dict(zip(
                from_dates.dates.bands, from_dates.haze.mean.round(4).tolist(), strict=True)),
            "source_out": None if outputs.source_out is None else str(outputs.source_out),
            "days_out": None if outputs.days_out is None else str(outputs.days_out),
            "pixels_by_source": {"observed": int(sources[OBSERVED]),
                                 "references": int(sources[1:SINGLE_DATE].sum()),
                                 "single_date_model": int(sources[SINGLE_DATE])}}),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _failed(done: Future) -> bool:
    """Whether the work of ``done`` raised (or never ran)."""
    return done.cancelled() or done.exception() is not None


def _close_opened(opening: Future[OpenedDates]) -> None:
    """Close the references ``opening`` opened, when it did (the run failed meanwhile)."""
    if not _failed(opening):
        opening.result().close()


def warn_little_clear(name: str, fill: FillSpectrum, network: bool) -> None:
    """Warn that a scene with little clear (under ``FEW_CLEAR_FRACTION``) was filled from
    one spectrum, the same in every cloud pixel where no clear neighbour is near (the
    network's correction of it aside): the prior when almost nothing is clear (all cloud or
    all saturated), else the median of the few clear pixels, not the land under the
    clouds."""
    how = "by the network starting from" if network else "with"
    spectrum = ("the median of clear Sentinel-2 scenes elsewhere (the prior)"
                if fill.source == "prior" else
                "the median of those few pixels (mostly cloud edges, perhaps hazy)")
    log.warning("%s: only %.2f%% of the scene is clear: its clouds are filled %s one spectrum, "
                "%s, not the land under them; give other dates of the same place with "
                "--reference (references)", name, 100 * fill.clear_fraction, how, spectrum)


def check_bands(s2: Sentinel2, engine: Engine, name: str, params: MaskParams
                ) -> tuple[str, ...]:
    """The bands a removal reads and writes (the input's for the network-free fill, the
    network's otherwise); one line when the input lacks some the model or the mask needs."""
    require_mask_bands(s2, params)
    if not engine.runs_network:
        return s2.bands
    s2.require(engine.bands, f"model {name}", "give an L1C product with all 13 bands, or "
               f"model={FILL_MODEL}, which fills any band set", "model")
    if s2.level == "L2A":
        log.warning("%s is L2A (bottom of atmosphere); model %s learned from L1C (top of "
                    "atmosphere): its fill may be off in level", s2.path.name, name)
    return engine.bands


@dataclass(frozen=True)
class OptionalOutput:
    """An optional output of ``remove`` on the scene's grid: how it is opened, what it is given
    before the first block (``prepare``) and what each released block writes into it
    (``block(classes, sources, sigma)``, [H, W] or [C, H, W])."""

    path: Path
    count: int
    dtype: str
    nodata: float | None
    resampling: str
    block: Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray | None]
    prepare: Callable[[object], None] = lambda dst: None
    tags: dict[str, str] = field(default_factory=dict)


def optional_outputs(pipe: SceneRemoval, outputs: OutputOptions, descriptions: Sequence[str],
                     order) -> list[OptionalOutput]:
    """The optional outputs asked for, in the order they are opened: the mask, the source map
    and the days map (with references), the uncertainty (``order``: the input's band order
    among ``pipe.bands``, as the output is written)."""
    table = []
    if outputs.mask_out is not None:
        table.append(OptionalOutput(outputs.mask_out, 1, "uint8", NODATA, NEAREST,
                                    lambda classes, sources, sigma: classes))
    if outputs.source_out is not None:
        colours = source_colormap(len(pipe.references.dates.references))
        table.append(OptionalOutput(outputs.source_out, 1, "uint8", SOURCE_NODATA, NEAREST,
                                    lambda classes, sources, sigma: sources,
                                    lambda dst: dst.write_colormap(1, colours)))
    if outputs.days_out is not None:
        days = days_table(pipe.references.dates)
        if pipe.references.dates.target_date is None:
            log.warning("%s has no date (in its name or tags), so the days from it to the other "
                        "dates are unknown: the days output is -32768 wherever they filled; "
                        "name it with its date (YYYYMMDD) to have them", pipe.s2.path.name)
        table.append(OptionalOutput(outputs.days_out, 1, "int16", DAYS_NODATA, NEAREST,
                                    lambda classes, sources, sigma:
                                    None if sources is None else days[sources],
                                    lambda dst: dst.set_band_description(1, "days_from_target")))
    if outputs.uncertainty_out is not None:
        names = tuple(f"sigma_{b}" for b in descriptions)
        table.append(OptionalOutput(outputs.uncertainty_out, len(pipe.bands), "float32",
                                    float("nan"), AVERAGE,
                                    lambda classes, sources, sigma: sigma[order],
                                    lambda dst: setattr(dst, "descriptions", names),
                                    {"UNITS": "DN", "MEANING": SIGMA_MEANING}))
    return table

def write_scene(pipe: SceneRemoval, output: Path, options: OutputOptions, tags: dict[str, str],
                quiet: bool, inputs: list[Path], releases: HeapReleases
                ) -> tuple[np.ndarray, np.ndarray]:
    """Run every chunk, writing ``output`` and the optional outputs by released blocks (none
    of them may be read among the ``inputs``), freed heap pages handed back by ``releases``
    only above the peak the passes before reached; return the class and source histograms of
    the scene (the second all zero without references)."""
    s2 = pipe.s2
    preview = options.preview
    quicklook = None if preview is None else Preview(s2.height, s2.width, pipe.bands,
                                                     pipe.uncertainty is not None)
    grid = {**s2.profile, "creation_options": options.creation_options}
    counts = np.zeros(256, np.int64)
    source_counts = np.zeros(256, np.int64)
    with ExitStack() as stack:
        outputs = GridOutputs(stack, grid, options.overwrite, inputs, options.cog)
        dst = outputs.open(output, len(pipe.bands), s2.dtype, s2.nodata, AVERAGE)
        dst.update_tags(**tags)
        # written in the input's band order (a network's may differ)
        order = [pipe.bands.index(b) for b in s2.bands if b in pipe.bands]
        dst.descriptions = tuple(pipe.bands[i] for i in order)
        if s2.scaling is not None:  # the GDAL scale and offset the input declared, kept
            dst.scales, dst.offsets = ((value,) * len(order) for value in s2.scaling)
        order = slice(None) if order == sorted(order) else order  # no copy when it is the same
        extras = []  # (dataset, what each released block writes into it), in this order
        for extra in optional_outputs(pipe, options, dst.descriptions, order):
            extra_dst = outputs.open(extra.path, extra.count, extra.dtype, extra.nodata,
                                     extra.resampling)
            extra_dst.update_tags(**tags, **extra.tags)
            extra.prepare(extra_dst)
            extras.append((extra_dst, extra.block))
        todo = list(chunks(pipe.grid, pipe.chunk_tiles, pipe.chunk_strips))
        blender = Blender(pipe.grid, len(pipe.bands))

        def write_block(loaded: LoadedChunk, predictions: dict[tuple[int, int], np.ndarray]
                        ) -> None:
            """Blend a chunk's predictions; composite and write the block that releases (on
            the writer thread, in chunk order)."""
            final = blender.add(loaded.chunk, predictions)
            if final is None:
                return
            dn, classes, original, sources, sigma = pipe.finish(final, loaded)
            window = Window(final.col, final.row, dn.shape[2], dn.shape[1])
            dst.write(dn[order], window=window)
            for extra_dst, block in extras:
                data = block(classes, sources, sigma)
                if data is not None:  # no source map where no reference took part
                    extra_dst.write(data if data.ndim == 3 else data[None], window=window)
            if sources is not None:
                source_counts[:] += np.bincount(sources.ravel(), minlength=256)
            if quicklook is not None:
                after = (dn.astype(np.float32) - s2.offset) / s2.dn_scale
                quicklook.add(final.row, final.col, original, classes, after,
                              None if sigma is None else sigma / s2.dn_scale)
            counts[:] += np.bincount(classes.ravel(), minlength=256)

        # chunks load ahead on loader threads (reading, masking, the local fill), and the
        # last chunk is blended, composited and written on a writer thread, while the network
        # runs on the current one; ordered_map keeps at most loaders + 2 chunks in memory
        loaders = loader_threads(pipe.engine.device, pipe.engine.runs_network)
        releases.hold_below_peak()  # pages kept below the first passes' peak raise none
        loads = stack.enter_context(closing(ordered_map(pipe.load, todo, loaders, loaders + 2)))
        writer = stack.enter_context(thread_pool(1))  # left first: joined before the outputs
        writes: deque[Future] = deque()
        # a bar updated by hand: one that wraps the iterator holds the last chunk meanwhile
        bar = stack.enter_context(progress(None, len(todo), "remove", quiet, unit="chunk"))
        for loaded in loads:
            writes.append(writer.submit(write_block, loaded, pipe.predict(loaded)))
            # the writer holds the chunk while it needs it; held here too, it would stay in
            # memory while the next one is awaited, beside the loaders' chunks
            del loaded
            bar.update()
            releases.release()  # or resident memory creeps up with the scene
            while len(writes) > 1 or (writes and writes[0].done()):
                writes.popleft().result()  # raises the writer's error, if any
        while writes:
            writes.popleft().result()
        if counts.sum() == counts[NODATA]:
            raise CloudfreeError(f"{s2.path}: every pixel is nodata; nothing to do")
        dst.update_tags(FILLED_PIXELS=str(pipe.filled),
                        FILLED_WITHOUT_S1_PIXELS=str(pipe.filled_without_s1))
        if pipe.references is not None:
            dst.update_tags(**reference_tags(pipe.references.dates, pipe.references.combine,
                                             source_counts))
        for written in (dst, *(extra_dst for extra_dst, _ in extras)):
            written.update_tags(**cloud_fraction_tags(counts))
        if quicklook is not None:
            quicklook.write(preview, options.overwrite, inputs, outputs.together)
    return counts, source_counts
