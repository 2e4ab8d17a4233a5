"""Where the bands of a Sentinel-2 product are, and what its metadata say of level and offset.

Three layouts hold one file per band (or a few bands per file): ``.SAFE`` folders (L1C:
``GRANULE/*/IMG_DATA/*_B02.jp2``; L2A: ``IMG_DATA/R10m/*_B02_10m.jp2``, R20m, R60m and the scene
classification ``*_SCL_20m.jp2``), plain folders of per-band files (``B02.tif``,
``T31TCJ_20220101_B02_10m.jp2``, ``blue.tif``) and STAC items whose assets are local files (keys
``B02``, ``blue``, ``scl`` and so on, or ``eo:bands``). Nothing is fetched from the network.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import Url, as_url
from cloudfree.io.remote import fetch_json, resolve

#: STAC asset keys (Earth Search's, the ``eo`` common names that name one band) -> band.
ASSET_KEYS: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}
#: The scene classification layer of L2A products (Sen2Cor), read beside the bands.
SCL = "SCL"
#: Processing levels: top-of-atmosphere (L1C) and bottom-of-atmosphere (L2A) reflectance.
LEVELS = ("L1C", "L2A")
#: Product metadata files of a .SAFE folder and the level each names.
METADATA_FILES = {"MTD_MSIL1C.xml": "L1C", "MTD_MSIL2A.xml": "L2A"}
#: Radiometric offset of baseline 04.00+ products, in DN.
BASELINE_OFFSET = 1000
#: Raster files taken from a folder of per-band files.
BAND_FILE_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: STAC asset roles that duplicate bands for display, never read.
DISPLAY_ROLES = {"visual", "overview", "thumbnail"}

_BAND_RE = re.compile(r"^B?0?(1[0-2]|[1-9]|8A)$", re.IGNORECASE)
_PIECES = re.compile(r"[_.\-]")
_METRES_RE = re.compile(r"^(\d+)m$", re.IGNORECASE)


def canonical_band(name: str | None) -> str | None:
    """'B1', 'b01', 'B8a', '8A' -> 'B01', 'B01', 'B8A', 'B8A'; anything else -> None."""
    if not name:
        return None
    match = _BAND_RE.match(name.strip())
    if not match:
        return None
    number = match.group(1).upper()
    return "B8A" if number == "8A" else f"B{int(number):02d}"


def band_of_name(name: str | None) -> str | None:
    """The band (or ``SCL``) an asset key, description or file-name piece names: ``B02``,
    ``b8a``, ``blue``, ``scl``; None otherwise (a bare number is not taken: it may be anything)."""
    key = (name or "").strip().lower()
    if key == "scl":
        return SCL
    if key in ASSET_KEYS:
        return ASSET_KEYS[key]
    return canonical_band(key) if key.startswith("b") else None


def parse_level(value: str | None) -> str | None:
    """The --level option: 'auto' (or None) -> None, else 'L1C' or 'L2A'."""
    if value in (None, "auto"):
        return None
    if str(value).upper() in LEVELS:
        return str(value).upper()
    raise UsageError(f"level={value} must be auto, L1C or L2A", "level")


@dataclass
class BandFiles:
    """The files of one product: band (or SCL) -> (file, band index in it), in product order,
    and what its metadata say (None: they say nothing)."""

    files: dict[str, tuple[Path | Url, int]]
    level: str | None = None
    offset: int | None = None
    scaling: tuple[float, float | None] | None = None  # a STAC item's raster:bands scale, offset
    notes: list[str] = field(default_factory=list)  # what was assumed, for the log
    offset_error: CloudfreeError | None = None  # why the metadata give no offset: raised
    # only when the offset is needed (no offset given)


def _shown(value: object, width: int = 40) -> str:
    """A metadata value as an error shows it: as JSON writes it (else its repr), cut to
    ``width`` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def number_or_none(value: object) -> float | None:
    """A finite number from a metadata value (a number or the text of one); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def offset_number(value: object, where: str) -> float:
    """A number from the metadata that give the radiometric offset (``where``: the file and
    field), else a one-line error saying to give the offset instead."""
    number = number_or_none(value)
    if number is None:
        raise CloudfreeError(f"{where} is {_shown(value)}, not a number; correct it, or give "
                             "the radiometric offset: offset=0 (processing baseline before "
                             "04.00) or offset=1000 (04.00 and later)", "offset")
    return number


def _band_and_metres(path: Path) -> tuple[str | None, int]:
    """The band a file name names (one piece of it) and its resolution piece (``_20m``), else
    0; the band None when no piece, or more than one, names a band."""
    pieces = _PIECES.split(path.stem)
    named = {b for b in map(band_of_name, pieces) if b}
    metres = [int(m.group(1)) for m in map(_METRES_RE.match, pieces) if m]
    return (named.pop() if len(named) == 1 else None), (metres[-1] if metres else 0)


def band_of_file(path: Path) -> str | None:
    """The band (or ``SCL``) a per-band file's name names; None when none, or several, do."""
    return _band_and_metres(path)[0]


