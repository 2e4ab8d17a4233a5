"""Extract the training pool's SEN12MS-CR-TS series used by ``benchmarks/reference_fill.py``.

    python scripts/extract_ts_series.py REPO DEST

REPO is a clone (bare or not) of github:Oriolac/cloud-removal (training pool, see
../shared/docs/DATA.md). The series is ``eda/notebooks/data/ts/sample_imgs/``: 30 dates of one
SEN12MS-CR-TS patch (Ebel et al., TUM, CC-BY 4.0), 13-band L1C DN, EPSG:4326, the date in each
file name (``s2_ROIs2017_146_ImgNo_{N}_{YYYY-MM-DD}_patch_0.tif``). Only these files are read.
DEST receives them unchanged, and DEST/MANIFEST.tsv (name, bytes, sha256), checked against the
committed ``ts_series_manifest.tsv``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from extract_mask_pairs import archived

SERIES = "eda/notebooks/data/ts/sample_imgs/"
MANIFEST = Path(__file__).with_name("ts_series_manifest.tsv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="clone or bare mirror of Oriolac/cloud-removal")
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    rows = ["name\tbytes\tsha256"]
    for name, content in sorted(archived(args.repo, [SERIES]).items()):
        target = args.dest / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        rows.append(f"{target.name}\t{len(content)}\t{hashlib.sha256(content).hexdigest()}")
    text = "\n".join(rows) + "\n"
    (args.dest / "MANIFEST.tsv").write_text(text)
    if MANIFEST.read_text() != text:
        raise SystemExit(f"{args.dest}: the files differ from {MANIFEST.name}")
    print(f"{len(rows) - 1} dates in {args.dest}")


if __name__ == "__main__":
    main()
