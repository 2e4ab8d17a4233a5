"""Mask a whole Sentinel-2 scene window by window and write the class GeoTIFF."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio

from cloudfree.cog import AVERAGE, NEAREST
from cloudfree.errors import CloudfreeError
from cloudfree.masking import (
    CLEAR,
    CLOUD,
    MASK_BANDS,
    NODATA,
    SHADOW,
    SNOW,
    MaskParams,
    ShadowThresholds,
    classify,
    combine_shadow_stats,
    shadow_thresholds,
)
from cloudfree.provenance import cloud_fraction_tags, provenance_tags
from cloudfree.rasterio_io import (
    atomic_output,
    block_windows,
    check_output,
    geotiff_profile,
    progress,
    scene_io_env,
    with_halo,
)
from cloudfree.sentinel2 import Sentinel2, open_sentinel2

log = logging.getLogger("cloudfree")

COLORMAP = {CLEAR: (0, 0, 0, 0), CLOUD: (255, 255, 255, 255), SHADOW: (90, 60, 140, 255),
            SNOW: (0, 200, 255, 255), NODATA: (0, 0, 0, 0)}


def scene_shadow_thresholds(s2: Sentinel2, windows, quiet: bool) -> ShadowThresholds:
    """First pass: scene-wide shadow thresholds from all valid pixels."""
    stats = []
    for win in progress(windows, desc="shadow statistics", quiet=quiet):
        refl, valid = s2.read(win, MASK_BANDS)
        stats.append(shadow_thresholds(refl, valid, MASK_BANDS))
    return combine_shadow_stats(stats)


def mask_tags(params: MaskParams, s2: Sentinel2) -> dict[str, str]:
    """Tags recording how the mask was made."""
    return {
        **provenance_tags("mask", s2.path),
        "MASK_METHOD": params.method,
        "CLOUD_THRESHOLD": str(params.threshold),
        "NDSI_THRESHOLD": str(params.ndsi_threshold),
        "BUFFER_PIXELS": str(params.buffer),
        "SHADOW": str(params.shadow),
        "RADIOMETRIC_OFFSET": str(s2.offset),
        "CLASSES": "0=clear 1=cloud 2=shadow 3=snow 255=nodata",
    }


def mask_scene(
    scene: Path | str,
    output: Path | str,
    params: MaskParams = MaskParams(),
    *,
    offset: str | int | None = "auto",
    score_path: Path | str | None = None,
    overwrite: bool = False,
    creation_options: dict[str, str] | None = None,
    block: int = 1024,
    cog: bool = True,
    quiet: bool = False,
) -> dict:
    """Write the uint8 class mask of ``scene`` to ``output``; return a summary with fractions."""
    output = Path(output)
    check_output(output, overwrite, [Path(scene)])
    if score_path is not None:
        check_output(Path(score_path), overwrite, [Path(scene)])
    with scene_io_env(), open_sentinel2(scene, offset) as s2:
        s2.require(MASK_BANDS, f"the {params.method} cloud mask")
        windows = block_windows(s2.width, s2.height, block)
        thresholds = scene_shadow_thresholds(s2, windows, quiet) if params.shadow else None
        grid = {**s2.profile, "creation_options": creation_options}
        counts = np.zeros(256, dtype=np.int64)
        with ExitStack() as stack:
            tmp = stack.enter_context(atomic_output(output, overwrite, [Path(scene)],
                                                    cog=NEAREST if cog else None))
            dst = stack.enter_context(rasterio.open(
                tmp, "w", **geotiff_profile(**grid, count=1, dtype="uint8", nodata=NODATA)))
            dst.update_tags(**mask_tags(params, s2))
            dst.set_band_description(1, "cloud_mask")
            dst.write_colormap(1, COLORMAP)
            score_dst = None
            if score_path is not None:
                score_tmp = stack.enter_context(atomic_output(Path(score_path), overwrite,
                                                              cog=AVERAGE if cog else None))
                score_dst = stack.enter_context(rasterio.open(
                    score_tmp, "w",
                    **geotiff_profile(**grid, count=1, dtype="float32", nodata=float("nan"))))
                score_dst.update_tags(**mask_tags(params, s2))
                score_dst.set_band_description(1, "cloud_score")
            for win in progress(windows, desc="mask", quiet=quiet):
                read_win, inner = with_halo(win, params.halo, s2.width, s2.height)
                refl, valid = s2.read(read_win, MASK_BANDS)
                classes, score = classify(refl, valid, params, MASK_BANDS, thresholds)
                classes = classes[inner]
                dst.write(classes, 1, window=win)
                if score_dst is not None:
                    score_dst.write(score[inner], 1, window=win)
                counts += np.bincount(classes.ravel(), minlength=256)
            valid_pixels = int(counts.sum() - counts[NODATA])
            if valid_pixels == 0:
                raise CloudfreeError(f"{scene}: every pixel is nodata; nothing to mask")
            dst.update_tags(**cloud_fraction_tags(counts))
    total = int(counts.sum())
    return {
        "input": str(scene),
        "output": str(output),
        "score": str(score_path) if score_path else None,
        **params.to_dict(),
        "offset": s2.offset,
        "width": s2.width,
        "height": s2.height,
        "valid_pixels": valid_pixels,
        "nodata_fraction": counts[NODATA] / total,
        "cloud_fraction": counts[CLOUD] / valid_pixels,
        "shadow_fraction": counts[SHADOW] / valid_pixels,
        "snow_fraction": counts[SNOW] / valid_pixels,
        "clear_fraction": counts[CLEAR] / valid_pixels,
    }
