"""Mask a whole Sentinel-2 scene window by window and write the class GeoTIFF."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import replace
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from cloudfree.core.arguments import (
    check_kind,
    check_path,
    check_paths,
    check_switch,
    check_whole,
)
from cloudfree.core.errors import CloudfreeError
from cloudfree.core.memory import check_mask_memory
from cloudfree.core.progress import progress
from cloudfree.core.threads import THREADS_RANGE, ordered_map, usable_cores
from cloudfree.dates.opening import check_references, open_references
from cloudfree.dates.references import scratch_room
from cloudfree.dates.report import reference_report
from cloudfree.dates.target_mask import TargetMask
from cloudfree.io.decoded_scene import DecodedScene
from cloudfree.io.options import InputOptions
from cloudfree.io.rasters import BLOCK_RANGE, MASK_BLOCK, block_windows, scene_io_env
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.bands import SHADOW_BANDS
from cloudfree.mask.classify import (
    CLASS_NAMES,
    CLEAR,
    CLOUD,
    COLORMAP,
    NODATA,
    SHADOW,
    SNOW,
    THIN,
    MaskParams,
    ShadowThresholds,
    combine_shadow_stats,
    shadow_thresholds,
    thin_cloud,
)
from cloudfree.mask.decoded_copy import decoded_copy
from cloudfree.mask.scene_input import S2Reader, classify_window, mask_reader
from cloudfree.output.atomic import GridOutputs, check_distinct, check_output
from cloudfree.output.cog import AVERAGE, NEAREST
from cloudfree.output.geotiff import check_options_kind
from cloudfree.output.provenance import cloud_fraction_tags, provenance_tags

log = logging.getLogger("cloudfree")

def scene_shadow_thresholds(s2: Sentinel2, windows: list[Window], quiet: bool,
                            threads: int = 1, read: S2Reader | None = None) -> ShadowThresholds:
    """First pass: scene-wide shadow thresholds from all valid pixels (read by ``read``,
    default ``s2.read``)."""

    def window_stats(win: Window) -> tuple[np.ndarray, np.ndarray]:
        return shadow_thresholds(*(read or s2.read)(win, SHADOW_BANDS), SHADOW_BANDS)

    stats = ordered_map(window_stats, windows, threads)
    return combine_shadow_stats(list(progress(stats, len(windows), "shadow statistics", quiet)))


def mask_source(s2: Sentinel2, params: MaskParams) -> str:
    """What the mask of ``s2`` comes from, for the tags and the log."""
    if params.scl and s2.has_scl:
        return "given mask" if s2.given_mask else "SCL"
    return "score" if "B10" in s2.bands else "score without B10"


def classified_windows(s2: Sentinel2, windows: list[Window], params: MaskParams,
                       shadow: ShadowThresholds | None, threads: int,
                       decoded: DecodedScene | None = None, thin: bool = True
                       ) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """(window, classes, score) of each window, in order, thin cloud apart (``thin_cloud``)
    unless not ``thin``; read (back from ``decoded`` when it holds the whole scene) and
    classified on ``threads``."""

    bands = params.bands_for(s2.bands)
    read = mask_reader(s2, bands, params, decoded)
    halo = params.halo

    def one(win: Window) -> tuple[Window, np.ndarray, np.ndarray]:
        height, width = int(win.height), int(win.width)
        refl, _, scl, classes, score = classify_window(
            read, int(win.row_off), int(win.col_off), height, width, (s2.height, s2.width),
            halo, params, bands, shadow)
        inner = (slice(halo, halo + height), slice(halo, halo + width))
        if not thin:
            return win, classes[inner], score[inner]
        return win, thin_cloud(classes[inner], refl[:, inner[0], inner[1]], bands,
                               None if scl is None else scl[inner]), score[inner]

    return ordered_map(one, windows, threads)


def judged_windows(target: TargetMask, windows: list[Window], threads: int, thin: bool = True
                   ) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
    """(window, classes, score) of each window by the dates' temporal test of the ``target``,
    in order, thin cloud apart (``thin_cloud``) unless not ``thin``; judged on ``threads``."""

    def one(win: Window) -> tuple[Window, np.ndarray, np.ndarray]:
        refl, _, classes, score = target.classes(int(win.row_off), int(win.col_off),
                                                 int(win.height), int(win.width))
        return win, thin_cloud(classes, refl, target.bands) if thin else classes, score

    return ordered_map(one, windows, threads)


def scene_mask_params(s2: Sentinel2, params: MaskParams, dated: bool) -> MaskParams:
    """``params`` for the bands and level of ``s2`` (``MaskParams.for_bands``), saying so when a
    band set without B10 names no level and is masked as L2A would be (not where other dates
    judge its clouds, ``dated``: they judge its edges too)."""
    params = params.for_bands(s2.bands, s2.top_of_atmosphere)
    if params.edges and not dated and not s2.level_named and s2.level == "L1C":
        log.info("%s names no processing level and has no B10: its clouds are grown into the "
                 "veil at their edges, which surface levels (L2A) hide from the cloud score; "
                 "give --level L1C if it is top of atmosphere, --level L2A if not",
                 s2.path.name)
    return params


def require_mask_bands(s2: Sentinel2, params: MaskParams) -> None:
    """Fail with one line when the input lacks the bands the mask cannot run without."""
    s2.require(params.required, f"the {params.method} cloud mask",
               "give an input with B02, B03 and B04 at least (and B08, B11 for --shadow)")


def mask_classes(thin: bool = True) -> str:
    """The ``CLASSES`` tag: each code and its name (thin cloud only when ``thin``)."""
    return " ".join(f"{code}={name}" for code, name in CLASS_NAMES if thin or code != THIN)


def mask_tags(params: MaskParams, s2: Sentinel2, thin: bool = True,
              area: Window | None = None) -> dict[str, str]:
    """Tags recording how the mask was made (``thin``: thin cloud as its own class; ``area``:
    the window of the input's grid masked, when only part of it)."""
    return {
        **provenance_tags("mask", s2.path, area=area),
        "MASK_METHOD": params.method,
        "CLOUD_THRESHOLD": str(params.threshold),
        "NDSI_THRESHOLD": str(params.ndsi_threshold),
        "BUFFER_PIXELS": str(params.buffer),
        "SHADOW": str(params.shadow),
        "HOT_TEST": str(params.hot),
        "BRIGHT_LAND_TEST": str(params.land),
        "MASK_SOURCE": mask_source(s2, params),
        "PROCESSING_LEVEL": s2.level,
        "RADIOMETRIC_OFFSET": str(s2.offset),
        "CLASSES": mask_classes(thin),
    }


def mask_scene(
    scene: Path | str,
    output: Path | str,
    params: MaskParams = MaskParams(),
    *,
    offset: str | int | None = "auto",
    level: str = "auto",
    score_path: Path | str | None = None,
    overwrite: bool = False,
    creation_options: dict[str, str] | None = None,
    block: int = MASK_BLOCK,
    threads: int | None = None,
    cog: bool = True,
    quiet: bool = False,
    references: Sequence[Path | str] = (),
    bbox: tuple[float, float, float, float] | None = None,
    bbox_crs: str | None = None,
    thin: bool = True,
) -> dict:
    """Write the uint8 class mask of ``scene`` to ``output``; return a summary with fractions.

    Classes: 0 clear, 1 cloud, 2 shadow, 3 snow, 4 thin cloud (``classify.thin_cloud``; with
    ``thin=False`` written as cloud, 1), 255 nodata.

    Parameters
    ----------
    scene : path
        Sentinel-2 L1C or L2A scene: a GeoTIFF of named bands (unnamed: 13 in L1C order, 12
        in L2A order), a ``.SAFE`` folder, a folder of per-band files or a STAC item of local
        files.
    output : path
        Mask GeoTIFF to write, on the scene's grid.
    params : MaskParams
        Method (``score`` or ``dsen2cr``), thresholds, buffer in pixels, shadow, HOT test.
        Default: ``MaskParams()``.
    offset : {"auto", "0", "1000"} or int
        Radiometric offset in DN of processing baseline 04.00+ products; ``auto`` reads the
        product metadata or tags, else assumes 0. Default: ``"auto"``.
    level : {"auto", "L1C", "L2A"}
        Processing level; ``auto`` reads the metadata, else the band set (the scene
        classification SCL, or no B10: L2A). An L2A scene's SCL gives the mask when
        ``params.scl``. Default: ``"auto"``.
    score_path : path, optional
        Also write the float32 cloud score to this GeoTIFF. Default: none.
    overwrite : bool
        Replace existing outputs. Default: False.
    creation_options : dict, optional
        GDAL GeoTIFF creation options. Default: none.
    block : int
        Window size in pixels for streaming the scene, 64 to 16384; the result does not depend
        on it. Default: 512.
    threads : int, optional
        Windows read and classified at once, 1 to 1024; the result does not depend on it.
        Default: every usable core.
    cog : bool
        Write a Cloud Optimized GeoTIFF with internal overviews. Default: True.
    quiet : bool
        No progress bar. Default: False.
    references : sequence of paths
        Sentinel-2 L1C scenes of other dates of the same place (any CRS or grid overlapping
        it): where they see the ground clear, clouds, haze and shadows are found by comparing
        the scene with them (``temporal_mask.py``); elsewhere the single-date mask stands. The
        bright-land test is left out (``params.land``): the dates judge such land. Default:
        none.
    bbox : (minx, miny, maxx, maxy), optional
        Mask only the part of the scene inside this box, snapped outward to whole pixels of
        the scene's grid and clipped to the scene. Default: none, the whole scene.
    bbox_crs : str, optional
        The CRS of ``bbox`` (``EPSG:4326`` for longitude and latitude). Default: none, the
        scene's CRS.
    thin : bool
        Write thin cloud as its own class, 4; False: as cloud, 1, the codes of a mask with
        one cloud class. Default: True.

    Returns
    -------
    dict
        Summary: output and the cloud (thin cloud included), thin cloud (None when not
        ``thin``), shadow and snow fractions of the valid pixels; with
        ``references`` also ``references`` (per reference: path, date, pixels clear in both,
        used, its measured shift).
    """
    check_path("scene", scene)
    check_path("output", output)
    check_path("score_path", score_path, optional=True)
    check_kind("params", params, MaskParams, "a MaskParams")
    for name, value in (("thin", thin), ("overwrite", overwrite), ("cog", cog), ("quiet", quiet)):
        check_switch(name, value)
    if params.shadow is None:  # the mask flags no shadow unless asked to
        params = replace(params, shadow=False)
    inputs = InputOptions(offset=offset, level=level, bbox=bbox, bbox_crs=bbox_crs)
    check_options_kind(creation_options)
    check_whole("block", block, *BLOCK_RANGE, "pixels")
    if threads is not None:
        check_whole("threads", threads, *THREADS_RANGE)
    references = check_paths("references", references)
    if references:  # the dates judge bright land: a roof is bright on every date
        params = replace(params, land=False)
    threads = threads or usable_cores()
    output = Path(output)
    check_distinct({"mask output": output, "score output": score_path})
    check_output(output, overwrite, [Path(scene)], geotiff=True)
    if score_path is not None:
        check_output(Path(score_path), overwrite, [Path(scene)], geotiff=True)
    check_references(references, (), False, scene)
    with scene_io_env(), inputs.open_scene(scene) as s2, \
            ExitStack() as dates_stack:
        require_mask_bands(s2, params)
        params = scene_mask_params(s2, params, bool(references))
        log.debug("%s: %s, mask from the %s", s2.path.name, s2.level, mask_source(s2, params))
        # a box is read with the context around it that a window of the whole scene has
        area = s2.area
        box = s2.widen(params.context)
        windows = [Window(win.col_off + box.col_off, win.row_off + box.row_off, win.width,
                          win.height) for win in block_windows(box.width, box.height, block)]
        check_mask_memory(block, threads, windows, 1 + len(references))
        # with references, their fit reads every band of the target
        bands = s2.bands if references else params.bands_for(s2.bands)
        room = scratch_room(output, s2 if s2.jpeg2000 else None, references, params, bands,
                            inputs) if references else None
        copy = decoded_copy(s2, output, bands, params, quiet, threads, room=room)
        if copy is not None:
            dates_stack.callback(copy.decoded.close)
        thresholds = (scene_shadow_thresholds(s2, windows, quiet, threads,
                                              None if copy is None else copy.read)
                      if params.shadow else None)
        dates = None
        if references:
            dates = open_references(references, s2, params, thresholds, inputs, quiet=quiet,
                                    temporal=True, scratch=output,
                                    decoded=None if copy is None else copy.decoded, room=room,
                                    fills=False)
            dates_stack.callback(dates.close)
        grid = {**s2.profile, "width": box.width, "height": box.height,
                "transform": window_transform(box, s2.transform),
                "creation_options": creation_options}
        counts = np.zeros(256, dtype=np.int64)
        with ExitStack() as stack:
            outputs = GridOutputs(stack, grid, overwrite, [Path(scene)], cog)
            dst = outputs.open(output, 1, "uint8", NODATA, NEAREST)
            dst.update_tags(**mask_tags(params, s2, thin, area))
            dst.set_band_description(1, "cloud_mask")
            dst.write_colormap(1, COLORMAP)
            score_dst = None
            if score_path is not None:
                score_dst = outputs.open(score_path, 1, "float32", float("nan"), AVERAGE)
                score_dst.update_tags(**mask_tags(params, s2, thin, area))
                score_dst.set_band_description(1, "cloud_score")
            # Closed (its threads joined) before the scene's datasets, even on an error.
            results = stack.enter_context(closing(
                classified_windows(s2, windows, params, thresholds, threads,
                                   None if copy is None else copy.decoded, thin) if dates is None
                else judged_windows(dates.target, windows, threads, thin)))
            for win, classes, score in progress(results, len(windows), "mask", quiet):
                win = Window(win.col_off - box.col_off, win.row_off - box.row_off, win.width,
                             win.height)
                dst.write(classes, 1, window=win)
                if score_dst is not None:
                    score_dst.write(score, 1, window=win)
                for value in (CLEAR, CLOUD, SHADOW, SNOW, THIN, NODATA):  # cheaper than bincount
                    counts[value] += np.count_nonzero(classes == value)
            valid_pixels = int(counts.sum() - counts[NODATA])
            if valid_pixels == 0:
                raise CloudfreeError(f"{scene}: every pixel is nodata; nothing to mask")
            cloud = counts.copy()  # thin cloud is cloud in the fraction, counted once
            cloud[CLOUD] += cloud[THIN]
            cloud[THIN] = 0
            dst.update_tags(**cloud_fraction_tags(cloud))
    total = int(counts.sum())
    return {
        "input": str(scene),
        "output": str(output),
        **({} if dates is None else {"references": [
            {k: v for k, v in r.items() if k != "filled_pixels"}
            for r in reference_report(dates, np.zeros(256, np.int64))]}),
        "score": str(score_path) if score_path else None,
        **params.to_dict(),
        "offset": s2.offset,
        "level": s2.level,
        "mask_source": mask_source(s2, params),
        "width": box.width,
        "height": box.height,
        "valid_pixels": valid_pixels,
        "nodata_fraction": counts[NODATA] / total,
        "cloud_fraction": (counts[CLOUD] + counts[THIN]) / valid_pixels,
        "thin_cloud_fraction": counts[THIN] / valid_pixels if thin else None,
        "shadow_fraction": counts[SHADOW] / valid_pixels,
        "snow_fraction": counts[SNOW] / valid_pixels,
        "clear_fraction": counts[CLEAR] / valid_pixels,
    }