def _finest(paths: list[Path], where: Path) -> dict[str, tuple[Path, int]]:
    """Band -> (file, 1), the finest file of each band (``_10m`` before ``_20m``); one line
    naming both files when two hold one band at one resolution, or one of them does not say
    its resolution (``B01.tif`` and ``T31TCJ_B01.tif``, ``B02.tif`` and ``blue.tif``)."""
    best: dict[str, tuple[int, Path]] = {}
    named: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(paths):
        band, metres = _band_and_metres(path)
        if not band:
            continue
        for other_metres, other in named.get(band, []):
            if metres == other_metres or not (metres and other_metres):
                raise CloudfreeError(f"{where}: {other.relative_to(where)} and "
                                     f"{path.relative_to(where)} both hold band {band}; keep "
                                     "one of them, move the other out")
        named.setdefault(band, []).append((metres, path))
        if band not in best or metres < best[band][0]:
            best[band] = (metres, path)
    return {band: (path, 1) for band, (_, path) in best.items()}


def safe_files(folder: Path) -> BandFiles:
    """The bands of an L1C or L2A .SAFE folder, its level and offset from its metadata."""
    if not folder.exists():
        raise CloudfreeError(f"Sentinel-2 input {folder} does not exist")
    files = _finest(list(folder.glob("GRANULE/*/IMG_DATA/*.jp2"))
                    + list(folder.glob("GRANULE/*/IMG_DATA/R*m/*.jp2")), folder)
    if not any(b != SCL for b in files):
        raise CloudfreeError(f"{folder}: no GRANULE/*/IMG_DATA band files (*_B02.jp2 or "
                             "R10m/*_B02_10m.jp2); is it a Sentinel-2 L1C or L2A .SAFE folder?")
    found = BandFiles(files)
    for name, level in METADATA_FILES.items():
        if (folder / name).exists():
            found.level = level
            try:
                found.offset = read_safe_offset(folder / name)
            except CloudfreeError as exc:  # an error only where the offset is not given
                found.offset_error = exc
            else:
                found.notes.append(f"radiometric offset {found.offset} DN from {name}")
            break
    else:
        found.level = "L2A" if "MSIL2A" in folder.name.upper() else \
            "L1C" if "MSIL1C" in folder.name.upper() else None
        found.notes.append("no MTD_MSIL1C.xml or MTD_MSIL2A.xml: assuming no radiometric "
                           "offset (use --offset 1000 for baseline 04.00+ products)")
    return found


def folder_files(folder: Path) -> BandFiles:
    """The bands of a folder of per-band rasters, one band named in each file's name."""
    paths = [p for p in folder.iterdir() if not p.name.startswith(".")
             and p.suffix.lower() in BAND_FILE_SUFFIXES and (p.is_file() or p.is_symlink())]
    for path in paths:
        if path.is_symlink() and not path.exists() and band_of_file(path):
            raise CloudfreeError(f"{path}: a symbolic link to {os.readlink(path)}, which does "
                                 "not exist; correct the link or remove it")
    files = _finest([p for p in paths if p.is_file()], folder)
    if not any(b != SCL for b in files):
        raise CloudfreeError(
            f"{folder}: no band files (names such as B02.tif, T31TCJ_20220101T105021_B02_10m.jp2"
            " or blue.tif); give a GeoTIFF, a .SAFE folder, a STAC item or a folder of "
            "per-band files")
    level = "L2A" if SCL in files else None
    return BandFiles(files, level)


