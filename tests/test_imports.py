"""Every cloudfree module imports first, in a fresh interpreter: no import circle."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SUMMER_S1, SUMMER_S2

import cloudfree

#: Imports each module named on the command line with no cloudfree module loaded before it
#: (torch and the other third-party packages stay loaded, so this takes seconds, not minutes).
_IMPORT_EACH_FIRST = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "cloudfree" or m.startswith("cloudfree.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def all_modules() -> list[str]:
    """Every module but ``cloudfree.__main__``, which runs the CLI when imported."""
    return sorted(m.name for m in pkgutil.walk_packages(cloudfree.__path__, "cloudfree.")
                  if m.name != "cloudfree.__main__")


def test_the_walk_finds_the_modules_that_once_formed_a_circle():
    modules = all_modules()
    assert {"cloudfree.inference.checkpoint", "cloudfree.networks.glfcr", "cloudfree.cli.commands",
            "cloudfree.training.loop"} <= set(modules)
    assert len(modules) > 40 and "cloudfree.__main__" not in modules


@pytest.mark.slow
def test_every_module_imports_first():
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, *all_modules()],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


#: ``cloudfree remove`` with the default model, in this interpreter; prints the heavy packages
#: it loaded.
_REMOVE_DEFAULT = """
import sys
from cloudfree.cli.commands import main
main(sys.argv[1:], standalone_mode=False)
print("loaded:", *(m for m in ("torch", "onnxruntime") if m in sys.modules))
"""


def test_the_default_remove_loads_neither_torch_nor_onnxruntime(tmp_path):
    """The network-free default fills on CPU without either: loading torch alone costs more
    than the sample's whole removal."""
    out = tmp_path / "r.tif"
    done = subprocess.run([sys.executable, "-c", _REMOVE_DEFAULT, "remove", "--s2",
                           str(SUMMER_S2), "--s1", str(SUMMER_S1), "-o", str(out), "--quiet",
                           "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "loaded:" and out.is_file()


def test_the_fill_engine_reads_the_checkpoint_as_torch_does():
    from cloudfree.inference.bundled import FILL_MODEL, bundled_model
    from cloudfree.inference.checkpoint import load_checkpoint
    from cloudfree.inference.engines import FILL_ARCH, FillEngine, TorchEngine, open_engine
    from cloudfree.networks.fillnet import Fill

    engine, loaded = open_engine(model=FILL_MODEL), load_checkpoint(bundled_model(FILL_MODEL))
    assert isinstance(engine, FillEngine) and Fill.arch == FILL_ARCH == loaded.arch
    full = TorchEngine(loaded, device="cpu")
    for name in ("scaling", "bands", "default_tile", "tile", "size_multiple", "receptive_field",
                 "fully_convolutional", "uses_mask", "device"):
        assert getattr(engine, name) == getattr(full, name), name
    assert not engine.runs_network and full.runs_network  # what remove_scene branches on


#: The packages by stage, lowest first: a module imports only from its own package and those
#: before it (``cloudfree/__init__.py`` and ``__main__`` sit above them all).
LAYERS = ("core", "io", "mask", "output", "coregister", "fill", "dates", "networks", "inference",
          "training", "pipeline", "cli")


def cloudfree_imports(path: Path) -> list[tuple[int, str]]:
    """(line, package) of every ``cloudfree.<package>`` a module imports at run time, those
    inside functions included; imports only for type checkers are left out."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name.split(".")[1]) for name in names
                  if name.startswith("cloudfree.")]
    return found


def test_the_packages_exist_and_every_module_sits_in_one():
    root = Path(cloudfree.__file__).parent
    assert {p.name for p in root.iterdir() if (p / "__init__.py").is_file()} == set(LAYERS)
    assert sorted(p.name for p in root.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_imports_point_down_the_stages():
    root = Path(cloudfree.__file__).parent
    upward = []
    for path in root.rglob("*.py"):
        package = path.relative_to(root).parts[0]
        if package not in LAYERS:
            continue
        upward += [f"{path.relative_to(root)}:{line} imports cloudfree.{target}"
                   for line, target in cloudfree_imports(path)
                   if target in LAYERS and LAYERS.index(target) > LAYERS.index(package)]
    assert not upward, "\n".join(upward)
