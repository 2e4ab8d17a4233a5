"""The public Python API: exported names, documented parameters, errors naming arguments."""

from __future__ import annotations

import inspect
import pydoc
import subprocess
import sys

import pytest
from helpers import SUMMER_S1, SUMMER_S2, documented_parameters

import cloudfree
from cloudfree.core.errors import UsageError
from cloudfree.networks import ARCHITECTURES
from cloudfree.pipeline.options import EngineOptions

DOCUMENTED = ["remove_scene", "mask_scene", "coregister_file", "run_batch"]


def test_every_public_name_resolves_and_lists_in_dir():
    for name in cloudfree.__all__:
        assert getattr(cloudfree, name) is not None
        assert name in dir(cloudfree)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cloudfree.nope  # noqa: B018


def test_public_functions_win_over_their_modules():
    import cloudfree.pipeline.mask  # noqa: F401  (binds nothing over the function)
    from cloudfree.pipeline.remove import choose_tiling

    assert inspect.isfunction(cloudfree.mask_scene) and inspect.isfunction(choose_tiling)
    assert inspect.isfunction(cloudfree.remove_scene)


def test_import_cloudfree_loads_no_torch():
    code = "import sys, cloudfree; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("name", DOCUMENTED)
def test_help_documents_every_parameter(name):
    function = getattr(cloudfree, name)
    assert documented_parameters(function) == set(inspect.signature(function).parameters)
    text = pydoc.render_doc(function, renderer=pydoc.plaintext)
    assert "Default:" in text and "Parameters" in text


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_network_constructor_documents_its_parameters(arch):
    cls = ARCHITECTURES[arch]
    params = set(list(inspect.signature(cls.__init__).parameters)[1:]) - {"config"}
    if params:
        assert documented_parameters(cls) == params
    else:
        assert "Takes no parameters" in cls.__doc__


def test_library_errors_name_the_argument(tmp_path):
    with pytest.raises(UsageError, match="^batch_size=0 must be in 1..1024$"):
        cloudfree.remove_scene(SUMMER_S2, SUMMER_S1, tmp_path / "out.tif",
                               engine=EngineOptions(batch_size=0))
    existing = tmp_path / "mask.tif"
    existing.write_bytes(b"")
    with pytest.raises(UsageError, match="exists: pass overwrite=True to replace it$"):
        cloudfree.mask_scene(SUMMER_S2, existing)


def test_the_cli_names_its_flags_where_the_library_names_arguments(tmp_path, cli):
    result = cli("remove", "--s1", SUMMER_S1, "--s2", SUMMER_S2, "-o", tmp_path / "out.tif",
                 "--model", "median-fill", "--overlap", "4000", "--tile", "64")
    assert result.exit_code == 2
    assert result.stderr == "Error: --overlap 4000 must be between 0 and half the tile (32)\n"
