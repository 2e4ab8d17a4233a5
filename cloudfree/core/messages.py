"""Each message once per run: an input read twice (a reference, a scene that is also another
scene's reference in a batch) notes and warns once, not once per read."""

from __future__ import annotations

import logging


class OncePerRun(logging.Filter):
    """A logging filter that lets each distinct message through once (errors always).

    Messages name their file or scene, so one message per text is one per file and run; a
    new filter (as ``setup_logging`` installs at each command) starts a new run.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
