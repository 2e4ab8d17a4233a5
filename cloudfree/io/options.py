"""How the inputs are read: the Sentinel-2's radiometric offset and processing level, and how the
Sentinel-1 is put on the Sentinel-2 grid. One object, checked when it is made, that goes with a
run from the command line or the library down to every scene it opens (the target and its
references)."""

from __future__ import annotations

from dataclasses import dataclass

from cloudfree.core.arguments import check_choice, check_number, check_switch
from cloudfree.io.s2_files import parse_level
from cloudfree.io.sentinel1 import UNITS
from cloudfree.io.sentinel2 import parse_offset

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
    """

    offset: str | int | None = "auto"
    level: str = "auto"
    s1_aligned: bool = False
    s1_units: str = "auto"
    refine: bool = True
    max_shift: float = 10.0

    def __post_init__(self) -> None:
        parse_offset(self.offset)
        parse_level(self.level)
        check_switch("s1_aligned", self.s1_aligned)
        check_choice("s1_units", self.s1_units, UNITS)
        check_switch("refine", self.refine)
        check_number("max_shift", self.max_shift, *MAX_SHIFT_RANGE, "pixels")
