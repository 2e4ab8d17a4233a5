"""Checks of the library's arguments, as the command line's option types make them: a value
of the wrong type or out of the option's range is a one-line UsageError naming the argument
(``tile='abc' must be a whole number of pixels``), not an AttributeError or a run that asks
for terabytes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from numbers import Integral, Real

from cloudfree.core.errors import UsageError

PathLike = str | os.PathLike


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""


def check_switch(name: str, value: object) -> None:
    """``value`` is True or False."""
    if not isinstance(value, bool):
        raise UsageError(f"{name}={value!r} must be True or False", name)


def check_whole(name: str, value: object, low: int, high: int | None = None, unit: str = ""
                ) -> None:
    """``value`` is a whole number in ``low``..``high`` (no upper bound: None)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise UsageError(f"{name}={value!r} must be a whole number{_unit(unit and 'of ' + unit)}",
                         name)
    _check_range(name, value, low, high, unit)


def check_number(name: str, value: object, low: float, high: float | None = None,
                 unit: str = "") -> None:
    """``value`` is a number (not NaN) in ``low``..``high`` (no upper bound: None)."""
    if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
        raise UsageError(f"{name}={value!r} must be a number{_unit(unit and 'of ' + unit)}",
                         name)
    _check_range(name, value, low, high, unit)


def _check_range(name: str, value: Real, low: float, high: float | None, unit: str) -> None:
    if high is None and not value >= low:
        raise UsageError(f"{name}={value} must be at least {low}{_unit(unit)}", name)
    if high is not None and not low <= value <= high:
        raise UsageError(f"{name}={value} must be in {low}..{high}{_unit(unit)}", name)


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        raise UsageError(f"{name}={value!r} must be one of {', '.join(map(str, choices))}",
                         name)


def check_kind(name: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
    """``value`` is an instance of ``kind``, which the message calls ``what``."""
    if not isinstance(value, kind):
        raise UsageError(f"{name}={value!r} must be {what}", name)


def check_path(name: str, value: object, optional: bool = False) -> None:
    """``value`` is a path (``str`` or ``os.PathLike``, not empty), or None when ``optional``."""
    if value is None and optional:
        return
    if not isinstance(value, PathLike) or not str(value).strip():
        raise UsageError(f"{name}={value!r} must be a path (a str or pathlib.Path"
                         f"{', or None' if optional else ''})", name)


def check_paths(name: str, value: object, none_items: bool = False) -> tuple:
    """``value`` as a tuple of paths (items may be None with ``none_items``); a single path is
    refused rather than read letter by letter."""
    if isinstance(value, PathLike):
        raise UsageError(f"{name}={str(value)!r} is one path where a list of them is taken: "
                         f"give {name}=[{str(value)!r}]", name)
    try:
        paths = tuple(value)
    except TypeError:
        raise UsageError(f"{name}={value!r} must be a list of paths", name) from None
    for path in paths:
        if not (none_items and path is None):
            check_path(name, path)
    return paths
