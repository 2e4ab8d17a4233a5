"""Score the mask against a hand-made label: cloud and cloud shadow, class by class.

    python benchmarks/mask_labelled.py CLONE_OF_dlr-eoc/ukis-csmask

The scene is the test file of the ukis-csmask package (DLR; `tests/testfiles/sentinel2.npz` at
``COMMIT``, checked by its sha256): a real Sentinel-2 L1C scene of cumulus over farmland, 512 x
512 px at about 30 m (the resolution ukis-csmask runs at), six bands (B02, B03, B04, B08, B11,
B12, top-of-atmosphere reflectance) and a label drawn by hand: cloud shadow, cloud and two
kinds of clear. It is not georeferenced. The other pool data are scored by a truth computed
from a cloud-free date (``mask_quality.py``); this one by people's eyes, with shadows.

The scene is written as a GeoTIFF of named bands in DN and masked by ``cloudfree mask`` as a user
runs it (``pipeline.mask_scene``: a band subset without B10, so the clouds also grow into their
veiled edges, ``classify.veiled_edges``, unless the scene is named L1C), by default and with
``--shadow``. Rows:

- at the scene's own 30 m, and on a 10 m grid (each pixel repeated 3 x 3, as cloudfree's
  readers put coarse bands on the 10 m grid), where the mask's distances in pixels mean the
  metres they were chosen for; both scored on the label at 30 m (the 10 m classes by the
  majority of each 3 x 3 block);
- with no processing level named (a band set without B10 may be L2A, so the veiled edges are
  grown) and with ``--level L1C`` (top-of-atmosphere levels, as a tag or the metadata name them:
  no veiled edges, the score's blue ramp being set for L1C's levels).

Per class, IoU, precision and recall pooled over the scene: cloud (thin and thick, as
everything but ``mask``'s output takes them), thick cloud alone (class 1), and shadow (class 2,
with ``--shadow``: all of the darkest land, as ``mask`` flags it). The label's two clear kinds
count as clear. ukis-csmask itself is not scored: this is its own test scene.

``remove`` (defaults, no S1) on the 10 m grid named L1C: the region it fills as cloud (its mask,
5 px buffer and haze ring, ``--mask-out`` class 1) and the shadows it relights (class 2) against
the label, and where the labelled shadow went: relit, filled as cloud, or left as seen.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import code_version
import numpy as np
import rasterio
from rasterio.transform import from_origin

from cloudfree.mask.classify import CLOUD, SHADOW, THIN, MaskParams
from cloudfree.pipeline.mask import mask_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from extract_mask_pairs import git_dir  # noqa: E402

#: The commit of ukis-csmask whose test file is scored, its path and its sha256.
COMMIT = "bcd8ea0"
PATH = "tests/testfiles/sentinel2.npz"
SHA256 = "b0bb793c4b53dbe99839372de70fcfa1b375147f0c6f0f936b3b2a321a0e7062"
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
#: The label's codes (its test suite's: 0 cloud shadow, 4 cloud, 1 and 3 clear kinds).
LABEL_SHADOW, LABEL_CLOUD = 0, 4
#: Pixels of 10 m in one of the scene's.
FACTOR = 3


def read_scene(repo: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance [6, H, W] float32 and the label [H, W] from the clone ``repo``."""
    blob = subprocess.run(["git", f"--git-dir={git_dir(repo)}", "show", f"{COMMIT}:{PATH}"],
                          check=True, capture_output=True).stdout
    digest = hashlib.sha256(blob).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{PATH} at {COMMIT} has sha256 {digest}, not {SHA256}")
    with np.load(io.BytesIO(blob)) as z:
        return np.moveaxis(z["img"], -1, 0).astype(np.float32), z["msk"][..., 0]


def write_scene(refl: np.ndarray, metres: float, path: Path) -> None:
    """``refl`` as a uint16 GeoTIFF of named bands in DN (reflectance x 10000), on a nominal
    UTM grid of ``metres`` px (cloudfree needs a georeference; the scene has none)."""
    dn = np.clip(np.round(refl * 10000), 0, 65535).astype(np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[2], height=dn.shape[1],
                       count=len(dn), dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500000, 5000000, metres, metres)) as out:
        out.write(dn)
        out.descriptions = BANDS


