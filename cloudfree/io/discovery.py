"""Find the scenes of a batch: scene folders matched by name patterns, or S1/S2 files paired.

A Sentinel-2 input is a raster, a ``.SAFE`` folder (L1C or L2A), a folder of per-band files
(every raster in it named by one band, e.g. ``B02.tif``) or a STAC item (``.json``). Two layouts
are understood:

* a folder of scene folders, each holding one Sentinel-2 input (a raster matching a
  case-insensitive glob pattern, or a product of the other forms) and one Sentinel-1 file found
  by pattern; a file matching both patterns is assigned by its content (2 bands: S1, 12-13
  bands or named bands: S2);
* a flat folder of S1 and S2 inputs, classified by content and paired by footprint overlap
  (bounds transformed to EPSG:4326) and then by the nearest acquisition date (from the name,
  e.g. ``_20190918T...``, from date tags, from the product metadata or the STAC item).

The band files a STAC item points at are part of that item, never scenes of their own.

Nothing is guessed silently: files that cannot be paired, or could pair in more than one way,
come back as :class:`Problem` entries for the report.
"""

from __future__ import annotations

import fnmatch
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import rasterio
import rasterio.errors
from rasterio.warp import transform_bounds
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import Url, check_input, real
from cloudfree.io.rasters import check_map_crs, open_raster
from cloudfree.io.s2_files import (
    METADATA_FILES,
    SCL,
    band_of_file,
    band_of_name,
    stac_files,
    stac_time,
)

DEFAULT_S2_PATTERN = "*s2*.tif"
DEFAULT_S1_PATTERN = "*s1*.tif"
#: Raster files considered in a flat folder.
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: The GeoTIFF tag every cloudfree output carries (``provenance.py``): its folders are no scenes.
OUTPUT_TAG = "CLOUDFREE_VERSION"
#: Least fraction of an S2 footprint an S1 footprint must cover to be its partner.
MIN_COVERAGE = 0.5
#: Coverages closer than this count as equal (the date decides).
COVERAGE_TOLERANCE = 0.01
#: What to do when S1 files tie for an S2 (flat folders have no option that picks).
TIE_ADVICE = "keep one of them in the folder, or put each pair in a scene folder of its own"

_DATE_RE = re.compile(
    r"(?<!\d)((?:19|20)\d\d)[-_:]?(\d\d)[-_:]?(\d\d)(?:[T ](\d\d):?(\d\d):?(\d\d))?(?!\d)")
_DATE_TAG_RE = re.compile(r"ACQUI|SENSING|START|DATE|TIME", re.IGNORECASE)
#: Elements of an L1C product's MTD_MSIL1C.xml that hold its sensing start, preferred first.
SAFE_TIME_ELEMENTS = ("PRODUCT_START_TIME", "DATATAKE_SENSING_START")


@dataclass(frozen=True)
class Scene:
    """One unit of work: an S2 input, its S1 partner (None when the command needs none) and
    the mask given for it (None: its clouds are found)."""

    name: str
    s2: Path
    s1: Path | None
    mask: Path | None = None


@dataclass(frozen=True)
class Problem:
    """A file or scene folder that is not run; status is 'failed', 'unpaired' or 'ignored'."""

    name: str
    status: str
    error: str


@dataclass(frozen=True)
class Discovery:
    """The scenes to run and the problems to report."""

    scenes: list[Scene]
    problems: list[Problem]


@dataclass(frozen=True)
class Raster:
    """What pairing needs to know about one file: its role, footprint and date."""

    path: Path
    role: str  # "s2", "s1" or "other"
    footprint: BaseGeometry | None  # lon/lat box
    acquired: date | None


