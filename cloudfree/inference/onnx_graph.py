"""A network's ``forward(s2, s1[, mask])`` as an ONNX graph in memory, and an onnxruntime
session for it: the form ``export-onnx`` writes, and the one CPU inference runs."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    import onnxruntime

OPSET = 17


class _Inference(nn.Module):
    """forward(s2, s1[, mask]) -> output only, the signature the exported graph gets."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.network(*inputs, return_aux=False)


def network_graph(network: nn.Module, tile: int, any_size: bool = False) -> bytes:
    """The ONNX graph (bytes) of ``network`` in fp32 on CPU for ``tile`` x ``tile`` inputs and
    any batch; with ``any_size``, for any height and width as well."""
    network = _Inference(network).eval()
    names = ["s2", "s1", "mask"][: 3 if network.network.uses_mask else 2]
    inputs = tuple(torch.zeros(1, c, tile, tile) for c in (13, 2, 1)[: len(names)])
    axes = {0: "batch", 2: "height", 3: "width"} if any_size else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated but needs no extra package (onnxscript)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)
        torch.onnx.export(network, inputs, buffer, input_names=names, output_names=["output"],
                          dynamic_axes={name: axes for name in (*names, "output")},
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def open_session(model: bytes | str, providers: list) -> onnxruntime.InferenceSession:
    """An onnxruntime session for a graph (bytes or a file path), on torch's share of the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors are raised, and said in one line
    options.intra_op_num_threads = torch.get_num_threads()
    # idle intra-op threads sleep instead of spinning: on CPU the loader threads need those
    # cycles (9 % off `remove` on 2 cores, identical output)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=providers)
