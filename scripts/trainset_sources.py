"""Reading the training pool's source files, each checked against the committed manifest.

A source is a git clone (work tree), a bare git directory (read with ``git show HEAD:path``), a
plain folder (../shared/data) or the bigearthnet-common sdist, whose example archives are
nested ``.tar.bz2`` files (paths then read ``ARCHIVE.tar.bz2/MEMBER``). Every read goes through
``Checked.read``: the reserved-data guard first, then the sha256 against the manifest.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cloudfree.core.errors import CloudfreeError, UsageError

ORIOLAC = "github:Oriolac/cloud-removal"
DSEN2CR = "github:CodyKurpanek/dSen2CR_DSP"
RICO = "github:kai-tub/rico-hdl"
BIGEARTHNET = "pypi:bigearthnet-common==2.8.0"
SHARED = "shared:../shared/data"

RESIDUAL = "eda/notebooks/data/output/residual"
#: Oriolac samples with this ID or above are reserved for independent evaluation (DATA.md).
RESERVED_FROM = 4400
#: The only Oriolac folders the builder may read. DATA.md reserves every ID >= 4400 and one
#: folder of imgs/cr/ for independent evaluation; an allow-list keeps both out by construction
#: (the reserved folder is never listed, let alone read), and residual IDs are checked below.
ORIOLAC_ALLOWED = (
    f"{RESIDUAL}/",
    "eda/notebooks/imgs/cr/high_cp/",
    "eda/notebooks/imgs/cr/low_cp/",
    "eda/notebooks/imgs/cr/ok/",
    "eda/notebooks/imgs/cr/bad_blur/",
    "eda/notebooks/data/ts/sample_imgs/",
    "eda/notebooks/data/ts/sample_new_cloudfree/",
)


def refuse_reserved(source: str, path: str) -> None:
    """Raise unless ``path`` of ``source`` is in the training pool (checked before every read)."""
    if source != ORIOLAC:
        return
    if not path.startswith(ORIOLAC_ALLOWED):
        raise UsageError(f"{source}:{path} is outside the training pool's folders; not read")
    if path.startswith(f"{RESIDUAL}/"):
        sample_id = PurePosixPath(path).name.split("_")[0]
        if not sample_id.isdigit() or int(sample_id) >= RESERVED_FROM:
            raise UsageError(f"{source}:{path} is reserved for independent evaluation; not read")


class Source(ABC):
    """Files of one source, by POSIX path relative to its root."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root

    @abstractmethod
    def read(self, path: str) -> bytes:
        """The bytes of one file."""

    @abstractmethod
    def list(self, folder: str) -> list[str]:
        """Sorted paths of the files under ``folder`` (recursively)."""

    def revision(self) -> str | None:
        """The commit (git) or file checksum (sdist) read, for the manifest; None if unknown."""
        done = subprocess.run(["git", "-C", str(self.root), "rev-parse", "HEAD"],
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    def missing(self, path: str) -> CloudfreeError:
        return CloudfreeError(f"{self.name}: {path} is missing from {self.root}; "
                              "check that the option points at the right clone or file")


class Folder(Source):
    """A work tree (git clone) or a plain folder."""

    def read(self, path: str) -> bytes:
        file = self.root / path
        if not file.is_file():
            raise self.missing(path)
        return file.read_bytes()

    def list(self, folder: str) -> list[str]:
        base = self.root / folder
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())


class BareGit(Source):
    """A bare git directory: files of its HEAD commit."""

    def _git(self, *args: str) -> bytes:
        done = subprocess.run(["git", f"--git-dir={self.root}", *args], capture_output=True)
        if done.returncode:
            raise CloudfreeError(f"{self.name}: git {' '.join(args)} failed in {self.root}: "
                                 f"{done.stderr.decode().strip().splitlines()[-1]}")
        return done.stdout

    def read(self, path: str) -> bytes:
        try:
            return self._git("show", f"HEAD:{path}")
        except CloudfreeError:
            raise self.missing(path) from None

    def list(self, folder: str) -> list[str]:
        names = self._git("ls-tree", "-r", "--name-only", "HEAD", "--", folder).decode()
        return sorted(names.split("\n")[:-1])


