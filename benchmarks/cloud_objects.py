"""Two tests of bright land measured per cloud object: whether the object casts a shadow, and
the texture of its short-wave infrared at 20 m. Real clouds against the towns' bright land.

    python benchmarks/cloud_objects.py --towns DIR --data DATA [--half tuning|held-out]
        [--json out.json]

DIR holds cloud-free L1C GeoTIFFs of towns with a SPLIT.tsv (``scripts/extract_oscd_scenes.py``:
the Onera Satellite Change Detection towns): everything the mask calls cloud there is bright
land. DATA is the set built by ``scripts/build_training_set.py``: its real cloudy L1C images
(``s2_cloudy``) hold real clouds. ``--half`` takes one half of each by-scene split (the towns'
SPLIT.tsv, ``clear_scenes.held_out``).

Each image is classified as ``remove`` classifies a single date (``MaskParams(buffer=5,
shadow=True)``, the shadow thresholds of the whole image), and its scene offset from the clouds
to their shadows is found as ``remove``'s first pass finds it (``shadow.scene_offset`` over the
confirmed clouds, ``bright_land.confirmed_reach``). An object is an 8-connected patch of confirmed
cloud of at least ``MIN_OBJECT`` px. Per object:

- ``at offset``: the share of the object, displaced by the scene's offset, that falls on
  shadow-like land (``shadow.shadow_like`` at least a half), of the part that falls on the image
  off the clouds (none where the scene has no offset, or where less than ``IN_VIEW`` of the
  displaced object is on the image off the clouds: its shadow falls on cloud or beyond);
- ``own best``: the largest such share over every displacement within ``shadow.OFFSET_REACH``
  px (with ``IN_VIEW`` of it in view), the object's own best shadow wherever the sun is;
- ``B11`` and ``B12``: the mean over its pixels of the relative standard deviation of the band
  among the cloud pixels of the ``TEXTURE_BOX`` px square around (the bands are 20 m, so the
  square spans 2.5 of their cells).

Printed: per image the share the mask calls cloud before its buffer grows it (what no rule on
the growth alone takes off: on cloud-free towns, a floor for what ``remove`` changes), its
offset and objects; per set the mean and worst of that share and how many images have an
offset; then per set and size (under and from ``LARGE`` px) the 10th, 50th and 90th
percentiles of each measure, and the pixels of the objects whose own best share is under
``NO_SHADOW`` (what a rule "no shadow anywhere near: bright land" would leave clear).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from clear_scenes import held_out
from remove_quality import write_inputs  # noqa: F401  (puts scripts/ on the path)
from scipy import ndimage
from train_default import load_set, reflectance

from cloudfree.core.boxes import box_mean
from cloudfree.core.distance import EIGHT
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask import classify as mask
from cloudfree.mask import shadow
from cloudfree.mask.bright_land import confirmed_reach

MIN_OBJECT, LARGE, IN_VIEW, NO_SHADOW, TEXTURE_BOX = 50, 300, 0.3, 0.2, 5
MEASURES = ("at offset", "own best", "B11", "B12")


def towns(folder: Path, half: str | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """The towns' images of ``half``: name, reflectance [13, H, W], valid [H, W]."""
    split = dict(line.split("\t") for line in
                 (folder / "SPLIT.tsv").read_text().splitlines()[1:] if line.strip())
    for name, part in sorted(split.items()):
        if half is None or part == half:
            with open_sentinel2(folder / f"{name}.tif") as s2:
                yield (name, *s2.read(bands=BANDS))


