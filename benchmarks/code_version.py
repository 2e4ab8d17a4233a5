"""Which cloudfree a benchmark measures: the folder it is imported from and its git commit.

A run in a worktree measures the worktree's code only where ``PYTHONPATH`` puts it first; the
line each quality benchmark prints first says which code its figures belong to. A benchmark
that runs ``python -m cloudfree`` runs it in a folder of its own (a temporary one) with
``subprocess_env``: ``-m`` puts the working directory first on the path, ahead of
``PYTHONPATH``, so run in a checkout it would measure that checkout instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cloudfree

#: The folder the measured package is imported from.
ROOT = Path(cloudfree.__file__).resolve().parents[1]


def subprocess_env() -> dict[str, str]:
    """The environment for a ``python -m cloudfree`` run of this package, wherever it runs."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def describe() -> str:
    """``cloudfree from FOLDER at COMMIT`` (``, with uncommitted changes`` where there are)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "no git commit"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "cloudfree")
    return f"cloudfree from {ROOT} at {commit}" + (", with uncommitted changes" if changed else "")
