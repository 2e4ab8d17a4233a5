"""Errors that reach the user as one line, with the exit code they deserve."""

from __future__ import annotations

from collections.abc import Mapping


class CloudfreeError(Exception):
    """A problem with the input data or the environment: one line, exit code 1.

    The message names Python arguments as ``name=value`` (``name=True`` for a switch) and
    ``params`` lists those names, so that the CLI can put its flags in their place.
    """

    exit_code = 1

    def __init__(self, message: str, *params: str) -> None:
        super().__init__(message)
        self.params = params


class UsageError(CloudfreeError):
    """The command was asked for something it cannot do as given: exit code 2."""

    exit_code = 2


class OutOfMemory(MemoryError):
    """Memory cannot hold the run; the message says why, when known."""


def spelled(exc: CloudfreeError, flags: Mapping[str, tuple[str, bool | str]]) -> str:
    """The message with each ``name=`` of ``exc.params`` spelled as its command-line flag;
    ``flags`` maps a Python name to its flag and whether that is a switch (``name=True``), or
    the switch's off flag (``name=False`` too, as ``--no-thin``)."""
    text = str(exc)
    for name in exc.params:
        if name not in flags:
            continue
        flag, switch = flags[name]
        if switch:
            text = text.replace(f"{name}=True", flag)
        if isinstance(switch, str):
            text = text.replace(f"{name}=False", switch)
        text = text.replace(f"{name}=", f"{flag} ")
    return text