def discover(
    root: Path | str,
    *,
    s2_pattern: str = DEFAULT_S2_PATTERN,
    s1_pattern: str = DEFAULT_S1_PATTERN,
    need_s1: bool = True,
    use_s1: bool = True,
    exclude: Path | None = None,
    mask_pattern: str | None = None,
) -> Discovery:
    """Scenes under ``root``: scene folders if it has any (``.SAFE`` aside), else paired files.

    ``need_s1``: a scene without an S1 fails; else it runs without one. ``use_s1``: look for
    the S1 of a scene folder at all (not for commands that need none). ``exclude`` is a folder
    to leave out, e.g. the output folder placed inside ``root``. An ``s2_pattern`` that finds
    no S2 in any scene folder is a ``UsageError`` (the pattern or the folder is wrong), not a
    failed scene per folder; so is an ``s1_pattern`` that finds none where one is needed.
    ``mask_pattern``: each scene folder's file it matches is the
    scene's mask (a folder with none or several fails); scene folders only.
    """
    root = check_input(root, "scene folder", folder=True)
    skip = real(exclude) if exclude is not None else None
    entries = _entries(root)
    folders = [p for p in entries if p.is_dir() and not _is_product(p) and real(p) != skip]
    outputs = [p for p in folders if _holds_outputs(p)]
    folders = [p for p in folders if p not in outputs]
    earlier = [Problem(p.name, "ignored", "holds only cloudfree outputs (an earlier run's output "
                                          "folder)") for p in outputs]
    if mask_pattern is not None and not folders:
        raise UsageError(f"mask_pattern={mask_pattern!r} takes each scene's mask from its scene "
                         f"folder, and {root} holds none: put each scene's files (S2, S1, mask) "
                         "in a folder of its own", "mask_pattern")
    if folders:
        candidates = {f: _candidates(f, s2_pattern, s1_pattern, mask_pattern) for f in folders}
        if not any(s2 for s2, _, _ in candidates.values()):
            raise UsageError(f"s2_pattern={s2_pattern!r} matches no S2 file in the {len(folders)} "
                             f"scene folder(s) of {root}: set it to a glob their S2 files' names "
                             "match (case-insensitive), or give the folder that holds the "
                             "scenes", "s2_pattern")
        if need_s1 and not any(s1 for _, s1, _ in candidates.values()):
            raise UsageError(f"s1_pattern={s1_pattern!r} matches no S1 file in the {len(folders)} "
                             f"scene folder(s) of {root}, and the model needs one: set it to a "
                             "glob their S1 files' names match (case-insensitive), or give a "
                             "model that runs without S1", "s1_pattern")
        found = [_scene_folder(f.name, *candidates[f], s2_pattern, s1_pattern, need_s1, use_s1,
                               mask_pattern) for f in folders]
        loose = [p for p in entries if _is_raster(p) or _is_stac_item(p)]
        return Discovery(
            scenes=[x for x in found if isinstance(x, Scene)],
            problems=[x for x in found if isinstance(x, Problem)] + earlier
            + [Problem(p.name, "ignored", "file beside scene folders") for p in loose],
        )
    paired = pair_files([p for p in entries if _is_product(p) or _is_raster(p)], need_s1)
    return Discovery(paired.scenes, paired.problems + earlier)


