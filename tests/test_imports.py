"""Every cloudfree module imports first, in a fresh interpreter: no import circle."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

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
    assert {"cloudfree.checkpoint", "cloudfree.networks.glfcr", "cloudfree.cli",
            "cloudfree.training.loop"} <= set(modules)
    assert len(modules) > 40 and "cloudfree.__main__" not in modules


def test_every_module_imports_first():
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FIRST, *all_modules()],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
