"""Build the training / validation set from the training pool of DATA.md.

    python scripts/build_training_set.py --oriolac DIR --dsen2cr DIR --rico DIR \\
        --bigearthnet bigearthnet-common-2.8.0.tar.gz --shared ../shared/data -o OUT

Each DIR is a clone or a bare git directory of github:Oriolac/cloud-removal,
github:CodyKurpanek/dSen2CR_DSP and github:kai-tub/rico-hdl. Every file read is checked against
``scripts/training_set_manifest.json`` (sha256), and the samples built must be the ones it lists;
``--write-manifest`` records a new manifest instead (when a recipe changes on purpose).

OUT/index.json lists one record per sample (id, scene, source, kind, split, height, width, crs,
bands_missing, notes); OUT/ID.npz holds its float32 arrays ``s1``, ``s2_cloudy``, ``s2_clear``
(see ``trainset_arrays`` for units, band order and the 10 m grid). Kinds and their arrays are
``KIND_ARRAYS``. Notes give the cloud fraction of each S2 array by the project's cloud score.
The split is by scene (``VALIDATION_SCENES``); scenes are SEN12MS-CR ROI + scene number (its
patches overlap their neighbours), the SSL4EO-S12 location, the BigEarthNet tile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath

import numpy as np
from rasterio.errors import RasterioError
from trainset_arrays import (
    Raster,
    check_ranges,
    cloud_fraction,
    crop_to_data,
    decode,
    missing_bands,
    onto,
    s1_db,
    s2_from_bands,
    s2_from_stack,
)
from trainset_sources import (
    BIGEARTHNET,
    DSEN2CR,
    ORIOLAC,
    RESIDUAL,
    RICO,
    SHARED,
    Checked,
    Source,
    open_source,
)

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.progress import progress
from cloudfree.io.sentinel2 import BANDS, canonical_band

log = logging.getLogger("build_training_set")
MANIFEST = Path(__file__).with_name("training_set_manifest.json")
KIND_ARRAYS = {
    "triplet": ("s1", "s2_cloudy", "s2_clear"),
    "pair": ("s1", "s2_clear"),
    "cloudfield": ("s2_cloudy", "s2_clear"),
    "cloudy_s1": ("s1", "s2_cloudy"),
    "clear": ("s2_clear",),
}
#: The Oriolac residual triplets of the training pool (DATA.md); all IDs < RESERVED_FROM.
RESIDUAL_IDS = (316, 581, 746, 1302, 2266, 2729, 3968, 4065, 4287, 4294)
#: Validation scenes; every other scene is training. Real cloudy/clear triplets
#: from 5 scenes, a real clear S1/S2 pair in EPSG:4326 and one with S1 and S2 on different
#: grids; the dSen2CR patches stay together in train (one scene).
VALIDATION_SCENES = {
    "oriolac_residual_581": "real triplet",
    "oriolac_residual_1302": "real triplet",
    "oriolac_residual_2729": "real triplet",
    "oriolac_residual_4065": "real triplet",
    "sen12mscr_ROIs2017_winter_112": "real triplet (thin haze over dark terrain)",
    "sen1floods11_Spain_7370579": "clear pair, EPSG:4326",
    "ssl4eo_0000200": "clear pairs, S1 resampled onto the S2 grid",
}
#: An image offered as clear but not curated as such (extra clear patches, the SSL4EO L1C date
#: nearest to S1) counts as clear up to this cloud share by the project's cloud score; the score
#: finds about 4% "cloud" on the known cloud-free Spain S2 (bright bare soil and roofs).
CLEAR_MAX_CLOUD = 0.05
_SEN12MSCR = re.compile(
    r"(?P<roi>ROIs\d+_[a-z]+)_s2(?P<cloudy>_cloudy)?_(?P<scene>\d+)_p(?P<p>\d+)")
_TS = re.compile(r"s2_(?P<roi>ROIs\d+)_(?P<scene>\d+)_ImgNo_\d+_(?P<date>[\d-]+)_patch_(?P<p>\d+)")
_DATE = re.compile(r"(20\d{6})T\d{6}")


@dataclass
class Sample:
    """One output sample before writing."""

    id: str
    scene: str
    source: str
    kind: str
    arrays: dict[str, np.ndarray]
    crs: str | None
    notes: list[str] = field(default_factory=list)

    def finish(self) -> Sample:
        """Crop to common data, check units, note cloud fractions; returns itself."""
        if tuple(self.arrays) != KIND_ARRAYS[self.kind]:
            raise CloudfreeError(f"{self.id}: arrays {tuple(self.arrays)} are not a {self.kind}")
        self.arrays = crop_to_data(self.arrays)
        check_ranges(self.arrays, self.id)
        for name in ("s2_cloudy", "s2_clear"):
            if name in self.arrays and (share := cloud_fraction(self.arrays[name])) is not None:
                self.notes.append(f"cloud fraction {name} {share:.3f}")
        return self

    @property
    def bands_missing(self) -> list[str]:
        s2 = [a for k, a in self.arrays.items() if k != "s1"]
        return sorted({b for a in s2 for b in missing_bands(a)}, key=BANDS.index)

    def record(self) -> dict:
        h, w = next(iter(self.arrays.values())).shape[1:]
        split = "val" if self.scene in VALIDATION_SCENES else "train"
        return {"id": self.id, "scene": self.scene, "source": self.source, "kind": self.kind,
                "split": split, "height": int(h), "width": int(w), "crs": self.crs,
                "bands_missing": self.bands_missing, "notes": "; ".join(self.notes)}


class Reader:
    """Checked reads from one source, decoded."""

    def __init__(self, source: Source, checked: Checked) -> None:
        self.source, self.checked = source, checked

    def raster(self, path: str) -> Raster:
        return decode(self.checked.read(self.source, path), f"{self.source.name}:{path}")

    def json(self, path: str) -> dict:
        return json.loads(self.checked.read(self.source, path))

    def list(self, folder: str) -> list[str]:
        return self.source.list(folder)


def _crs(raster: Raster) -> str | None:
    return raster.crs.to_string() if raster.crs else None


def _sen12mscr_names(path: str) -> tuple[str, str]:
    """(scene, patch key) of a SEN12MS-CR file name such as ROIs1970_fall_s2_136_p139."""
    m = _SEN12MSCR.search(PurePosixPath(path).name)
    if not m:
        raise CloudfreeError(f"{path}: not a SEN12MS-CR patch name")
    return f"sen12mscr_{m['roi']}_{m['scene']}", f"{m['roi']}_{m['scene']}_p{m['p']}"


def oriolac_triplets(r: Reader) -> Iterator[Sample]:
    """The residual/ triplets: input = VV, VH (dB) + 13 cloudy bands; target = 13 clear bands.
    Each is its own scene: they carry no georeferencing, none repeats another patch of the set,
    and no two overlap (best normalised cross-correlation of their B08 over shifts with at least
    48 x 48 px in common: 0.84, where overlapping patches would give about 1)."""
    # Only these IDs, all below RESERVED_FROM: DATA.md reserves the others for independent
    # evaluation, and Checked.read refuses them too.
    for sample_id in RESIDUAL_IDS:
        x = r.raster(f"{RESIDUAL}/{sample_id}_input.tif")
        y = r.raster(f"{RESIDUAL}/{sample_id}_target.tif")
        arrays = {"s1": s1_db(x.data[:2], f"{sample_id}_input"), "s2_cloudy": x.data[2:],
                  "s2_clear": s2_from_stack(y, f"{sample_id}_target")}
        yield Sample(f"oriolac_residual_{sample_id}", f"oriolac_residual_{sample_id}", ORIOLAC,
                     "triplet", arrays, None, ["not georeferenced; SEN12MS-CR patch"])


def oriolac_cloudfields(r: Reader) -> Iterator[Sample]:
    """imgs/cr high_cp/, low_cp/ (s2/ + s2_cloudy/ twins) and ok/ (twins side by side)."""
    base = "eda/notebooks/imgs/cr"
    for folder in ("high_cp", "low_cp", "ok"):
        files = r.list(f"{base}/{folder}")
        clear = [p for p in files if not _SEN12MSCR.search(p)["cloudy"]]
        for path in clear:
            scene, key = _sen12mscr_names(path)
            twin = [p for p in files if _SEN12MSCR.search(p)["cloudy"]
                    and _sen12mscr_names(p)[1] == key]
            if len(twin) != 1:
                raise CloudfreeError(f"{ORIOLAC}:{path} has {len(twin)} cloudy twins, expected 1")
            cloudy, free = r.raster(twin[0]), r.raster(path)
            arrays = {"s2_cloudy": s2_from_stack(cloudy, twin[0]),
                      "s2_clear": onto(free, cloudy.grid)}
            yield Sample(f"oriolac_{folder}_{key}", scene, ORIOLAC, "cloudfield", arrays,
                         _crs(cloudy), [f"imgs/cr/{folder}"])


def _series_clearest(stacks: dict[str, np.ndarray]) -> str:
    """Date of the clearest image: least cloud by the cloud score, then darkest mean of
    B02-B04 (haze the score misses brightens the visible bands)."""
    def rank(day: str) -> tuple[float, float]:
        s2 = stacks[day]
        return cloud_fraction(s2) or 0.0, float(np.nanmean(s2[1:4]))
    return min(sorted(stacks), key=rank)


def oriolac_series(r: Reader) -> Iterator[Sample]:
    """ts/sample_imgs/ (30 dates of one patch): every date paired with the clearest one."""
    stacks, grid, names = {}, None, {}
    for path in r.list("eda/notebooks/data/ts/sample_imgs"):
        m = _TS.search(path)
        raster = r.raster(path)
        grid = grid or raster.grid
        stacks[m["date"]] = onto(raster, grid)
        names[m["date"]] = (f"sen12mscrts_{m['roi']}_{m['scene']}", _crs(raster), m["p"])
    clearest = _series_clearest(stacks)
    for day in sorted(stacks):
        if day == clearest:
            continue
        scene, crs, patch = names[day]
        arrays = {"s2_cloudy": stacks[day], "s2_clear": stacks[clearest]}
        yield Sample(f"oriolac_ts_p{patch}_{day}", scene, ORIOLAC, "cloudfield", arrays, crs,
                     [f"SEN12MS-CR-TS series; clear partner is {clearest}, the clearest date"])


def oriolac_clear(r: Reader) -> Iterator[Sample]:
    """Extra clear patches: imgs/cr/bad_blur/ (SEN12MS-CR cloud-free 's2' products whose
    cloudy twins were blurred; the patches themselves are real clear L1C) and
    ts/sample_new_cloudfree/. Kept when the cloud score agrees they are clear."""
    for folder in ("eda/notebooks/imgs/cr/bad_blur", "eda/notebooks/data/ts/sample_new_cloudfree"):
        for path in r.list(folder):
            ts = _TS.search(path)
            if ts:
                scene = f"sen12mscrts_{ts['roi']}_{ts['scene']}"
                key = f"tsclear_p{ts['p']}_{ts['date']}"
            else:
                scene, key = _sen12mscr_names(path)
                key = f"bad_blur_{key}"
            raster = r.raster(path)
            s2 = s2_from_stack(raster, path)
            share = cloud_fraction(s2)
            if share is None or share > CLEAR_MAX_CLOUD:
                log.info("%s: skipped, cloud fraction %s", path, share)
                continue
            yield Sample(f"oriolac_{key}", scene, ORIOLAC, "clear", {"s2_clear": s2},
                         _crs(raster), [PurePosixPath(path).parent.name])


def dsen2cr_pairs(r: Reader) -> Iterator[Sample]:
    """dsen2-cr/Data: s1/NAME.tif + s2_cloudFree/NAME.tif (its s2_cloudy files are empty)."""
    for path in r.list("dsen2-cr/Data/s2_cloudFree"):
        name = PurePosixPath(path).name
        clear, s1 = r.raster(path), r.raster(f"dsen2-cr/Data/s1/{name}")
        arrays = {"s1": s1_db(onto(s1, clear.grid), name), "s2_clear": s2_from_stack(clear, name)}
        roi, _, patch = name.removesuffix(".tif").rpartition("_")
        yield Sample(f"dsen2cr_{roi}_p{patch}", f"sen12mscr_{roi}", DSEN2CR, "pair", arrays,
                     _crs(clear), ["SEN12MS-CR spring"])


def _day(name: str) -> date:
    return date.fromisoformat(re.sub(r"(\d{4})(\d\d)(\d\d)", r"\1-\2-\3", _DATE.search(name)[1]))


def _band_files(r: Reader, paths: list[str], grid_band: str) -> tuple[np.ndarray, Raster]:
    """(13, H, W) from one-band files named by band, on the grid of ``grid_band``."""
    rasters = {}
    for path in paths:
        band = canonical_band(PurePosixPath(path).stem.rpartition("_")[2])
        if path.endswith(".tif") and band:
            rasters[band] = r.raster(path)
    ref = rasters[grid_band]
    return s2_from_bands({b: onto(x, ref.grid)[0] for b, x in rasters.items()}, paths[0]), ref


def ssl4eo_pairs(r: Reader) -> Iterator[Sample]:
    """SSL4EO-S12 location 0000200: each S1 GRD product with the L1C (s2c) date closest to it,
    a clear pair or, when that L1C is cloudy, a cloudy_s1 sample. L2A (s2a) is not used."""
    base = "integration_tests/tiffs/SSL4EO-S12"
    by_product: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for kind in ("s1", "s2c"):
        for path in r.list(f"{base}/{kind}"):
            parts = PurePosixPath(path).parts
            by_product[kind][f"{parts[-3]}/{parts[-2]}"].append(path)
    for product in sorted(by_product["s1"]):
        location = product.split("/")[0]
        candidates = [p for p in by_product["s2c"] if p.startswith(location)]
        s2_product = min(candidates, key=lambda p: abs((_day(p) - _day(product)).days))
        s2, ref = _band_files(r, by_product["s2c"][s2_product], "B02")
        vv, vh = (r.raster(f"{base}/s1/{product}/{pol}.tif") for pol in ("VV", "VH"))
        s1 = np.concatenate([onto(vv, ref.grid), onto(vh, ref.grid)])
        gap = (_day(s2_product) - _day(product)).days
        clear = (cloud_fraction(s2) or 0.0) <= CLEAR_MAX_CLOUD
        kind, s2_name = ("pair", "s2_clear") if clear else ("cloudy_s1", "s2_cloudy")
        yield Sample(f"ssl4eo_{location}_{_day(product):%Y%m%d}", f"ssl4eo_{location}", RICO,
                     kind, {"s1": s1_db(s1, product), s2_name: s2}, _crs(ref),
                     [f"S1 {_day(product)}, L1C {_day(s2_product)} ({gap:+d} days)"])


def bigearthnet_pairs(r: Reader) -> Iterator[Sample]:
    """BigEarthNet example patches: S1 with the S2 patch its metadata names. S2 is L2A
    (bottom-of-atmosphere DN, 12 bands: B10 is NaN)."""
    s1_base = "src/bigearthnet_common/BigEarthNet-S1-Example.tar.bz2/BigEarthNet-S1-Example"
    s2_base = "src/bigearthnet_common/BigEarthNet-S2-Example.tar.bz2/BigEarthNet-S2-Example"
    s1_files, s2_files = r.list(s1_base), r.list(s2_base)
    for meta in (p for p in s1_files if p.endswith("_labels_metadata.json")):
        folder = PurePosixPath(meta).parent
        s2_name = r.json(meta)["corresponding_s2_patch"]
        s2, ref = _band_files(r, [p for p in s2_files if f"/{s2_name}/" in p], "B02")
        vv, vh = (r.raster(f"{folder}/{folder.name}_{pol}.tif") for pol in ("VV", "VH"))
        s1 = np.concatenate([onto(vv, ref.grid), onto(vh, ref.grid)])
        tile = folder.name.split("_")[-3]
        yield Sample(f"bigearthnet_{tile}_{'_'.join(folder.name.split('_')[-2:])}",
                     f"bigearthnet_{tile}", BIGEARTHNET, "pair",
                     {"s1": s1_db(s1, folder.name), "s2_clear": s2}, _crs(ref),
                     [f"L2A (not L1C), {s2_name}"])


def shared_samples(r: Reader) -> Iterator[Sample]:
    """../shared/data: the winter triplet, the summer cloudy S1 sample, the Spain pair."""
    sen12 = "sen12mscr/ROIs2017_winter_112_p797_{}.tif"
    s1, cloudy, clear = (r.raster(sen12.format(k)) for k in ("s1", "s2_cloudy", "s2_cloudfree"))
    yield Sample("sen12mscr_ROIs2017_winter_112_p797", "sen12mscr_ROIs2017_winter_112", SHARED,
                 "triplet", {"s1": s1_db(onto(s1, cloudy.grid), "winter s1"),
                             "s2_cloudy": s2_from_stack(cloudy, "winter"),
                             "s2_clear": s2_from_stack(clear, "winter")}, _crs(cloudy))
    summer = "sen12mscr/ROIs1868_summer_19_p30_{}.tif"
    s1, cloudy = r.raster(summer.format("s1")), r.raster(summer.format("s2_cloudy"))
    yield Sample("sen12mscr_ROIs1868_summer_19_p30", "sen12mscr_ROIs1868_summer_19", SHARED,
                 "cloudy_s1", {"s1": s1_db(onto(s1, cloudy.grid), "summer s1"),
                               "s2_cloudy": s2_from_stack(cloudy, "summer")}, _crs(cloudy))
    s1 = r.raster("sen1floods11/Spain_7370579_S1Hand.tif")
    s2 = r.raster("sen1floods11/Spain_7370579_S2Hand.tif")
    yield Sample("sen1floods11_Spain_7370579", "sen1floods11_Spain_7370579", SHARED, "pair",
                 {"s1": s1_db(onto(s1, s2.grid), "Spain S1"),
                  "s2_clear": s2_from_stack(s2, "Spain S2")}, _crs(s2),
                 ["S1 2019-09-17, S2 2019-09-18; S2 nodata 0 -> NaN"])


def _unique_clear(samples: Iterator[Sample]) -> Iterator[Sample]:
    """Drops a clear sample whose image repeats an earlier S2 array byte for byte (the same
    file copied into two folders)."""
    seen: set[bytes] = set()
    for sample in samples:
        digests = {k: hashlib.sha256(a.tobytes()).digest() for k, a in sample.arrays.items()
                   if k != "s1"}
        if sample.kind == "clear" and digests["s2_clear"] in seen:
            log.info("%s: skipped, the same image as an earlier sample", sample.id)
            continue
        seen.update(digests.values())
        yield sample


RECIPES = (
    (ORIOLAC, (oriolac_triplets, oriolac_cloudfields, oriolac_series, oriolac_clear)),
    (DSEN2CR, (dsen2cr_pairs,)),
    (RICO, (ssl4eo_pairs,)),
    (BIGEARTHNET, (bigearthnet_pairs,)),
    (SHARED, (shared_samples,)),
)


def samples(sources: dict[str, Source], checked: Checked) -> Iterator[Sample]:
    """Every sample of the set, in a fixed order, finished."""
    def raw() -> Iterator[Sample]:
        for name, recipes in RECIPES:
            reader = Reader(sources[name], checked)
            for recipe in recipes:
                yield from recipe(reader)
    for sample in _unique_clear(raw()):
        yield sample.finish()


class Stats:
    """Value ranges per source (every 7th value of each array) for the sanity report."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)

    def add(self, sample: Sample) -> None:
        for name, array in sample.arrays.items():
            if name == "s1":
                for pol, band in zip(("VV", "VH"), array, strict=True):
                    self.values[sample.source, f"s1 {pol} dB"].append(band.ravel()[::7])
            else:
                self.values[sample.source, f"{name} DN"].append(array.ravel()[::7])

    def lines(self) -> list[str]:
        out = [f"{'source':32} {'array':14} {'p1':>8} {'median':>8} {'p99':>8}"]
        for (source, name), chunks in sorted(self.values.items()):
            v = np.concatenate(chunks)
            p1, p50, p99 = np.percentile(v[np.isfinite(v)], (1, 50, 99))
            out.append(f"{source:32} {name:14} {p1:8.1f} {p50:8.1f} {p99:8.1f}")
        return out


