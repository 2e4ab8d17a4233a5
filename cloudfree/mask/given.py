"""A mask given for the scene (``remove --mask-in``), taken instead of the one its bands make.

Its first band holds cloudfree's classes, as ``cloudfree mask`` and ``remove --mask-out`` write
them (a 0/1 cloud mask is one), another tool's codes (``CODES``), or a cloud probability with the
threshold from which it is cloud. The scene reads it where an L2A product's scene classification
would be (``Sentinel2.take_mask``), and the mask is made from it as from that: its codes, or its
probability thresholded, become the classification's (``given_scl``), which ``classify`` takes
as they are; the buffer and the shadows' relighting then work around its clouds as around those
the bands show. A mask that marks no shadow (a 0/1 cloud mask, a probability) has its clouds'
shadows found as without one: flagged by the bands and tied to its clouds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from cloudfree.core.errors import CloudfreeError
from cloudfree.io.s2_files import SCL
from cloudfree.io.sentinel2 import MASK_CODES, Sentinel2
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

#: The class of each value of each kind of mask (``MASK_CODES``): cloudfree's own; Fmask's
#: (Zhu and Woodcock 2012; its water is clear land here); Sen2Cor's scene classification
#: (0 no data, 3 cloud shadow, 8-9 cloud, 10 thin cirrus, 11 snow, the rest land and water);
#: OmniCloudMask's and CloudSEN12's (0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow).
CODES: dict[str, dict[int, int]] = {
    "cloudfree": {CLEAR: CLEAR, CLOUD: CLOUD, SHADOW: SHADOW, SNOW: SNOW, THIN: THIN,
                  NODATA: NODATA},
    "fmask": {0: CLEAR, 1: CLEAR, 2: SHADOW, 3: SNOW, 4: CLOUD, 255: NODATA},
    "scl": {0: NODATA, **{v: CLEAR for v in (1, 2, 4, 5, 6, 7)}, 3: SHADOW, 8: CLOUD,
            9: CLOUD, 10: THIN, 11: SNOW},
    "omnicloudmask": {0: CLEAR, 1: CLOUD, 2: THIN, 3: SHADOW},
}
#: The scene classification's code of each class: cloud as cloud of high probability (9),
#: clear as vegetation (4, one of the classes of land).
CLASS_AS_SCL = {CLEAR: 4, CLOUD: 9, SHADOW: SCL_SHADOW, SNOW: SCL_SNOW, THIN: SCL_THIN,
                NODATA: SCL_NODATA}


def _as_scl_table(codes: dict[int, int]) -> np.ndarray:
    """The scene classification's code [256] of each value of a kind's ``codes`` (0, no data,
    for the values that are none of them, which ``check_given`` refuses before any is read)."""
    table = np.zeros(256, np.uint8)
    table[list(codes)] = [CLASS_AS_SCL[c] for c in codes.values()]
    return table


#: Per kind (every one of ``MASK_CODES``), ``_as_scl_table``.
AS_SCL = {kind: _as_scl_table(CODES[kind]) for kind in MASK_CODES}
#: Rows of the mask read at a time by ``check_given``.
ROWS = 1024


def described(kind: str) -> str:
    """The codes of ``kind`` in words, for messages."""
    names = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "shadow", SNOW: "snow", THIN: "thin cloud",
             NODATA: "no data"}
    return ", ".join(f"{v} {names[c]}" for v, c in CODES[kind].items())


def check_given(s2: Sentinel2, path: Path | str) -> bool:
    """Refuse, in one line, a given mask of values that are no code of its kind, or one of
    clear and no data alone (a 0/255 mask in cloudfree's or Fmask's codes: 255 is no data,
    left as it is, not cloud to fill); a probability, where its threshold is not in its units
    (``check_probability``). Whether it marks any shadow (a probability marks none)."""
    if s2.given_threshold is not None:
        check_probability(s2, path)
        return False
    kind = s2.given_codes
    dataset = s2.band_sources[SCL][0]
    dtype = np.dtype(dataset.dtypes[0])
    advice = (f"give {kind} codes ({described(kind)})" + (
        ", as cloudfree mask writes them; a 0/1 cloud mask works as it is, other tools' codes "
        "with --mask-in-codes" if kind == "cloudfree" else ""))
    if not np.issubdtype(dtype, np.integer):
        raise CloudfreeError(f"mask {path} holds {dtype} values, not classes: for a cloud "
                             f"probability give --mask-in-threshold P; else {advice}")
    values: set[int] = set()
    for window in _strips(s2):
        values.update(np.unique(s2.read_dn(window, (SCL,))[0][0]).tolist())
    odd = sorted(values - set(CODES[kind]))
    if odd:
        shown = ", ".join(map(str, odd[:5])) + (", ..." if len(odd) > 5 else "")
        raise CloudfreeError(f"mask {path} holds {shown}, which are no {kind} codes; {advice}")
    classes = {CODES[kind][v] for v in values}
    if kind in ("cloudfree", "fmask") and NODATA in classes \
            and not classes & {CLOUD, SHADOW, SNOW, THIN}:
        cloud = next(v for v, c in CODES[kind].items() if c == CLOUD)
        raise CloudfreeError(f"mask {path} holds only {' and '.join(map(str, sorted(values)))}, "
                             f"and {NODATA} is no data, left as it is, not cloud: if it marks "
                             f"cloud, write it as {cloud}")
    return SHADOW in classes


def check_probability(s2: Sentinel2, path: Path | str) -> None:
    """Refuse, in one line, a cloud probability whose threshold is plainly in other units: one
    above 1 where every value is 1 or less (a 0-1 map: nothing would be cloud), or one under 1
    where values run above 1 (a 0-100 or 0-255 layer: every value from 1 would be)."""
    low, high = np.inf, -np.inf
    for window in _strips(s2):
        values, known = _probability(s2, window)
        if known.any():
            low, high = min(low, float(values[known].min())), max(high, float(values[known].max()))
    threshold = s2.given_threshold
    if high < low:
        return  # no data anywhere: nothing to fill, as with a mask of no data alone
    span = f"mask {path} holds a probability from {low:g} to {high:g}"
    if threshold > 1 >= high:
        raise CloudfreeError(f"{span}, none reaching the threshold {threshold:g}: give it in "
                             f"the mask's units (0.4 for a 0-1 probability)")
    if threshold < 1 < high:
        raise CloudfreeError(f"{span}: a threshold of {threshold:g} makes every value from 1 "
                             f"cloud; give it in the mask's units (40 for a 0-100 probability), "
                             f"or none for a mask of classes")


def given_scl(s2: Sentinel2, window: Window) -> np.ndarray:
    """The given mask's window [h, w] as the scene classification's codes: its codes
    (``as_scl``), or its probability cloud where it reaches the threshold, clear below and no
    data where the mask has none (its no-data value or mask, NaN)."""
    if s2.given_threshold is None:
        return as_scl(s2.read_scl(window), s2.given_codes)
    values, known = _probability(s2, window)
    with np.errstate(invalid="ignore"):
        cloud = values >= s2.given_threshold  # NaN: no data, below
    return np.where(known, np.where(cloud, CLASS_AS_SCL[CLOUD], CLASS_AS_SCL[CLEAR]),
                    CLASS_AS_SCL[NODATA]).astype(np.uint8)


def _strips(s2: Sentinel2) -> Iterator[Window]:
    """The scene's windows of ``ROWS`` whole rows, top to bottom: a given mask read through."""
    for top in range(0, s2.height, ROWS):
        yield Window(0, top, s2.width, min(ROWS, s2.height - top))


def _probability(s2: Sentinel2, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """A given probability's values [h, w] in the window, and where it has any (not its
    no-data value or mask, not NaN)."""
    values, valid = s2.read_dn(window, (SCL,))
    known = np.isfinite(values[0])
    return values[0], known if valid is None else known & valid


def as_scl(codes: np.ndarray, kind: str) -> np.ndarray:
    """A given mask's ``codes`` of ``kind`` as the scene classification's codes."""
    return AS_SCL[kind][codes]
