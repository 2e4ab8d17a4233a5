"""What a path given on the command line is, said in words: a missing file, a symbolic link loop,
a dangling link, a FIFO. Inputs must be regular files or folders (a FIFO or a device would
block the read or never end), or http(s) URLs (:class:`Url`, read by ``io/remote.py``); an
output name taken by anything, a dangling link included, is an existing output."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from cloudfree.core.errors import CloudfreeError, UsageError

#: What a file that is neither a regular file nor a folder is, by its ``st_mode`` type.
_SPECIAL = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
            stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


#: How the URLs of inputs read over the network begin.
URL_SCHEMES = ("http://", "https://")


class Url(str):
    """An input given as an http(s) URL, kept as written (``Path`` would fold its ``//``), with
    the name pieces of a file path taken from the URL's path: ``name``, ``stem``, ``suffix``."""

    __slots__ = ()

    @property
    def _path(self) -> PurePosixPath:
        return PurePosixPath(unquote(urlsplit(self).path))

    @property
    def name(self) -> str:
        return self._path.name

    @property
    def stem(self) -> str:
        return self._path.stem

    @property
    def suffix(self) -> str:
        return self._path.suffix


def as_url(value: object) -> Url | None:
    """``value`` as a :class:`Url` when it is the text of an http(s) URL, else None (a ``Path``
    is never one)."""
    if isinstance(value, str) and value[:8].lower().startswith(URL_SCHEMES):
        return value if isinstance(value, Url) else Url(value)
    return None


def input_problem(path: Path | str, folder: bool | None = None) -> str | None:
    """Why ``path`` cannot be read as an input, in words (``folder``: True when it must be a
    folder, False when a file, None either); None when it can."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _missing(Path(path), exc)
    if stat.S_ISDIR(mode):
        return "is a folder, not a file" if folder is False else None
    if stat.S_ISREG(mode):
        return "is a file, not a folder" if folder else None
    wanted = {True: "a folder", False: "a regular file"}.get(folder, "a regular file or folder")
    return f"is {_SPECIAL.get(stat.S_IFMT(mode), 'a special file')}, not {wanted}"


def _missing(path: Path, exc: OSError) -> str:
    """Why ``os.stat`` failed on ``path``, in words."""
    link = _broken_link(path, exc)
    if link is not None:
        return f"is {link}"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "does not exist"
    return f"cannot be read ({(exc.strerror or str(exc)).lower()})"


def _broken_link(path: Path, exc: OSError) -> str | None:
    """``path`` as a symbolic link that leads nowhere, in words, or None."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    if os.path.islink(path):
        return f"a dangling symbolic link to {os.readlink(path)}"
    return None


def check_input(path: Path | str, what: str, folder: bool | None = None, url: bool = False
                ) -> Path | Url:
    """``path`` as a Path when it can be read (see :func:`input_problem`), or with ``url`` an
    http(s) URL as a :class:`Url` (checked when it is fetched); else a one-line error naming
    the input as ``what``."""
    found = as_url(path)
    if found is not None:
        if not url or folder:
            need = "a local folder (a URL cannot be listed)" if folder else "a local file"
            raise CloudfreeError(f"{what} {found} is a URL; give {need}")
        return found
    problem = input_problem(path, folder)
    if problem is not None:
        raise CloudfreeError(f"{what} {path} {problem}")
    return Path(path)


def taken(path: Path | str) -> str | None:
    """What holds the name ``path`` (``"exists"``, ``"exists (a dangling symbolic link ...)"``),
    or None when the name is free."""
    if not os.path.lexists(path):
        return None
    try:
        os.stat(path)
    except OSError as exc:
        link = _broken_link(Path(path), exc)
        if link is not None:
            return f"exists ({link})"
    return "exists"


def real(path: Path | str) -> Path:
    """The path with every symbolic link followed; a loop stays where it loops (never raises)."""
    return Path(os.path.realpath(path))


def check_folder_output(path: Path | str, what: str) -> Path:
    """``path`` as a Path when ``what`` (e.g. "train") can write into it: a folder, or a name
    that is free; else a one-line error."""
    if os.path.lexists(path):
        problem = input_problem(path, folder=True)
        if problem is not None:
            raise UsageError(f"output {path} {problem.removesuffix(', not a folder')}; {what} "
                             "writes into a folder: give a folder path")
    else:  # made with its missing parents: the nearest that exists must be a folder
        existing = nearest_existing(path)
        if not existing.is_dir():
            raise UsageError(f"output {path} lies inside {existing}, which is a file, not a "
                             f"folder; {what} writes into a folder: give a folder path")
    return Path(path)


def nearest_existing(path: Path | str) -> Path:
    """The nearest folder above ``path`` whose name exists (a file, perhaps; the root at
    worst)."""
    return next(p for p in Path(path).absolute().parents if os.path.lexists(p))


@contextmanager
def new_folder(path: Path | str, what: str) -> Iterator[Path]:
    """The output folder ``path`` (see :func:`check_folder_output`), which the block makes with
    its missing parents when it first writes there (a run killed before that leaves no empty
    folder); the missing ones made meanwhile that are still empty when the block ends (it
    failed, or wrote nothing) are removed."""
    path = check_folder_output(path, what)
    made = [p for p in (path, *path.parents) if not os.path.lexists(p)]
    try:
        yield path
    finally:
        for folder in made:  # the deepest first
            try:
                folder.rmdir()
            except FileNotFoundError:  # not made yet
                continue
            except OSError:  # not empty: the run wrote something worth keeping
                break
