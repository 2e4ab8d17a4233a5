"""Inference back ends behind one interface: PyTorch (any device, fp32/fp16/bf16), onnxruntime
(ONNX files; and, on CPU, the bundled fill network exported in memory), and the network-free fill
(the default ``median-fill``), which loads neither: its output is its filled input.

Precision: fp16 and bf16 run the network under autocast. On CPU, fp16 is refused (no fast CPU
kernels; it needs a GPU) while bf16 runs under CPU autocast (faster only on CPUs with bf16 units).
On a GPU, fp32 is full fp32: cuDNN's TF32 convolutions (on by default in PyTorch) are turned off
for it, so the output matches the CPU within 1e-4 of reflectance; fp16 or bf16 is the fast choice.
A CUDA out-of-memory error propagates unchanged from ``predict`` so a caller can halve its batch.
"""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.memory import check_room_for_torch
from cloudfree.core.paths import check_input
from cloudfree.inference.bundled import DEFAULT_MODEL, bundled_model
from cloudfree.inference.scaling import Scaling
from cloudfree.io.sentinel2 import BANDS

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from cloudfree.inference.checkpoint import LoadedModel

__all__ = ["DEFAULT_MODEL", "Engine", "FillEngine", "OnnxEngine", "TorchEngine", "open_engine"]

#: Precisions, with the torch dtype each runs under autocast (by name: torch loads lazily).
PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
#: The devices a caller may name (a regular expression): auto, cpu, cuda or cuda:N.
DEVICE_NAME = r"auto|cpu|cuda(:\d+)?"
#: Prefix of the cloudfree keys in an ONNX model's metadata_props.
META = "cloudfree_"
#: The network-free fill's architecture (``networks.fillnet.Fill.arch``).
FILL_ARCH = "fill"
#: Device nodes one of which a GPU that torch can use needs on Linux (NVIDIA's driver, WSL2's
#: GPU, AMD's ROCm): without any, ``auto`` is the CPU without loading torch to ask.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")
ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


class Engine(Protocol):
    """Runs a cloud-removal network on batches of scaled inputs."""

    arch: str
    tile: int | None  # fixed input size (ONNX), or None for any multiple of size_multiple
    default_tile: int  # tile size to use when the user gives none
    size_multiple: int
    receptive_field: int
    fully_convolutional: bool
    scaling: Scaling
    bands: tuple[str, ...]
    device: str
    uses_mask: bool  # the network works on top of the classical fill (cloudfree/fill/median.py)
    runs_network: bool  # False for the network-free fill, whose output is its filled input

    def predict(self, s2: np.ndarray, s1: np.ndarray, mask: np.ndarray | None = None,
                max_correction: float | np.ndarray | None = None) -> np.ndarray:
        """s2 [B,13,H,W], s1 [B,2,H,W] (and the fill mask [B,1,H,W]) float32 -> [B,13,H,W];
        a network on the fill moves it by at most ``max_correction`` times it, one share or a
        share per pixel [B,1,H,W] (:func:`bound_correction`)."""
        ...


def bound_correction(pred: ArrayT, s2: ArrayT, bound: float | ArrayT | None) -> ArrayT:
    """``pred`` moved from ``s2`` (the fill it corrects) by at most ``bound`` times ``s2``, per
    value (``bound``: one share, or one per pixel [B,1,H,W]); numpy arrays or torch tensors
    alike (on a GPU, done there)."""
    if bound is None:
        return pred
    return s2 + (pred - s2).clip(-bound * s2, bound * s2)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; check an explicit 'cuda[:N]'."""
    if device == "cpu" or (device == "auto" and not gpu_possible()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    index = device.partition(":")[2]
    if device == "cuda" or (device.startswith("cuda:") and index.isdigit()):
        if not torch.cuda.is_available():
            raise CloudfreeError(f"device {device} asked for, but no CUDA GPU is usable here "
                                 f"(torch {torch.__version__}); use the cpu device")
        if index and int(index) >= torch.cuda.device_count():
            raise CloudfreeError(f"device {device}: there are {torch.cuda.device_count()} "
                                 "CUDA device(s), numbered from 0")
        return device
    raise UsageError(f"device={device} must be auto, cpu, cuda or cuda:N", "device")


def gpu_possible() -> bool:
    """Whether this machine may have a CUDA GPU for torch: False on macOS and on Linux without
    a GPU driver's device node, where asking torch would only cost loading it."""
    if sys.platform == "darwin":
        return False
    return sys.platform != "linux" or any(Path(node).exists() for node in GPU_DEVICE_NODES)


