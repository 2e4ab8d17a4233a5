"""A mask given for the scene (``remove --mask-in``), taken instead of the one its bands make.

Its first band holds cloudfree's classes, as ``cloudfree mask`` and ``remove --mask-out`` write
them; a 0/1 cloud mask is one. The scene reads it where an L2A product's scene classification
would be (``Sentinel2.take_mask``), and the mask is made from it as from that: its classes
become the classification's codes (``AS_SCL``), which ``classify`` takes as they are; the buffer
and the shadows' relighting then work around its clouds as around those the bands show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError
from cloudfree.io.s2_files import SCL
from cloudfree.io.sentinel2 import Sentinel2
from cloudfree.mask.classify import (
    CLEAR,
    CLOUD,
    NODATA,
    SCL_NODATA,
    SCL_SHADOW,
    SCL_SNOW,
    SCL_THIN,
    SHADOW,
    SNOW,
    THIN,
)

#: The scene classification's code of each class of a given mask: cloud as cloud of high
#: probability (9), clear as vegetation (4, one of the classes of land); 0 (no data) for the
#: values that are no class, which ``check_given`` refuses before any is read.
AS_SCL = np.zeros(256, np.uint8)
AS_SCL[[CLEAR, CLOUD, SHADOW, SNOW, THIN, NODATA]] = 4, 9, SCL_SHADOW, SCL_SNOW, SCL_THIN, \
    SCL_NODATA
#: What a given mask must hold.
VALUES = ("give cloudfree's classes (0 clear, 1 cloud, 2 shadow, 3 snow, 4 thin cloud, 255 no "
          "data), as cloudfree mask writes them; a 0/1 cloud mask works as it is")
#: Rows of the mask read at a time by ``check_given``.
ROWS = 1024


def check_given(s2: Sentinel2, path: Path | str) -> None:
    """Refuse, in one line, a given mask of values other than the classes, or one of clear
    and no data alone: 255 is no data, left as it is, not cloud to fill."""
    dataset = s2.band_sources[SCL][0]
    dtype = np.dtype(dataset.dtypes[0])
    if not np.issubdtype(dtype, np.integer):
        raise CloudfreeError(f"mask {path} holds {dtype} values, not classes; {VALUES}")
    values: set[int] = set()
    for top in range(0, s2.height, ROWS):
        window = Window(0, top, s2.width, min(ROWS, s2.height - top))
        values.update(np.unique(s2.read_dn(window, (SCL,))[0][0]).tolist())
    odd = sorted(values - {CLEAR, CLOUD, SHADOW, SNOW, THIN, NODATA})
    if odd:
        shown = ", ".join(map(str, odd[:5])) + (", ..." if len(odd) > 5 else "")
        raise CloudfreeError(f"mask {path} holds {shown}, which are not cloudfree's classes; "
                             f"{VALUES}")
    if NODATA in values and not values & {CLOUD, SHADOW, SNOW, THIN}:
        raise CloudfreeError(f"mask {path} holds only {CLEAR} and {NODATA}, and {NODATA} is no "
                             "data, left as it is, not cloud: if it marks cloud, write it as "
                             f"{CLOUD}")


def as_scl(classes: np.ndarray) -> np.ndarray:
    """A given mask's classes as the scene classification's codes."""
    return AS_SCL[classes]