def manifest_entry(record: dict, sample: Sample) -> dict:
    keys = ("id", "scene", "source", "kind", "split")
    return {**{k: record[k] for k in keys},
            "shape": {k: list(a.shape) for k, a in sample.arrays.items()}}


def write_samples(folder: Path, items: Iterator[Sample], quiet: bool) -> tuple[list, list, Stats]:
    """Writes OUT/ID.npz and OUT/index.json; returns records, manifest entries and stats."""
    records, entries, stats = [], [], Stats()
    for sample in progress(items, desc="samples", quiet=quiet, unit="sample"):
        record = sample.record()
        np.savez_compressed(folder / f"{sample.id}.npz", **sample.arrays)
        records.append(record)
        entries.append(manifest_entry(record, sample))
        stats.add(sample)
    ids = Counter(r["id"] for r in records)
    if (repeated := [i for i, n in ids.items() if n > 1]):
        raise CloudfreeError(f"sample ids repeat: {repeated}")
    (folder / "index.json").write_text(json.dumps(records, indent=1) + "\n")
    return records, entries, stats


def verify_folder(folder: Path, entries: list[dict]) -> None:
    """Reads the written set back: every file, array names, dtype and shapes."""
    records = json.loads((folder / "index.json").read_text())
    for record, entry in zip(records, entries, strict=True):
        with np.load(folder / f"{record['id']}.npz") as npz:
            shapes = {k: list(npz[k].shape) for k in npz.files}
            dtypes = {str(npz[k].dtype) for k in npz.files}
        expected = {k: [2 if k == "s1" else len(BANDS), record["height"], record["width"]]
                    for k in KIND_ARRAYS[record["kind"]]}
        if shapes != expected or shapes != entry["shape"] or dtypes != {"float32"}:
            raise CloudfreeError(f"{record['id']}.npz reads back as {shapes} {dtypes}, "
                                 f"expected {expected} float32")


