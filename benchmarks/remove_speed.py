"""Benchmark `cloudfree remove` on CPU against the cost of reading and writing the scene.

    python benchmarks/remove_speed.py                  # 2048^2, 3 rounds; memory at 1024^2, 4096^2
    python benchmarks/remove_speed.py --size 4096 --rounds 2 --memory-sizes
    python benchmarks/remove_speed.py --model cloudfree-fillnet-fast --memory-sizes

The scene is a mirrored mosaic of the bundled real sample (13 bands, S1 beside it, about 44 %
cloud), as in `remove_pipeline.py`. Each round runs, one after the other in fresh processes:
- the floor: `rio cogeo create S2 OUT --cog-profile deflate` (read, decode, write a deflate COG
  with overviews; rio-cogeo's own defaults);
- `cloudfree remove --s2 S2 --s1 S1 -o OUT` with every default (COG output), as users run it
  (`--model NAME`: with that bundled model instead of the default);
- that network alone, in this process: its forward (onnxruntime, as `remove` runs it on CPU) on
  as many random tiles as that `remove` ran, at its batch size (8).
The table gives each round and the median ratios remove / floor (the issue's target: <= 3x) and
network / floor (what the network alone costs of that budget). The three alternate in one run,
so the ratios hold on a noisy machine even where the seconds do not.
Peak memory: `remove` with every default in a fresh process per scene size (Linux VmHWM; target:
flat within 1.25x).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remove_pipeline import bare_forward_seconds, make_scene, peak_rss_mb

from cloudfree.bundled import bundled_models

BATCH = 8  # remove's default --batch-size


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds and standard output of one command, which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def network_seconds(model: str, tiles: int) -> float:
    """Wall seconds of ``model``'s forward alone on ``tiles`` random tiles."""
    from cloudfree.engines import open_engine
    from cloudfree.remove_scene import choose_tiling

    engine = open_engine(model=model, device="cpu")
    return bare_forward_seconds(engine, choose_tiling(engine, None, None)[0], tiles, BATCH)


def remove_command(s2: Path, s1: Path, out: Path, model: str) -> list[str]:
    return [sys.executable, "-m", "cloudfree", "remove", "--s2", str(s2), "--s1", str(s1),
            "-o", str(out), "--model", model, "--quiet", "--overwrite", "--json"]


def rounds(folder: Path, size: int, n: int, model: str) -> list[tuple[float, float, float]]:
    """(floor, remove, network) seconds per round, alternating, after one untimed warm-up."""
    rio = shutil.which("rio")
    if rio is None:
        sys.exit("rio is not on PATH: pip install rio-cogeo")
    s2, s1 = make_scene(folder, size)
    floor_cmd = [rio, "cogeo", "create", str(s2), str(folder / "floor.tif"), "--cog-profile",
                 "deflate", "--quiet"]
    remove_cmd = remove_command(s2, s1, folder / "out.tif", model)
    results = []
    for i in range(n + 1):
        (folder / "floor.tif").unlink(missing_ok=True)
        floor, _ = timed(floor_cmd)
        removing, summary = timed(remove_cmd)
        network = network_seconds(model, json.loads(summary)["tiles_run"])
        if i:  # the first round warms the page cache and the imports
            results.append((floor, removing, network))
    return results


def peak_memory(folder: Path, size: int, model: str) -> dict:
    """Seconds and peak RSS of one `remove` with every default, in a fresh process."""
    s2, s1 = make_scene(folder, size)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", str(s2), str(s1),
                           str(folder / f"m{size}.tif"), "--model", model], check=True,
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
    parser.add_argument("--model", default="cloudfree-fillnet", help="a bundled model")
    parser.add_argument("--child", nargs=3, metavar=("S2", "S1", "OUT"))
    args = parser.parse_args()
    if args.model not in bundled_models():
        parser.error(f"--model {args.model}: bundled are {', '.join(bundled_models())}")
    if args.child:
        from cloudfree.cli import main as cli

        cli(remove_command(*map(Path, args.child), args.model)[3:], standalone_mode=False)
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, {args.model}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timings = rounds(folder, args.size, args.rounds, args.model)
        print(f"\n{args.size}^2 x 13 bands, S1 beside it; seconds per round (floor, remove, "
              "then the network alone)")
        print("| round | rio cogeo create | cloudfree remove | network alone | remove / floor | "
              "network / floor |\n|---|---|---|---|---|---|")
        for i, (floor, removing, network) in enumerate(timings, 1):
            print(f"| {i} | {floor:.2f} | {removing:.2f} | {network:.2f} | "
                  f"{removing / floor:.2f}x | {network / floor:.2f}x |")
        median = [statistics.median(t[k] for t in timings) for k in range(3)]
        ratios = [statistics.median(t[k] / t[0] for t in timings) for k in (1, 2)]
        print(f"| median | {median[0]:.2f} | {median[1]:.2f} | {median[2]:.2f} | "
              f"**{ratios[0]:.2f}x** | {ratios[1]:.2f}x |")
        rows = [peak_memory(folder, size, args.model) for size in args.memory_sizes]
    if rows:
        print("\n| scene | seconds | peak RSS (MB) | vs smallest |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']}^2 | {r['seconds']} | {r['peak_rss_mb']} | "
                  f"{r['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x |")


if __name__ == "__main__":
    main()
