"""Benchmark `cloudfree remove`: throughput against the bare network, and peak memory vs scene size.

    python benchmarks/remove_pipeline.py                      # CPU, bundled model
    python benchmarks/remove_pipeline.py --sizes 1024 4096 8192 --device cuda --precision fp16

Scenes are mosaics of the real SEN12MS-CR summer pair (mirrored, so there are no artificial
edges), written as tiled GeoTIFFs. Throughput: the whole pipeline in raw-prediction mode (every
tile runs) against `engine.predict` on the same number of tiles of the same size and batch, in
the same process, written with --no-cog (the COG step is measured by `cog_output.py`); the
ratio is bare time / pipeline time (target >= 0.9). Peak memory: `remove` as users run it (COG
output), each scene size in a fresh process (VmHWM), so the figures compare (target: flat
within 1.25x).
The default batch of 4 tiles fills a row of tiles even on the smallest scene, so every size runs
the same batches: memory follows the batch, not the scene.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data"


def mosaic(src: Path, dst: Path, size: int) -> Path:
    """A size x size mosaic of ``src`` mirrored in both directions, written block row by row."""
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    h, w = data.shape[1:]
    tile = np.concatenate([data, data[:, :, ::-1]], axis=2)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)  # 2h x 2w, seamless when repeated
    t = profile["transform"]
    profile.update(width=size, height=size, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", transform=Affine(t.a, 0, t.c, 0, t.e, t.f),
                   bigtiff="if_safer")
    reps = -(-size // (2 * w))
    with rasterio.open(dst, "w", **profile) as out:
        for row in range(0, size, 2 * h):
            rows = min(2 * h, size - row)
            strip = np.tile(tile[:, :rows], (1, 1, reps))[:, :, :size]
            out.write(strip, window=((row, row + rows), (0, size)))
    return dst


def make_scene(folder: Path, size: int) -> tuple[Path, Path]:
    return (mosaic(SAMPLE / "s2.tif", folder / f"s2_{size}.tif", size),
            mosaic(SAMPLE / "s1.tif", folder / f"s1_{size}.tif", size))


def run_once(s2: Path, s1: Path, out: Path, args, **options) -> dict:
    """One `remove` in this process (COG output unless ``cog=False``); returns its summary."""
    from cloudfree.remove_scene import remove_scene

    return remove_scene(s2, s1, out, s1_aligned=True, composite=False, overwrite=True,
                        tile=args.tile, batch_size=args.batch_size, device=args.device,
                        precision=args.precision, quiet=True, **model_kwargs(args), **options)


def print_memory_table(rows: list[dict], title: str = "") -> None:
    """Seconds and peak RSS per scene size, and the ratio to the first (smallest) row."""
    print(f"\n{title}" if title else "")
    print("| scene | seconds | peak RSS (MB) | vs smallest |\n|---|---|---|---|")
    for r in rows:
        label = f"{r['size']}^2" + (f" x {r['bands']}" if "bands" in r else "")
        print(f"| {label} | {r['seconds']} | {r['peak_rss_mb']} | "
              f"{r['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x |")


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started, in MB.

    Linux's VmHWM, because ru_maxrss of a child also counts the parent's memory at the fork
    (it is carried across fork and exec), which would floor every figure at the parent's size.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_kwargs(args) -> dict:
    return {"checkpoint": args.checkpoint} if args.checkpoint else {"model": args.model}


def throughput(folder: Path, args) -> dict:
    """Pipeline vs bare forward on the same tiles, in one process."""
    from cloudfree.engines import open_engine
    from cloudfree.remove_scene import choose_tiling
    from cloudfree.tiling import TileGrid

    s2, s1 = make_scene(folder, args.throughput_size)
    engine = open_engine(device=args.device, precision=args.precision, **model_kwargs(args))
    tile, overlap, trim = choose_tiling(engine, args.tile, None)
    grid = TileGrid(args.throughput_size, args.throughput_size, tile, overlap, trim)
    n_tiles = grid.rows * grid.cols
    rng = np.random.default_rng(0)
    x2 = rng.random((args.batch_size, 13, tile, tile), dtype=np.float32)
    x1 = rng.random((args.batch_size, 2, tile, tile), dtype=np.float32)
    engine.predict(x2, x1)  # warm-up
    run_once(s2, s1, folder / "warm.tif", args, cog=False)
    results = {"pipeline": [], "bare": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        summary = run_once(s2, s1, folder / "out.tif", args, cog=False)
        results["pipeline"].append(time.perf_counter() - start)
        assert summary["tiles_run"] == n_tiles
        start = time.perf_counter()
        for i in range(0, n_tiles, args.batch_size):
            b = min(args.batch_size, n_tiles - i)
            engine.predict(x2[:b], x1[:b])
        results["bare"].append(time.perf_counter() - start)
    pipe, bare = min(results["pipeline"]), min(results["bare"])
    return {"size": args.throughput_size, "tiles": n_tiles, "tile": tile, "overlap": overlap,
            "pipeline_s": round(pipe, 2), "bare_forward_s": round(bare, 2),
            "ratio_bare_over_pipeline": round(bare / pipe, 3),
            "pipeline_mpix_per_s": round(args.throughput_size**2 / pipe / 1e6, 3)}


def peak_memory(folder: Path, size: int, args) -> dict:
    """Peak RSS of one `remove` on a size x size scene, in a fresh process."""
    s2, s1 = make_scene(folder, size)
    cmd = [sys.executable, __file__, "--child", str(s2), str(s1), str(folder / f"o{size}.tif"),
           "--tile", str(args.tile or 0), "--batch-size", str(args.batch_size), "--device",
           args.device, "--precision", args.precision, "--model", args.model]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    child = json.loads(out)
    for path in (s2, s1, folder / f"o{size}.tif"):
        path.unlink()
    return {"size": size, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(child["peak_rss_mb"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--throughput-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="cloudfree-fillnet")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--child", nargs=3, metavar=("S2", "S1", "OUT"))
    args = parser.parse_args()
    args.tile = args.tile or None
    if args.child:
        s2, s1, out = map(Path, args.child)
        run_once(s2, s1, out, args)
        print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        return
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = throughput(folder, args)
        print(f"\nthroughput on {t['size']}^2 ({t['tiles']} tiles of {t['tile']} px, overlap "
              f"{t['overlap']}): pipeline {t['pipeline_s']} s, bare forward "
              f"{t['bare_forward_s']} s, ratio {t['ratio_bare_over_pipeline']} (target >= 0.9)")
        rows = [peak_memory(folder, size, args) for size in args.sizes]
    print_memory_table(rows)


if __name__ == "__main__":
    main()
