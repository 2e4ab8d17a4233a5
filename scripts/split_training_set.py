"""Copy what held-out training reads into parts of bounded size, to upload one at a time.

    python scripts/split_training_set.py DATA OUT [--max-mb 50]   # -> OUT1, OUT2, ...
    python scripts/train_loso.py --data OUT1 OUT2 ... ...             # reads the parts together

DATA is a set built by ``scripts/build_training_set.py``. Each part is a set of its own (an
``.npz`` per record and an ``index.json`` of its records), and ``train_default.py`` /
``train_loso.py`` take several ``--data`` folders. Only what ``real_triplets``, ``clear_scenes``
and ``cloud_fields`` read is kept (``READS``): not the clear patches (kind ``clear``), the L2A
pairs (``bands_missing``), the clear twins of the cloud fields or the S1 of the cloudy S1 scenes.
Those feed only the prior spectrum, which a ``--holdout`` run prints without checking (a run
without one refuses these parts). Records of a kind ``READS`` does not list are left out too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zipfile
from pathlib import Path

import numpy as np

MB = 1e6
#: The arrays that a held-out run reads, by record kind (L1C records only).
READS = {"triplet": ("s1", "s2_cloudy", "s2_clear"), "pair": ("s1", "s2_clear"),
         "cloudfield": ("s2_cloudy",), "cloudy_s1": ("s2_cloudy",)}


def kept_size(path: Path, names: tuple[str, ...]) -> int:
    """Compressed bytes of the arrays ``names`` in an ``.npz``."""
    with zipfile.ZipFile(path) as archive:
        return sum(archive.getinfo(f"{name}.npy").compress_size for name in names)


def assign(sizes: dict[str, int], limit: float) -> list[list[str]]:
    """Record ids in as few parts as keep every part under ``limit`` bytes (largest first, each
    into the lightest part)."""
    if max(sizes.values()) > limit:
        sys.exit(f"a record is larger than {limit / MB:.0f} MB: raise --max-mb")
    count = math.ceil(sum(sizes.values()) / limit)
    while True:
        parts, loads = [[] for _ in range(count)], [0] * count
        for name in sorted(sizes, key=sizes.get, reverse=True):
            lightest = loads.index(min(loads))
            parts[lightest].append(name)
            loads[lightest] += sizes[name]
        if max(loads) <= limit:
            return parts
        count += 1


def split(data: Path, out: Path, limit: float) -> list[Path]:
    """Write the parts ``OUT1``, ``OUT2``, ...; returns their folders."""
    stale = sorted(out.parent.glob(f"{out.name}[0-9]*"))
    if stale:
        sys.exit(f"{stale[0]} exists: remove the old parts first")
    records = [r for r in json.loads((data / "index.json").read_text())
               if r["kind"] in READS and not r["bands_missing"]]
    sizes = {r["id"]: kept_size(data / f"{r['id']}.npz", READS[r["kind"]]) for r in records}
    folders = []
    for i, ids in enumerate(assign(sizes, limit), 1):
        folder = out.parent / f"{out.name}{i}"
        folder.mkdir(parents=True)
        part = [r for r in records if r["id"] in ids]
        for record in part:
            with np.load(data / f"{record['id']}.npz") as arrays:
                np.savez_compressed(folder / f"{record['id']}.npz",
                                    **{name: arrays[name] for name in READS[record["kind"]]})
        (folder / "index.json").write_text(json.dumps(part, indent=1))
        print(f"{folder}: {len(part)} records, {sum(sizes[n] for n in ids) / MB:.1f} MB")
        folders.append(folder)
    print(f"{len(records)} records, {sum(sizes.values()) / MB:.1f} MB in {len(folders)} parts")
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path, help="prefix of the part folders")
    parser.add_argument("--max-mb", type=float, default=50, help="size limit of a part (MB)")
    args = parser.parse_args()
    split(args.data, args.out, args.max_mb * MB)


if __name__ == "__main__":
    main()
