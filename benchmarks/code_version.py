"""Which cloudfree a benchmark measures: the folder it is imported from and its git commit.

A run in a worktree measures the worktree's code only where ``PYTHONPATH`` puts it first; the
line each quality benchmark prints first says which code its figures belong to.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cloudfree


def describe() -> str:
    """``cloudfree from FOLDER at COMMIT`` (``, with uncommitted changes`` where there are)."""
    root = Path(cloudfree.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "no git commit"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "cloudfree")
    return f"cloudfree from {root} at {commit}" + (", with uncommitted changes" if changed else "")
