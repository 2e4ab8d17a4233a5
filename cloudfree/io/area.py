"""An area of interest: a box (``minx, miny, maxx, maxy``) in the scene's CRS or in any CRS
PROJ knows, as the window of the scene's grid it covers.

The window is snapped outward to whole pixels of the scene's grid (its finest band's): the
coarser bands are read onto that grid window by window as for the whole scene
(``sentinel2._read_bands``), so every band of the cropped scene lines up with the same
pixels of the whole one. A box given in another CRS is first transformed to the scene's, its
edges densified (``rasterio.warp.transform_bounds``), so the window holds all of it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from numbers import Real

import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError, UsageError

log = logging.getLogger("cloudfree")

#: How far (in pixels) a box edge may fall past a pixel edge and still be taken as on it, so
#: that a box drawn on pixel edges does not gain a row or a column from rounding.
EDGE_TOLERANCE = 1e-6


def check_box(bbox: object) -> tuple[float, float, float, float]:
    """``bbox`` as four floats ``(minx, miny, maxx, maxy)``; one line when it is not four
    finite numbers or is empty or inverted."""
    if (not isinstance(bbox, Sequence) or isinstance(bbox, str) or len(bbox) != 4
            or not all(isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
                       for v in bbox)):
        raise UsageError(f"bbox={bbox!r} must be four finite numbers: MINX MINY MAXX MAXY",
                         "bbox")
    minx, miny, maxx, maxy = map(float, bbox)
    if not (minx < maxx and miny < maxy):
        raise UsageError(f"bbox={coordinates((minx, miny, maxx, maxy))} is empty or inverted: "
                         "give MINX MINY MAXX MAXY with MINX < MAXX and MINY < MAXY", "bbox")
    return minx, miny, maxx, maxy


def coordinates(values: Sequence[float]) -> str:
    """Coordinates as a message shows them: to 10 significant digits (a centimetre in UTM)."""
    return " ".join(f"{v:.10g}" for v in values)


def parse_crs(value: object) -> CRS:
    """A CRS as PROJ reads it (``EPSG:4326``, a WKT or PROJ string); one line otherwise."""
    try:
        if not isinstance(value, str | CRS) or not str(value).strip():
            raise CRSError("not a string")
        with rasterio.Env():  # PROJ's complaint to the log, not to stderr
            return CRS.from_user_input(value)
    except (CRSError, ValueError):  # "EPSG:nope" fails in the parsing of its code
        raise UsageError(f"bbox_crs={value!r} is no CRS PROJ knows; give one such as "
                         "EPSG:4326 (longitude, latitude) or EPSG:32631", "bbox_crs") from None


def box_window(bbox: tuple[float, float, float, float], bbox_crs: CRS | None, crs: object,
               transform: object, width: int, height: int, name: str) -> Window:
    """The window of the grid (``crs``, ``transform``, ``width`` x ``height``) that holds
    ``bbox`` (in ``bbox_crs``; None: in ``crs``), snapped outward to whole pixels and clipped
    to the grid, saying so at INFO when it is clipped; one line naming scene ``name`` when the
    box misses the grid, or the grid is rotated."""
    if transform.b or transform.d:
        raise CloudfreeError(f"{name}: its grid is rotated; bbox=... needs a north-up grid",
                             "bbox")
    shown = coordinates(bbox)
    if bbox_crs is not None and CRS.from_user_input(crs) != bbox_crs:
        try:
            bbox = transform_bounds(bbox_crs, crs, *bbox, densify_pts=21)
        except Exception:  # PROJ's own errors: no transformation between the two
            bbox = (math.nan,) * 4
        if not all(math.isfinite(v) for v in bbox):
            raise UsageError(f"bbox={shown} in {bbox_crs} cannot be transformed into the "
                             f"scene's CRS ({crs}): give it within that CRS's area of use",
                             "bbox", "bbox_crs")
    inverse = ~transform
    cols, rows = zip(*(inverse * (x, y) for x in bbox[::2] for y in bbox[1::2]), strict=True)
    col0 = math.floor(min(cols) + EDGE_TOLERANCE)
    row0 = math.floor(min(rows) + EDGE_TOLERANCE)
    col1 = math.ceil(max(cols) - EDGE_TOLERANCE)
    row1 = math.ceil(max(rows) - EDGE_TOLERANCE)
    left, top = max(col0, 0), max(row0, 0)
    right, bottom = min(col1, width), min(row1, height)
    if right <= left or bottom <= top:
        (x0, x1), (y0, y1) = zip(transform * (0, 0), transform * (width, height), strict=True)
        scene = coordinates((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        raise UsageError(
            f"bbox={shown}{'' if bbox_crs is None else f' in {bbox_crs}'} lies outside "
            f"{name}, which covers {scene} in {crs}: give a box that overlaps it", "bbox")
    if (left, top, right, bottom) != (col0, row0, col1, row1):
        log.info("%s: bbox %s reaches beyond the scene: cropped to the %d x %d px inside it",
                 name, shown, right - left, bottom - top)
    return Window(left, top, right - left, bottom - top)