def masked(refl: np.ndarray, metres: float, level: str, shadow: bool,
           folder: Path) -> np.ndarray:
    """The classes ``cloudfree mask --level LEVEL`` writes for ``refl`` at ``metres`` px
    (``--shadow`` or not)."""
    scene, output = folder / "scene.tif", folder / "mask.tif"
    write_scene(refl, metres, scene)
    mask_scene(scene, output, MaskParams(shadow=shadow), level=level, overwrite=True,
               quiet=True)
    with rasterio.open(output) as src:
        return src.read(1)


def removed(refl: np.ndarray, folder: Path) -> np.ndarray:
    """The classes ``cloudfree remove --mask-out`` writes for ``refl`` on a 10 m grid named
    L1C: the region it fills as cloud (1) and the shadows it relights (2)."""
    scene, output, classes = folder / "scene.tif", folder / "out.tif", folder / "classes.tif"
    write_scene(refl, 10, scene)
    subprocess.run([sys.executable, "-m", "cloudfree", "remove", "--s2", str(scene), "-o",
                    str(output), "--mask-out", str(classes), "--level", "L1C", "--overwrite",
                    "--quiet"], check=True, capture_output=True, cwd=folder,
                   env=code_version.subprocess_env())
    with rasterio.open(classes) as src:
        return src.read(1)


def to_label_grid(classes: np.ndarray, factor: int) -> np.ndarray:
    """Classes on the label's grid: the commonest of each ``factor`` x ``factor`` block."""
    if factor == 1:
        return classes
    h, w = classes.shape[0] // factor, classes.shape[1] // factor
    blocks = classes[:h * factor, :w * factor].reshape(h, factor, w, factor).swapaxes(1, 2)
    blocks = blocks.reshape(h, w, factor * factor)
    present = np.unique(classes)
    counts = np.stack([(blocks == c).sum(-1) for c in present], -1)
    return present[counts.argmax(-1)]


def scores(found: np.ndarray, truth: np.ndarray) -> str:
    """IoU, precision and recall of ``found`` against ``truth``, as table cells."""
    tp, fp, fn = (found & truth).sum(), (found & ~truth).sum(), (~found & truth).sum()
    return (f"{tp / max(tp + fp + fn, 1):.3f} | {tp / max(tp + fp, 1):.3f} | "
            f"{tp / max(tp + fn, 1):.3f}")


def main() -> None:
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="clone of github:dlr-eoc/ukis-csmask")
    args = parser.parse_args()
    refl, label = read_scene(args.repo)
    cloud, shadow = label == LABEL_CLOUD, label == LABEL_SHADOW
    print(f"label: {cloud.mean():.1%} cloud, {shadow.mean():.1%} shadow of {label.size} px")
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for grid_name, factor in (("30 m (as given)", 1), ("10 m grid", FACTOR)):
            grid = refl.repeat(factor, 1).repeat(factor, 2)
            for level, level_name in (("auto", "no level named"), ("L1C", "`--level L1C`")):
                classes = [to_label_grid(masked(grid, 30 / factor, level, shadow, Path(tmp)),
                                         factor) for shadow in (False, True)]
                rows[f"{grid_name}, {level_name}"] = (classes[0], classes[1])
        filled = to_label_grid(removed(refl.repeat(FACTOR, 1).repeat(FACTOR, 2), Path(tmp)),
                               FACTOR)
    print("| mask | cloud: IoU | precision | recall | thick cloud: IoU | precision | recall "
          "| shadow (`--shadow`): IoU | precision | recall |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (classes, shadowed) in rows.items():
        print(f"| {name} | {scores(np.isin(classes, (CLOUD, THIN)), cloud)} | "
              f"{scores(classes == CLOUD, cloud)} | {scores(shadowed == SHADOW, shadow)} |")
    print("\n`remove` (defaults, no S1), 10 m grid, `--level L1C`: what it fills as cloud (the "
          "mask, its buffer and haze ring) and the shadows it relights")
    print("| filled as cloud: IoU | precision | recall | relit: IoU | precision | recall "
          "| labelled shadow relit / filled as cloud / left as seen |")
    print("|---|---|---|---|---|---|---|")
    shares = [(filled[shadow] == c).mean() for c in (SHADOW, CLOUD)]
    print(f"| {scores(filled == CLOUD, cloud)} | {scores(filled == SHADOW, shadow)} | "
          f"{shares[0]:.2f} / {shares[1]:.2f} / {1 - sum(shares):.2f} |")


if __name__ == "__main__":
    main()
