"""What `cloudfree remove` changes on cloud-free scenes: the share of pixels whose value differs
from the input, per scene, with the cloud fraction the mask flags.

    python benchmarks/clear_scenes.py --data DATA [--json out.json] [--half tuning|held-out]
        [--s2cloudless] [--ukis-csmask] [--bands l1c|l2a|l2a10] [--surface DEST]
        [--no-veiled-edges] [--real DEST] [--extra DIR] [--pad PX] [-- REMOVE OPTIONS]

DATA is the set built by ``scripts/build_training_set.py``. Its cloud-free L1C images are the
scenes: the clear patches (the pool's ``ok/``, ``bad_blur/`` and the SEN12MS-CR-TS clear
patches), the clear image of each S1/S2 pair (with its S1) and of each triplet (with its S1).
Images with a band missing (the BigEarthNet L2A pairs) are left out. Each is written as a 13-band
uint16 GeoTIFF (DN, nodata 0; the set keeps no transform, so a 10 m grid is made up in the
image's CRS, which changes nothing but the S1 co-registration's search, and S1 is on that grid
already) and run through ``cloudfree remove`` with every default, in this interpreter's package
(set ``PYTHONPATH`` to compare checkouts). Options after ``--`` go to every ``remove``.

A pixel counts as changed where any band of the output differs from the input. The images are
SEN12MS-CR's "cloud-free" patches and such: a few hold small real clouds (the set's notes give
their cloud fraction by the score), which a good mask does flag and fill; the table gives that
fraction beside the change.

With ``--s2cloudless`` or ``--ukis-csmask`` (installed), the share of the pixels that mask flags
(the settings of ``mask_quality.py``; ukis-csmask's 6-band L1C network on the image averaged to
30 m, as its authors ask: at 10 m it flags much of some clear patches) is given beside, as a
baseline: what a user of that mask would fill (on ``--extra``'s scenes too).

The summary also splits the scenes into the halves of ``mask_quality.py``'s by-scene split
(``HELD_OUT``: the SEN12MS-CR-TS patches of the pool's series and the residual triplets it
names): rules are tuned on the tuning half, and the held-out half is scored once. The set
holds the clear Sen1Floods11 chip of ../shared/data (``sen1floods11_Spain_7370579``, a village
among fields, tuning half).

L2A inputs, emulated as ``benchmarks/mask_l2a.py`` does: ``--bands l2a`` writes the 12 bands of an
L2A product (B10 dropped), ``--bands l2a10`` the common ten (B02-B08, B8A, B11, B12), both named in
the band descriptions and read as L2A (``--level l2a``). They stay at top-of-atmosphere levels
unless ``--surface DEST`` brings them to surface levels as ``mask_l2a.py`` emulates an atmospheric
correction (the visible bands lowered so that the image's 1st percentile meets the dark level of
the real L2A images of the pool ``DEST``, then divided by a typical transmittance).
``--no-veiled-edges``: ``remove`` with the mask's growth of veiled edges off
(``classify.veiled_edges``, which runs only without B10), to measure what it changes.
``--real DEST``: also ``remove`` on the real L2A images of the pool (the WorldCereal months and
BigEarthNet patches, each with its S1; all but the snowy BigEarthNet patch of 4 February 2018
nearly cloud-free), as they are; these stand apart from the halves.

``--extra DIR``: also ``remove`` on every GeoTIFF of DIR (no S1; with ``--bands`` and
``--surface`` as the pool's scenes are written, otherwise as it is), a set of its own
beside the pool's: the cloud-free built-up L1C scenes of the Onera Satellite Change Detection
dataset that ``scripts/extract_oscd_scenes.py`` writes (towns, industrial estates, ports and
airports), the built-up EuroSAT tiles of ``scripts/extract_eurosat_scenes.py`` (European
industrial estates, housing and motorways, 64 px each), or the two crops of DSen2's demo data
of ``scripts/extract_dsen2_scenes.py`` (a village among fields; a coast with bright gypsum
pans). Where DIR has a SPLIT.tsv (scene, half), ``--half`` picks its scenes too and the summary
gives its halves. ``--data`` may be left out to run these alone. ``--pad PX`` writes each of
them with PX px of nodata around it, as a scene's edge against its nodata is: small tiles have
much of their land within a test's square of the image's edge, where the squares are mirrored
about it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import code_version
import numpy as np
import rasterio
from mask_l2a import (
    L2A_10,
    L2A_12,
    band_arguments,
    l2a_paths,
    lowered,
    offsets,
    real_l2a,
    surface_levels,
)
from mask_quality import HELD_OUT, s2cloudless, ukis_csmask
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

from cloudfree.io.sentinel2 import BANDS, open_sentinel2

#: Bands each ``--bands`` set lacks.
MISSING = {"l1c": (), "l2a": L2A_12, "l2a10": L2A_10}
#: ``python -c`` program running ``python -m cloudfree`` with the veiled edges off.
NO_EDGES = ("import runpy, sys; sys.path.insert(0, {folder!r}); from mask_l2a import edges\n"
            "with edges(off=True): runpy.run_module('cloudfree', run_name='__main__')")


def scenes(data: Path) -> list[tuple[str, dict]]:
    """(id, record) of every cloud-free image with all 13 bands."""
    records = json.loads((data / "index.json").read_text())
    return [(r["id"], r) for r in records
            if r["kind"] in ("clear", "pair", "triplet") and not r["bands_missing"]]


def held_out(record: dict) -> bool:
    """Whether the image's scene is in the held-out half of ``mask_quality.py``'s split (the
    pool's SEN12MS-CR-TS series and residual triplets are named as there; other scenes by their
    name without the source's prefix)."""
    name = record["scene"]
    if name.startswith("sen12mscrts_ROIs2017_146"):
        return "series" in HELD_OUT
    return name.partition("_")[2] in HELD_OUT


def extra_split(folder: Path) -> dict[str, str]:
    """Half of each scene of an ``--extra`` folder, by its SPLIT.tsv (none: no split)."""
    table = folder / "SPLIT.tsv"
    if not table.exists():
        return {}
    return dict(line.split("\t") for line in table.read_text().splitlines()[1:] if line)


def summary(rows: list[dict], label: str) -> str:
    """Mean, median and worst share of changed pixels of ``rows``, and scenes over 1 and 3 %."""
    changed = [r["changed"] for r in rows]
    worst = rows[int(np.argmax(changed))]["scene"]
    return (f"{len(rows)} {label}: pixels changed by remove, mean "
            f"{100 * statistics.mean(changed):.2f} %, median "
            f"{100 * statistics.median(changed):.2f} %, worst {100 * max(changed):.2f} % "
            f"({worst}); scenes over 1 %: {sum(c > 0.01 for c in changed)}, over 3 %: "
            f"{sum(c > 0.03 for c in changed)}")


def as_l2a(dn: np.ndarray, missing: tuple[str, ...], levels: dict[str, float] | None
           ) -> np.ndarray:
    """13-band L1C DN [13, H, W] (NaN or 0 at nodata) without the bands ``missing``, lowered to
    surface levels (``mask_l2a.lowered``) with the L2A dark ``levels`` (None: as it is)."""
    if levels is not None:
        valid = np.isfinite(dn).all(axis=0) & (dn > 0).all(axis=0)
        filled = np.where(valid, dn, np.nanmedian(np.where(valid, dn, np.nan), axis=(1, 2),
                                                  keepdims=True)) / 10000
        dn = np.where(valid, lowered(filled, offsets(filled, levels)) * 10000, dn)
    return dn[[i for i, b in enumerate(BANDS) if b not in missing]]


def as_dn(values: np.ndarray) -> np.ndarray:
    """``values`` as uint16 digital numbers: 0 (nodata) where not finite, at least 1 elsewhere
    (dark-object subtraction floors the darkest pixels at 0, which must stay valid)."""
    return np.where(np.isfinite(values), np.clip(np.round(values), 1, 65535), 0).astype(np.uint16)


def write_inputs(record: dict, arrays: dict, folder: Path, missing: tuple[str, ...] = (),
                 levels: dict[str, float] | None = None) -> tuple[Path, Path | None]:
    """The clear image (and S1, when the record has one) as GeoTIFFs on a made-up 10 m grid,
    without the bands ``missing`` and at the surface ``levels`` given (``as_l2a``)."""
    crs = CRS.from_user_input(record["crs"] or "EPSG:32631")
    step = 1e-4 if crs.is_geographic else 10.0
    clear = as_l2a(arrays["s2_clear"], missing, levels)
    transform = from_origin(0.0 if crs.is_geographic else 500000.0,
                            45.0 if crs.is_geographic else 5000000.0, step, step)
    grid = {"driver": "GTiff", "height": clear.shape[1], "width": clear.shape[2], "crs": crs,
            "transform": transform}
    s2 = folder / "s2.tif"
    with rasterio.open(s2, "w", **grid, count=len(clear), dtype="uint16", nodata=0) as dst:
        dst.write(as_dn(clear))
        dst.descriptions = tuple(b for b in BANDS if b not in missing)
    if "s1" not in arrays:
        return s2, None
    s1 = folder / "s1.tif"
    with rasterio.open(s1, "w", **grid, count=2, dtype="float32", nodata=np.nan) as dst:
        dst.write(arrays["s1"].astype(np.float32))
    return s2, s1


def write_extra(path: Path, folder: Path, missing: tuple[str, ...],
                levels: dict[str, float] | None, pad: int = 0) -> Path:
    """An ``--extra`` scene (13-band L1C GeoTIFF) without the bands ``missing`` and at the
    surface ``levels`` given (``as_l2a``), on its own grid with ``pad`` px of nodata around it
    (its own nodata, by the file's masks, kept); as it is without ``missing`` or ``pad``."""
    if not missing and not pad:
        return path
    with rasterio.open(path) as src:
        dn, profile = np.where(src.read_masks() > 0, src.read(), np.nan), src.profile
    kept = np.pad(as_l2a(dn.astype(np.float32), missing, levels), ((0, 0), (pad, pad), (pad, pad)),
                  constant_values=np.nan)
    s2 = folder / "s2.tif"
    profile.update(count=len(kept), dtype="uint16", nodata=0, height=kept.shape[1],
                   width=kept.shape[2], transform=profile["transform"]
                   * Affine.translation(-pad, -pad))
    with rasterio.open(s2, "w", **profile) as dst:
        dst.write(as_dn(kept))
        dst.descriptions = tuple(b for b in BANDS if b not in missing)
        dst.update_tags(PROCESSING_LEVEL="L2A" if missing else "L1C")
    return s2


def changed_share(s2: Path, out: Path) -> float:
    """Share of the valid pixels where any band of ``out`` differs from ``s2`` (both as
    ``open_sentinel2`` reads them: a folder's 20 m bands brought to 10 m as ``remove`` does)."""
    with open_sentinel2(s2) as a, open_sentinel2(out) as b:
        (before, valid), (after, _) = a.read(), b.read()
    return float(((before != after).any(axis=0) & valid).sum() / max(valid.sum(), 1))


def mask_share(s2: Path, out: Path) -> float:
    """Share of the pixels the mask of ``remove`` (``--mask-out``) does not call clear."""
    with rasterio.open(out) as src:
        classes = src.read(1)
    valid = classes != 255
    return float(((classes != 0) & valid).sum() / max(valid.sum(), 1))


def flagged_share(masker: Callable[[np.ndarray], np.ndarray], s2: Path) -> float:
    """Share of the valid pixels of the GeoTIFF ``s2`` that ``masker`` flags."""
    with rasterio.open(s2) as src:
        dn = src.read()
    valid = (dn != 0).all(axis=0)
    return float((masker(dn.astype(np.float32) / 10000) & valid).sum() / max(valid.sum(), 1))


def baseline_summaries(rows: list[dict], baselines: dict) -> list[str]:
    """Each baseline mask's share of the ``rows``' pixels flagged: mean, median, worst."""
    lines = []
    for label in baselines:
        shares = [r[label] for r in rows]
        lines.append(f"{label} flags: mean {100 * statistics.mean(shares):.2f} %, median "
                     f"{100 * statistics.median(shares):.2f} %, worst {100 * max(shares):.2f} %; "
                     f"scenes over 1 %: {sum(c > 0.01 for c in shares)}, over 3 %: "
                     f"{sum(c > 0.03 for c in shares)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--s2cloudless", action="store_true",
                        help="also the share of pixels the s2cloudless mask flags")
    parser.add_argument("--ukis-csmask", action="store_true",
                        help="also the share of pixels the ukis-csmask network flags as cloud")
    parser.add_argument("--half", choices=("tuning", "held-out"),
                        help="only the scenes of this half of the by-scene split")
    band_arguments(parser, MISSING, "the band set written: L1C's 13, L2A's 12 (no B10) or the "
                   "ten of 10 m and 20 m")
    parser.add_argument("--no-veiled-edges", action="store_true",
                        help="remove with the mask's growth of veiled edges off")
    parser.add_argument("--real", type=Path, metavar="DEST",
                        help="also remove on the real L2A images under DEST, as they are")
    parser.add_argument("--extra", type=Path, metavar="DIR",
                        help="also remove on the GeoTIFFs of DIR (no S1), in the band set "
                             "of --bands")
    parser.add_argument("--pad", type=int, default=0, metavar="PX",
                        help="--extra's scenes with PX px of nodata around them")
    parser.add_argument("options", nargs="*", help="after --: options for every remove")
    args = parser.parse_args()
    print(code_version.describe(), flush=True)
    if not args.data and not args.extra:
        parser.error("give --data, --extra or both")
    levels = surface_levels(parser, args)
    missing = MISSING[args.bands]
    launch = (["-c", NO_EDGES.format(folder=str(Path(__file__).resolve().parent))]
              if args.no_veiled_edges else ["-m", "cloudfree"])
    options = [*(["--level", "l2a"] if missing else []), *args.options]

    def run(s2: Path, s1: Path | None, folder: Path) -> dict:
        """``remove`` on ``s2`` (and ``s1``): the share of pixels changed and masked."""
        out, mask = folder / "out.tif", folder / "mask.tif"
        command = [sys.executable, *launch, "remove", "--s2", str(s2),
                   *(["--s1", str(s1)] if s1 else []), "-o", str(out), "--mask-out",
                   str(mask), "--overwrite", "--quiet", *options]
        subprocess.run(command, check=True, capture_output=True, cwd=folder,
                       env=code_version.subprocess_env())
        return {"changed": changed_share(s2, out), "masked": mask_share(s2, mask)}

    baselines = {}
    for name, wanted, make, package in (("s2cloudless", args.s2cloudless, s2cloudless,
                                         "s2cloudless"),
                                        ("ukis-csmask", args.ukis_csmask, lambda: ukis_csmask(3),
                                         "ukis-csmask[cpu]")):
        if wanted:
            baselines[name] = make()
            if baselines[name] is None:
                raise SystemExit(f"--{name}: {name} is not installed (pip install {package})")
    def flagged(s2: Path) -> dict:
        """The share of ``s2``'s pixels each baseline mask flags."""
        return {label: flagged_share(masker, s2) for label, masker in baselines.items()}

    def line(row: dict) -> str:
        """A scene's figures: changed, masked and each baseline's."""
        return " ".join([f"changed {100 * row['changed']:6.2f} %",
                         f"masked {100 * row['masked']:6.2f} %",
                         *(f"{label} {100 * row[label]:6.2f} %" for label in baselines)])

    rows, real, extra = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, record in scenes(args.data) if args.data else ():
            if args.half and held_out(record) != (args.half == "held-out"):
                continue
            with np.load(args.data / f"{record['id']}.npz") as z:
                arrays = {k: z[k] for k in z.files}
            s2, s1 = write_inputs(record, arrays, folder, missing, levels)
            rows.append({"scene": name, "kind": record["kind"], "held_out": held_out(record),
                         **run(s2, s1, folder), **flagged(s2)})
            print(f"{name:48s} {record['kind']:8s} {line(rows[-1])}", flush=True)
        if args.real:
            print(f"\nThe real L2A images of {args.real}, as they are:")
            kept = {name for name, *_ in real_l2a(args.real)}  # half of their pixels valid
            for path in (p for p in l2a_paths(args.real) if p.name in kept):
                s1 = path.with_name(path.name.replace("s2_", "s1_") if path.is_file()
                                    else f"{path.name}_s1.tif")
                real.append({"scene": path.name, **run(path, s1, folder)})
                print(f"{path.name:48s} changed {100 * real[-1]['changed']:6.2f} % masked "
                      f"{100 * real[-1]['masked']:6.2f} %", flush=True)
        if args.extra:
            print(f"\nThe GeoTIFFs of {args.extra} ({args.bands}):")
            split = extra_split(args.extra)
            for path in sorted(args.extra.glob("*.tif")):
                half = split.get(path.stem)
                if args.half and half and half != args.half:
                    continue
                s2 = write_extra(path, folder, missing, levels, args.pad)
                extra.append({"scene": path.stem, "extra": True, "held_out": half == "held-out",
                              **run(s2, None, folder), **flagged(s2)})
                print(f"{path.stem:48s} {line(extra[-1])}", flush=True)
    print()
    if rows:
        print(summary(rows, "cloud-free scenes"))
        for text in baseline_summaries(rows, baselines):
            print(text)
    for label, held in (("of the tuning half", False), ("of the held-out half", True)):
        part = [r for r in rows if r["held_out"] == held]
        if part:
            print(summary(part, label))
    if real:
        print(summary(real, "real L2A images"))
    if extra:
        print(summary(extra, f"scenes of {args.extra}"))
        for text in baseline_summaries(extra, baselines):
            print(text)
        for label, held in (("of its tuning half", False), ("of its held-out half", True)):
            part = [r for r in extra if r["held_out"] == held]
            if part and len(part) < len(extra):
                print(summary(part, label))
    if args.json:
        args.json.write_text(json.dumps(rows + real + extra, indent=1))


if __name__ == "__main__":
    main()
