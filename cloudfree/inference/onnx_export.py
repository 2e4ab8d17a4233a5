"""Export a checkpoint's network to ONNX: fixed tile, dynamic batch, cloudfree metadata inside."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnx
from torch import nn

from cloudfree import __version__
from cloudfree.core.errors import UsageError
from cloudfree.core.memory import check_trace_memory
from cloudfree.inference.bundled import FILL_MODEL, bundled_models
from cloudfree.inference.checkpoint import LoadedModel, load_checkpoint
from cloudfree.inference.engines import FILL_ARCH, META
from cloudfree.inference.onnx_graph import network_graph
from cloudfree.output.atomic import atomic_output, check_output


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


def traced(network: nn.Module, tile: int) -> onnx.ModelProto:
    """The network's graph for ``tile`` x ``tile`` inputs. One that runs on any size is traced
    on a small input and its inputs and output pinned to the tile: the trace's memory grows
    with the area traced (about 2 kB per pixel for cloudfree-fillnet); others are traced on
    the tile, when that fits in memory."""
    if not network.onnx_any_size:
        check_trace_memory(network, tile)
        return onnx.load_from_string(network_graph(network, tile))
    model = onnx.load_from_string(network_graph(network, 2 * network.size_multiple,
                                                any_size=True))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_value = dims[3].dim_value = tile
    return model


def exportable() -> str:
    """What can be exported, as a message names it: the bundled networks, then a checkpoint."""
    names = sorted(name for name in bundled_models() if name != FILL_MODEL)
    bundled = f"{', '.join(names)} (bundled) or " if names else ""
    return f"{bundled}checkpoint=PATH of a trained network"


def export_onnx(loaded: LoadedModel, path: Path | str, tile: int = 256,
                overwrite: bool = True) -> Path:
    """Write the ``loaded`` model as an ONNX model for ``tile`` x ``tile`` inputs, atomically
    (without ``overwrite``, never over a file that appeared meanwhile)."""
    multiple = loaded.network.size_multiple
    if tile <= 0 or tile % multiple:
        raise UsageError(f"tile {tile} does not fit {loaded.arch}: it must be a positive "
                         f"multiple of {multiple}")
    network = copy.deepcopy(loaded.network).cpu().float().eval()
    # traced before the output is opened: a run killed while tracing leaves no file behind
    model = traced(network, tile)
    for key, value in onnx_metadata(loaded, tile).items():
        model.metadata_props.add(key=key, value=value)
    path = Path(path)
    with atomic_output(path, overwrite) as tmp:
        onnx.save(model, str(tmp))
    return path


def export_checkpoint(checkpoint: Path | str, output: Path | str, tile: int = 256,
                      overwrite: bool = False) -> Path:
    """Load a checkpoint and export it to ``output`` (refused if it exists, unless overwrite);
    the network-free fill (``median-fill``) is refused: it has no network to export."""
    if Path(output).suffix.lower() != ".onnx":
        raise UsageError(f"output={output}: an ONNX model is written; give a .onnx path",
                         "output")
    check_output(Path(output), overwrite, [Path(checkpoint)])
    loaded = load_checkpoint(checkpoint)
    if loaded.arch == FILL_ARCH:
        raise UsageError(f"{FILL_MODEL} (architecture {FILL_ARCH}) has no network to export: it "
                         f"fills without one; exportable: {exportable()}", "checkpoint")
    return export_onnx(loaded, output, tile, overwrite)