def check_precision(precision: str, device: str) -> None:
    """Refuse a precision that is unknown or that a (resolved) device cannot run."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision={precision} must be one of {', '.join(PRECISIONS)}",
                         "precision")
    if precision == "fp16" and device == "cpu":
        raise UsageError("precision=fp16 needs a GPU; use fp32 (or bf16) on CPU", "precision")


def cudnn_flags(tune: bool, tf32: bool) -> AbstractContextManager:
    """cuDNN settings for one forward: autotuning (``tune``: tiles keep one shape, so it tunes
    once) and TF32 (off in fp32, which rounds to about 1e-3 otherwise); the user's other cuDNN
    settings are kept."""
    import torch

    cudnn = torch.backends.cudnn
    return cudnn.flags(enabled=cudnn.enabled, benchmark=tune or cudnn.benchmark,
                       benchmark_limit=cudnn.benchmark_limit,
                       deterministic=cudnn.deterministic, allow_tf32=tf32)


def check_batch(s2: np.ndarray, s1: np.ndarray, multiple: int, tile: int | None,
                mask: np.ndarray | None = None,
                bound: float | np.ndarray | None = None) -> None:
    """Raise ValueError unless the inputs are a matching [B,13,H,W] / [B,2,H,W] pair that fits."""
    if s2.ndim != 4 or s1.ndim != 4 or s2.shape[1] != 13 or s1.shape[1] != 2 \
            or s2.shape[0] != s1.shape[0] or s2.shape[2:] != s1.shape[2:]:
        raise ValueError(f"inputs must be s2 [B,13,H,W] and s1 [B,2,H,W], got {s2.shape} "
                         f"and {s1.shape}")
    if mask is not None and mask.shape != (s2.shape[0], 1, *s2.shape[2:]):
        raise ValueError(f"the fill mask must be [B,1,H,W] like s2, got {mask.shape}")
    if isinstance(bound, np.ndarray) and bound.shape != (s2.shape[0], 1, *s2.shape[2:]):
        raise ValueError(f"a per-pixel bound must be [B,1,H,W] like s2, got {bound.shape}")
    h, w = s2.shape[2:]
    if tile is not None and (h, w) != (tile, tile):
        raise ValueError(f"this engine runs {tile}x{tile} tiles only, got {h}x{w}")
    if h % multiple or w % multiple:
        raise ValueError(f"height and width must be multiples of {multiple}, got {h}x{w}")


class TorchEngine:
    """A checkpoint's network in PyTorch, on CPU or a GPU (its network is moved there).

    On CPU in fp32, a network that declares ``onnx_any_size`` (the default ``fillnet``) runs
    as an ONNX graph exported in memory in onnxruntime, unless ``cpu_runtime="torch"``: the
    same arithmetic (within 1e-5), several times faster for small convolutions.
    """

    tile: int | None = None
    runs_network = True

    def __init__(self, loaded: LoadedModel, device: str = "auto", precision: str = "fp32",
                 cpu_runtime: str = "onnxruntime"):
        from cloudfree.inference.onnx_graph import network_graph, open_session

        self.device = resolve_device(device)
        check_precision(precision, self.device)
        self.precision = precision
        self.network = loaded.network.to(self.device).eval()
        self.size_multiple = self.network.size_multiple
        self.receptive_field = self.network.receptive_field()
        self.fully_convolutional = self.network.fully_convolutional
        self.scaling = loaded.scaling
        self.bands = loaded.bands
        self.default_tile = loaded.tile
        self.arch = loaded.arch
        self.uses_mask = self.network.uses_mask
        self.session = None
        #: Pinned host buffers reused for the transfers to the GPU, one per input and shape.
        self._staging: dict[tuple, torch.Tensor] = {}
        if cpu_runtime == "onnxruntime" and self.device == "cpu" and precision == "fp32" \
                and self.network.onnx_any_size:
            graph = network_graph(self.network, 2 * self.size_multiple, any_size=True)
            self.session = open_session(graph, ["CPUExecutionProvider"])

    def _to_device(self, array: np.ndarray, name: str) -> torch.Tensor:
        """The array on the engine's device; on a GPU through a pinned buffer kept for the
        next batch of the same shape (``predict`` waits for its output, so by then the copy
        out of the buffer is done)."""
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if self.device == "cpu":
            return tensor
        key = (name, *tensor.shape)
        if key not in self._staging:
            self._staging[key] = torch.empty(tensor.shape, dtype=torch.float32,
                                             pin_memory=True)
        staged = self._staging[key]
        staged.copy_(tensor)
        return staged.to(self.device, non_blocking=True)

    def predict(self, s2: np.ndarray, s1: np.ndarray, mask: np.ndarray | None = None,
                max_correction: float | np.ndarray | None = None) -> np.ndarray:
        check_batch(s2, s1, self.size_multiple, None, mask, max_correction)
        bound = max_correction if self.uses_mask else None
        if self.session is not None:
            return bound_correction(run_session(self.session, s2, s1, mask), s2, bound)
        import torch

        dtype = None if self.precision == "fp32" else getattr(torch, PRECISIONS[self.precision])
        device_type = torch.device(self.device).type
        if isinstance(bound, np.ndarray):
            bound = self._to_device(bound, "bound")
        inputs = [self._to_device(s2, "s2"), self._to_device(s1, "s1")]
        if self.uses_mask and mask is not None:
            inputs.append(self._to_device(mask, "mask"))
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype,
                                                    enabled=dtype is not None), \
                cudnn_flags(tune=self.device != "cpu", tf32=dtype is not None):
            out = bound_correction(self.network(*inputs).float(), inputs[0], bound)
        return out.cpu().numpy()


class FillEngine:
    """The network-free fill (architecture ``fill``: the bundled ``median-fill``): its output is
    its input, already filled, so it needs neither torch nor onnxruntime."""

    arch = FILL_ARCH
    tile: int | None = None
    size_multiple = 1
    receptive_field = 0
    fully_convolutional = True
    bands = BANDS
    uses_mask = True
    runs_network = False

    def __init__(self, scaling: Scaling, default_tile: int, device: str = "auto",
                 precision: str = "fp32"):
        self.device = resolve_device(device)
        check_precision(precision, self.device)
        self.scaling, self.default_tile = scaling, default_tile

    def predict(self, s2: np.ndarray, s1: np.ndarray, mask: np.ndarray | None = None,
                max_correction: float | np.ndarray | None = None) -> np.ndarray:
        check_batch(s2, s1, self.size_multiple, None, mask, max_correction)
        return np.array(s2, np.float32)  # a new array, as the networks' engines return


class _PlainData(pickle.Unpickler):
    """Unpickles plain containers and primitives only: any class or tensor is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a tensor")


