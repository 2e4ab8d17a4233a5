"""Peak memory of `remove` against the cloud buffer (--buffer) and the scene size.

    python benchmarks/buffer_memory.py [--sizes 256 1024] [--buffers 0 5 50 100 200 300]

The bundled sample (examples/data, 256 x 256, 44 % cumulus) and mirrored mosaics of it
(``remove_pipeline.mosaic``). Each run is ``remove`` with the default model in a fresh process,
one thread; its peak resident memory is Linux's VmHWM (``remove_pipeline.peak_rss_mb``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from remove_pipeline import mosaic, peak_rss_mb

from cloudfree.mask.classify import MAX_BUFFER
from cloudfree.pipeline.options import EngineOptions, OutputOptions

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "data"


def child(s2: str, s1: str, output: str, buffer: int) -> None:
    import torch

    from cloudfree.mask.classify import MaskParams
    from cloudfree.pipeline.remove import remove_scene

    torch.set_num_threads(1)
    remove_scene(s2, s1, output, engine=EngineOptions(device="cpu"),
                 mask_params=MaskParams(buffer=buffer), outputs=OutputOptions(overwrite=True),
                 quiet=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--buffers", type=int, nargs="+", default=[0, 5, 50, 100, 200, MAX_BUFFER],
                        help=f"at most {MAX_BUFFER} px, the largest `remove` takes")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child[:3], int(args.child[3]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            s2, s1 = SAMPLE / "s2.tif", SAMPLE / "s1.tif"
            if size != 256:
                s2, s1 = (mosaic(p, Path(tmp) / f"{p.stem}_{size}.tif", size) for p in (s2, s1))
            for buffer in args.buffers:
                result = subprocess.run(
                    [sys.executable, __file__, "--child", str(s2), str(s1),
                     str(Path(tmp) / "out.tif"), str(buffer)],
                    check=True, capture_output=True, text=True)
                peak = json.loads(result.stdout.splitlines()[-1])["peak_rss_mb"]
                print(json.dumps({"size": size, "buffer": buffer, "peak_rss_mb": round(peak)}),
                      flush=True)


if __name__ == "__main__":
    main()
