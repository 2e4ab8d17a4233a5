"""Benchmark `cloudfree remove` on CPU against the cost of reading and writing the scene.

    python benchmarks/remove_speed.py          # 2048^2, 3 rounds; memory at 1024^2, 4096^2 (3 runs)
    python benchmarks/remove_speed.py --size 4096 --rounds 2 --memory-sizes
    python benchmarks/remove_speed.py --models cloudfree-fillnet-fast --no-stages
    python benchmarks/remove_speed.py --models median-fill --compare main --no-stages --memory-sizes
    python benchmarks/remove_speed.py --models median-fill --sample floods --memory-sizes
    python benchmarks/remove_speed.py --models median-fill --bands l2a10 --no-stages --compare REV

The scene is a mirrored mosaic of the bundled real sample (13 bands, S1 beside it, about 44 %
cloud), as in `remove_pipeline.py`; ``--sample floods``: of the Sen1Floods11 chip of the test
data instead (int16, varied land and backscatter, little cloud); ``--bands l2a10``: the ten
bands of an L2A product at 10 and 20 m (no B01, B09, B10; top-of-atmosphere values, named and
tagged L2A as `clear_scenes.py` writes them), for the floor too. Each round runs, one after the
other in fresh processes:
- the floor: `rio cogeo create S2 OUT --cog-profile deflate` (read, decode, write a deflate COG
  with overviews; rio-cogeo's own defaults);
- `cloudfree remove --s2 S2 --s1 S1 -o OUT --model NAME` with every other default (COG output),
  as users run it, for each of ``--models`` (default: `cloudfree-fillnet`, then the default
  model `median-fill`, the local fill with no network);
- the first model's network alone, when it has one (`median-fill` has none), in this process:
  its forward (onnxruntime, as `remove` runs it on CPU) on as many random tiles as that `remove`
  ran, at its batch size (8).
- with ``--compare REV``: the first model's `remove` again, as git revision REV has it (its
  ``cloudfree/`` unpacked, as `remove_equality.py` does), so that a change is timed against
  the code before it in the same rounds.
The table gives each round and the median ratios remove / floor (target: <= 3x) and
network / floor (what the network alone costs of that budget). They alternate in one run, so
the ratios hold on a noisy machine even where the seconds do not. A second table gives the
CPU seconds of each command (all its threads), which a loaded machine changes less than the wall
seconds.
Stages (``--no-stages`` to skip): one more `remove` per model with its stages timed
(`remove_stages.py`: CPU seconds per stage over every thread, torch at one thread).
Peak memory: `remove` with each model in a fresh process per scene size, through the
command's launcher as users run it (Linux VmHWM; target: flat within 1.25x); ``--memory-runs``
runs of each size, the sizes alternating, and their median (a single run's peak varies by tens
of MB with the threads' timing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from mask_l2a import L2A_10
from remove_pipeline import (
    SAMPLES,
    bare_forward_seconds,
    launch_then,
    make_scene,
    peak_rss_mb,
    unpack,
)
from remove_stages import print_stages

from cloudfree.inference.bundled import bundled_models
from cloudfree.io.sentinel2 import BANDS

BATCH = 8  # remove's default --batch-size
#: Bands each ``--bands`` set lacks.
MISSING = {"l1c": (), "l2a10": L2A_10}


def scene(folder: Path, size: int, sample: str, bands: str = "l1c") -> tuple[Path, Path]:
    """``make_scene``'s (S2, S1), S2 without the bands ``bands`` lacks (named, tagged L2A)."""
    s2, s1 = make_scene(folder, size, sample)
    if not MISSING[bands]:
        return s2, s1
    subset = s2.with_name(f"{s2.stem}_{bands}.tif")
    if not subset.exists():
        keep = [i for i, b in enumerate(BANDS, 1) if b not in MISSING[bands]]
        with rasterio.open(s2) as src:
            profile = {**src.profile, "count": len(keep)}
            with rasterio.open(subset, "w", **profile) as dst:
                for _, window in src.block_windows(1):
                    dst.write(src.read(keep, window=window), window=window)
                dst.descriptions = tuple(BANDS[i - 1] for i in keep)
                dst.update_tags(PROCESSING_LEVEL="L2A")
    return subset, s1


