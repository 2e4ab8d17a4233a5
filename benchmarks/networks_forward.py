"""Forward time per 256 px tile of each architecture's paper preset, through cloudfree's engines.

CPU: torch fp32 vs onnxruntime at batch 1. With CUDA: torch fp32/fp16/bf16 at batch 1 and 16
(and onnxruntime's CUDA provider in fp32 when it is usable). Inputs are random scaled values:
the time of these networks does not depend on the pixel values.

    python benchmarks/networks_forward.py [--threads 2] [--repeat 3] [--arch glfcr ...]
    python benchmarks/networks_forward.py --devices cuda      # the GPU columns alone
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cloudfree.inference.checkpoint import LoadedModel
from cloudfree.inference.engines import Engine, OnnxEngine, TorchEngine
from cloudfree.inference.onnx_export import export_onnx
from cloudfree.networks import ARCHITECTURES, build


def seconds_per_tile(engine: Engine, tile: int, batch: int, repeat: int) -> float:
    """Median wall time of ``predict`` divided by the batch size, after one warm-up call."""
    rng = np.random.default_rng(0)
    s2 = rng.random((batch, 13, tile, tile), dtype=np.float32)
    s1 = rng.random((batch, 2, tile, tile), dtype=np.float32)
    engine.predict(s2, s1)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        engine.predict(s2, s1)  # returns numpy: includes the device synchronisation
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def cases(loaded: LoadedModel, onnx_path: Path, devices: str
          ) -> dict[str, tuple[Callable[[], Engine], int]]:
    """Column name -> (engine factory, batch size), for ``devices`` all, cpu or cuda."""
    out: dict[str, tuple[Callable[[], Engine], int]] = {}
    if devices != "cuda":
        out["torch cpu"] = (lambda: TorchEngine(loaded, "cpu"), 1)
        out["ort cpu"] = (lambda: OnnxEngine(onnx_path, "cpu"), 1)
    if devices != "cpu" and torch.cuda.is_available():
        for precision in ("fp32", "fp16", "bf16"):
            for batch in (1, 16):
                out[f"cuda {precision} b{batch}"] = (
                    lambda p=precision: TorchEngine(loaded, "cuda", p), batch)
        for batch in (1, 16):
            out[f"ort cuda b{batch}"] = (lambda: OnnxEngine(onnx_path, "cuda"), batch)
    return out


def benchmark(arch: str, tile: int, repeat: int, folder: Path,
              devices: str = "all") -> dict[str, float | str]:
    """Milliseconds per tile for every case of one architecture ('-' where it cannot run)."""
    torch.manual_seed(0)
    loaded = LoadedModel.from_network(build(arch, "paper").eval())
    onnx_path = export_onnx(loaded, folder / f"{arch}.onnx", tile)
    row: dict[str, float | str] = {
        "params (M)": sum(p.numel() for p in loaded.network.parameters()) / 1e6}
    for name, (factory, batch) in cases(loaded, onnx_path, devices).items():
        try:
            row[name] = 1000 * seconds_per_tile(factory(), tile, batch, repeat)
        except Exception as exc:  # report and go on: one failing case must not hide the rest
            print(f"{arch} {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            row[name] = "-"
        finally:
            loaded.network.cpu()
            torch.cuda.empty_cache()
    return row


def ratios(row: dict[str, float | str]) -> dict[str, float | str]:
    """Speed-ups against torch CPU fp32 at batch 1, else GPU fp32 at batch 1 (>1 is faster)."""
    base_name = "torch cpu" if "torch cpu" in row else "cuda fp32 b1"
    base = row.get(base_name)
    return {f"x {name}": base / value
            for name, value in row.items()
            if name not in ("params (M)", base_name) and isinstance(value, float)
            and isinstance(base, float)}


def print_table(rows: dict[str, dict[str, float | str]]) -> None:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    print("| arch | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for arch, row in rows.items():
        cells = [f"{row[c]:.2f}" if isinstance(row.get(c), float) else str(row.get(c, "-"))
                 for c in columns]
        print(f"| {arch} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--arch", nargs="*", default=sorted(ARCHITECTURES))
    parser.add_argument("--devices", choices=["all", "cpu", "cuda"], default="all",
                        help="which columns to measure (cuda: the GPU ones alone)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = (f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}"
              if torch.cuda.is_available() else "no GPU")
    print(f"torch {torch.__version__}, {args.threads} CPU threads, {device}; "
          f"ms per {args.tile} px tile (median of {args.repeat})")
    with tempfile.TemporaryDirectory() as folder:
        rows = {}
        for arch in args.arch:
            rows[arch] = benchmark(arch, args.tile, args.repeat, Path(folder), args.devices)
            rows[arch].update(ratios(rows[arch]))
            print(f"{arch} done", flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
