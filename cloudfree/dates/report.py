"""What the reference dates report (``statistics.py``, ``fill.py``): the source map and its
colours, the days from the target to each source, the references' JSON report and GeoTIFF
tags."""

from __future__ import annotations

import colorsys
import json

import numpy as np

from cloudfree.dates.statistics import DateStatistics
from cloudfree.output.provenance import BY_MODEL, FROM_REFERENCES, REFERENCES, input_path

#: Source-map codes besides the references' own 1..N.
OBSERVED, SINGLE_DATE, SOURCE_NODATA = 0, 254, 255
#: Days output where no dated source is known (the model, an undated reference, nodata).
DAYS_NODATA = -32768


def reference_report(dates: DateStatistics, source_counts: np.ndarray) -> list[dict]:
    """Per reference: path, date, pixels clear in both, whether used, pixels it filled."""
    return [{"path": str(r.path), "date": None if r.acquired is None else
             r.acquired.isoformat(), "index": r.index,
             "common_clear_pixels": dates.fitted[r.index].common,
             "used": dates.fitted[r.index].field is not None,
             "filled_pixels": int(source_counts[r.index]),
             **({} if r.shift is None else {
                 "shift_px": [round(r.shift.dx, 2), round(r.shift.dy, 2)],
                 "shift_applied": r.shift_applied}),
             **({"s1_bias_db": [round(float(b), 2) for b in dates.fitted[r.index].bias]}
                if dates.checks_change(r) else {})}
            for r in dates.references]


def reference_tags(dates: DateStatistics, combine: str, source_counts: np.ndarray
                   ) -> dict[str, str]:
    """GeoTIFF tags: the references (path, date, pixels filled, as ``combine``d) and pixels
    per source."""
    return {REFERENCES: json.dumps([
                {"path": input_path(r.path), "date": None if r.acquired is None
                 else r.acquired.isoformat(), "used": dates.fitted[r.index].field is not None,
                 "filled_pixels": int(source_counts[r.index])} for r in dates.references]),
            "REFERENCE_COMBINE": combine,
            FROM_REFERENCES: str(int(source_counts[1:SINGLE_DATE].sum())),
            BY_MODEL: str(int(source_counts[SINGLE_DATE]))}


def days_table(dates: DateStatistics) -> np.ndarray:
    """int16 [256]: days from the target to each source-map code's date (0 observed,
    ``DAYS_NODATA`` where unknown), as FORCE's compositing records them."""
    table = np.full(256, DAYS_NODATA, np.int16)
    table[OBSERVED] = 0
    for ref in dates.references:
        if ref.acquired is not None and dates.target_date is not None:
            table[ref.index] = (ref.acquired - dates.target_date).days
    return table


def source_map(valid: np.ndarray, filled: np.ndarray, reference: np.ndarray | None
               ) -> np.ndarray:
    """Where each output pixel came from: OBSERVED, 1..N (a reference), SINGLE_DATE (the
    model) or SOURCE_NODATA; uint8 [h, w]."""
    out = np.where(filled, SINGLE_DATE, OBSERVED).astype(np.uint8)
    if reference is not None:
        out = np.where(filled & (reference > 0), reference, out).astype(np.uint8)
    out[~valid] = SOURCE_NODATA
    return out


def source_colormap(count: int) -> dict[int, tuple[int, int, int, int]]:
    """Colour table of the source map: observed grey, references in distinct hues, the
    single-date model red, nodata black."""
    table = {OBSERVED: (160, 160, 160, 255), SINGLE_DATE: (220, 30, 30, 255),
             SOURCE_NODATA: (0, 0, 0, 0)}
    for index in range(1, count + 1):
        hue = (index - 1) * 0.618034 % 1.0
        r, g, b = (int(255 * c) for c in colorsys.hsv_to_rgb(0.2 + 0.6 * hue, 0.7, 0.9))
        table[index] = (r, g, b, 255)
    return table