def _asset_file(href: str, item_path: Path | Url) -> Path | Url:
    """An asset's file: an http(s) URL, or a path (a local item's) or URL (a remote item's)
    taken relative to the item; other schemes refused."""
    if not isinstance(href, str) or not href:
        raise CloudfreeError(f"{item_path}: an asset's href is {_shown(href)}, not the path of "
                             "a file; correct the item")
    url, item_url = as_url(href), as_url(item_path)
    if url is not None:
        return url
    parsed = urlparse(href)
    if item_url is not None and parsed.scheme == "":
        return resolve(href, item_url)
    windows_drive = len(parsed.scheme) == 1  # "C:"
    if item_url is None and (parsed.scheme in ("", "file") or windows_drive):
        # hrefs are URIs: "B04%20v2.tif" is the file "B04 v2.tif" (a file of the literal name,
        # as a hand-written item may mean, is taken when only that exists)
        decoded = Path(unquote(parsed.path if parsed.scheme == "file" else href))
        literal = Path(parsed.path if parsed.scheme == "file" else href)
        path = next((p for p in (decoded, literal)
                     if os.path.lexists(item_path.parent / p)), decoded)
        return path if path.is_absolute() else (item_path.parent / path)
    raise CloudfreeError(f"{item_path}: asset {href} is neither an http(s) URL nor a file "
                         f"{'relative to the item' if item_url else 'on this machine'}; give "
                         "the item with http(s) or local hrefs (for s3:// and gs://, their "
                         "https form)")


def _field_list(item_path: Path | Url, key: str, asset, name: str) -> list[dict]:
    """An asset's ``eo:bands`` or ``raster:bands``: a list of objects (empty when absent), else
    a one-line error naming the item, the asset and the field."""
    value = asset.extra_fields.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(b, dict) for b in value):
        example = '{"name": "B02"}' if name == "eo:bands" else '{"scale": 0.0001}'
        raise CloudfreeError(f"{item_path}: asset {key!r}: {name} is {_shown(value)}, not a "
                             f"list of objects, one per band of the file (such as {example}); "
                             "correct the item")
    return value


def _asset_bands(item_path: Path | Url, key: str, asset) -> list[str | None]:
    """The bands an asset holds, in order: from its key, else from its ``eo:bands``."""
    named = band_of_name(key)
    if named:
        return [named]
    bands = []
    for entry in _field_list(item_path, key, asset, "eo:bands"):
        names = [entry.get(f) for f in ("name", "common_name")]
        wrong = next((n for n in names if n is not None and not isinstance(n, str)), None)
        if wrong is not None:
            raise CloudfreeError(f"{item_path}: asset {key!r}: eo:bands gives the name "
                                 f"{_shown(wrong)}, not a band name such as \"B02\" or "
                                 "\"blue\"; correct the item")
        bands.append(band_of_name(names[0]) or band_of_name(names[1]))
    return bands


def _raster_scaling(item_path: Path | Url, key: str, raster: dict) -> tuple[float, float | None]:
    """The (scale, offset) of one ``raster:bands`` entry, numbers (or the text of numbers)."""
    values = []
    for name in ("scale", "offset"):
        value = raster.get(name)
        number = None if value is None else number_or_none(value)
        if value is not None and number is None:
            raise CloudfreeError(f"{item_path}: asset {key!r}: raster:bands {name} is "
                                 f"{_shown(value)}, not a number; correct the item")
        values.append(number)
    return values[0], values[1]


def read_item(path: Path | Url):
    """The STAC item (``pystac.Item``) in a local JSON file or at an http(s) URL."""
    import pystac  # only STAC input needs it

    url = as_url(path)
    found = None if url is None else fetch_json(url, "Sentinel-2 input")
    try:
        if found is None:
            return pystac.Item.from_file(str(path))
        return pystac.Item.from_dict(found, href=url)
    except Exception as exc:  # pystac raises many kinds for a file that is no STAC item
        raise CloudfreeError(f"{path}: not a STAC item pystac can read ({exc})") from None


