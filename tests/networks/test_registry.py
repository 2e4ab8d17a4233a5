"""The architecture registry: names are unique and non-empty, presets match the constructors."""

from __future__ import annotations

import inspect

import pytest

from cloudfree.networks import ARCHITECTURES, CloudRemovalNet, register
from cloudfree.networks.glfcr import GLFCR


def constructor_defaults(cls: type[CloudRemovalNet]) -> dict:
    """The named parameters of ``cls.__init__`` with their defaults (none for ``**config``)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params if p.kind is not p.VAR_KEYWORD}


def test_refuses_a_duplicate_name():
    class Impostor(GLFCR):
        pass

    with pytest.raises(ValueError, match="'glfcr' is registered already"):
        register(Impostor)
    assert ARCHITECTURES["glfcr"] is GLFCR


def test_refuses_an_empty_name():
    class Nameless(CloudRemovalNet):
        pass

    with pytest.raises(ValueError, match="Nameless sets no arch name"):
        register(Nameless)
    assert "" not in ARCHITECTURES


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_presets_name_every_constructor_parameter(arch):
    cls = ARCHITECTURES[arch]
    assert {"paper", "small", cls.default_preset} <= set(cls.presets)
    for name, preset in cls.presets.items():
        assert set(preset) == set(constructor_defaults(cls)), f"{arch} preset {name}"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_default_preset_is_the_constructor_defaults(arch):
    cls = ARCHITECTURES[arch]
    assert cls.presets[cls.default_preset] == constructor_defaults(cls)
