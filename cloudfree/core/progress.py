"""Progress bars for long work: on a terminal only, and never with ``quiet``."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable, total: int | None = None, desc: str = "", quiet: bool = False, unit="win"):
    """A tqdm bar on stderr, shown only on a terminal and when not quiet."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=False)
