"""Training and evaluation samples on disk: finding S1 / cloudy S2 / cloud-free S2 triplets.

Layouts recognised under a root folder (searched recursively):

- SEN12MS-CR as distributed: ``ROIs1158_spring_s1/s1_1/ROIs1158_spring_s1_1_p30.tif`` with
  twins ``ROIs1158_spring_s2/s2_1/ROIs1158_spring_s2_1_p30.tif`` (cloud-free) and
  ``ROIs1158_spring_s2_cloudy/s2_cloudy_1/ROIs1158_spring_s2_cloudy_1_p30.tif``.
- SEN12MS-CR sample files as the GLF-CR repository ships them:
  ``ROIs2017_winter_112_p797_{s1,s2_cloudy,s2_cloudfree}.tif``.
- Flat: ``s1/NAME.tif``, ``s2_cloudy/NAME.tif``, ``s2_cloudfree/NAME.tif`` directly under the root.

Samples pair by name; incomplete ones are listed in a warning (an error when none pairs).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cloudfree.core.errors import CloudfreeError
from cloudfree.core.paths import check_input
from cloudfree.fill.local import fill_image_locally
from cloudfree.inference.scaling import Scaling
from cloudfree.io.rasters import open_raster
from cloudfree.io.sentinel2 import open_sentinel2
from cloudfree.mask.classify import CLOUD, SHADOW, MaskParams, classify

log = logging.getLogger("cloudfree")

KINDS = ("s1", "s2_cloudy", "s2_clear")
FLAT_DIRS = {"s1": "s1", "s2_cloudy": "s2_cloudy", "s2_cloudfree": "s2_clear"}
_SEN12MSCR = re.compile(
    r"^(?P<roi>ROIs\d+_[A-Za-z]+)_(?P<kind>s1|s2_cloudy|s2)_(?P<scene>\d+)_(?P<patch>p\d+)\.tiff?$"
)
_SUFFIXED = re.compile(r"^(?P<key>.+)_(?P<kind>s1|s2_cloudy|s2_cloudfree)\.tiff?$")
_LABEL = {"s1": "s1", "s2_cloudy": "s2_cloudy", "s2_clear": "s2_cloudfree"}
_KIND = {"s1": "s1", "s2_cloudy": "s2_cloudy", "s2": "s2_clear", "s2_cloudfree": "s2_clear"}
#: How many incomplete samples a warning names.
_SHOWN = 5


@dataclass(frozen=True)
class Sample:
    """One co-registered triplet, named after its patch."""

    name: str
    s1: Path
    s2_cloudy: Path
    s2_clear: Path


def _key(path: Path, root: Path) -> tuple[str, str] | None:
    """(sample name, kind) of a file, or None when it belongs to no known layout."""
    parts = path.relative_to(root).parts
    if len(parts) == 2 and parts[0] in FLAT_DIRS:
        return Path(parts[1]).stem, FLAT_DIRS[parts[0]]
    m = _SEN12MSCR.match(path.name)
    if m:
        return f"{m['roi']}_{m['scene']}_{m['patch']}", _KIND[m["kind"]]
    m = _SUFFIXED.match(path.name)
    if m:
        return m["key"], _KIND[m["kind"]]
    return None


def find_samples(root: Path | str) -> list[Sample]:
    """Complete triplets under ``root``, sorted by name; incomplete ones are reported."""
    root = check_input(root, "data folder", folder=True)
    groups: dict[str, dict[str, Path]] = {}
    for path in sorted(root.rglob("*.tif*")):
        key = _key(path, root)
        if key:
            groups.setdefault(key[0], {})[key[1]] = path
    complete = [Sample(name, **files) for name, files in sorted(groups.items())
                if len(files) == len(KINDS)]
    incomplete = [f"{name} (no {', '.join(_LABEL[k] for k in KINDS if k not in files)})"
                  for name, files in sorted(groups.items()) if len(files) < len(KINDS)]
    if incomplete:
        more = f" and {len(incomplete) - _SHOWN} more" if len(incomplete) > _SHOWN else ""
        message = (f"{len(incomplete)} sample(s) under {root} lack a twin: "
                   f"{'; '.join(incomplete[:_SHOWN])}{more}")
        if not complete:
            raise CloudfreeError(message + "; no complete s1/s2_cloudy/s2_cloudfree triplet")
        log.warning("%s; skipped", message)
    if not complete:
        raise CloudfreeError(f"no s1/s2_cloudy/s2_cloudfree triplet under {root} (expected the "
                             "SEN12MS-CR layout or s1/, s2_cloudy/, s2_cloudfree/ folders)")
    return complete


def read_s1_db(path: Path) -> np.ndarray:
    """S1 backscatter in dB, float32 [2, H, W] (VV, VH); nodata becomes NaN."""
    with open_raster(path, "Sentinel-1 file") as ds:
        if ds.count != 2:
            raise CloudfreeError(f"{path}: expected 2 bands (VV, VH), found {ds.count}")
        data = ds.read(out_dtype=np.float32, masked=True)
    return data.filled(np.nan)


def read_reflectance(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """S2 reflectance [13, H, W] and valid mask [H, W] (the reader's per-file notes, such as
    SEN12MS-CR's missing band names, are not repeated for every sample)."""
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        with open_sentinel2(path) as s2:
            return s2.read()
    finally:
        log.setLevel(level)


def cloud_mask(reflectance: np.ndarray, valid: np.ndarray | None,
               params: MaskParams = MaskParams()) -> np.ndarray:
    """Float32 [H, W]: 1 where the masking module finds cloud (or shadow), else 0."""
    classes, _ = classify(reflectance, valid, params)
    return np.isin(classes, (CLOUD, SHADOW)).astype(np.float32)


@dataclass
class LoadedSample:
    """Arrays of one sample: reflectance, dB, the cloud mask of the cloudy image."""

    cloudy: np.ndarray
    clear: np.ndarray
    s1_db: np.ndarray
    valid: np.ndarray
    cloud: np.ndarray


def load_sample(sample: Sample, params: MaskParams = MaskParams()) -> LoadedSample:
    """Read one triplet, checking that its three grids agree."""
    cloudy, valid = read_reflectance(sample.s2_cloudy)
    clear, valid_clear = read_reflectance(sample.s2_clear)
    s1 = read_s1_db(sample.s1)
    if cloudy.shape != clear.shape or s1.shape[1:] != cloudy.shape[1:]:
        raise CloudfreeError(f"sample {sample.name}: sizes differ (S1 {s1.shape[1:]}, cloudy "
                             f"{cloudy.shape[1:]}, cloud-free {clear.shape[1:]}); "
                             "co-register first")
    own = {sample.s1: np.isfinite(s1).all(axis=0), sample.s2_cloudy: valid,
           sample.s2_clear: valid_clear}
    valid = valid & valid_clear & own[sample.s1]
    if not valid.any():
        raise CloudfreeError(f"sample {sample.name} has no usable pixel: {_unusable(own)}; fix "
                             "or remove the sample")
    return LoadedSample(cloudy, clear, s1, valid, cloud_mask(cloudy, valid, params))


def _unusable(own: dict[Path, np.ndarray]) -> str:
    """Why no pixel of a sample is valid, from each file's own valid mask."""
    for path, valid in own.items():
        if not valid.any():
            return f"every pixel of {path} is nodata (NaN or its nodata value)"
    return f"no pixel is valid in {', '.join(map(str, own))} at once"


def network_arrays(loaded: LoadedSample, scaling: Scaling) -> dict[str, np.ndarray]:
    """The arrays a training step needs, [C, H, W] float32, inputs scaled as the network wants.

    ``filled`` is the cloudy input with the masked pixels and the haze around them replaced by
    the local fill (``local_fill.py``, as ``remove`` does by default), the input of networks that
    work on top of it (``uses_mask``); ``cloud`` is that filled region.
    """
    filled, region = fill_image_locally(loaded.cloudy, loaded.cloud > 0, loaded.valid,
                                        loaded.s1_db)
    return {
        "s2": scaling.scale_s2(loaded.cloudy),
        "filled": scaling.scale_s2(filled),
        "s1": scaling.scale_s1(loaded.s1_db),
        "target": scaling.scale_s2(loaded.clear),
        "cloud": region[None].astype(loaded.cloud.dtype),
        "valid": loaded.valid[None].astype(np.float32),
    }


def random_view(arrays: dict[str, np.ndarray], rng: np.random.Generator,
                crop: int | None, multiple: int = 1) -> dict[str, np.ndarray]:
    """The same random square crop (a multiple of ``multiple``), flips and 90-degree rotation
    of every [C, H, W] array."""
    h, w = next(iter(arrays.values())).shape[1:]
    size = min(crop or min(h, w), h, w)
    size -= size % multiple
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = {}
    for name, a in arrays.items():
        a = np.rot90(a[:, top:top + size, left:left + size], k, axes=(1, 2))
        out[name] = np.ascontiguousarray(a[:, :, ::-1] if flip else a)
    return out


class TripletDataset(torch.utils.data.Dataset):
    """Random views of triplets on disk for training (``crop=None``: whole, unaugmented)."""

    def __init__(self, samples: list[Sample], scaling: Scaling, crop: int | None = None,
                 multiple: int = 1, params: MaskParams = MaskParams()) -> None:
        if crop is not None and crop < multiple:
            raise CloudfreeError(f"crop {crop} is smaller than the network's size multiple "
                                 f"{multiple}")
        self.samples, self.scaling, self.params = samples, scaling, params
        self.crop = None if crop is None else crop - crop % multiple
        self.multiple = multiple
        self._small_seen = False  # a sample smaller than the crop was reported

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        arrays = network_arrays(load_sample(self.samples[index], self.params), self.scaling)
        if self.crop is None:
            h, w = arrays["s2"].shape[1:]
            m = self.multiple
            return {k: torch.from_numpy(v[:, :h - h % m, :w - w % m].copy())
                    for k, v in arrays.items()}
        h, w = arrays["s2"].shape[1:]
        if self.crop > min(h, w) and not self._small_seen:  # once per loading process
            self._small_seen = True
            log.warning("crop %d is larger than sample %s (%d x %d): its crops are %d px",
                        self.crop, self.samples[index].name, w, h,
                        min(h, w) - min(h, w) % self.multiple)
        rng = np.random.default_rng(int(torch.randint(2**31 - 1, ())))
        view = random_view(arrays, rng, self.crop, self.multiple)
        return {k: torch.from_numpy(v) for k, v in view.items()}
