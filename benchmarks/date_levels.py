"""Each date's level in aerosol, blue and cirrus against its clear neighbours in time: the
statistic by which ``remove --reference`` judges a date hazy all over.

    python benchmarks/date_levels.py --series SERIES

For every date of the pool's SEN12MS-CR-TS series (``reference_fill.py``): its level per band
(the median reflectance of the pixels its own mask, ``remove``'s with a 5 px buffer, finds
clear), its anomaly (that level less the median level of the ``DATE_NEIGHBOURS`` clear dates
nearest in time, itself left out) and that anomaly in spreads of the clear dates' own anomalies
(centred on their median, 1.4826 x their median absolute deviation), as
``temporal_mask.level_anomalies`` computes it for a target against its references. A
clear date is one its mask finds clear on ``CLEAR_DATE`` of its pixels. The dates whose
aerosol and blue both stand out by a given number of spreads are those a test at that number
would judge hazy; on a clear date that would change pixels a user expects kept.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from reference_fill import REMOVE_MASK, classes, read, series  # noqa: E402

from cloudfree.dates.temporal_mask import CLEAR_DATE, level_anomalies  # noqa: E402
from cloudfree.io.sentinel2 import BANDS  # noqa: E402
from cloudfree.mask.classify import CLEAR, NODATA  # noqa: E402

#: The bands of the test: aerosol and blue rise under haze, B10 under cirrus.
LEVEL_BANDS = ("B01", "B02", "B10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True)
    args = parser.parse_args()
    rows = [BANDS.index(b) for b in LEVEL_BANDS]
    names, days, levels, shares = [], [], [], []
    for path in series(args.series):
        refl = read(path)[0]
        found = classes(refl, REMOVE_MASK)
        clear = found == CLEAR
        shares.append(clear.sum() / max((found != NODATA).sum(), 1))
        levels.append(np.median(refl[rows][:, clear], axis=1) if clear.any()
                      else np.full(len(rows), np.nan))
        names.append(re.search(r"\d{4}-\d\d-\d\d", path.name).group(0))
        days.append(date.fromisoformat(names[-1]).toordinal())
    levels, days = np.array(levels), np.array(days)
    clear_dates = [i for i, share in enumerate(shares) if share >= CLEAR_DATE]
    spreads = level_anomalies(levels, days, clear_dates)
    print("| date | clear share | clear date | " + " | ".join(
        f"{b} anomaly (spreads)" for b in LEVEL_BANDS) + " |")
    print("|---|---|---|" + "---|" * len(LEVEL_BANDS))
    stand_out = {}
    for i, name in enumerate(names):
        z = spreads[i]
        if i in clear_dates:
            stand_out[name] = min(z[0], z[1])
        print(f"| {name} | {shares[i]:.2f} | {'yes' if i in clear_dates else 'no'} | "
              + " | ".join("-" if np.isnan(v) else f"{v:+.1f}" for v in z) + " |")
    print(f"\n{len(clear_dates)} clear dates; standing out in both aerosol and blue by at least")
    for sigmas in (1.5, 2.0, 3.0, 4.0):
        over = [n for n, v in stand_out.items() if v >= sigmas]
        print(f"- {sigmas} spreads: {len(over)} ({', '.join(over) or 'none'})")


if __name__ == "__main__":
    main()
