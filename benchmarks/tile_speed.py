"""Time `cloudfree remove` once on a whole tile, against the cost of reading and writing it.

    python benchmarks/tile_speed.py                      # 10980^2: the default, one date, with S1
    python benchmarks/tile_speed.py --size 2048 --cases default references

Meant for a machine with many cores or a GPU, where one run of each case fits in minutes. The
cases, each once, in fresh processes, after the scenes are written (which warms the page cache):
- ``default``: the bundled sample (S2 and S1) mirrored to size x size (``remove_pipeline``'s
  mosaic); the floor is `rio cogeo create S2 OUT --cog-profile deflate`, then `cloudfree remove
  --s2 S2 --s1 S1 -o OUT` with every other default, as users run it;
- ``references``: the bundled five-date series mirrored to size x size, the cloudy 2018-07-05
  as the target and the four other dates as references, no S1 (``reference_speed.py``'s case);
  the floor reads the references and writes the target as a COG.
The table gives wall seconds, CPU seconds (every thread) and peak RSS of each command, and
remove / floor.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from reference_speed import floor, make_scenes, remove_command, timed, usable_cpus
from remove_pipeline import make_scene
from remove_speed import remove_command as default_command


def default_case(folder: Path, size: int) -> tuple[tuple, tuple]:
    """(floor, remove) of the default on the bundled sample, each (wall, CPU, peak)."""
    s2, s1 = make_scene(folder, size)
    bottom = floor(s2, [], folder / "floor.tif")
    return bottom, timed(default_command(s2, s1, folder / "out.tif", "median-fill"))


def reference_case(folder: Path, size: int) -> tuple[tuple, tuple]:
    """(floor, remove) with the four other dates as references."""
    target, refs = make_scenes(folder, size)
    bottom = floor(target, refs, folder / "floor.tif")
    return bottom, timed(remove_command(target, refs, folder / "out.tif"))


CASES = {"default": default_case, "references": reference_case}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["default"])
    args = parser.parse_args()
    print(f"{args.size}^2 x 13 bands, {usable_cpus()} CPU cores, one run each\n"
          "| case | floor (s) | remove (s) | remove / floor | floor CPU (s) | remove CPU (s) | "
          "remove peak RSS (MB) |\n|---|---|---|---|---|---|---|", flush=True)
    for name in args.cases:
        with tempfile.TemporaryDirectory() as tmp:
            bottom, run = CASES[name](Path(tmp), args.size)
        print(f"| {name} | {bottom[0]:.1f} | {run[0]:.1f} | {run[0] / bottom[0]:.1f}x | "
              f"{bottom[1]:.1f} | {run[1]:.1f} | {run[2]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
