"""One reference filling thin cloud on the ten L2A bands, stage by stage, against its line.

    python benchmarks/one_reference_thin.py [--reference plus|gain|mix]

The case of ``tests/dates/test_temporal_mask.py``: the real clear winter SEN12MS-CR patch is
the truth; the target has a quarter of the real summer cumulus (the summer pixels its
single-date mask calls cloud) blended over it, and only the ten bands of an L2A product (no
B01, B09, B10). One reference is built from the truth (``plus``: + 300 DN, ``gain``: x 1.04,
``mix``: x 0.97 + 100 DN), so a line per band maps it exactly. ``remove --reference`` fills the
target from it: the default, without the restoration of thin cloud, and without that and the
residual carried from the clear pixels beside the cloud (the fits' prediction as it is). Each
is scored on the true cloud where the reference fills it: the mean signed error in blue and
NIR and the RMSE over the bands (DN), beside the reference fitted by a least-squares line per
band on the pixels the final mask (the default's) calls clear. ``--by-distance`` also prints
the mean signed error in blue of each stage by distance inside the final mask's cloud (px from
its edge; 0: filled pixels that mask does not call cloud).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import SUMMER_S2, WINTER_CLEAR  # noqa: E402
from s2_builders import write_stack  # noqa: E402

from cloudfree.io.sentinel2 import BANDS, open_sentinel2  # noqa: E402
from cloudfree.mask.classify import CLEAR, CLOUD, MaskParams, classify  # noqa: E402
from cloudfree.pipeline import remove  # noqa: E402
from cloudfree.pipeline.options import FillOptions, OutputOptions, ReferenceOptions  # noqa: E402
from cloudfree.pipeline.remove import remove_scene  # noqa: E402

#: The ten bands of an L2A product.
TEN = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
#: Share of the summer cloud blended over the truth.
THIN = 0.25
#: Distances inside the final mask's cloud (px from its edge) by which ``--by-distance`` groups.
DISTANCES = ((0, 0), (1, 2), (3, 5), (6, 10), (11, 99))
#: Name, ``FillOptions``, whether the residual is carried in.
STAGES = [("default", {}, True), ("no restoration", {"restoring": None}, True),
          ("fits alone", {"restoring": None}, False)]
REFERENCES = {"plus": lambda t: t + 300, "gain": lambda t: t * 1.04,
              "mix": lambda t: t * 0.97 + 100}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", choices=REFERENCES, default="plus")
    parser.add_argument("--by-distance", action="store_true",
                        help="also the blue error by distance inside the final mask's cloud")
    args = parser.parse_args()
    keep = [BANDS.index(b) for b in TEN]
    with open_sentinel2(SUMMER_S2) as s2:
        cloud = classify(s2.read()[0], None, MaskParams())[0] == CLOUD
    summer = read(SUMMER_S2).astype(np.float64)
    with rasterio.open(WINTER_CLEAR) as ds:
        truth, profile = ds.read().astype(np.float64), ds.profile
    blue, nir = TEN.index("B02"), TEN.index("B08")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def ten(name: str, data: np.ndarray) -> Path:
            return write_stack(folder / name, np.clip(data, 1, 65535)[keep].astype(np.uint16),
                               profile, descriptions=TEN)

        target = ten("target_20171201.tif",
                     np.where(cloud, (1 - THIN) * truth + THIN * summer, truth))
        ref = ten("ref_20171211.tif", REFERENCES[args.reference](truth))
        truth = truth[keep]
        seen, date = read(target).astype(np.float64), read(ref).astype(np.float64)
        print("| stage | B02 error | B08 error | RMSE |\n|---|---|---|---|")
        carry = remove.carry_residual
        for name, options, residual in STAGES:
            if not residual:
                remove.carry_residual = lambda *args, **kwargs: None
            out, mask, source = (folder / f"{name}_{x}.tif" for x in ("out", "mask", "source"))
            try:
                remove_scene(target, None, out, dates=ReferenceOptions(references=[ref]),
                             fill=FillOptions(**options),
                             outputs=OutputOptions(mask_out=mask, source_out=source),
                             quiet=True)
            finally:
                remove.carry_residual = carry
            if name == "default":
                filled = cloud & (read(source)[0] == 1)
                final = read(mask)[0]
                clear = final == CLEAR
                inside = np.ceil(ndimage.distance_transform_edt(final == CLOUD))[filled]
                line = np.stack([np.polyval(np.polyfit(d[clear], t[clear], 1), d)
                                 for d, t in zip(date, seen, strict=True)])
                rows = [("line on the final mask's clear pixels", line[:, filled])]
            rows.append((name, read(out)[:, filled].astype(np.float64)))
        for name, values in rows:
            error = values - truth[:, filled]
            print(f"| {name} | {error[blue].mean():+.0f} | {error[nir].mean():+.0f} | "
                  f"{np.sqrt(np.mean(error ** 2)):.0f} |")
        print(f"\n{filled.sum()} of the {cloud.sum()} cloud pixels filled from the reference; "
              f"{(cloud & clear).sum()} of them clear by the final mask")
        if args.by_distance:
            print("\n| px inside the final mask's cloud | pixels | "
                  + " | ".join(name for name, _ in rows) + " |\n|---|---|"
                  + "---|" * len(rows))
            for low, high in DISTANCES:
                at = (inside >= low) & (inside <= high)
                errors = (f"{(v[blue, at] - truth[blue, filled][at]).mean():+.0f}"
                          for _, v in rows)
                print(f"| {low}-{high} | {at.sum()} | " + " | ".join(errors) + " |")


if __name__ == "__main__":
    main()
