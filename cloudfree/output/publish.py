"""Put finished temporary files at their output paths, all of a command's or none, and without
``overwrite`` never over an output that another run put there in the meantime.

Checking for an existing output at the start is not enough: two runs for the same output both
pass that check, and a plain rename replaces whatever is there. Here each file is hard-linked to
its output name, which fails if that name exists (POSIX ``link``); only once every output of
the set is in place are the temporary names removed, and if one is refused the links already
made are taken back. Where the file system has no hard links, Linux's ``renameat2`` with
``RENAME_NOREPLACE`` refuses an existing name the same way; where neither exists, a check just
before a plain rename leaves a window of microseconds instead of the whole run. With
``overwrite``, each output's old file is renamed aside and deleted only once every output is in
place, so that a refused rename (an immutable file) puts all the old files back.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cloudfree.core.errors import CloudfreeError, UsageError
from cloudfree.core.stop import note_written

#: ``renameat2`` arguments (linux/fcntl.h, linux/fs.h): paths relative to the working folder,
#: and refuse to replace.
AT_FDCWD = -100
RENAME_NOREPLACE = 1
#: Errors that mean "this file system (or kernel) cannot do that", not "the name exists".
_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL,
                errno.EMLINK, errno.EXDEV}


def publish(pairs: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Move each ``(temporary, output)`` into place: all, or none, with the outputs as they
    were and one line saying why: a :class:`UsageError` when (without ``overwrite``) an output
    appeared meanwhile, a :class:`CloudfreeError` when the system refused (e.g. an immutable
    output)."""
    placed: list[tuple[Path, Path, Path | bool]] = []  # (tmp, path, _place's undo note)
    path = None
    try:
        for tmp, path in pairs:
            placed.append((tmp, path, _replace(tmp, path) if overwrite else _place_new(tmp, path)))
    except OSError as exc:
        for placed_tmp, placed_path, note in reversed(placed):
            _take_back(placed_tmp, placed_path, note)
        nothing = "wrote nothing" if len(pairs) == 1 else "wrote none of the outputs"
        if isinstance(exc, FileExistsError) and not overwrite:
            raise UsageError(f"output {path} appeared while this run was writing it (another "
                             f"run?): kept it, and {nothing}; pass overwrite=True to replace it",
                             "overwrite") from None
        raise CloudfreeError(f"cannot write {path}: {_reason(exc)}; {nothing}") from None
    for tmp, _, note in placed:
        if note is True:
            tmp.unlink()
        elif isinstance(note, Path):
            note.unlink()
    note_written(path for _, path, _ in placed)


def _reason(exc: OSError) -> str:
    """Why the system refused, in words."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in (errno.EPERM, errno.EACCES):
        reason += " (is the file immutable or append-only? lsattr shows it)"
    return reason


def _replace(tmp: Path, path: Path) -> Path | bool:
    """Rename ``tmp`` to ``path``; what was there is kept aside, so that it can be put back:
    its new name, or False when there was none."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return False
    aside = tmp.with_name(tmp.name + ".replaced")
    os.rename(path, aside)
    try:
        os.rename(tmp, path)
    except OSError:
        os.rename(aside, path)
        raise
    return aside


def _place_new(tmp: Path, path: Path) -> bool:
    """Give ``tmp``'s file the name ``path`` unless that exists (FileExistsError); True when
    ``tmp`` is still there too (hard link), False when it was renamed."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    if not _rename_no_replace(tmp, path):
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        os.replace(tmp, path)
    return False


def _take_back(tmp: Path, path: Path, note: Path | bool) -> None:
    """Undo :func:`_place_new` or :func:`_replace` (``note`` is what it returned), if ``path``
    still is our file."""
    if note is True:
        if path.exists() and os.path.samefile(tmp, path):
            path.unlink()
        return
    os.replace(path, tmp)
    if isinstance(note, Path):
        os.rename(note, path)


@functools.cache
def _renameat2() -> Callable | None:
    """The C library's ``renameat2`` (Linux, glibc 2.28+), or None."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


def _rename_no_replace(src: Path, dst: Path) -> bool:
    """Rename unless ``dst`` exists (FileExistsError); False where the system cannot do that."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), str(dst))
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(dst))
