"""Provenance of an output: the GeoTIFF tags every command writes, and their reading back.

The tags are the one record of how an output was made (cloudfree version, command, inputs,
acquisition time, model and its SHA-256, cloud fraction, Sentinel-1 shift); ``batch --stac``
builds its STAC items from them alone (see ``stac.py``), so a catalog says what its files say.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cloudfree import __version__
from cloudfree.core.paths import as_url
from cloudfree.io.discovery import OUTPUT_TAG, safe_time, time_from_tags, time_from_text
from cloudfree.io.rasters import open_raster
from cloudfree.io.remote import names_raster
from cloudfree.io.s2_files import stac_time
from cloudfree.mask.classify import CLOUD, NODATA

VERSION = OUTPUT_TAG
COMMAND = "CLOUDFREE_COMMAND"
#: When the output was made (UTC, ISO 8601); named so that date finders do not take it for the
#: acquisition (see ``scene_discovery``).
PROCESSED = "PROCESSED"
INPUT_S2 = "INPUT_S2"
INPUT_S1 = "INPUT_S1"
ACQUIRED = "ACQUISITION_DATETIME"
MODEL = "MODEL"
MODEL_SHA256 = "MODEL_SHA256"
ARCH = "ARCH"
CLOUD_FRACTION = "CLOUD_FRACTION"
SHIFT_X = "COREGISTER_SHIFT_X_PX"
SHIFT_Y = "COREGISTER_SHIFT_Y_PX"
SHIFT_APPLIED = "COREGISTER_APPLIED"
RADIOMETRIC_OFFSET = "RADIOMETRIC_OFFSET"
#: The part of the input's grid an output covers (an area of interest): column, row, width and
#: height in the input's pixels.
INPUT_WINDOW = "INPUT_WINDOW"
#: ``remove --reference``: the references (JSON list of path, date, used, filled_pixels) and the
#: pixels filled from them and by the single-date model.
REFERENCES = "REFERENCES"
FROM_REFERENCES = "FILLED_FROM_REFERENCES_PIXELS"
BY_MODEL = "FILLED_BY_MODEL_PIXELS"


def sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in 1 MB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(2**20), b""):
            digest.update(piece)
    return digest.hexdigest()


def input_path(path: Path | str) -> str:
    """An input's path as the tags record it: absolute, with ``.`` and ``..`` resolved by name
    (links are kept as the user gave them, not followed); a URL as given."""
    return as_url(path) or os.path.abspath(path)


def acquisition_time(s2: Path | str) -> datetime | None:
    """The acquisition time (UTC) from the S2 name (file or .SAFE folder), else its date tags
    (a .SAFE folder: its product metadata; a STAC item: its datetime), else the name of the
    folder holding it (scenes kept in folders named by date); for a URL, its name, else the
    item's datetime or the raster's tags."""
    url = as_url(s2)
    if url is not None:
        found = time_from_text(url.name)
        if found is None and not names_raster(url):
            found = stac_time(url)
        elif found is None:
            with open_raster(url, "Sentinel-2 input") as ds:
                found = time_from_tags(ds.tags())
        return found
    s2 = Path(s2)
    if s2.is_dir():  # a .SAFE folder, or a folder of per-band files named with their date
        found = safe_time(s2) or next(
            filter(None, (time_from_text(p.name) for p in sorted(s2.iterdir()))), None)
    else:
        found = time_from_text(s2.name)
        if found is None and s2.suffix.lower() == ".json":
            found = stac_time(s2)
        elif found is None and s2.is_file():
            with rasterio.open(s2) as ds:
                found = time_from_tags(ds.tags())
    return found or time_from_text(Path(input_path(s2)).parent.name)


def provenance_tags(command: str, s2: Path | str, s1: Path | str | None = None, *,
                    model: str | None = None, model_path: Path | str | None = None,
                    arch: str | None = None, area: Window | None = None) -> dict[str, str]:
    """The tags every output of ``command`` carries; ``model_path`` is the weights file used,
    ``area`` the window of the input's grid the output covers, when only part of it."""
    tags = {VERSION: __version__, COMMAND: command,
            PROCESSED: datetime.now(UTC).isoformat(timespec="seconds"),
            INPUT_S2: input_path(s2)}
    acquired = acquisition_time(s2)
    if acquired is not None:
        tags[ACQUIRED] = acquired.isoformat()
    if s1 is not None:
        tags[INPUT_S1] = input_path(s1)
    if model is not None:
        tags[MODEL] = model
    if model_path is not None:
        tags[MODEL_SHA256] = sha256(model_path)
    if arch:
        tags[ARCH] = arch
    if area is not None:
        tags[INPUT_WINDOW] = " ".join(str(int(v)) for v in (area.col_off, area.row_off,
                                                             area.width, area.height))
    return tags


def cloud_fraction_tags(counts: np.ndarray) -> dict[str, str]:
    """The cloud fraction of valid pixels, from a class histogram (see ``masking``)."""
    valid = counts.sum() - counts[NODATA]
    return {CLOUD_FRACTION: f"{counts[CLOUD] / valid:.6f}" if valid else "nan"}


@dataclass(frozen=True)
class Provenance:
    """The provenance tags of an output, typed."""

    version: str
    command: str
    processed: datetime | None
    inputs: dict[str, str]
    acquired: datetime | None
    model: str | None
    model_sha256: str | None
    arch: str | None
    cloud_fraction: float | None
    s1_shift_px: tuple[float, float] | None
    s1_shift_applied: bool | None
    radiometric_offset: int
    references: list[dict] | None = None
    filled_by_source: dict[str, int] | None = None

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Provenance:
        shift = None
        if SHIFT_X in tags and SHIFT_Y in tags:
            shift = (float(tags[SHIFT_X]), float(tags[SHIFT_Y]))
        applied = tags[SHIFT_APPLIED] == "TRUE" if SHIFT_APPLIED in tags else None
        inputs = {role: tags[key] for role, key in (("s2", INPUT_S2), ("s1", INPUT_S1))
                  if key in tags}
        return cls(
            version=tags.get(VERSION, ""), command=tags.get(COMMAND, ""),
            processed=_time(tags.get(PROCESSED)), inputs=inputs,
            acquired=_time(tags.get(ACQUIRED)), model=tags.get(MODEL),
            model_sha256=tags.get(MODEL_SHA256), arch=tags.get(ARCH) or None,
            cloud_fraction=float(tags[CLOUD_FRACTION]) if CLOUD_FRACTION in tags else None,
            s1_shift_px=shift, s1_shift_applied=applied,
            radiometric_offset=int(tags.get(RADIOMETRIC_OFFSET, 0)),
            references=json.loads(tags[REFERENCES]) if REFERENCES in tags else None,
            filled_by_source={"references": int(tags[FROM_REFERENCES]),
                              "single_date_model": int(tags[BY_MODEL])}
            if FROM_REFERENCES in tags else None)

    @classmethod
    def of(cls, path: Path | str) -> Provenance:
        """Read the provenance tags of a GeoTIFF."""
        with rasterio.open(path) as ds:
            return cls.from_tags(ds.tags())


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