def cloudy(data: Path, half: str | None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """The pool's real cloudy L1C images of ``half``: name, reflectance, valid."""
    for record in (r for split in ("train", "val") for r in load_set(data, split)):
        if record["bands_missing"] or "s2_cloudy" not in record:
            continue
        if half is None or held_out(record) == (half == "held-out"):
            yield (record["id"], *reflectance(record["s2_cloudy"]))


def shares(like: np.ndarray, open_land: np.ndarray, patch: np.ndarray,
           box: tuple[slice, slice]) -> np.ndarray:
    """Per displacement within ``shadow.OFFSET_REACH`` px [2R+1, 2R+1]: the share of the
    ``patch`` (the object within ``box`` of the padded image) on ``like`` pixels of the
    ``open_land`` it falls on; -1 where less than ``IN_VIEW`` of it falls on that land."""
    r = shadow.OFFSET_REACH
    rows = slice(box[0].start, box[0].stop + 2 * r)
    cols = slice(box[1].start, box[1].stop + 2 * r)
    land = open_land[rows, cols]
    hits, seen = shadow.valid_correlation(np.stack([land & like[rows, cols], land]),
                                          patch.astype(np.float64))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    counted = (seen >= IN_VIEW * patch.sum()) & (dy * dy + dx * dx <= r * r)
    return np.where(counted, hits / np.maximum(seen, 1), -1)


def measure(refl: np.ndarray, valid: np.ndarray
            ) -> tuple[float, tuple[int, int] | None, list[dict]]:
    """The share of the image the mask calls cloud before the buffer grows it, the image's
    scene offset and its objects' measures."""
    params = mask.MaskParams(buffer=5, shadow=True)
    thresholds = mask.combine_shadow_stats([mask.shadow_thresholds(refl, valid)])
    ungrown = mask.classify(refl, valid, replace(params, buffer=0), shadow=thresholds)[0]
    own = float((ungrown == mask.CLOUD).sum() / max(valid.sum(), 1))
    classes, score = mask.classify(refl, valid, params, shadow=thresholds)
    cloud = (classes == mask.CLOUD) & (np.nan_to_num(score) > params.threshold) & valid
    if not cloud.any():
        return own, None, []
    confirmed = confirmed_reach(refl, BANDS, cloud, score, valid) > 0
    like = shadow.shadow_like(refl, classes == mask.SHADOW, classes == mask.CLEAR) >= 0.5
    r = shadow.OFFSET_REACH

    def pad(x: np.ndarray) -> np.ndarray:
        return np.pad(x, r)

    inner = (slice(r, r + cloud.shape[0]), slice(r, r + cloud.shape[1]))
    offset = shadow.scene_offset(shadow.offset_counts(pad(like), pad(confirmed), inner,
                                                      pad(valid)))
    texture = {}
    for band in ("B11", "B12"):
        x = refl[BANDS.index(band)]
        mean = box_mean(x, cloud, TEXTURE_BOX)
        spread = box_mean(x * x, cloud, TEXTURE_BOX) - mean * mean
        texture[band] = np.sqrt(np.maximum(spread, 0)) / np.maximum(mean, 1e-4)
    like, open_land = pad(like), pad(valid & ~cloud)
    labels, _ = ndimage.label(confirmed, EIGHT)
    objects = []
    for i, box in enumerate(ndimage.find_objects(labels), 1):
        patch = labels[box] == i
        if patch.sum() < MIN_OBJECT:
            continue
        share = shares(like, open_land, patch, box)
        at = None if offset is None else float(share[offset[0] + r, offset[1] + r])
        objects.append({"pixels": int(patch.sum()),
                        "at offset": None if at is None or at < 0 else at,
                        "own best": float(share.max()) if share.max() >= 0 else None,
                        **{band: float(t[box][patch].mean()) for band, t in texture.items()}})
    return own, offset, objects


def summary(label: str, objects: list[dict]) -> None:
    """Percentiles of each measure per size, and what ``NO_SHADOW`` would leave clear."""
    for large in (False, True):
        some = [o for o in objects if (o["pixels"] >= LARGE) == large]
        size = f"from {LARGE} px" if large else f"{MIN_OBJECT}-{LARGE - 1} px"
        cells = []
        for name in MEASURES:
            values = [o[name] for o in some if o[name] is not None]
            cells.append(f"{name} " + ("-" if not values else " / ".join(
                f"{v:.2f}" for v in np.percentile(values, (10, 50, 90)))) + f" ({len(values)})")
        print(f"{label}, {len(some)} objects {size}: " + "; ".join(cells))
    shadowless = [o for o in objects if o["own best"] is not None and o["own best"] < NO_SHADOW]
    print(f"{label}: {len(shadowless)} objects, {sum(o['pixels'] for o in shadowless)} px with "
          f"an own best share under {NO_SHADOW}; {sum(o['own best'] is None for o in objects)} "
          "with no displacement in view")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towns", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--half", choices=("tuning", "held-out"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    found = {}
    for label, images in (("towns", towns(args.towns, args.half)),
                          ("real clouds", cloudy(args.data, args.half))):
        found[label] = []
        offsets, owns = 0, []
        for name, refl, valid in images:
            own, offset, objects = measure(refl, valid)
            offsets += offset is not None
            owns.append(own)
            found[label] += [{"image": name, "offset": offset, **o} for o in objects]
            print(f"{name}: cloud before the buffer {100 * own:.2f} %, offset {offset}, "
                  "objects (px, own best share) " + ", ".join(
                f"{o['pixels']} {o['own best'] and round(o['own best'], 2)}" for o in objects),
                flush=True)
        images_with = len({o["image"] for o in found[label]})
        print(f"{label}: {len(owns)} images, {images_with} with objects, {offsets} with an "
              f"offset; cloud before the buffer: mean {100 * np.mean(owns):.2f} %, worst "
              f"{100 * np.max(owns):.2f} %")
    for label, objects in found.items():
        summary(label, objects)
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
