"""Export a checkpoint's network to ONNX: fixed tile, dynamic batch, cloudfree metadata inside."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnx

from cloudfree import __version__
from cloudfree.checkpoint import LoadedModel, load_checkpoint
from cloudfree.engines import META
from cloudfree.errors import UsageError
from cloudfree.onnx_graph import network_graph
from cloudfree.rasterio_io import atomic_output, check_output


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
    network = copy.deepcopy(loaded.network).cpu().float().eval()
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        model = onnx.load_from_string(network_graph(network, tile))
        for key, value in onnx_metadata(loaded, tile).items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))
    return path


def export_checkpoint(checkpoint: Path | str, output: Path | str, tile: int = 256,
                      overwrite: bool = False) -> Path:
    """Load a checkpoint and export it to ``output`` (refused if it exists, unless overwrite)."""
    if Path(output).suffix.lower() != ".onnx":
        raise UsageError(f"output={output}: an ONNX model is written; give a .onnx path",
                         "output")
    check_output(Path(output), overwrite, [Path(checkpoint)])
    return export_onnx(load_checkpoint(checkpoint), output, tile)