def fill_checkpoint(path: Path) -> tuple[Scaling, int] | None:
    """The scaling and tile of a cloudfree checkpoint of the network-free fill, read without
    torch (its ``torch.save`` archive holds plain data only: no weights); None for any other
    file, which ``checkpoint.load_checkpoint`` then loads or refuses."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                return None
            data = _PlainData(archive.open(pickles[0])).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError):
        return None
    plain = isinstance(data, dict) and data.get("format") == "cloudfree" \
        and data.get("format_version") == 1 and data.get("arch") == FILL_ARCH \
        and not data.get("config") and not data.get("state_dict") \
        and tuple(data.get("bands", ())) == BANDS
    if not plain:
        return None
    try:
        return Scaling.from_dict(data.get("scaling") or {}), int(data["tile"])
    except (KeyError, TypeError, ValueError, CloudfreeError):
        return None


class OnnxEngine:
    """An exported ONNX model in onnxruntime: CUDA provider when a GPU is usable, else CPU."""

    runs_network = True

    def __init__(self, path: Path | str, device: str = "auto"):
        import onnxruntime as ort

        from cloudfree.inference.onnx_graph import open_session

        path = check_input(path, "ONNX model", folder=False)
        self.device = resolve_device(device)
        providers: list = ["CPUExecutionProvider"]
        if self.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(self.device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        elif device != "auto" and self.device != "cpu":
            raise CloudfreeError(f"device {self.device} asked for, but this onnxruntime has no "
                                 "CUDA provider (the CPU package is installed or shadows the "
                                 "GPU one): install onnxruntime-gpu as the README's GPU "
                                 "paragraph says (pip install -e .[gpu]), or use the cpu device")
        try:
            self.session = open_session(str(path), providers)
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise CloudfreeError(f"{path} is not an ONNX model onnxruntime can run: "
                                 f"{str(exc).strip().splitlines()[0][:200]}") from None
        if self.session.get_providers()[0] != "CUDAExecutionProvider":
            if device != "auto" and self.device != "cpu":
                raise CloudfreeError(f"onnxruntime could not use {self.device} (CUDA provider "
                                     "unavailable: check the CUDA and cuDNN libraries)")
            self.device = "cpu"
        self._read_metadata(path, self.session.get_modelmeta().custom_metadata_map)
        self._check_shapes(path)

    def _check_shapes(self, path: Path) -> None:
        """Refuse a graph whose declared inputs or output do not fit the tiles cloudfree feeds
        (named sizes, such as the batch, fit anything)."""
        tile, channels = self.tile, {"s2": 13, "s1": 2, "mask": 1}
        wanted = {i.name: ["batch", channels.get(i.name), tile, tile]
                  for i in self.session.get_inputs()}
        declared = {i.name: i.shape for i in self.session.get_inputs()}
        output = self.session.get_outputs()[0]
        checks = [(f"input {name}", declared[name], wanted[name], "feeds") for name in wanted]
        checks.append(("output", output.shape, ["batch", len(self.bands), tile, tile], "needs"))
        for what, shape, want, verb in checks:
            fits = len(shape) == 4 and all(not isinstance(got, int) or got == size
                                           for got, size in zip(shape[1:], want[1:], strict=True))
            if not fits:
                raise CloudfreeError(f"ONNX model {path}: {what} is {_dims(shape)}; cloudfree "
                                     f"{verb} {_dims(want)}; export it with `cloudfree "
                                     "export-onnx`")

    def _read_metadata(self, path: Path, meta: dict[str, str]) -> None:
        try:
            self.scaling = Scaling.from_dict(json.loads(meta[META + "scaling"]))
            self.bands = tuple(json.loads(meta[META + "bands"]))
            self.arch = meta[META + "arch"]
            self.tile = self.default_tile = int(meta[META + "tile"])
            self.size_multiple = int(meta[META + "size_multiple"])
            self.receptive_field = int(meta[META + "receptive_field"])
            self.fully_convolutional = meta[META + "fully_convolutional"] == "true"
            self.uses_mask = meta.get(META + "uses_mask") == "true"
        except (KeyError, ValueError) as exc:
            raise CloudfreeError(f"ONNX model {path} lacks cloudfree metadata ({exc}); "
                                 "export it with `cloudfree export-onnx`") from None

    def predict(self, s2: np.ndarray, s1: np.ndarray, mask: np.ndarray | None = None,
                max_correction: float | np.ndarray | None = None) -> np.ndarray:
        check_batch(s2, s1, self.size_multiple, self.tile, mask, max_correction)
        bound = max_correction if self.uses_mask else None
        return bound_correction(run_session(self.session, s2, s1, mask), s2, bound)


def run_session(session: onnxruntime.InferenceSession, s2: np.ndarray,
                s1: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """One batch through a graph of ``onnx_graph``'s form: no fill mask means nothing filled,
    and inputs the graph does not use are left out (median-fill's reads s2 alone)."""
    if mask is None:
        mask = np.zeros((len(s2), 1, *s2.shape[2:]), np.float32)
    feeds = {"s2": s2, "s1": s1, "mask": mask}
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: np.ascontiguousarray(v, dtype=np.float32)
                              for k, v in feeds.items() if k in names})[0]


