"""Registry of architectures by name, and construction from a preset plus overrides."""

from __future__ import annotations

from cloudfree.core.errors import UsageError
from cloudfree.networks.base import CloudRemovalNet

ARCHITECTURES: dict[str, type[CloudRemovalNet]] = {}


def register(cls: type[CloudRemovalNet]) -> type[CloudRemovalNet]:
    """Class decorator adding an architecture to the registry under ``cls.arch``.

    Raises ValueError when ``cls.arch`` is empty or already registered.
    """
    if not cls.arch:
        raise ValueError(f"{cls.__name__} sets no arch name to register under")
    if cls.arch in ARCHITECTURES:
        raise ValueError(f"architecture {cls.arch!r} is registered already "
                         f"({ARCHITECTURES[cls.arch].__name__}); pick another arch name")
    ARCHITECTURES[cls.arch] = cls
    return cls


def preset_config(arch: str, preset: str = "small", **overrides) -> dict:
    """The configuration of a preset, with overrides applied."""
    cls = get_architecture(arch)
    if preset not in cls.presets:
        raise UsageError(f"{arch} has no preset {preset!r} (presets: {', '.join(cls.presets)})")
    return {**cls.presets[preset], **overrides}


def get_architecture(arch: str) -> type[CloudRemovalNet]:
    """The class registered as ``arch``, or a one-line error listing the known ones."""
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UsageError(f"unknown architecture {arch!r} (known: {known})")
    return ARCHITECTURES[arch]


def build(arch: str, preset: str = "small", **overrides) -> CloudRemovalNet:
    """Instantiate an architecture from a preset."""
    return get_architecture(arch)(**preset_config(arch, preset, **overrides))
