"""Stop requests (SIGINT, SIGTERM) as exceptions, so every ``with`` block cleans up on the way out.

SIGTERM is what ``timeout``, Slurm and Kubernetes send. Raised as :class:`Interrupted`, a
``KeyboardInterrupt``, it unwinds exactly like Ctrl-C: temporary outputs are removed by
:func:`cloudfree.rasterio_io.atomic_output`, and the command exits 128 + the signal number
(130 for SIGINT, 143 for SIGTERM), as shells report a process killed by that signal.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``message`` says what was finished, if anything."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def raise_on_stop_signals() -> None:
    """From now on SIGINT and SIGTERM raise :class:`Interrupted` in the main thread."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise)


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """A plain KeyboardInterrupt (Python's own SIGINT handler) as an Interrupted by SIGINT."""
    return exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