def compare_with_manifest(manifest: dict, entries: list[dict], checked: Checked) -> None:
    """The build must read every listed file and give exactly the listed samples."""
    if (unread := checked.unread()):
        raise CloudfreeError(f"{len(unread)} manifest files were not read (first: "
                             f"{':'.join(unread[0])}); the recipes changed: --write-manifest")
    listed = {e["id"]: e for e in manifest["samples"]}
    built = {e["id"]: e for e in entries}
    for sample_id in sorted(set(listed) | set(built)):
        if listed.get(sample_id) != built.get(sample_id):
            raise CloudfreeError(f"sample {sample_id}: built {built.get(sample_id)}, the manifest "
                                 f"lists {listed.get(sample_id)}")


def load_manifest(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"manifest {path} does not exist; pass --manifest or --write-manifest")
    return json.loads(path.read_text())


def write_manifest(path: Path, sources: dict[str, Source], checked: Checked,
                   entries: list[dict]) -> None:
    files = [{"source": s, "path": p, "sha256": d} for (s, p), d in sorted(checked.used.items())]
    manifest = {"about": "Source files and samples of scripts/build_training_set.py.",
                "revisions": {name: source.revision() for name, source in sources.items()},
                "files": files, "samples": entries}
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(path)


def summary(records: list[dict], stats: Stats, seconds: float) -> str:
    counts = Counter((r["kind"], r["split"]) for r in records)
    lines = [f"{'kind':12} {'train':>6} {'val':>6}"]
    for kind in KIND_ARRAYS:
        lines.append(f"{kind:12} {counts[kind, 'train']:6d} {counts[kind, 'val']:6d}")
    lines.append(f"{'total':12} {sum(v for (_, s), v in counts.items() if s == 'train'):6d} "
                 f"{sum(v for (_, s), v in counts.items() if s == 'val'):6d}")
    scenes = {r["scene"] for r in records}
    lines.append(f"{len(records)} samples, {len(scenes)} scenes, {seconds:.0f} s")
    return "\n".join(lines + [""] + stats.lines())


