"""Put finished temporary files at their output paths, all of a command's or none, and without
``overwrite`` never over an output that another run put there in the meantime.

Checking for an existing output at the start is not enough: two runs for the same output both
pass that check, and a plain rename replaces whatever is there. Here each file is hard-linked to
its output name, which fails if that name exists (POSIX ``link``); only once every output of
the set is in place are the temporary names removed, and if one is refused the links already
made are taken back. Where the file system has no hard links, Linux's ``renameat2`` with
``RENAME_NOREPLACE`` refuses an existing name the same way; where neither exists, a check just
before a plain rename leaves a window of microseconds instead of the whole run.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cloudfree.errors import UsageError
from cloudfree.signals import note_written

#: ``renameat2`` arguments (linux/fcntl.h, linux/fs.h): paths relative to the working folder,
#: and refuse to replace.
AT_FDCWD = -100
RENAME_NOREPLACE = 1
#: Errors that mean "this file system (or kernel) cannot do that", not "the name exists".
_UNSUPPORTED = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL,
                errno.EMLINK, errno.EXDEV}


def publish(pairs: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Move each ``(temporary, output)`` into place: all, or (without ``overwrite``, when an
    output appeared meanwhile) none, with that output kept and a :class:`UsageError`."""
    if overwrite:
        for tmp, path in pairs:
            os.replace(tmp, path)
        note_written(path for _, path in pairs)
        return
    placed: list[tuple[Path, Path, bool]] = []  # (tmp, path, whether tmp is still there)
    try:
        for tmp, path in pairs:
            placed.append((tmp, path, _place_new(tmp, path)))
    except FileExistsError:
        for placed_tmp, placed_path, kept in reversed(placed):
            _take_back(placed_tmp, placed_path, kept)
        raise UsageError(f"output {path} appeared while this run was writing it (another run?): "
                         "kept it, and wrote nothing; pass overwrite=True to replace it",
                         "overwrite") from None
    for tmp, _, kept in placed:
        if kept:
            tmp.unlink()
    note_written(path for _, path, _ in placed)


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
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        os.replace(tmp, path)
    return False


def _take_back(tmp: Path, path: Path, kept: bool) -> None:
    """Undo :func:`_place_new`, if ``path`` still is our file."""
    if not kept:
        os.replace(path, tmp)
    elif path.exists() and os.path.samefile(tmp, path):
        path.unlink()


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