def _entries(folder: Path) -> list[Path]:
    """The visible entries of ``folder``, sorted, less the files (and folders of them) that
    its STAC items point at: those are part of their item."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    taken: set[Path] = set()
    for item in filter(_is_stac_item, entries):
        try:
            taken |= {real(file) for file, _ in stac_files(item).files.values()}
        except CloudfreeError:  # not readable: the item fails on its own, its files are its
            taken |= _local_hrefs(item)

    def part_of_an_item(path: Path) -> bool:
        if path.is_dir():
            rasters = [p for p in path.iterdir() if _is_raster(p)]
            return bool(rasters) and all(real(p) in taken for p in rasters)
        return real(path) in taken

    return [p for p in entries if not part_of_an_item(p)] if taken else entries


def _local_hrefs(item: Path) -> set[Path]:
    """The local files an item's assets point at, read from its JSON as it is (for an item
    the STAC reader refuses: its files are still its own, not scenes)."""
    try:
        assets = json.loads(item.read_text()).get("assets")
    except (OSError, ValueError):
        return set()
    hrefs = [a.get("href") for a in assets.values() if isinstance(a, dict)] \
        if isinstance(assets, dict) else []
    return {real(item.parent / h) for h in hrefs
            if isinstance(h, str) and h and "://" not in h}


def _holds_outputs(folder: Path) -> bool:
    """Whether ``folder`` has rasters and cloudfree wrote each (its tag says so)."""
    rasters = [p for p in folder.iterdir() if _is_raster(p)]
    return bool(rasters) and all(_made_here(p) for p in rasters)


def _made_here(path: Path) -> bool:
    try:
        with rasterio.open(path) as src:
            return OUTPUT_TAG in src.tags()
    except rasterio.errors.RasterioError:
        return False


def _is_safe(path: Path) -> bool:
    return path.is_dir() and path.suffix.upper() == ".SAFE"


def _is_band_folder(path: Path) -> bool:
    """A folder of per-band files: every raster in it names one band (or the SCL), and at
    least one a spectral band."""
    if not path.is_dir() or _is_safe(path):
        return False
    bands = [band_of_file(p) for p in path.iterdir() if _is_raster(p)]
    return bool(bands) and all(bands) and any(b != SCL for b in bands)


def _is_stac_item(path: Path) -> bool:
    """A JSON file holding a GeoJSON Feature with assets (a STAC item)."""
    if not (path.is_file() and path.suffix.lower() == ".json" and not path.name.startswith(".")):
        return False
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and found.get("type") == "Feature" and "assets" in found


def _is_product(path: Path) -> bool:
    """A Sentinel-2 input other than a single raster: .SAFE, per-band folder, STAC item."""
    return _is_safe(path) or _is_band_folder(path) or _is_stac_item(path)


def _is_raster(path: Path) -> bool:
    hidden = path.name.startswith(".")  # e.g. the temporary files of an unfinished output
    return path.is_file() and path.suffix.lower() in RASTER_SUFFIXES and not hidden


def _matches(path: Path, pattern: str) -> bool:
    return fnmatch.fnmatch(path.name.lower(), pattern.lower())


def _candidates(folder: Path, s2_pattern: str, s1_pattern: str, mask_pattern: str | None
                ) -> tuple[list[Path], list[Path], list[Path]]:
    """The S2, the S1 and the mask inputs that one scene folder holds by the patterns (a file
    that matches the S2's and the S1's goes by its content; one that matches the mask's is a
    mask)."""
    entries = _entries(folder)
    masks = [] if mask_pattern is None else \
        [p for p in entries if p.is_file() and _matches(p, mask_pattern)]
    entries = [p for p in entries if p not in masks]  # e.g. "x_s2_mask.tif" matches *s2*
    s2 = [p for p in entries if _is_product(p) or (p.is_file() and _matches(p, s2_pattern))]
    s1 = [p for p in entries if p.is_file() and _matches(p, s1_pattern)]
    for both in set(s2) & set(s1):  # e.g. "ROIs1868_..._s2.tif" matches *s1* too
        role = describe_raster(both).role
        (s1 if role == "s2" else s2).remove(both)
    return s2, s1, masks


def _scene_folder(name: str, s2: list[Path], s1: list[Path], masks: list[Path],
                  s2_pattern: str, s1_pattern: str, need_s1: bool, use_s1: bool,
                  mask_pattern: str | None) -> Scene | Problem:
    """The scene of folder ``name`` from its ``_candidates``, or why there is no single
    choice."""
    if len(s2) != 1:
        return Problem(name, "failed", _choice_error("S2", s2, s2_pattern, "--s2-pattern"))
    if mask_pattern is not None and len(masks) != 1:
        return Problem(name, "failed", _choice_error("mask", masks, mask_pattern,
                                                     "--mask-pattern"))
    mask = masks[0] if masks else None
    if not use_s1 or (not s1 and not need_s1):
        return Scene(name, s2[0], None, mask)
    if len(s1) != 1:
        return Problem(name, "failed", _choice_error("S1", s1, s1_pattern, "--s1-pattern"))
    return Scene(name, s2[0], s1[0], mask)


def _choice_error(what: str, found: list[Path], pattern: str, option: str) -> str:
    if not found:
        return f"no {what} file matching {pattern!r} (set {option})"
    names = ", ".join(p.name for p in found)
    return f"ambiguous: {len(found)} {what} files match {pattern!r} ({names}); narrow {option}"


def describe_raster(path: Path) -> Raster:
    """Role (by band count and names), lon/lat footprint and acquisition date of a raster or
    a Sentinel-2 product (.SAFE, per-band folder, STAC item)."""
    try:
        if _is_safe(path):
            found = safe_time(path)
            return Raster(path, "s2", _files_footprint(_safe_bands(path)), found and found.date())
        if _is_band_folder(path):
            files = sorted(p for p in path.iterdir() if _is_raster(p))
            found = next(filter(None, map(date_from_text, [path.name, *(p.name for p in files)])),
                         None)
            return Raster(path, "s2", _files_footprint(files), found)
        if _is_stac_item(path):
            return _stac_raster(path)
        with rasterio.open(path) as ds:
            names = [d.upper() for d in ds.descriptions if d]
            spectral = [b for b in map(band_of_name, names) if b and b != SCL]
            if {"VV", "VH"} & set(names):
                role = "s1"
            elif spectral:
                role = "s2"
            elif ds.count == 2:
                role = "s1"
            elif ds.count in (12, 13):
                role = "s2"
            else:
                role = "other"
            footprint = _footprint(ds) if ds.crs else None
            acquired = date_from_text(path.name) or date_from_tags(ds.tags())
    except (rasterio.errors.RasterioError, OSError, ValueError) as exc:
        raise CloudfreeError(f"{path.name} is not a raster GDAL can read ({exc})") from None
    return Raster(path, role, footprint, acquired)


def _footprint(ds) -> BaseGeometry:
    """The lon/lat box of a raster (pairing compares them), one line where it has none."""
    check_map_crs(ds.crs, ds.name, "input")
    return box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))


def _safe_bands(folder: Path) -> list[Path]:
    """The band files of an L1C or L2A .SAFE folder."""
    return sorted([*folder.glob("GRANULE/*/IMG_DATA/*.jp2"),
                   *folder.glob("GRANULE/*/IMG_DATA/R*m/*.jp2")])


def _files_footprint(files: list[Path | Url]) -> BaseGeometry | None:
    """Footprint of a product from its first band file (None without one)."""
    if not files:
        return None
    with open_raster(files[0], "band file") as ds:
        return _footprint(ds) if ds.crs else None


def _stac_raster(path: Path) -> Raster:
    """A STAC item as a Sentinel-2 input: its bbox (lon/lat, as STAC says) and datetime."""
    bbox = json.loads(path.read_text()).get("bbox")
    if not bbox or len(bbox) not in (4, 6):  # no bbox: the footprint of its first band
        files = sorted({file for file, _ in stac_files(path).files.values()}, key=str)
        footprint = _files_footprint(files)
    else:
        footprint = box(*(bbox[:2] + bbox[3:5] if len(bbox) == 6 else bbox))
    found = stac_time(path)
    return Raster(path, "s2", footprint, found and found.date())


def time_from_text(text: str) -> datetime | None:
    """The first valid YYYYMMDD (or YYYY-MM-DD, YYYY:MM:DD) date in ``text``, in UTC, with the
    time of day when one follows (``20190918T105021``, ``2019-09-18T10:50:21``), else 00:00."""
    for match in _DATE_RE.finditer(text):
        try:
            return datetime(*(int(g or 0) for g in match.groups()), tzinfo=UTC)
        except ValueError:
            continue
    return None


def time_from_tags(tags: dict[str, str]) -> datetime | None:
    """An acquisition time from tags; TIFFTAG_DATETIME (often the write time) only last."""
    keys = sorted((k for k in tags if _DATE_TAG_RE.search(k)),
                  key=lambda k: k == "TIFFTAG_DATETIME")
    return next(filter(None, (time_from_text(tags[key]) for key in keys)), None)


def safe_time(folder: Path) -> datetime | None:
    """The sensing time of a ``.SAFE`` folder: from its name, else its ``MTD_MSIL1C.xml``
    (``PRODUCT_START_TIME``); None when neither has one (or the metadata cannot be read)."""
    found = time_from_text(folder.name)
    if found is not None:
        return found
    metadata = next((folder / name for name in METADATA_FILES if (folder / name).exists()),
                    folder / "MTD_MSIL1C.xml")
    try:
        root = ET.parse(metadata).getroot()
    except (OSError, ET.ParseError):
        return None
    texts = {e.tag.rsplit("}", 1)[-1]: e.text or "" for e in root.iter()}
    return next(filter(None, (time_from_text(texts.get(name, ""))
                              for name in SAFE_TIME_ELEMENTS)), None)


def date_from_text(text: str) -> date | None:
    """The date of :func:`time_from_text`."""
    found = time_from_text(text)
    return found.date() if found else None


def date_from_tags(tags: dict[str, str]) -> date | None:
    """The date of :func:`time_from_tags`."""
    found = time_from_tags(tags)
    return found.date() if found else None


def pair_files(paths: list[Path], need_s1: bool = True) -> Discovery:
    """Pair each S2 with the S1 covering most of it, then nearest in date; report the rest."""
    problems: list[Problem] = []
    rasters: list[Raster] = []
    for path in paths:
        try:
            rasters.append(describe_raster(path))
        except CloudfreeError as exc:
            problems.append(Problem(path.stem, "failed", str(exc)))
    s2s = [r for r in rasters if r.role == "s2"]
    s1s = [r for r in rasters if r.role == "s1"]
    problems += [Problem(r.path.name, "ignored", "neither S1 (2 bands, or VV/VH) nor S2 (12-13 "
                                                 "bands, or bands named B02, B03...)")
                 for r in rasters if r.role == "other"]
    scenes: list[Scene] = []
    used: set[Path] = set()
    # why an S1 that ties with others for an S2 is not used, by its path
    tied: dict[Path, str] = {}
    for s2 in s2s:
        name = s2.path.stem
        partner, error, ties = _best_partner(s2, s1s)
        if partner is not None:
            used.add(partner.path)
        if ties:
            tied |= dict.fromkeys((r.path for r in ties),
                                  f"{error}, so none of them is used: {TIE_ADVICE}")
            error = f"{error}: {TIE_ADVICE}"
        if partner is None and need_s1:
            problems.append(Problem(name, "failed", error))
        else:
            scenes.append(Scene(name, s2.path, partner.path if partner else None))
    problems += [Problem(r.path.name, "unpaired",
                         tied.get(r.path, "no Sentinel-2 file takes it as partner"))
                 for r in s1s if r.path not in used]
    return Discovery(scenes, problems)


def _coverage(s2: Raster, s1: Raster) -> float:
    if s2.footprint is None or s1.footprint is None or s2.footprint.area == 0:
        return 0.0
    return s2.footprint.intersection(s1.footprint).area / s2.footprint.area


def _days(s2: Raster, s1: Raster) -> float:
    """Days between acquisitions; infinite when either date is unknown."""
    if s2.acquired is None or s1.acquired is None:
        return float("inf")
    return abs((s2.acquired - s1.acquired).days)


def _best_partner(s2: Raster, s1s: list[Raster]) -> tuple[Raster | None, str, list[Raster]]:
    """The overlapping S1 nearest in date (then covering most), or None and the reason, and
    the S1 that tie for it (none unless ambiguous)."""
    ranked = sorted(
        ((_days(s2, s1), -round(_coverage(s2, s1) / COVERAGE_TOLERANCE), s1) for s1 in s1s
         if _coverage(s2, s1) >= MIN_COVERAGE),
        key=lambda c: c[:2],
    )
    if not ranked:
        return (None, f"unpaired: no Sentinel-1 file covers {MIN_COVERAGE:.0%} of "
                      f"{s2.path.name}", [])
    best = [c[2] for c in ranked if c[:2] == ranked[0][:2]]
    if len(best) > 1:
        names = ", ".join(r.path.name for r in best)
        return None, (f"ambiguous: {names} overlap {s2.path.name} equally and dates do not decide"
                      " which is its Sentinel-1"), best
    return best[0], "", []