def build(args: argparse.Namespace) -> str:
    """Builds the set into ``args.output`` (through a temporary folder); returns the summary."""
    start = time.perf_counter()
    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"{out} exists and is not empty; pass --overwrite to replace it")
    manifest = {} if args.write_manifest else load_manifest(Path(args.manifest))
    expected = {(f["source"], f["path"]): f["sha256"] for f in manifest.get("files", [])}
    checked = Checked(expected, record=args.write_manifest)
    sources = {name: open_source(name, root) for name, root in (
        (ORIOLAC, args.oriolac), (DSEN2CR, args.dsen2cr), (RICO, args.rico),
        (BIGEARTHNET, args.bigearthnet), (SHARED, args.shared))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        records, entries, stats = write_samples(tmp, samples(sources, checked), args.quiet)
        verify_folder(tmp, entries)
        if args.write_manifest:
            write_manifest(Path(args.manifest), sources, checked, entries)
        else:
            compare_with_manifest(manifest, entries, checked)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary(records, stats, time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--oriolac", required=True, help="clone or bare git dir of "
                        "github:Oriolac/cloud-removal")
    parser.add_argument("--dsen2cr", required=True,
                        help="clone or bare git dir of github:CodyKurpanek/dSen2CR_DSP")
    parser.add_argument("--rico", required=True, help="clone or bare git dir of "
                        "github:kai-tub/rico-hdl")
    parser.add_argument("--bigearthnet", required=True,
                        help="the sdist bigearthnet-common-2.8.0.tar.gz")
    parser.add_argument("--shared", required=True, help="the project's ../shared/data")
    parser.add_argument("-o", "--output", required=True, help="folder to build the set into")
    parser.add_argument("--manifest", default=str(MANIFEST), help="default: %(default)s")
    parser.add_argument("--write-manifest", action="store_true",
                        help="record the sources' checksums and samples instead of checking them")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="build_training_set: %(message)s")
    try:
        print(build(args))
    except CloudfreeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, RasterioError, json.JSONDecodeError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
