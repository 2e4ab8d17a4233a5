"""cloudfree: SAR-assisted cloud removal for whole Sentinel-2 scenes.

The public Python API is the names in ``__all__``; everything else may change between
releases. They are imported on first use, so that ``import cloudfree`` (and the CLI) stay fast.

The package is laid out by stage, imports pointing down only: ``core`` (errors, threads, stop
signals, memory, paths), ``io`` (reading scenes), ``mask``, ``output`` (writing results),
``coregister`` (S1 onto the S2 grid), ``fill`` (one date), ``dates`` (other dates),
``networks``, ``inference`` (engines, tiling, checkpoints), ``training``, ``pipeline`` (the
commands as functions) and ``cli``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "remove_scene": "cloudfree.pipeline.remove",
    "mask_scene": "cloudfree.pipeline.mask",
    "coregister_file": "cloudfree.coregister.s1_to_s2",
    "run_batch": "cloudfree.pipeline.batch",
    "BatchResult": "cloudfree.pipeline.batch",
    "MaskParams": "cloudfree.mask.classify",
    "EngineOptions": "cloudfree.pipeline.options",
    "FillOptions": "cloudfree.pipeline.options",
    "InputOptions": "cloudfree.io.options",
    "ReferenceOptions": "cloudfree.pipeline.options",
    "OutputOptions": "cloudfree.pipeline.options",
    "load_checkpoint": "cloudfree.inference.checkpoint",
    "save_checkpoint": "cloudfree.inference.checkpoint",
    "build": "cloudfree.networks",
    "ARCHITECTURES": "cloudfree.networks",
    "CloudfreeError": "cloudfree.core.errors",
    "UsageError": "cloudfree.core.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'cloudfree' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))

