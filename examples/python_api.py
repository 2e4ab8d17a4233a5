"""Library use on one S1/S2 pair: the cloud mask, then the cloud-free image.

Usage: python examples/python_api.py [DATA (default: examples/data)] [OUT (default: cloudfree_out)]
DATA holds s2.tif (Sentinel-2 L1C, 13 bands) and s1.tif (Sentinel-1 VV, VH in dB).
CLOUDFREE_COMMAND=mask stops after the mask.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cloudfree.core.errors import CloudfreeError
from cloudfree.mask.classify import MaskParams
from cloudfree.pipeline.mask import mask_scene


def main(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    params = MaskParams(method="score", threshold=0.2, buffer=2)
    mask = mask_scene(data / "s2.tif", out / "s2_mask.tif", params, overwrite=True, quiet=True)
    print(f"{mask['output']}: {mask['cloud_fraction']:.1%} cloud")
    if os.environ.get("CLOUDFREE_COMMAND") == "mask":
        return
    from cloudfree.pipeline.options import OutputOptions
    from cloudfree.pipeline.remove import remove_scene

    clear = remove_scene(data / "s2.tif", data / "s1.tif", out / "s2_cloudfree.tif",
                         mask_params=params, outputs=OutputOptions(overwrite=True), quiet=True)
    print(f"{clear['output']}: {clear['cloud_fraction']:.1%} cloud filled "
          f"in {clear['seconds']:.1f} s")


if __name__ == "__main__":
    args = sys.argv[1:]
    data = Path(args[0]) if args else Path(__file__).parent / "data"
    try:
        main(data, Path(args[1]) if len(args) > 1 else Path("cloudfree_out"))
    except CloudfreeError as exc:
        sys.exit(f"Error: {exc}")