def children_cpu() -> float:
    """CPU seconds (user and system) of this process's finished children so far."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed(cmd: list[str], package: Path | None = None) -> tuple[float, str, float]:
    """Wall seconds, standard output and CPU seconds of one command, which must succeed;
    ``package``: the folder holding the ``cloudfree`` it imports, run from there (``python -m``
    looks in the working folder first); default: the one this script imports."""
    env = None if package is None else {**os.environ, "PYTHONPATH": str(package)}
    start, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=package)
    return time.perf_counter() - start, done.stdout, children_cpu() - cpu


def has_network(model: str) -> bool:
    """Whether ``model`` runs a network (the network-free fill runs none)."""
    from cloudfree.inference.engines import FILL_ARCH, open_engine

    return open_engine(model=model, device="cpu").arch != FILL_ARCH


def network_seconds(model: str, tiles: int) -> float:
    """Wall seconds of ``model``'s forward alone on ``tiles`` random tiles."""
    from cloudfree.inference.engines import open_engine
    from cloudfree.pipeline.remove import choose_tiling

    engine = open_engine(model=model, device="cpu")
    return bare_forward_seconds(engine, choose_tiling(engine, None, None)[0], tiles, BATCH)


def remove_command(s2: Path, s1: Path, out: Path, model: str) -> list[str]:
    return [sys.executable, "-m", "cloudfree", "remove", "--s2", str(s2), "--s1", str(s1),
            "-o", str(out), "--model", model, "--quiet", "--overwrite", "--json"]


def rounds(folder: Path, size: int, n: int, models: list[str], compare: Path | None = None,
           network: bool = True, sample: str = "bundled", bands: str = "l1c"
           ) -> tuple[list[list[float]], list[list[float]]]:
    """[floor, remove per model..., network] seconds per round, alternating, after one untimed
    warm-up round (the network's only with ``network``); with ``compare`` (a folder holding
    another ``cloudfree``), the first model's remove with that package last. Also the CPU
    seconds of each command but the network."""
    rio = shutil.which("rio")
    if rio is None:
        sys.exit("rio is not on PATH: pip install rio-cogeo")
    s2, s1 = scene(folder, size, sample, bands)
    floor_cmd = [rio, "cogeo", "create", str(s2), str(folder / "floor.tif"), "--cog-profile",
                 "deflate", "--quiet"]
    results, cpus = [], []
    for i in range(n + 1):
        (folder / "floor.tif").unlink(missing_ok=True)
        seconds, _, cpu = timed(floor_cmd)
        row, cpu_row = [seconds], [cpu]
        summaries = []
        for model in models:
            seconds, summary, cpu = timed(remove_command(s2, s1, folder / "out.tif", model))
            row.append(seconds)
            cpu_row.append(cpu)
            summaries.append(json.loads(summary))
        if network:
            row.append(network_seconds(models[0], summaries[0]["tiles_run"]))
        if compare is not None:
            seconds, _, cpu = timed(remove_command(s2, s1, folder / "out.tif", models[0]),
                                    compare)
            row.append(seconds)
            cpu_row.append(cpu)
        if i:  # the first round warms the page cache and the imports
            results.append(row)
            cpus.append(cpu_row)
    return results, cpus