def stac_files(path: Path | Url) -> BandFiles:
    """The bands of a STAC item (a local file or a URL) whose assets are local files or URLs,
    its level and its offset."""
    item = read_item(path)
    files: dict[str, tuple[Path | Url, int]] = {}
    rank: dict[str, tuple[int, int]] = {}  # band -> its asset's place in the item, its index
    scalings: set[tuple[float, float | None]] = set()
    place = {key: i for i, key in enumerate(item.assets)}
    # assets whose key names a band first: "blue" before a "blue-jp2" copy or a "visual" RGB
    assets = sorted(item.assets.items(), key=lambda kv: band_of_name(kv[0]) is None)
    for key, asset in assets:
        roles = asset.roles if isinstance(asset.roles, list) else []
        if DISPLAY_ROLES & {r for r in roles if isinstance(r, str)} \
                or key.lower() in DISPLAY_ROLES:
            continue
        bands = _asset_bands(path, key, asset)
        wanted = [(i, b) for i, b in enumerate(bands, start=1) if b and b not in files]
        if not wanted:
            continue
        file = _asset_file(asset.href, path)
        for index, band in wanted:
            files[band] = (file, index)
            rank[band] = (place[key], index)
        for raster in _field_list(path, key, asset, "raster:bands"):
            scale, offset = _raster_scaling(path, key, raster)
            if scale and SCL not in bands:
                scalings.add((scale, offset))
    if not any(b != SCL for b in files):
        raise CloudfreeError(f"{path}: no asset holds a Sentinel-2 band (keys such as B02, blue "
                             "or scl, or eo:bands naming them)")
    # the bands in the item's own order (its assets, then eo:bands within an asset)
    found = BandFiles({b: files[b] for b in sorted(files, key=rank.__getitem__)},
                      _stac_level(item, files))
    if len(scalings) == 1:
        found.scaling = scalings.pop()
        dn_offset = -(found.scaling[1] or 0.0) / found.scaling[0]
        found.offset = int(round(dn_offset)) if math.isfinite(dn_offset) else None
        found.notes.append(f"scale {found.scaling[0]} and radiometric offset {found.offset} DN"
                           " from the item's raster:bands")
    else:
        baseline = item.properties.get("s2:processing_baseline")
        try:
            if baseline is not None:
                number = offset_number(baseline, f"{path}: s2:processing_baseline")
                found.offset = BASELINE_OFFSET if number >= 4.0 else 0
                found.notes.append(f"radiometric offset {found.offset} DN from processing "
                                   f"baseline {baseline}")
        except CloudfreeError as exc:  # an error only where the offset is not given
            found.offset_error = exc
    return found


def stac_time(path: Path | Url) -> datetime | None:
    """The acquisition time of a STAC item (its datetime, else its start), None if unreadable."""
    try:
        item = read_item(path)
    except CloudfreeError:  # not an item: no time, and the reader says why
        return None
    found = item.datetime or item.common_metadata.start_datetime
    return None if found is None else found.astimezone(UTC)


def _stac_level(item, files: dict) -> str | None:
    """L1C or L2A from the item's product type, processing level or id; None if unsaid."""
    props = item.properties
    said = " ".join(str(v) for v in (props.get("s2:product_type"), props.get("processing:level"),
                                     item.collection_id, item.id) if v).upper()
    for level, marks in (("L2A", ("L2A", "MSI2A")), ("L1C", ("L1C", "MSI1C"))):
        if any(mark in said for mark in marks):
            return level
    return "L2A" if SCL in files else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_safe_offset(metadata: Path) -> int:
    """Radiometric offset (DN to subtract) from a product's MTD_MSIL1C.xml (RADIO_ADD_OFFSET)
    or MTD_MSIL2A.xml (BOA_ADD_OFFSET)."""
    try:
        root = ET.parse(metadata).getroot()
    except (OSError, ET.ParseError) as exc:
        raise CloudfreeError(f"cannot read product metadata {metadata}: {exc}") from None
    offsets = [offset_number(e.text.strip(), f"{metadata}: {_local(e.tag)}") for e in root.iter()
               if _local(e.tag) in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and e.text]
    if offsets:
        if len(set(offsets)) > 1:
            raise CloudfreeError(f"{metadata}: the bands' offsets differ ({sorted(set(offsets))});"
                                 " cloudfree reads one offset for all bands")
        return int(round(-offsets[0]))
    baseline = [e.text for e in root.iter() if _local(e.tag) == "PROCESSING_BASELINE"]
    if baseline and baseline[0] and offset_number(
            baseline[0].strip(), f"{metadata}: PROCESSING_BASELINE") >= 4.0:
        return BASELINE_OFFSET
    return 0