class Sdist(Source):
    """A source distribution ``NAME-VERSION.tar.gz``; paths below its top folder, nested
    ``.tar.bz2`` archives entered as ``ARCHIVE.tar.bz2/MEMBER``."""

    def __init__(self, name: str, root: Path) -> None:
        super().__init__(name, root)
        self._archives: dict[str, dict[str, bytes]] = {}

    def _outer(self, path: str) -> bytes:
        try:
            with tarfile.open(self.root, "r:gz") as tar:
                top = tar.getmembers()[0].name.split("/")[0]
                member = tar.extractfile(f"{top}/{path}")
                if member is None:
                    raise KeyError(path)
                return member.read()
        except (KeyError, tarfile.TarError):
            raise self.missing(path) from None

    def _archive(self, archive: str) -> dict[str, bytes]:
        if archive not in self._archives:
            with tarfile.open(fileobj=io.BytesIO(self._outer(archive)), mode="r:bz2") as tar:
                self._archives[archive] = {m.name: tar.extractfile(m).read()
                                           for m in tar.getmembers() if m.isfile()}
        return self._archives[archive]

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        archive, sep, member = path.partition(".tar.bz2/")
        return (archive + ".tar.bz2", member) if sep else (path, "")

    def read(self, path: str) -> bytes:
        archive, member = self._split(path)
        if not member:
            return self._outer(path)
        files = self._archive(archive)
        if member not in files:
            raise self.missing(path)
        return files[member]

    def revision(self) -> str | None:
        return f"sha256:{sha256(self.root.read_bytes())}"

    def list(self, folder: str) -> list[str]:
        archive, member = self._split(folder)
        return sorted(f"{archive}/{m}" for m in self._archive(archive) if m.startswith(member))


def open_source(name: str, root: Path | str) -> Source:
    """The right reader for ``root``: sdist file, bare git directory, or folder."""
    root = Path(root)
    if root.is_file() and root.name.endswith(".tar.gz"):
        return Sdist(name, root)
    if not root.is_dir():
        raise UsageError(f"{name}: {root} is neither a folder nor a .tar.gz sdist; "
                         "pass the clone, bare git directory or sdist of this source")
    # A git directory (bare clone or mirror) holds HEAD and objects/ itself; a clone has .git/.
    if (root / "HEAD").is_file() and (root / "objects").is_dir():
        return BareGit(name, root)
    return Folder(name, root)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Checked:
    """Reads through the reserved-data guard and the manifest's checksums.

    ``expected`` maps (source, path) to sha256; with ``record`` the checksums are collected
    into ``used`` instead of compared (to write a new manifest).
    """

    expected: dict[tuple[str, str], str]
    record: bool = False
    used: dict[tuple[str, str], str] = field(default_factory=dict)

    def read(self, source: Source, path: str) -> bytes:
        refuse_reserved(source.name, path)
        data = source.read(path)
        digest = sha256(data)
        key = (source.name, path)
        if not self.record:
            if key not in self.expected:
                raise CloudfreeError(f"{source.name}:{path} is not in the manifest; "
                                     "rebuild the manifest with --write-manifest if it should be")
            if self.expected[key] != digest:
                raise CloudfreeError(f"{source.name}:{path} has sha256 {digest[:12]}..., the "
                                     f"manifest says {self.expected[key][:12]}...; check out the "
                                     "commit or release the manifest names")
        self.used[key] = digest
        return data

    def unread(self) -> list[tuple[str, str]]:
        """Manifest files the build did not read (a sign of a changed recipe)."""
        return sorted(set(self.expected) - set(self.used))