def stages(folder: Path, size: int, model: str, sample: str, bands: str) -> dict:
    """``remove_stages.py``'s table of one `remove` with ``model``, in a fresh process."""
    s2, s1 = scene(folder, size, sample, bands)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("remove_stages.py")),
                           str(s2), str(s1), str(folder / "stages.tif"), "--model", model],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def peak_memory(folder: Path, size: int, model: str, sample: str, bands: str) -> dict:
    """Seconds and peak RSS of one `remove` with ``model``, in a fresh process."""
    s2, s1 = scene(folder, size, sample, bands)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(s2), str(s1),
                           str(folder / f"m{size}.tif"), "--models", model], check=True,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    for path in (s2, s1, folder / f"m{size}.tif"):
        path.unlink()
    return {"size": size, "seconds": round(seconds, 1),
            "peak_rss_mb": round(json.loads(done.stdout.splitlines()[-1])["peak_rss_mb"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[1024, 4096])
    parser.add_argument("--memory-runs", type=int, default=3,
                        help="runs of each memory size (the table gives their median)")
    parser.add_argument("--models", nargs="+", default=["cloudfree-fillnet", "median-fill"],
                        help="bundled models; the first one's network (if it has one) is "
                        "timed alone")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage tables")
    parser.add_argument("--sample", choices=sorted(SAMPLES), default="bundled",
                        help="the real S2 and S1 the mosaic is made of")
    parser.add_argument("--bands", choices=sorted(MISSING), default="l1c",
                        help="the band set of S2: L1C's 13 or the ten of an L2A product")
    parser.add_argument("--compare", metavar="REV",
                        help="also time the first model's remove as git revision REV has it")
    parser.add_argument("--child", nargs=3, metavar=("S2", "S1", "OUT"))
    args = parser.parse_args()
    if args.rounds < 1 or args.memory_runs < 1:
        parser.error("--rounds and --memory-runs must be at least 1")
    for model in args.models:
        if model not in bundled_models():
            parser.error(f"--models {model}: bundled are {', '.join(bundled_models())}")
    if args.child:  # the command as users run it (its launcher's settings), then its peak
        sys.argv = ["cloudfree", *remove_command(*map(Path, args.child), args.models[0])[3:]]
        launch_then(lambda: print(json.dumps({"peak_rss_mb": peak_rss_mb()})))
    import torch

    models = args.models
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; "
          f"{', '.join(models)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        compare = None if args.compare is None else unpack(args.compare, folder / "compare")
        network = has_network(models[0])
        timings, cpus = rounds(folder, args.size, args.rounds, models, compare, network,
                               args.sample, args.bands)
        old = [] if compare is None else [f"{models[0]} at {args.compare}"]
        alone = [f"{models[0]}'s network alone"] if network else []
        count = len(BANDS) - len(MISSING[args.bands])
        print(f"\n{args.size}^2 x {count} bands of the {args.sample} sample, S1 beside it; seconds "
              f"per round (floor, then {', then '.join(['remove with each model', *alone, *old])})")
        head = " | ".join([*(f"remove {m}" for m in models), *(["network alone"] * network),
                           *(f"remove {m}" for m in old)])
        ratios = " | ".join(f"{m} / floor" for m in [*models, *(["network"] * network), *old])
        print(f"| round | rio cogeo create | {head} | {ratios} |\n"
              f"|{'---|' * (2 * (len(models) + len(old) + network) + 2)}")
        for i, row in enumerate(timings, 1):
            cells = " | ".join(f"{t:.2f}" for t in row)
            shares = " | ".join(f"{t / row[0]:.2f}x" for t in row[1:])
            print(f"| {i} | {cells} | {shares} |")
        columns = len(timings[0])
        median = [statistics.median(t[k] for t in timings) for k in range(columns)]
        shares = [statistics.median(t[k] / t[0] for t in timings) for k in range(1, columns)]
        cells = [*(f"{t:.2f}" for t in median), *(f"**{r:.2f}x**" for r in shares[:len(models)]),
                 *(f"{r:.2f}x" for r in shares[len(models):])]
        print(f"| median | {' | '.join(cells)} |")
        names = ["rio cogeo create", *(f"remove {m}" for m in [*models, *old])]
        print("\nCPU seconds per round (user and system, every thread; steadier than the wall "
              f"seconds on a shared machine)\n| round | {' | '.join(names)} |\n"
              f"|{'---|' * (len(names) + 1)}")
        for i, row in enumerate(cpus, 1):
            print(f"| {i} | {' | '.join(f'{t:.2f}' for t in row)} |")
        middle = [statistics.median(t[k] for t in cpus) for k in range(len(names))]
        print(f"| median | {' | '.join(f'{t:.2f}' for t in middle)} |")
        if not args.no_stages:
            for model in models:
                print_stages(stages(folder, args.size, model, args.sample, args.bands),
                             f"`remove --model {model}`, {args.size}^2, stages")
        memory = {m: [peak_memory(folder, size, m, args.sample, args.bands)
                      for _ in range(args.memory_runs) for size in args.memory_sizes]
                      for m in models}
    for model, runs in memory.items():
        if not runs:
            continue
        print(f"\n`remove --model {model}`, each size in a fresh process, {args.memory_runs} "
              "runs (medians)\n| scene | seconds | peak RSS (MB) | runs' peaks (MB) | "
              "vs smallest |\n|---|---|---|---|---|")
        smallest = None
        for size in args.memory_sizes:
            mine = [r for r in runs if r["size"] == size]
            peaks = sorted(r["peak_rss_mb"] for r in mine)
            peak = statistics.median(peaks)
            smallest = smallest or peak
            print(f"| {size}^2 | {statistics.median(r['seconds'] for r in mine):.1f} | "
                  f"{peak:.0f} | {', '.join(f'{p:.0f}' for p in peaks)} | "
                  f"{peak / smallest:.2f}x |")


if __name__ == "__main__":
    main()
