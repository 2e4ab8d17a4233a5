"""Benchmark `cloudfree remove`: throughput against the bare network, and peak memory vs scene size.

    python benchmarks/remove_pipeline.py                      # CPU, bundled model
    python benchmarks/remove_pipeline.py --sizes 1024 4096 8192 --device cuda --precision fp16
    python benchmarks/remove_pipeline.py --untrained glfcr:paper --device cuda --precision fp16 \
        --batch-size 16 --throughput-size 4096 --sizes 10980 --repeats 1   # README, "On a GPU"

Scenes are mosaics of the real SEN12MS-CR summer pair (mirrored, so there are no artificial
edges), written as tiled GeoTIFFs. Throughput: the whole pipeline in raw-prediction mode (every
tile runs) against `engine.predict` on the same number of tiles of the same size and batch, in
the same process, written with --no-cog (the COG step is measured by `cog_output.py`); the
ratio is bare time / pipeline time (target >= 0.9). Peak memory: `remove` as users run it (COG
output), each scene size in a fresh process (VmHWM), so the figures compare (target: flat
within 1.25x).
The default batch of 4 tiles fills a row of tiles even on the smallest scene, so every size runs
the same batches: memory follows the batch, not the scene.

Where the time goes (printed after the throughput line): the seconds the main thread spent
waiting for loaded chunks (the network starves: reading, masking and the fill cannot keep up)
and in ``predict`` (batching, transfers and the forward); the busy seconds of the loader threads
(``load``) and of compositing on the writer thread (``finish``), and the CPU seconds of the
thread each of these three ran on (``load CPU``: the steadier figure on a shared machine; not
the threads a stage starts, such as PyTorch's); the run's start (opening the inputs and the
model and any first pass, up to the first loaded chunk, whose wait is also in the first figure)
and end (after the last chunk: the last writes, closing, verifying and
renaming the outputs); and on a GPU its mean utilisation, sampled every 0.1 s through NVML.
``--loaders N`` sets the number of loader threads (default: what ``remove`` picks).
On a GPU the memory table also gives the GPU's peak allocation and the tiles per second.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import io
import json
import resource
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data"
FLOODS = ROOT / ".." / "shared" / "data" / "sen1floods11"
#: Real S2 and S1 a mosaic can be made of: the bundled sample (SEN12MS-CR, uint16, a forest
#: with cumulus) or the Sen1Floods11 chip of the test data (int16 with nodata 0, EPSG:4326;
#: river, fields, town: a much wider spread of S1 backscatter, thin cloud).
SAMPLES = {"bundled": (SAMPLE / "s2.tif", SAMPLE / "s1.tif"),
           "floods": (FLOODS / "Spain_7370579_S2Hand.tif", FLOODS / "Spain_7370579_S1Hand.tif")}


def mosaic(src: Path, dst: Path, size: int, width: int | None = None, mirror: bool = True
           ) -> Path:
    """A ``size`` px tall mosaic of ``src`` mirrored in both directions, ``width`` px wide (by
    default ``size``; the source's own width gives it mirrored down the rows only), written
    block row by row. Mirrored, its clouds cast their shadows both ways, and none is tied to
    a cloud (``mask.shadow``); ``mirror=False`` repeats ``src`` as it is instead (seams at its
    edges), its shadows on the side of its clouds away from the sun."""
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    tile = data
    if mirror:  # twice as tall and wide, seamless when repeated
        tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
        tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    h, w = tile.shape[1:]
    t = profile["transform"]
    width = size if width is None else width
    profile.update(width=width, height=size, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", transform=Affine(t.a, 0, t.c, 0, t.e, t.f),
                   bigtiff="if_safer", num_threads="all_cpus")
    reps = -(-width // w)
    with rasterio.open(dst, "w", **profile) as out:
        for row in range(0, size, h):
            rows = min(h, size - row)
            strip = np.tile(tile[:, :rows], (1, 1, reps))[:, :, :width]
            out.write(strip, window=((row, row + rows), (0, width)))
    return dst


def unpack(ref: str, folder: Path) -> Path:
    """``cloudfree/`` as it is at git revision ``ref``, unpacked under ``folder``."""
    archive = subprocess.run(["git", "archive", ref, "cloudfree"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def make_scene(folder: Path, size: int, sample: str = "bundled") -> tuple[Path, Path]:
    """Mosaics (S2, S1) of ``size`` of one of ``SAMPLES``."""
    s2, s1 = SAMPLES[sample]
    return (mosaic(s2, folder / f"s2_{sample}_{size}.tif", size),
            mosaic(s1, folder / f"s1_{sample}_{size}.tif", size))


def run_once(s2: Path, s1: Path, out: Path, args, **options) -> dict:
    """One `remove` in this process (COG output unless ``cog=False``); returns its summary."""
    from cloudfree.pipeline.options import split_options
    from cloudfree.pipeline.remove import remove_scene

    return remove_scene(s2, s1, out, quiet=True, **split_options(
        {"s1_aligned": True, "composite": False, "overwrite": True, "tile": args.tile,
         "batch_size": args.batch_size, "device": args.device, "precision": args.precision,
         **model_kwargs(args), **options}))


def print_memory_table(rows: list[dict], title: str = "") -> None:
    """Seconds and peak RSS per scene size, and the ratio to the first (smallest) row; on a GPU
    also tiles per second and the GPU's peak allocation."""
    print(f"\n{title}" if title else "")
    gpu = any("gpu_peak_mb" in r for r in rows)
    extra = " tiles/s | GPU peak (MB) |" if gpu else ""
    print(f"| scene | seconds | peak RSS (MB) | vs smallest |{extra}\n"
          f"|---|---|---|---|{'---|---|' if gpu else ''}")
    for r in rows:
        label = f"{r['size']}^2" + (f" x {r['bands']}" if "bands" in r else "")
        cells = f" {r['tiles_per_s']} | {r['gpu_peak_mb']} |" if gpu else ""
        print(f"| {label} | {r['seconds']} | {r['peak_rss_mb']} | "
              f"{r['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x |{cells}")


def launch_then(report: Callable[[], None]) -> None:
    """Run the ``cloudfree`` command of ``sys.argv`` as its launcher does, then ``report`` once
    the command is done. The launcher ends the process after the exit handlers registered from
    its start on (``stop.end_after_exit_handlers``), so ``report`` is registered there, not
    before it."""
    from cloudfree.cli import launch

    ends = launch.end_after_exit_handlers

    def ends_then_report() -> None:
        ends()
        atexit.register(report)  # run before the launcher's end, registered earlier

    launch.end_after_exit_handlers = ends_then_report
    launch.main()


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started, in MB.

    Linux's VmHWM, because ru_maxrss of a child also counts the parent's memory at the fork
    (it is carried across fork and exec), which would floor every figure at the parent's size.
    """
    from cloudfree.core.memory import status_bytes

    peak = status_bytes("VmHWM")
    if peak is not None:
        return peak / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def untrained_checkpoint(folder: Path, arch: str, preset: str) -> Path:
    """A checkpoint of ``arch``'s ``preset`` with seeded initial weights."""
    import torch

    from cloudfree.inference.checkpoint import LoadedModel, save_checkpoint
    from cloudfree.networks import build

    torch.manual_seed(0)
    loaded = LoadedModel.from_network(build(arch, preset).eval())
    path = folder / f"{arch}_{preset}.pt"
    save_checkpoint(path, loaded.network, loaded.scaling)
    return path


def model_kwargs(args) -> dict:
    return {"checkpoint": args.checkpoint} if args.checkpoint else {"model": args.model}


class StageClock:
    """Seconds spent in the stages of ``write_scene`` (see the module docstring)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self._lock = threading.Lock()

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] += time.perf_counter() - start
                    self.seconds[f"{name} CPU"] += time.thread_time() - cpu
        return timed

    @contextmanager
    def installed(self):
        """Time the chunk loop's stages for the duration of the block."""
        rs = importlib.import_module("cloudfree.pipeline.remove")
        real_map, real = rs.ordered_map, {n: getattr(rs.SceneRemoval, n)
                                          for n in ("load", "predict", "finish")}
        timed = {name: self.wrap(name, fn) for name, fn in real.items()}

        def ordered_map(fn, items, threads, *more):
            results = real_map(fn, items, threads, *more)
            if getattr(fn, "__func__", None) is not timed["load"]:  # not the chunk loads
                return results
            return self._timed_iter(results)

        rs.ordered_map = ordered_map
        for name, fn in timed.items():
            setattr(rs.SceneRemoval, name, fn)
        try:
            yield self
        finally:
            rs.ordered_map = real_map
            for name, fn in real.items():
                setattr(rs.SceneRemoval, name, fn)

    def _timed_iter(self, results):
        while True:
            start = time.perf_counter()
            try:
                item = next(results)
            except StopIteration:
                self.marks["last chunk done"] = time.perf_counter()
                return
            finally:
                self.seconds["waiting for chunks"] += time.perf_counter() - start
            self.marks.setdefault("first chunk", time.perf_counter())
            yield item

    def run_parts(self, started: float, ended: float) -> dict[str, float]:
        """Seconds from the start of the run to its first chunk, and from the end of the chunk
        loop to the end of the run (outputs closed, verified and put in place)."""
        return {"start to first chunk": self.marks["first chunk"] - started,
                "last chunk to end": ended - self.marks["last chunk done"]}


@contextmanager
def gpu_utilisation(samples: list[int]):
    """Sample the GPU's utilisation (%) every 0.1 s into ``samples`` while the block runs."""
    import torch

    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(torch.cuda.utilization())

    thread = None
    try:
        torch.cuda.utilization()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
    except Exception as exc:  # NVML missing: report without utilisation
        print(f"GPU utilisation not sampled: {exc}")
    try:
        yield samples
    finally:
        stop.set()
        if thread is not None:
            thread.join()


def bare_forward_seconds(engine, tile: int, tiles: int, batch_size: int) -> float:
    """Wall seconds of ``engine.predict`` alone on ``tiles`` random tiles of ``tile`` px,
    ``batch_size`` at a time, after an untimed warm-up batch."""
    rng = np.random.default_rng(0)
    s2, s1 = (rng.random((batch_size, c, tile, tile), dtype=np.float32) for c in (13, 2))
    engine.predict(s2, s1)
    start = time.perf_counter()
    for i in range(0, tiles, batch_size):
        b = min(batch_size, tiles - i)
        engine.predict(s2[:b], s1[:b])
    return time.perf_counter() - start


def throughput(folder: Path, args) -> dict:
    """Pipeline vs bare forward on the same tiles, in one process."""
    from cloudfree.inference.engines import open_engine
    from cloudfree.inference.tiling import TileGrid
    from cloudfree.pipeline.remove import choose_tiling

    s2, s1 = make_scene(folder, args.throughput_size)
    engine = open_engine(device=args.device, precision=args.precision, **model_kwargs(args))
    tile, overlap, trim = choose_tiling(engine, args.tile, None)
    grid = TileGrid(args.throughput_size, args.throughput_size, tile, overlap, trim)
    n_tiles = grid.rows * grid.cols
    run_once(s2, s1, folder / "warm.tif", args, cog=False)
    results = {"pipeline": [], "bare": []}
    clock, utilisation = StageClock(), []
    on_gpu = engine.device != "cpu"
    for repeat in range(args.repeats):
        start = time.perf_counter()
        if repeat == 0:  # the first timed run is also the profiled one
            with clock.installed(), (gpu_utilisation(utilisation) if on_gpu
                                     else nullcontext()):
                summary = run_once(s2, s1, folder / "out.tif", args, cog=False)
            clock.seconds.update(clock.run_parts(start, time.perf_counter()))
        else:
            summary = run_once(s2, s1, folder / "out.tif", args, cog=False)
        results["pipeline"].append(time.perf_counter() - start)
        assert summary["tiles_run"] == n_tiles
        results["bare"].append(bare_forward_seconds(engine, tile, n_tiles, args.batch_size))
    pipe, bare = min(results["pipeline"]), min(results["bare"])
    return {"size": args.throughput_size, "tiles": n_tiles, "tile": tile, "overlap": overlap,
            "pipeline_s": round(pipe, 2), "bare_forward_s": round(bare, 2),
            "ratio_bare_over_pipeline": round(bare / pipe, 3),
            "pipeline_mpix_per_s": round(args.throughput_size**2 / pipe / 1e6, 3),
            "stages_s": {k: round(v, 2) for k, v in clock.seconds.items()},
            "gpu_utilisation_mean": (round(float(np.mean(utilisation)), 1) if utilisation
                                     else None)}


def peak_memory(folder: Path, size: int, args) -> dict:
    """Peak RSS of one `remove` on a size x size scene, in a fresh process."""
    s2, s1 = make_scene(folder, size)
    cmd = [sys.executable, __file__, "--child", str(s2), str(s1), str(folder / f"o{size}.tif"),
           "--tile", str(args.tile or 0), "--batch-size", str(args.batch_size), "--device",
           args.device, "--precision", args.precision, "--model", args.model,
           "--loaders", str(args.loaders or 0)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    start = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    child = json.loads(out)
    for path in (s2, s1, folder / f"o{size}.tif"):
        path.unlink()
    row = {"size": size, "seconds": round(time.perf_counter() - start, 1),
           "peak_rss_mb": round(child["peak_rss_mb"], 1)}
    if "gpu_peak_mb" in child:
        row["gpu_peak_mb"] = round(child["gpu_peak_mb"], 1)
        row["tiles_per_s"] = round(child["tiles_run"] / child["seconds"], 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--throughput-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="cloudfree-fillnet")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--untrained", metavar="ARCH:PRESET",
                        help="time an untrained network of this architecture and preset "
                             "(seeded weights: the time does not depend on them)")
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--loaders", type=int, default=None,
                        help="chunk loader threads (default: remove's choice)")
    parser.add_argument("--child", nargs=3, metavar=("S2", "S1", "OUT"))
    args = parser.parse_args()
    args.tile = args.tile or None
    args.loaders = args.loaders or None
    if args.loaders:
        importlib.import_module("cloudfree.pipeline.remove").loader_threads = \
            lambda device, network=True: args.loaders
    if args.child:
        import torch

        s2, s1, out = map(Path, args.child)
        summary = run_once(s2, s1, out, args)
        child = {"peak_rss_mb": peak_rss_mb(), "tiles_run": summary["tiles_run"],
                 "seconds": summary["seconds"]}
        if summary["device"] != "cpu":
            child["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(child))
        return
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.untrained:
            args.checkpoint = untrained_checkpoint(folder, *args.untrained.split(":"))
        t = throughput(folder, args)
        print(f"\nthroughput on {t['size']}^2 ({t['tiles']} tiles of {t['tile']} px, overlap "
              f"{t['overlap']}): pipeline {t['pipeline_s']} s, bare forward "
              f"{t['bare_forward_s']} s, ratio {t['ratio_bare_over_pipeline']} (target >= 0.9)")
        print(f"stages of the profiled run (s): {t['stages_s']}; GPU utilisation "
              f"{t['gpu_utilisation_mean']} %")
        rows = [peak_memory(folder, size, args) for size in args.sizes]
    print_memory_table(rows)


if __name__ == "__main__":
    main()
