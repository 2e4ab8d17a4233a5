"""Where `cloudfree remove --reference` spends its CPU, stage by stage.

    python benchmarks/reference_stages.py --size 1024          # the table, as markdown
    python benchmarks/reference_stages.py --size 2048 --json
    python benchmarks/reference_stages.py --size 1024 --repeated   # its clouds cast shadows

The scene is ``reference_speed.py``'s: the bundled five-date series mirrored to size x size
(``--repeated``: repeated, so that the target's clouds cast their shadows, which are tied),
target 2018-07-05, the four other dates as references, no S1, every other default (the
network-free fill, the temporal mask, COG output). One `remove` runs in this process with the
functions of each stage wrapped by ``remove_stages.StageClock`` (each thread's CPU time,
exclusive of the stages called inside; summed over every thread). The passes over the whole
scene (the target's first pass, the references' statistics, the temporal test) name the stages
nested in them: "reference statistics > read + mask reference" is the reading and masking of
the references done for the statistics pass. The similar pixels' search runs on the calling
thread (``workers=1``, the same neighbours), so that its CPU is counted in its stage rather
than in the k-d tree's own threads ("other").
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import remove_stages  # first: it sets NumPy's threads as the command's launcher does
from remove_stages import StageClock, cpu_samples, print_stages

from cloudfree.pipeline.options import OutputOptions, ReferenceOptions

#: (module, attribute path, stage) of the reference path, besides those of ``remove_stages``.
STAGES = (
    ("cloudfree.pipeline.remove", "first_passes", "target first pass"),
    ("cloudfree.dates.opening", "register", "register references"),
    ("cloudfree.dates.opening", "settle", "resample references"),
    ("cloudfree.dates.references", "Reference.read", "resample references"),  # settle's threads
    ("cloudfree.dates.statistics", "DateStatistics._statistics", "reference statistics"),
    ("cloudfree.dates.temporal_mask", "TemporalMask.judge_date", "temporal mask"),
    ("cloudfree.dates.temporal_mask", "TemporalMask.calibrate", "temporal mask"),
    ("cloudfree.dates.references", "Reference.clear", "read + mask reference"),
    ("cloudfree.dates.target_mask", "TargetMask._read", "read + mask target"),
    ("cloudfree.dates.temporal_mask", "TemporalMask.background", "temporal background"),
    ("cloudfree.dates.temporal_mask", "TemporalMask._arrays", "temporal background"),
    ("cloudfree.dates.temporal_mask", "TemporalMask.classify", "temporal classify"),
    ("cloudfree.dates.statistics", "_cell_sums", "fits (cell sums)"),
    ("cloudfree.dates.joint_fit", "JointSums.of", "fits (joint sums)"),
    ("cloudfree.dates.radiometry", "CellFits.field", "fits (solve)"),
    ("cloudfree.dates.statistics", "DateStatistics._fit_groups", "fits (solve)"),
    ("cloudfree.dates.similar_pixels", "SimilarPixels.fit", "similar pixels (fit)"),
    ("cloudfree.dates.similar_pixels", "SimilarPixels.predict", "similar pixels"),
    ("cloudfree.dates.fill", "ReferenceFill.estimate", "per-block fill"),  # older revisions
    ("cloudfree.dates.fill", "ReferenceFill.fill", "per-block fill"),
    ("cloudfree.dates.agreement", "Candidates.drop_outlier", "per-block fill (agreement)"),
    ("cloudfree.dates.radiometry", "FitField.at", "per-block fill (fit fields)"),
    ("cloudfree.pipeline.remove", "carry_residual", "residual"),
    ("cloudfree.pipeline.remove", "restore_dates", "restoration"),
    ("cloudfree.pipeline.remove", "SceneRemoval._from_dates", "dates' fill (rest)"),
)
#: The passes whose nested stages are named after them.
PASSES = ("target first pass", "reference statistics", "temporal mask")


def found(module: str, name: str) -> bool:
    """Whether the cloudfree imported has this function (an older revision may not)."""
    import importlib

    owner = importlib.import_module(module)
    for part in name.split("."):
        if not hasattr(owner, part):
            return False
        owner = getattr(owner, part)
    return True


def profile(size: int, mirror: bool = True) -> dict:
    """The stage table of one `remove --reference` x4 on the mirrored series (``mirror=False``:
    repeated)."""
    import os
    import time
    from contextlib import ExitStack

    from reference_speed import make_scenes

    import cloudfree.dates.similar_pixels as similar_pixels
    from cloudfree.pipeline.remove import remove_scene

    similar_pixels.usable_cores = lambda: 1  # the search on the calling thread, timed there
    remove_stages.STAGES = tuple(stage for stage in STAGES if found(*stage[:2])) \
        + remove_stages.STAGES
    remove_stages.FIRST_PASSES = PASSES
    with tempfile.TemporaryDirectory() as tmp:
        target, refs = make_scenes(Path(tmp), size, mirror)
        clock = StageClock()
        times, wall = os.times(), time.perf_counter()
        with ExitStack() as stack:
            samples = stack.enter_context(cpu_samples(clock.start))
            stack.enter_context(clock.installed())
            remove_scene(target, None, Path(tmp) / "out.tif",
                         dates=ReferenceOptions(references=refs),
                         outputs=OutputOptions(overwrite=True), quiet=True)
        after = os.times()
    wall = time.perf_counter() - wall
    process_cpu = after.user + after.system - times.user - times.system
    stages = {k: {"cpu": round(v, 2), "wall": round(clock.wall[k], 2), "calls": clock.calls[k]}
              for k, v in sorted(clock.cpu.items(), key=lambda kv: -kv[1])}
    return {"size": size, "wall": round(wall, 2), "process_cpu": round(process_cpu, 2),
            "stages": stages, "other_cpu": round(process_cpu - sum(clock.cpu.values()), 2),
            "timeline": remove_stages.timeline(clock, samples,
                                               time.perf_counter() - clock.start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--json", action="store_true", help="print JSON, not the table")
    parser.add_argument("--repeated", action="store_true",
                        help="the series repeated, not mirrored: its clouds cast shadows")
    args = parser.parse_args()
    remove_stages.TIMELINE = ("target first pass", "register references",
                              "reference statistics", "temporal mask", "load (rest)",
                              "composite", "close (flush)", "COG rewrite", "verify")
    result = profile(args.size, not args.repeated)
    if args.json:
        print(json.dumps(result))
    else:
        print_stages(result, f"`remove --reference` x4, {args.size}^2, stages")


if __name__ == "__main__":
    main()
