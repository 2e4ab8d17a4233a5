"""How the inputs are read: the Sentinel-2's radiometric offset and processing level, how the
Sentinel-1 is put on the Sentinel-2 grid, and the area of interest of the scene processed. One
object, checked when it is made, that goes with a run from the command line or the library
down to every scene it opens (the target and its references; the area crops the target alone,
the others being put on its grid)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from cloudfree.core.arguments import check_choice, check_number, check_path, check_switch
from cloudfree.core.errors import UsageError
from cloudfree.io.area import box_window, check_box, parse_crs
from cloudfree.io.s2_files import parse_level
from cloudfree.io.sentinel1 import UNITS
from cloudfree.io.sentinel2 import MASK_CODES, Sentinel2, open_sentinel2, parse_offset

#: Range of the largest S1-S2 shift the refinement searches for (S2 pixels): its search area
#: and memory grow with the square of it (1e9 asked for 24 GB).
MAX_SHIFT_RANGE = (0.5, 100)


@dataclass(frozen=True)
class InputOptions:
    """How the inputs are read.

    Parameters
    ----------
    offset : {"auto", "0", "1000"} or {0, 1000}
        Radiometric offset in DN of processing baseline 04.00+ products; ``auto`` reads the
        product metadata or tags, else assumes 0. Default: ``"auto"``.
    level : {"auto", "L1C", "L2A"}
        Processing level; ``auto`` reads the metadata, else the band set. An L2A scene's
        scene classification (SCL) gives the mask unless ``MaskParams.scl`` is False.
        Default: ``"auto"``.
    s1_aligned : bool
        The target's S1 is already on the S2 grid: skip co-registration (references' S1 are
        always co-registered). Default: False.
    s1_units : {"auto", "db", "linear"}
        Units of the S1 values; ``auto`` decides from them. Default: ``"auto"``.
    refine : bool
        Estimate the residual S1-S2 shift and correct it when reliable. Default: True.
    max_shift : float
        Largest shift the refinement searches for, in S2 pixels, 0.5 to 100. Default: 10.
    bbox : (minx, miny, maxx, maxy), optional
        Area of interest: only the part of the scene inside this box is read and written, on
        the scene's grid, the box snapped outward to whole pixels of it and clipped to the
        scene (``io.area``); the other dates and the Sentinel-1 follow, as they are put on
        that grid. Default: none, the whole scene.
    bbox_crs : str, optional
        The CRS of ``bbox`` as PROJ reads it (``EPSG:4326`` for longitude and latitude).
        Default: none, the scene's CRS.
    mask_in : path, optional
        A mask of the scene to take instead of finding its clouds: a raster whose first band
        holds cloudfree's classes (as ``cloudfree mask`` writes them; a 0/1 cloud mask as it
        is), on the scene's grid or a whole multiple of its pixels. It takes the place of an
        L2A product's scene classification; where it marks no shadow, the shadows its clouds
        cast are found as without it (``MaskParams(shadow=False)`` leaves them). Default:
        none, the mask is found.
    mask_codes : {"cloudfree", "fmask", "scl", "omnicloudmask"}
        The codes ``mask_in`` holds: cloudfree's classes, or those of Fmask (0 land, 1 water,
        2 shadow, 3 snow, 4 cloud, 255 no data), of an L2A scene classification (SCL) or of
        OmniCloudMask and CloudSEN12 (0 clear, 1 thick cloud, 2 thin cloud, 3 shadow). Default:
        ``"cloudfree"``.
    mask_threshold : float, optional
        ``mask_in`` holds a cloud probability (s2cloudless's, Earth Engine's
        ``S2_CLOUD_PROBABILITY``, Sentinel Hub's ``CLP``), not classes: a pixel is cloud where
        it reaches this, in the mask's own units (0.4 for a 0-1 map, 40 for a 0-100 layer),
        clear below it, no data where the mask has none. Default: none, ``mask_in`` holds
        classes.
    """

    offset: str | int | None = "auto"
    level: str = "auto"
    s1_aligned: bool = False
    s1_units: str = "auto"
    refine: bool = True
    max_shift: float = 10.0
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str | None = None
    mask_in: Path | str | None = None
    mask_codes: str = "cloudfree"
    mask_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.bbox is not None:
            object.__setattr__(self, "bbox", check_box(self.bbox))
        if self.bbox_crs is not None:
            if self.bbox is None:
                raise UsageError(f"bbox_crs={self.bbox_crs} needs bbox=MINX MINY MAXX MAXY: "
                                 "it is the CRS of that box", "bbox_crs", "bbox")
            parse_crs(self.bbox_crs)
        check_path("mask_in", self.mask_in, optional=True)
        check_choice("mask_codes", self.mask_codes, MASK_CODES)
        if self.mask_codes != "cloudfree" and self.mask_in is None:
            raise UsageError(f"mask_codes={self.mask_codes} needs mask_in=PATH: it names the "
                             "codes of that mask", "mask_codes", "mask_in")
        if self.mask_threshold is not None:
            _check_threshold(self.mask_threshold)
            if self.mask_in is None:
                raise UsageError(f"mask_threshold={self.mask_threshold} needs mask_in=PATH: it "
                                 "is where that mask's cloud probability makes cloud",
                                 "mask_threshold", "mask_in")
            if self.mask_codes != "cloudfree":
                raise UsageError(f"mask_threshold={self.mask_threshold} reads the mask as a "
                                 f"cloud probability, mask_codes={self.mask_codes} as classes: "
                                 "give one of them", "mask_threshold", "mask_codes")
        parse_offset(self.offset)
        parse_level(self.level)
        check_switch("s1_aligned", self.s1_aligned)
        check_choice("s1_units", self.s1_units, UNITS)
        check_switch("refine", self.refine)
        check_number("max_shift", self.max_shift, *MAX_SHIFT_RANGE, "pixels")

    def open_scene(self, path: Path | str) -> Sentinel2:
        """The scene to process (not a reference): opened as these options read it, with the
        mask given for it, and cropped to ``bbox``."""
        s2 = open_sentinel2(path, self.offset, self.level)
        try:
            if self.mask_in is not None:
                s2.take_mask(self.mask_in, self.mask_codes, self.mask_threshold)
            if self.bbox is not None:
                crs = None if self.bbox_crs is None else parse_crs(self.bbox_crs)
                s2.crop(box_window(self.bbox, crs, s2.crs, s2.transform, s2.width, s2.height,
                                   str(s2.path)))
        except BaseException:
            s2.close()
            raise
        return s2


def _check_threshold(value: object) -> None:
    """``mask_threshold``: a number above 0 and finite (at 0 every pixel of a probability would
    be cloud)."""
    check_number("mask_threshold", value, 0)
    if not 0 < value < math.inf:  # type: ignore[operator]
        raise UsageError(f"mask_threshold={value} must be above 0 and finite: the cloud "
                         "probability from which a pixel of the mask is cloud, in its units",
                         "mask_threshold")
