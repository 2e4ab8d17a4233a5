"""Export a checkpoint's network to ONNX: fixed tile, dynamic batch, cloudfree metadata inside."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from cloudfree import __version__
from cloudfree.checkpoint import LoadedModel, load_checkpoint
from cloudfree.engines import META
from cloudfree.errors import UsageError
from cloudfree.rasterio_io import atomic_output, check_output

OPSET = 17


class _Inference(nn.Module):
    """forward(s2, s1[, mask]) -> output only, the signature the exported graph gets."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.network(*inputs, return_aux=False)


def onnx_metadata(loaded: LoadedModel, tile: int) -> dict[str, str]:
    """What OnnxEngine needs to feed the model, as metadata_props strings."""
    network = loaded.network
    return {
        META + "scaling": json.dumps(loaded.scaling.to_dict()),
        META + "bands": json.dumps(list(loaded.bands)),
        META + "arch": loaded.arch,
        META + "config": json.dumps(loaded.config),
        META + "tile": str(tile),
        META + "size_multiple": str(network.size_multiple),
        META + "receptive_field": str(network.receptive_field()),
        META + "fully_convolutional": "true" if network.fully_convolutional else "false",
        META + "uses_mask": "true" if network.uses_mask else "false",
        META + "version": __version__,
    }


def export_onnx(loaded: LoadedModel, path: Path | str, tile: int = 256) -> Path:
    """Write the ``loaded`` model as an ONNX model for ``tile`` x ``tile`` inputs, atomically."""
    multiple = loaded.network.size_multiple
    if tile <= 0 or tile % multiple:
        raise UsageError(f"tile {tile} does not fit {loaded.arch}: it must be a positive "
                         f"multiple of {multiple}")
    network = _Inference(copy.deepcopy(loaded.network).cpu().float().eval())
    inputs = (torch.zeros(1, 13, tile, tile), torch.zeros(1, 2, tile, tile))
    names = ["s2", "s1"]
    if loaded.network.uses_mask:
        inputs += (torch.zeros(1, 1, tile, tile),)
        names.append("mask")
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        with warnings.catch_warnings():
            # the TorchScript exporter is deprecated but needs no extra package (onnxscript)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", "Constant folding", UserWarning)
            torch.onnx.export(
                network, inputs, str(tmp), input_names=names, output_names=["output"],
                dynamic_axes={name: {0: "batch"} for name in (*names, "output")},
                opset_version=OPSET, dynamo=False,
            )
        model = onnx.load(str(tmp))
        for key, value in onnx_metadata(loaded, tile).items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))
    return path


def export_checkpoint(checkpoint: Path | str, output: Path | str, tile: int = 256,
                      overwrite: bool = False) -> Path:
    """Load a checkpoint and export it to ``output`` (refused if it exists, unless overwrite)."""
    check_output(Path(output), overwrite, [Path(checkpoint)])
    return export_onnx(load_checkpoint(checkpoint), output, tile)
