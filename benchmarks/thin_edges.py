"""Whether real thin cloud edges are their land mixed with the cloud's core spectrum.

What a real thin edge adds to the land under it: the core's spectrum in proportion to its
opacity (linear mixing), or the cloudy pixel as it is? Measured on the donors of
``one_date_quality.py`` that have a clear image of another date.

    python benchmarks/thin_edges.py --data DATA

DATA is the set built by ``scripts/build_training_set.py``. For each donor (a real cloudy image of
the pool with 5-70 % cloud and real shadows, ``one_date_quality.donors``) with a clear twin, the
twin is brought to the cloudy date's level by a line per band fitted on the land more than
``FAR`` px from any cloud (the twin's date differs by days to weeks). Its thin edge is where the
benchmark's opacity ``a`` lies in ``EDGE``; there the real veil is ``cloudy - twin``, per band
B02-B12 without B09 and B10. The linear mixing of thin cloud says that veil is
``s * (core - twin)``, ``core`` the spectrum of the donor's core (``one_date_quality.cloud_only``,
the same that ``--edges "cloud only"`` blends), ``s`` the pixel's share of cloud, fitted per pixel
by least squares over the bands. The run prints per donor the share of the veil's variance the
mixing explains (R2), the RMS of the veil, of what the mixing leaves and of the twin's mismatch
on land far from cloud (what no model of the cloud can explain), and the fitted ``s`` against
``a``; then, pooled over the donors whose twin is usable (the veil's mean positive in every band:
a cloud brightens all of them, so a band that darkens is land that changed between the dates),
the same by opacity.

The blend "as seen", ``clear + a * (cloudy - clear)``, lays ``a`` times this real veil over its
donor's own land, where the real date shows the whole of it; so where ``s`` follows ``a``, an
edge blended as seen carries about ``a`` times the cloud it should, and ``a * (1 - s)`` of the
donor's land.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from one_date_quality import CORE, cloud_only, donors
from scipy import ndimage
from train_default import load_set, reflectance

from cloudfree.io.sentinel2 import BANDS as S2_BANDS

#: Bands whose veil is fitted: B02-B12 without B01, B09 and B10 (the atmosphere's).
NAMES = tuple(b for b in S2_BANDS if b not in ("B01", "B09", "B10"))
BANDS = [S2_BANDS.index(b) for b in NAMES]
#: The thin edge: the blend's opacity in this range.
EDGE = (0.05, 0.6)
#: The opacity bins of the pooled table.
BINS = ((0.05, 0.2), (0.2, 0.4), (0.4, 0.6))
#: The twin's level is fitted on land this many px or more from any cloud, and needs this many px.
FAR, MIN_FAR = 20, 500


def levelled(twin: np.ndarray, cloudy: np.ndarray, far: np.ndarray) -> np.ndarray:
    """The ``twin`` [13, H, W] brought to the ``cloudy`` date's level: a line per band fitted on
    the ``far`` land (the twin as it is where there is too little of it)."""
    if far.sum() < MIN_FAR:
        return twin
    out = np.empty_like(twin)
    for b, (x, y) in enumerate(zip(twin, cloudy, strict=True)):
        gain, offset = np.polyfit(x[far], y[far], 1)
        out[b] = gain * x + offset
    return out


def r2(veil: np.ndarray, rest: np.ndarray) -> float:
    """The share of the ``veil``'s variance [bands, N] that leaves ``rest``."""
    return float(1 - (rest ** 2).sum() / ((veil - veil.mean(1, keepdims=True)) ** 2).sum())


def edge_fit(donor: dict, twin: np.ndarray) -> dict | None:
    """The real veil [bands, N] of the donor's thin edge, what the mixing with its core leaves,
    the fitted shares and the opacities [N], and the twin's RMS mismatch far from cloud; None
    where the donor has no core or no edge."""
    n, m = (min(a, b) for a, b in zip(donor["cloudy"].shape[1:], twin.shape[1:], strict=True))
    cloudy, alpha = donor["cloudy"][:, :n, :m], donor["alpha"][:n, :m]
    twin = twin[:, :n, :m]
    edge = (alpha > EDGE[0]) & (alpha < EDGE[1])
    if not (alpha >= CORE).any() or not edge.any():
        return None
    far = ndimage.distance_transform_edt(alpha == 0) > FAR
    twin = levelled(twin, cloudy, far)
    core = cloud_only(donor)[:, :n, :m]
    veil = (cloudy - twin)[BANDS][:, edge]
    towards = (core - twin)[BANDS][:, edge]
    share = (veil * towards).sum(0) / np.maximum((towards ** 2).sum(0), 1e-6)
    mismatch = (cloudy - twin)[BANDS][:, far]
    return {"veil": veil, "rest": veil - share * towards, "share": share, "alpha": alpha[edge],
            "mismatch": float(np.sqrt((mismatch ** 2).mean())) if far.sum() >= MIN_FAR
            else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    records = [r for split in ("train", "val") for r in load_set(args.data, split)
               if not r["bands_missing"] and "s2_cloudy" in r]
    by_id = {r["id"]: r for r in records}
    print("| donor | edge px | R2 of the mixing | RMS veil | RMS left | twin's mismatch far "
          "from cloud | median share / opacity | usable |")
    print("|---|---|---|---|---|---|---|---|")
    usable = []
    for donor in donors(records):
        record = by_id[donor["id"]]
        if "s2_clear" not in record:
            print(f"| {donor['id']} | no clear image of another date | | | | | | |")
            continue
        fit = edge_fit(donor, reflectance(record["s2_clear"])[0])
        if fit is None:
            print(f"| {donor['id']} | no core (opacity {CORE} or more) with an edge | | | | | | |")
            continue
        fit["usable"] = bool((fit["veil"].mean(1) > 0).all())
        print(f"| {donor['id']} | {fit['alpha'].size} | {r2(fit['veil'], fit['rest']):.2f} | "
              f"{np.sqrt((fit['veil'] ** 2).mean()):.4f} | "
              f"{np.sqrt((fit['rest'] ** 2).mean()):.4f} | {fit['mismatch']:.4f} | "
              f"{np.median(fit['share'] / fit['alpha']):.2f} | "
              f"{'yes' if fit['usable'] else 'no: a band darkens'} |")
        if fit["usable"]:
            usable.append(fit)
    if not usable:
        return
    veil, rest = (np.concatenate([f[k] for f in usable], 1) for k in ("veil", "rest"))
    share, alpha = (np.concatenate([f[k] for f in usable]) for k in ("share", "alpha"))
    print(f"\n{len(usable)} usable donors, pooled, mean per band ({', '.join(NAMES)}):")
    print("veil:", " ".join(f"{v:+.3f}" for v in veil.mean(1)))
    print("left:", " ".join(f"{v:+.3f}" for v in rest.mean(1)))
    print("\n| opacity | edge px | R2 of the mixing | median share | median share / opacity | "
          "mean veil in B02 | as seen: cloud carried against the real date's |")
    print("|---|---|---|---|---|---|---|")
    for low, high in (*BINS, EDGE):
        s = (alpha >= low) & (alpha < high)
        print(f"| {low}-{high} | {s.sum()} | {r2(veil[:, s], rest[:, s]):.2f} | "
              f"{np.median(share[s]):.2f} | {np.median(share[s] / alpha[s]):.2f} | "
              f"{veil[0, s].mean():.3f} | {np.median(alpha[s]):.2f} |")


if __name__ == "__main__":
    main()
