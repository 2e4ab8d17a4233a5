"""The cloudfree checkpoint: one ``torch.save`` file that loads with ``weights_only=True``.

Layout (tensors, plain containers and primitives only, so loading never runs pickled code)::

    {"format": "cloudfree", "format_version": 1, "arch": str, "config": dict,
     "scaling": Scaling.to_dict(), "bands": [13 band names], "tile": int,
     "metadata": dict, "state_dict": {name: tensor}}

The official GLF-CR format ``{"network": state_dict}`` loads too, as the ``glfcr`` paper preset
with GLF-CR input scaling.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cloudfree.core.arguments import check_path
from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.paths import check_input
from cloudfree.inference.scaling import SCALINGS, Scaling
from cloudfree.inference.tiling import DEFAULT_TILE
from cloudfree.io.sentinel2 import BANDS
from cloudfree.networks.base import CloudRemovalNet
from cloudfree.networks.glfcr import GLFCR
from cloudfree.networks.registry import get_architecture
from cloudfree.output.atomic import atomic_output

FORMAT = "cloudfree"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A network ready for inference with everything needed to feed it."""

    network: CloudRemovalNet
    arch: str
    config: dict
    scaling: Scaling
    bands: tuple[str, ...] = BANDS
    tile: int = DEFAULT_TILE
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_network(cls, network: CloudRemovalNet, scaling: Scaling | None = None, *,
                     bands: tuple[str, ...] = BANDS, tile: int = DEFAULT_TILE,
                     metadata: dict | None = None) -> LoadedModel:
        """Wrap a network; the scaling defaults to the one its architecture trains with."""
        return cls(network=network, arch=network.arch, config=dict(network.config),
                   scaling=scaling or default_scaling(network.arch), bands=tuple(bands),
                   tile=tile, metadata=dict(metadata or {}))


def default_scaling(arch: str) -> Scaling:
    """The architecture's ``default_scaling`` (DSen2-CR: ``dsen2cr``), else GLF-CR scaling."""
    cls = get_architecture(arch)
    return SCALINGS[getattr(cls, "default_scaling", "glfcr")]


def save_checkpoint(path: Path | str, network: CloudRemovalNet, scaling: Scaling | None = None,
                    *, bands: tuple[str, ...] = BANDS, tile: int = DEFAULT_TILE,
                    metadata: dict | None = None) -> Path:
    """Write a cloudfree checkpoint atomically (temporary file, then rename); returns the path."""
    loaded = LoadedModel.from_network(network, scaling, bands=bands, tile=tile, metadata=metadata)
    try:
        json.dumps(loaded.metadata)
    except TypeError as exc:
        raise CloudfreeError(f"checkpoint metadata must be plain JSON-like data: {exc}") from None
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "arch": loaded.arch,
        "config": loaded.config, "scaling": loaded.scaling.to_dict(),
        "bands": list(loaded.bands), "tile": int(loaded.tile), "metadata": loaded.metadata,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a cloudfree or official GLF-CR checkpoint; the network is in eval mode."""
    check_path("path", path)
    check_map_location(map_location)
    path = Path(path)
    data = read_torch_file(path, map_location)
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        loaded = _from_cloudfree(path, data)
    elif isinstance(data, Mapping) and isinstance(data.get("network"), Mapping):
        loaded = _from_official_glfcr(data["network"])
    else:
        keys = ", ".join(map(str, list(data)[:6])) if isinstance(data, Mapping) else type(data)
        raise CloudfreeError(f"checkpoint {path}: neither a cloudfree nor an official GLF-CR "
                             f"checkpoint (top level: {keys})")
    bad = next((name for name, value in loaded.network.state_dict().items()
                if value.is_floating_point() and not torch.isfinite(value).all()), None)
    if bad is not None:
        raise CloudfreeError(f"checkpoint {path}: parameter {bad} holds NaN or infinite values "
                             "(its training diverged); train it again with a lower learning "
                             "rate")
    loaded.network.eval()
    return loaded


def check_map_location(map_location: object) -> None:
    """Refuse a device torch does not know, or a GPU where none is usable, before the file is
    read: torch would fail as if the file were corrupt."""
    if not isinstance(map_location, str | torch.device):
        return  # a mapping or a function: torch's own business
    try:
        device = torch.device(map_location)
    except RuntimeError:
        raise UsageError(f"map_location={map_location!r} is not a device: use cpu, cuda or "
                         "cuda:N", "map_location") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CloudfreeError(f"map_location={map_location!r}: no CUDA GPU is usable here "
                             f"(torch {torch.__version__}); use cpu", "map_location")


def read_torch_file(path: Path, map_location, what: str = "checkpoint") -> object:
    """torch.load with weights_only, with each way of failing told apart in one line."""
    check_input(path, what, folder=False)
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise CloudfreeError(f"{what} {path} is truncated or corrupt (incomplete archive)")
    not_torch = CloudfreeError(f"{what} {path} is not a PyTorch checkpoint (no torch.save "
                               "archive or pickle inside)")
    if not head.startswith(b"PK") and not _pickle_head(head):
        raise not_torch
    try:
        with warnings.catch_warnings():  # torch warns about the protocol byte of garbage
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CloudfreeError(
                f"{what} {path} holds pickled Python objects besides tensors and plain data; "
                "cloudfree does not run such code from files") from None
        if not head.startswith(b"PK"):
            raise not_torch from None
        raise CloudfreeError(f"{what} {path} is corrupt: {_first_line(exc)}") from None
    except EOFError:
        raise CloudfreeError(f"{what} {path} is truncated") from None
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CloudfreeError(f"{what} {path} is truncated or corrupt: "
                             f"{_first_line(exc)}") from None


def _pickle_head(head: bytes) -> bool:
    """Whether a file starts as a pickle of protocol 2 to 5 (torch's legacy format) does."""
    return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _from_cloudfree(path: Path, data: Mapping) -> LoadedModel:
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CloudfreeError(f"checkpoint {path}: format version {version!r} is newer than this "
                             f"cloudfree reads ({FORMAT_VERSION}); upgrade cloudfree")
    bands = tuple(data.get("bands", ()))
    if bands != BANDS:
        raise CloudfreeError(f"checkpoint {path}: trained on {len(bands)} band(s) "
                             f"({', '.join(bands)}); cloudfree needs the 13 L1C bands in order "
                             f"{', '.join(BANDS)}")
    arch = data.get("arch")
    try:
        cls = get_architecture(arch)
    except CloudfreeError as exc:
        raise CloudfreeError(f"checkpoint {path}: {exc}") from None
    config = data.get("config") or {}
    try:
        network = cls(**config)
    except (TypeError, ValueError) as exc:
        raise CloudfreeError(f"checkpoint {path}: its config does not fit {arch}: "
                             f"{_first_line(exc)}") from None
    network.load_checked_state(data.get("state_dict") or {}, str(path))
    return LoadedModel(network=network, arch=arch, config=dict(config),
                       scaling=Scaling.from_dict(data.get("scaling") or {}), bands=bands,
                       tile=int(data.get("tile", DEFAULT_TILE)),
                       metadata=dict(data.get("metadata") or {}))


def _from_official_glfcr(state: Mapping) -> LoadedModel:
    network = GLFCR.from_official(state)
    return LoadedModel.from_network(network, SCALINGS["glfcr"],
                                    metadata={"source": "official GLF-CR checkpoint"})
