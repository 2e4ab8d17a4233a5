"""cloudfree: SAR-assisted cloud removal for whole Sentinel-2 scenes.

The public Python API is the names in ``__all__``; everything else may change between
releases. They are imported on first use, so that ``import cloudfree`` (and the CLI) stay fast.
``cloudfree.remove_scene`` and ``cloudfree.mask_scene`` are the functions, although modules of
the same names exist (``from cloudfree.remove_scene import ...`` reaches those).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "remove_scene": "cloudfree.remove_scene",
    "mask_scene": "cloudfree.mask_scene",
    "coregister_file": "cloudfree.coregister",
    "run_batch": "cloudfree.batch",
    "BatchResult": "cloudfree.batch",
    "MaskParams": "cloudfree.masking",
    "load_checkpoint": "cloudfree.checkpoint",
    "save_checkpoint": "cloudfree.checkpoint",
    "build": "cloudfree.networks",
    "ARCHITECTURES": "cloudfree.networks",
    "CloudfreeError": "cloudfree.errors",
    "UsageError": "cloudfree.errors",
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


class _Package(types.ModuleType):
    """The package; importing a submodule named like a public function leaves the function."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return  # the import system binding the submodule, which stays in sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