def _dims(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def open_engine(*, model: str | None = None, checkpoint: Path | str | None = None,
                onnx: Path | str | None = None, device: str = "auto",
                precision: str = "fp32") -> Engine:
    """An engine for exactly one of: a bundled model name, a checkpoint file, an ONNX file;
    none given: the default bundled model (``median-fill``)."""
    given = [name for name, value in
             (("model", model), ("checkpoint", checkpoint), ("onnx", onnx)) if value is not None]
    if not given:
        model = DEFAULT_MODEL
    elif len(given) > 1:
        raise UsageError("give exactly one of a bundled model, a checkpoint or an ONNX model "
                         f"(got {', '.join(given)})")
    if onnx is not None:
        if precision != "fp32":
            raise UsageError(f"precision={precision}: an ONNX model runs in fp32; precision "
                             "applies to checkpoints", "precision")
        check_room_for_torch(model=True)  # onnxruntime's session, on torch's threads
        return OnnxEngine(onnx, device=device)
    # checked before any read: a FIFO, say, would block it forever
    path = check_input(model_file(model=model, checkpoint=checkpoint), "checkpoint", folder=False)
    fill = fill_checkpoint(path)
    if fill is not None:
        return FillEngine(*fill, device=device, precision=precision)
    check_room_for_torch(model=True)
    from cloudfree.inference.checkpoint import load_checkpoint

    return TorchEngine(load_checkpoint(path), device=device, precision=precision)


def model_file(*, model: str | None = None, checkpoint: Path | str | None = None,
               onnx: Path | str | None = None) -> Path:
    """The weights file behind a bundled model name, a checkpoint or an ONNX model."""
    if onnx is not None:
        return Path(onnx)
    return Path(checkpoint) if checkpoint is not None else bundled_model(model)
