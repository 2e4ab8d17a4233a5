"""Extract the 30 real cloudy / cloud-free L1C pairs used by ``benchmarks/mask_quality.py``.

    python scripts/extract_mask_pairs.py REPO DEST

REPO is a clone (bare or not) of github:Oriolac/cloud-removal (training pool, see
../shared/docs/DATA.md); DEST receives ``high_cp/`` and ``low_cp/``, each with ``s2/`` (cloud-free)
and ``s2_cloudy/`` twins (SEN12MS-CR patches, 13-band uint16 L1C, 256 px, georeferenced;
Ebel et al., TUM, CC-BY 4.0). Only these two folders are read; nothing else of the repository.
A manifest (name, bytes, sha256) is written to DEST/MANIFEST.tsv.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

FOLDERS = ("high_cp", "low_cp")
PREFIX = "eda/notebooks/imgs/cr/"


def git_dir(repo: Path) -> Path:
    """The git directory of a clone or of a bare mirror."""
    return repo / ".git" if (repo / ".git").is_dir() else repo


def extract(repo: Path, dest: Path) -> list[Path]:
    """Write the pair folders under ``dest``; return the files written."""
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir(repo)}", "archive", "--format=tar", "HEAD",
         *(PREFIX + f for f in FOLDERS)],
        check=True, capture_output=True,
    ).stdout
    written = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".tif"):
                continue
            target = dest / member.name.removeprefix(PREFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            written.append(target)
    return sorted(written)


def write_manifest(dest: Path, files: list[Path]) -> None:
    lines = [f"{p.relative_to(dest)}\t{p.stat().st_size}\t"
             f"{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files]
    (dest / "MANIFEST.tsv").write_text("path\tbytes\tsha256\n" + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="clone of github:Oriolac/cloud-removal")
    parser.add_argument("dest", type=Path, help="folder to write the pairs into")
    args = parser.parse_args()
    files = extract(args.repo, args.dest)
    write_manifest(args.dest, files)
    print(f"{len(files)} files ({len(files) // 2} pairs) in {args.dest}")


if __name__ == "__main__":
    main()
