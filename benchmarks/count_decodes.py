"""How many times a `cloudfree` command decodes each Sentinel-2 input: run it with every read of
stored values (`Sentinel2.read_dn`, through which every read of a scene's bands goes) counted.

    python benchmarks/count_decodes.py remove --s2 T.SAFE --reference R.SAFE -o OUT.tif

Prints, per input, after the command: the reads, and how many times over each band read was
read on average (the pixels read of each band over the input's pixels; 1.00 is each pixel
once). Margins count as pixels read, though on JPEG2000 they cost more: a read decodes every
tile (or code-block) it touches. Used by `safe_speed.py --decodes`.
"""

from __future__ import annotations

import sys
from collections import defaultdict

from remove_pipeline import launch_then

from cloudfree.io.sentinel2 import Sentinel2

calls: dict[str, int] = defaultdict(int)
#: per input, per band: the pixels read over the input's
times: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
read_dn = Sentinel2.read_dn


def counted(self, window=None, bands=None):
    """``Sentinel2.read_dn``, counted."""
    size = (self.height, self.width) if window is None else (int(window.height),
                                                              int(window.width))
    calls[self.path.name] += 1
    for band in self.bands if bands is None else bands:
        times[self.path.name][band] += size[0] * size[1] / (self.height * self.width)
    return read_dn(self, window, bands)


def report() -> None:
    for name, bands in sorted(times.items()):
        print(f"decodes {name}: {calls[name]} reads, each band read "
              f"{sum(bands.values()) / len(bands):.2f} times over", file=sys.stderr)


if __name__ == "__main__":
    Sentinel2.read_dn = counted
    sys.argv[0] = "cloudfree"
    launch_then(report)
