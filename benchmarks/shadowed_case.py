"""One `shadowed` case of ``reference_fill.py``, with the target's shadows filled and left.

    python benchmarks/shadowed_case.py --series SERIES --target 2018-02-25 [--size 128]
        [--noise-floor 2e-4]

Builds the case of ``reference_fill.py`` (the donor is the series' one date whose mask finds
shadows, ``--donor``), runs ``remove --reference`` as by default and with the shadows left
(``SHADOW_WITH_DATES`` off) and prints for each: the temporal test's noise per band once
calibrated, the pixels its mask calls cloud, those of the cast shadow it calls shadow, and the
PSNR on the true mask (as ``reference_fill.py``), on the pasted cloud, on the cast shadow and on
the truly clear land. For the pixels only the first calls cloud, the median z of
each band at the test's first judgement, in each run, and on the cast shadow that of NIR and
SWIR (B08, B11: the test's shadow is darker than -4 in both). ``--noise-floor``: the test's smallest
noise (``temporal_mask.NOISE_FLOOR``, reflectance) for both runs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import reference_fill as bench
from metrics import psnr

from cloudfree.dates import temporal_mask
from cloudfree.mask.classify import CLOUD, SHADOW, MaskParams
from cloudfree.pipeline import remove
from cloudfree.pipeline.options import OutputOptions, ReferenceOptions


def run(cloudy: Path, refs: list[Path], work: Path, shadow: bool) -> dict:
    """``remove --reference`` with the shadows filled or left: its output, mask, the test's
    noise and its first judgement's z [bands, h, w] (centred on the scene)."""
    judged = []
    classify = temporal_mask.TemporalMask.classify

    def watched(self, refl, bands, classes, core, background):
        if self.calibrated and not judged:
            z = self.z(refl[[list(bands).index(b) for b in self.detect]]
                       - self.level.astype(np.float32)[:, None, None], background)
            judged.append(z)
        return classify(self, refl, bands, classes, core, background)

    kept = remove.SHADOW_WITH_DATES
    remove.SHADOW_WITH_DATES = shadow
    temporal_mask.TemporalMask.classify = watched
    noise = []
    calibrate = temporal_mask.TemporalMask.calibrate

    def calibrated(self, *args, **kwargs):
        calibrate(self, *args, **kwargs)
        noise[:] = [dict(zip(self.detect, self.noise, strict=True))]

    temporal_mask.TemporalMask.calibrate = calibrated
    try:
        out, mask = work / f"out_{shadow}.tif", work / f"mask_{shadow}.tif"
        remove.remove_scene(cloudy, None, out,
                            dates=ReferenceOptions(references=refs, temporal_mask=True),
                            outputs=OutputOptions(overwrite=True, cog=False, mask_out=mask),
                            quiet=True)
    finally:
        remove.SHADOW_WITH_DATES = kept
        temporal_mask.TemporalMask.classify = classify
        temporal_mask.TemporalMask.calibrate = calibrate
    with rasterio.open(mask) as src:
        classes = src.read(1)
    z = judged[0]
    top, left = ((n - m) // 2 for n, m in zip(z.shape[1:], classes.shape, strict=True))
    z = z[:, top:top + classes.shape[0], left:left + classes.shape[1]]
    return {"out": bench.read(out)[0], "classes": classes, "noise": noise[0], "z": z}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, required=True)
    parser.add_argument("--target", required=True, help="the clear target's date")
    parser.add_argument("--donor", default="2018-07-05", help="the donor's date")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--noise-floor", type=float, default=temporal_mask.NOISE_FLOOR)
    args = parser.parse_args()
    temporal_mask.NOISE_FLOOR = args.noise_floor
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dates = [bench.crop(p, args.size, work) for p in bench.series(args.series)]
        named = {bench.date_of(p.name): p for p in dates}
        if args.target not in named or args.donor not in named:
            parser.error(f"no date {args.target} or {args.donor} in {args.series}")
        target, donor = named[args.target], named[args.donor]
        cloudy, truth, true_mask, refs = bench.make_case(
            "shadowed", 1, target, donor, [p for p in dates if p != target], work)
        cloud = bench.classes(bench.read(donor)[0], MaskParams()) == CLOUD
        runs = {name: run(cloudy, refs, work, shadow)
                for name, shadow in (("shadows filled", True), ("shadows left", False))}
    only = ((runs["shadows filled"]["classes"] == CLOUD)
            & (runs["shadows left"]["classes"] != CLOUD))
    bands = list(runs["shadows filled"]["noise"])
    print(f"{target.name} <- {donor.name}, {args.size} px, noise floor {args.noise_floor:g}: "
          f"cloud {cloud.sum()} px, cast shadow {(true_mask & ~cloud).sum()} px\n")
    print("| run | noise " + " ".join(bands) + " | cloud px | cast shadow found, px | PSNR true "
          f"mask / cloud / cast shadow / truly clear, dB | median z on the {only.sum()} px only "
          "the default calls cloud: " + " ".join(bands) + " | median z B08 B11 on the cast "
          "shadow |")
    print("|---|---|---|---|---|---|---|")
    cast = true_mask & ~cloud
    for name, r in runs.items():
        scores = [psnr(r["out"], truth, m) for m in (true_mask, cloud, true_mask & ~cloud,
                                                    ~true_mask)]
        print(f"| {name} | " + " ".join(f"{v:.5f}" for v in r["noise"].values())
              + f" | {(r['classes'] == CLOUD).sum()} | "
              + f"{((r['classes'] == SHADOW) & true_mask & ~cloud).sum()} | "
              + " / ".join(f"{s:.2f}" for s in scores) + " | "
              + " ".join(f"{np.nanmedian(z[only]):.2f}" for z in r["z"]) + " | "
              + " ".join(f"{np.nanmedian(r['z'][bands.index(b)][cast]):.2f}"
                         for b in ("B08", "B11"))
              + " |")


if __name__ == "__main__":
    main()
