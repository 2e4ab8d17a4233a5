"""Score cloud masks on real cloudy / cloud-free Sentinel-2 L1C pairs, beside s2cloudless.

    python scripts/extract_mask_pairs.py CLONE_OF_Oriolac/cloud-removal /tmp/pairs
    python benchmarks/mask_quality.py /tmp/pairs/high_cp /tmp/pairs/low_cp

Each folder holds ``s2_cloudy/`` and ``s2/`` twins (same patch, a cloudy and a cloud-free date).
Truth: cloud where the cloudy image is brighter than its cloud-free twin by more than 0.05 in the
mean reflectance of B02-B04. Every mask is scored on the same pixels, pooled over all pairs:
IoU = TP / (TP + FP + FN), precision, recall. The cloud-free twins give the false alarm rate on
clear land: the cloud fraction each method finds on them (mean and worst scene).

By cloud type, each image is cut into three zones by the same brightening: thick cores (more
than 0.15 brighter), the edge zone (other pixels within 3 px of a core: the thin edges of thick
clouds) and the rest (where cloud can only be haze or thin cloud away from thick cores). Scores:
recall on the cores (every core pixel is cloud), and IoU within the edge zone and within the rest
(pooled, with that zone's own false alarms).

With ``--blend A`` each cloudy date is replaced by ``clear + A * (cloudy - clear)``: its real
cloud at a fraction of its depth over the same land (thin cloud, which the pool's pairs hold
little of), scored against the same truth.

With ``--withheld``, the default mask is also scored with bands withheld as inputs lack them:
B10 (L2A products have none: the score runs without its B01 + B10 term), and B01 with B10 (band
subsets such as B02-B08, B11, B12: the B01 ramp goes too). The same pairs and truth, so the rows
compare directly with the full score's.

The share of the cloud (by the truth) that the default mask classes snow is printed for each
half of the by-scene split (:data:`HELD_OUT`), with the pairs where it passes 1 %; with
``--twin-reference`` also that of ``cloudfree mask --reference`` given the cloud-free twin as the
one other date (where the twin shows no snow, snow that brightened as cloud does is cloud).

With ``--thin`` (no other table), the default mask's classes as ``cloudfree mask`` writes them
(its cloud split into thick cloud and thin cloud by ``classify.thin_cloud``) are scored per class
against the pairs' own split: clear where the cloudy date is at most 0.05 brighter than its twin,
thin cloud from 0.05 to 0.15 (the land shows through: the table printed first gives, by
brightening, the share of textured pixels where the cloudy date still correlates with its twin),
thick above. IoU of clear, thin, thick, and cloud (thin and thick together), pooled over the
pairs; s2cloudless and ukis-csmask, which have no thin class, count for clear and cloud. The
threshold of the split is chosen on the tuning half (the best mean of the thin and thick IoU)
and only that one is scored on the held-out half.

``--half tuning`` or ``--half held-out`` scores the pairs of one half of the by-scene split
(:data:`HELD_OUT`) alone.

With ``--filled``, what ``remove`` fills by default (without S1: the mask, its 5 px buffer and
the haze ring) is scored as a mask on each half: the buffer and the ring should cover the real
cloud's edges without growing around false alarms.

A clear real scene outside the pairs (``--clear``, default the cloud-free Sen1Floods11 scene of
../shared/data, whose bright roofs are this score's known weakness) gives one more false alarm
figure.

Methods: `cloudfree mask` with its defaults and, with ``--variants``, the routes measured before
choosing them: former defaults, lower threshold, buffers, a hysteresis grow of the cloud into
lower scores, a cirrus (B10) term, the dsen2cr method; s2cloudless
(its README's settings: threshold 0.4, average_over 4, dilation_size 2, all 13 bands); the
6-band L1C model of ukis-csmask (cloud class only; run at 10 m) when it is installed.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import code_version
import numpy as np
import rasterio
from scipy import ndimage

from cloudfree.core.boxes import local_variance
from cloudfree.core.errors import CloudfreeError
from cloudfree.fill.local import LocalFillParams, haze_region
from cloudfree.io.sentinel2 import BANDS, open_sentinel2
from cloudfree.mask import classify as classify_module
from cloudfree.mask.bands import SCORE_BANDS
from cloudfree.mask.bright_land import cloud_parallax
from cloudfree.mask.classify import CLOUD, SNOW, THIN_SCORE, MaskParams, classify, raw_score
from cloudfree.pipeline.mask import mask_scene

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLEAR_SCENE = DATA / "sen1floods11" / "Spain_7370579_S2Hand.tif"
TRUTH_DELTA = 0.05
THICK_DELTA = 0.15  # brightening of thick cores
EDGE_PX = 3  # width of the edge zone around the cores
NEAR_SNOW = 20  # px from a pasted cloud within which the snow kept is also given apart
VISIBLE = [BANDS.index(b) for b in ("B02", "B03", "B04")]
#: The held-out half of the by-scene split (the other half tunes).
HELD_OUT = {"series", "ROIs1868_summer_135", "ROIs1970_fall_85", "ROIs2017_winter_102",
            *(f"residual_{i}" for i in (2266, 316, 4065, 4294, 746))}
Masker = Callable[[np.ndarray], np.ndarray]


def scene(name: str) -> str:
    """The SEN12MS-CR scene of a pair (each residual triplet its own; the series one)."""
    parts = name.split("_")
    if parts[0] in ("series", "residual"):
        return parts[0] if parts[0] == "series" else f"residual_{parts[-1]}"
    return "_".join(parts[:2] + [parts[4]])  # ROIs1970_fall_s2_cloudy_136_p139


@dataclass
class Pair:
    name: str
    cloudy: np.ndarray  # reflectance [13, H, W]
    clear: np.ndarray
    files: tuple[Path, Path] | None = None  # the cloudy and the clear file, as read

    @property
    def excess(self) -> np.ndarray:
        """How much brighter the cloudy date is, mean reflectance of B02-B04."""
        return self.cloudy[VISIBLE].mean(0) - self.clear[VISIBLE].mean(0)

    @property
    def truth(self) -> np.ndarray:
        return self.excess > TRUTH_DELTA

    def zones(self) -> dict[str, np.ndarray]:
        """The image cut into thick cores, the edge zone around them and the rest."""
        thick = self.excess > THICK_DELTA
        near = ndimage.distance_transform_edt(~thick) <= EDGE_PX if thick.any() else thick
        return {"thick": thick, "edge": near & ~thick, "rest": ~near}


def read_reflectance(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read().astype(np.float32) / 10000


def halves(pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    """The pairs of the tuning half and of the held-out half (by scene, :data:`HELD_OUT`)."""
    return ([p for p in pairs if scene(p.name) not in HELD_OUT],
            [p for p in pairs if scene(p.name) in HELD_OUT])


def pairs_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser, taking the folders of pairs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="folders with s2_cloudy/ and s2/ twins")
    return parser


def blended(pairs: list[Pair], blend: float) -> list[Pair]:
    """Each cloudy date blended into its clear twin: a real cloud at a fraction of its depth
    (at 1, the pairs themselves)."""
    if blend == 1:
        return pairs
    return [Pair(p.name, p.clear + blend * (p.cloudy - p.clear), p.clear) for p in pairs]


def load_pairs(folders: list[Path]) -> list[Pair]:
    """Pairs ``s2_cloudy/X_s2_cloudy_Y.tif`` + ``s2/X_s2_Y.tif`` from each folder."""
    pairs = []
    for folder in folders:
        for cloudy in sorted((folder / "s2_cloudy").glob("*.tif")):
            clear = folder / "s2" / cloudy.name.replace("_s2_cloudy_", "_s2_")
            pairs.append(Pair(cloudy.stem, read_reflectance(cloudy), read_reflectance(clear),
                              (cloudy, clear)))
    if not pairs:
        raise SystemExit(f"no s2_cloudy/*.tif with an s2/ twin in {', '.join(map(str, folders))}")
    return pairs


def ours(params: MaskParams) -> Masker:
    return lambda refl: classify(refl, None, params)[0] == CLOUD


def filled(refl: np.ndarray) -> np.ndarray:
    """The pixels `remove` fills by default (no S1): the mask with its 5 px buffer, and the
    haze ring around it."""
    classes, score = classify(refl, None, MaskParams(buffer=5))
    valid = np.ones(classes.shape, bool)
    cloud = classes == CLOUD
    return haze_region(cloud, score, valid, LocalFillParams(), cloud_parallax(refl, BANDS, cloud))


def hysteresis(low: float, steps: int) -> Masker:
    """The default cloud grown by up to ``steps`` px (8-connected) into scores above ``low``."""

    def run(refl: np.ndarray) -> np.ndarray:
        classes, score = classify(refl, None, MaskParams())
        return ndimage.binary_dilation(classes == CLOUD, np.ones((3, 3), bool), steps,
                                       mask=score > low)

    return run


def cirrus(b10: float) -> Masker:
    """The default cloud, and every pixel whose cirrus band B10 exceeds ``b10``."""
    default = ours(MaskParams())
    return lambda refl: default(refl) | (refl[BANDS.index("B10")] > b10)


def s2cloudless() -> Masker | None:
    try:
        from s2cloudless import S2PixelCloudDetector
    except ImportError:
        return None
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2,
                                    all_bands=True)
    return lambda refl: detector.get_cloud_masks(np.moveaxis(refl, 0, -1)[None])[0] > 0


def ukis_csmask(factor: int = 1) -> Masker | None:
    """The ukis-csmask network's cloud (6-band L1C model), run on the image averaged over
    ``factor`` x ``factor`` px blocks (3: the 30 m its authors ask for) and repeated back."""
    try:
        from ukis_csmask.mask import CSmask
    except ImportError:
        return None
    order = ["B02", "B03", "B04", "B08", "B11", "B12"]
    names = ["blue", "green", "red", "nir", "swir16", "swir22"]

    def run(refl: np.ndarray) -> np.ndarray:
        img = np.moveaxis(refl[[BANDS.index(b) for b in order]], 0, -1)
        h, w = img.shape[0] // factor * factor, img.shape[1] // factor * factor
        img = img[:h, :w].reshape(h // factor, factor, w // factor, factor, -1).mean(axis=(1, 3))
        mask = CSmask(img.astype(np.float32), band_order=names, product_level="l1c",
                      providers=["CPUExecutionProvider"], intra_op_num_threads=2)
        cloud = np.kron(mask.csm[..., 0] == 1, np.ones((factor, factor), bool))
        return np.pad(cloud, ((0, refl.shape[1] - h), (0, refl.shape[2] - w)), mode="edge")

    return run


def withheld(*missing: str) -> Masker:
    """The default mask run on the bands but ``missing`` (as an input without them is)."""
    keep = [i for i, b in enumerate(BANDS) if b not in missing]
    bands = tuple(BANDS[i] for i in keep)
    return lambda refl: classify(refl[keep], None, MaskParams(), bands)[0] == CLOUD


def methods(extra: bool, without: bool = False) -> dict[str, Masker]:
    """The masks to score, by the name printed in the table."""
    table: dict[str, Masker] = {"cloudfree mask (defaults)": ours(MaskParams())}
    if without:
        table |= {"defaults, B10 withheld (L2A)": withheld("B10"),
                  "defaults, B01 and B10 withheld": withheld("B01", "B10")}
    if extra:
        table |= {
            "--no-hot (the default before the HOT test)": ours(MaskParams(hot=False)),
            "--no-hot --threshold 0.15": ours(MaskParams(hot=False, threshold=0.15)),
            "--no-hot --buffer 2": ours(MaskParams(hot=False, buffer=2)),
            "--buffer 1": ours(MaskParams(buffer=1)),
            "--buffer 2": ours(MaskParams(buffer=2)),
            "grow 2 px into score > 0.1": hysteresis(0.1, 2),
            "grow 1 px into score > 0.15": hysteresis(0.15, 1),
            "cirrus term: also B10 > 0.012": cirrus(0.012),
            "--method dsen2cr --no-hot": ours(MaskParams(method="dsen2cr", hot=False)),
            "--method dsen2cr": ours(MaskParams(method="dsen2cr")),
        }
    for name, make in (("s2cloudless", s2cloudless), ("ukis-csmask 6-band L1C", ukis_csmask)):
        masker = make()
        if masker is None:
            print(f"{name}: not installed, left out")
        else:
            table[name] = masker
    return table


def score(masker: Masker, pairs: list[Pair],
          clear: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Pooled IoU, precision and recall, over the images and by zone; cloud fractions on the
    clear twins and the clear scene."""
    counts = {zone: np.zeros(3, np.int64) for zone in ("all", "thick", "edge", "rest")}
    clear_fractions = []
    for pair in pairs:
        found, truth = masker(pair.cloudy), pair.truth
        for zone, where in {"all": np.ones_like(truth), **pair.zones()}.items():
            counts[zone] += [(found & truth & where).sum(), (found & ~truth & where).sum(),
                             (~found & truth & where).sum()]
        clear_fractions.append(float(masker(pair.clear).mean()))
    scene, valid = clear
    tp, fp, fn = counts["all"]
    iou = {zone: c[0] / max(c.sum(), 1) for zone, c in counts.items()}
    return {"iou": iou["all"], "precision": tp / max(tp + fp, 1),
            "recall": tp / max(tp + fn, 1),
            "thick_recall": counts["thick"][0] / max(counts["thick"][0] + counts["thick"][2], 1),
            "edge_iou": iou["edge"], "rest_iou": iou["rest"],
            "clear_mean": float(np.mean(clear_fractions)),
            "clear_max": float(np.max(clear_fractions)),
            "clear_scene": float(masker(scene)[valid].mean())}


def with_twin(pair: Pair, folder: Path) -> np.ndarray:
    """The classes of ``cloudfree mask --reference`` on the pair's cloudy file, given its
    cloud-free twin as the one other date (the single-date classes where there is no snow,
    which the other dates only ever turn into cloud, or where the files are not georeferenced,
    as the pool's residual triplets are not)."""
    classes = classify(pair.cloudy, None, MaskParams())[0]
    if not (classes == SNOW).any():
        return classes
    out = folder / "mask.tif"
    try:
        mask_scene(pair.files[0], out, references=[pair.files[1]], overwrite=True, quiet=True)
    except CloudfreeError as exc:
        print(f"{pair.name}: single date only ({exc})")
        return classes
    with rasterio.open(out) as ds:
        return ds.read(1)


def snow_share(pairs: list[Pair], twin: bool) -> None:
    """Print the share of the cloud by the truth that the default mask classes snow, pooled
    over each half of the by-scene split, and each pair where it passes 1 % (``twin``: also
    with the twin as a reference)."""
    maskers = {"single date": lambda p: classify(p.cloudy, None, MaskParams())[0]}
    with tempfile.TemporaryDirectory() as folder:
        if twin:
            logging.getLogger("cloudfree").setLevel(logging.ERROR)  # the twins have no date
            maskers["twin as reference"] = lambda p: with_twin(p, Path(folder))
        for half, part in zip(("tuning", "held-out"), halves(pairs), strict=True):
            counts = dict.fromkeys(maskers, 0)
            for pair in part:
                shares = {}
                for name, masker in maskers.items():
                    here = int(((masker(pair) == SNOW) & pair.truth).sum())
                    counts[name] += here
                    shares[name] = here / max(int(pair.truth.sum()), 1)
                if shares["single date"] > 0.01:
                    print(f"{pair.name}: cloud classed snow: "
                          + ", ".join(f"{k} {v:.1%}" for k, v in shares.items()))
            cloud = sum(int(p.truth.sum()) for p in part)
            print(f"{half} half ({cloud} cloud pixels): cloud classed snow: "
                  + ", ".join(f"{k} {v / max(cloud, 1):.2%} ({v} px)"
                              for k, v in counts.items()))


@contextmanager
def snow_rules(cirrus: bool, cores: bool):
    """The mask with its cirrus test of snow (B10) and its snow cores on or off."""
    kept = classify_module.SNOW_CIRRUS, classify_module.SNOW_CORE
    classify_module.SNOW_CIRRUS = kept[0] if cirrus else np.inf
    classify_module.SNOW_CORE = kept[1] if cores else 0
    try:
        yield
    finally:
        classify_module.SNOW_CIRRUS, classify_module.SNOW_CORE = kept


def snow_kept(pairs: list[Pair], scene: Path) -> None:
    """Print, for the mask with and without its snow rules, the share of the cloud by the truth
    classed snow per half of the split, and the share of a real snow scene's snow (what the
    mask without the rules calls snow) kept snow:
    alone, and with each pair's cloud (by the truth, from its top left corner) pasted over it,
    outside the pasted cloud (all of it, and within ``NEAR_SNOW`` px of the cloud), beside the
    share of the pasted cloud classed snow."""
    with open_sentinel2(scene) as s2:
        snowy, valid = s2.read()
        bands = list(s2.bands)
    size = snowy.shape[1:]
    with snow_rules(False, False):  # the scene's snow: what passes the snow test
        alone = classify(snowy, valid, MaskParams(), bands)[0] == SNOW
    print(f"real snow: {scene.name}, {alone.mean():.1%} snow without the snow rules\n")
    print("| mask | half | cloud classed snow | real snow kept: alone | under pasted clouds: "
          f"outside them / within {NEAR_SNOW} px | pasted cloud classed snow |\n"
          "|---|---|---|---|---|---|")
    for name, b10, cores in (("without the snow rules", False, False),
                             ("B10 only", True, False), ("cores only", False, True),
                             ("defaults", True, True)):
        with snow_rules(b10, cores):
            kept_alone = (classify(snowy, valid, MaskParams(), bands)[0] == SNOW)[alone].mean()
            for half, part in zip(("tuning", "held-out"), halves(pairs), strict=True):
                # cloud classed snow, cloud; snow kept, snow; near: kept, snow; pasted cloud
                # classed snow, pasted cloud
                c = np.zeros(8, np.int64)
                for pair in part:
                    classes = classify(pair.cloudy, None, MaskParams())[0]
                    c[:2] += [((classes == SNOW) & pair.truth).sum(), pair.truth.sum()]
                    cloud = pair.truth[:size[0], :size[1]]
                    if not cloud.any() or cloud.all():
                        continue
                    pasted = snowy.copy()
                    donor = pair.cloudy[[BANDS.index(b) for b in bands], :size[0], :size[1]]
                    pasted[:, cloud] = donor[:, cloud]
                    found = classify(pasted, valid, MaskParams(), bands)[0] == SNOW
                    near = (ndimage.distance_transform_edt(~cloud) <= NEAR_SNOW) & ~cloud
                    c[2:] += [(found & alone & ~cloud).sum(), (alone & ~cloud).sum(),
                              (found & alone & near).sum(), (alone & near).sum(),
                              (found & cloud).sum(), cloud.sum()]
                print(f"| {name} | {half} | {c[0] / max(c[1], 1):.2%} | {kept_alone:.2%} | "
                      f"{c[2] / max(c[3], 1):.2%} / {c[4] / max(c[5], 1):.2%} | "
                      f"{c[6] / max(c[7], 1):.2%} |")


#: Thresholds of the thin-cloud split tried on the tuning half.
THIN_THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
#: Brightening bins of the check that the land shows through the truth's thin cloud.
SHOWS_BINS = (-np.inf, TRUTH_DELTA, 0.1, THICK_DELTA, 0.2, 0.3, 0.4, np.inf)
#: Size (px, square) of the windows the cloudy date is correlated with its twin over.
SHOWS_BOX = 9
#: Per-class truth and classes: clear, thin, thick.
SPLIT = ("clear", "thin", "thick")


def truth_split(pair: Pair) -> np.ndarray:
    """0 clear, 1 thin, 2 thick by the pair's brightening (``TRUTH_DELTA``, ``THICK_DELTA``)."""
    return (pair.excess > TRUTH_DELTA).astype(np.uint8) + (pair.excess > THICK_DELTA)


def land_shows(pairs: list[Pair]) -> None:
    """Print, by brightening, the share of textured pixels (the twin's local variance above its
    median) where the cloudy date still correlates with its twin (above 0.5 over
    ``SHOWS_BOX`` px): whether the land shows through the truth's thin cloud and not its
    thick cloud."""
    excess, corr, var = [], [], []
    for pair in pairs:
        a, b = pair.cloudy[VISIBLE].mean(0), pair.clear[VISIBLE].mean(0)
        mean_a, mean_b = (ndimage.uniform_filter(x, SHOWS_BOX, mode="reflect") for x in (a, b))
        cov = ndimage.uniform_filter(a * b, SHOWS_BOX, mode="reflect") - mean_a * mean_b
        var_a, var_b = (local_variance(x, SHOWS_BOX) for x in (a, b))
        excess.append(pair.excess.ravel())
        corr.append((cov / np.sqrt(np.maximum(var_a * var_b, 1e-12))).ravel())
        var.append(var_b.ravel())
    excess, corr, var = map(np.concatenate, (excess, corr, var))
    textured = var > np.median(var)
    print("| brightening over the twin (B02-B04) | textured pixels | land shows (correlation "
          f"with the twin over {SHOWS_BOX} px above 0.5) |\n|---|---|---|")
    for low, high in zip(SHOWS_BINS[:-1], SHOWS_BINS[1:], strict=True):
        here = textured & (excess > low) & (excess <= high)
        print(f"| {low:g} to {high:g} | {here.sum()} | {(corr[here] > 0.5).mean():.2f} |")


def split_confusion(pairs: list[Pair], classes: Callable[[Pair], np.ndarray]) -> np.ndarray:
    """Pooled counts [truth, found] of clear, thin and thick over ``pairs``; ``classes`` gives
    each pair's found split, 0 clear, 1 thin, 2 thick."""
    counts = np.zeros((3, 3), np.int64)
    for pair in pairs:
        np.add.at(counts, (truth_split(pair).ravel(), classes(pair).ravel()), 1)
    return counts


def split_ious(counts: np.ndarray) -> dict[str, float]:
    """IoU of clear, thin, thick and cloud (thin and thick) from ``split_confusion``'s counts."""
    cloud = np.array([[counts[0, 0], counts[0, 1:].sum()],
                      [counts[1:, 0].sum(), counts[1:, 1:].sum()]])
    out = {}
    for names, c in ((SPLIT, counts), ((None, "cloud"), cloud)):
        for k, name in enumerate(names):
            if name is not None:
                out[name] = c[k, k] / max(c[k].sum() + c[:, k].sum() - c[k, k], 1)
    return out


def thin_split(pairs: list[Pair]) -> None:
    """Print the per-class IoU (clear, thin, thick, cloud) of the default mask with its cloud
    split at each of ``THIN_THRESHOLDS`` on the tuning half, beside s2cloudless and
    ukis-csmask (cloud only), and then of the threshold with the best mean of the thin and
    thick IoU there, and of the others, on the held-out half."""
    tuning, held_out = halves(pairs)
    print("Tuning half: does the land show through the truth's thin cloud?\n")
    land_shows(tuning)
    raw, cloud = {}, {}
    for pair in pairs:
        raw[pair.name] = raw_score({b: pair.cloudy[BANDS.index(b)] for b in SCORE_BANDS
                                    if b != "B11"})
        cloud[pair.name] = classify(pair.cloudy, None, MaskParams())[0] == CLOUD

    def split(threshold: float) -> Callable[[Pair], np.ndarray]:
        return lambda p: cloud[p.name] * (1 + (raw[p.name] >= threshold)).astype(np.uint8)

    others = {}
    for name, make in (("s2cloudless", s2cloudless), ("ukis-csmask 6-band L1C", ukis_csmask)):
        masker = make()
        if masker is None:
            print(f"{name}: not installed, left out")
        else:  # no thin class: all its cloud thick
            others[name] = lambda p, m=masker: m(p.cloudy).astype(np.uint8) * 2
    header = ("| mask | clear IoU | thin IoU | thick IoU | cloud IoU (thin and thick) |\n"
              "|---|---|---|---|---|")

    def row(name: str, counts: np.ndarray, split: bool = True) -> str:
        r = split_ious(counts)
        thin = f"{r['thin']:.3f} | {r['thick']:.3f}" if split else "- | -"
        return f"| {name} | {r['clear']:.3f} | {thin} | {r['cloud']:.3f} |"

    print(f"\nTuning half ({len(tuning)} pairs), per class:\n\n{header}")
    best, best_mean = THIN_SCORE, -1.0
    for threshold in THIN_THRESHOLDS:
        r = split_ious(counts := split_confusion(tuning, split(threshold)))
        if (r["thin"] + r["thick"]) / 2 > best_mean:
            best, best_mean = threshold, (r["thin"] + r["thick"]) / 2
        mark = " (default)" if threshold == THIN_SCORE else ""
        print(row(f"cloudfree mask, thin below {threshold}{mark}", counts))
    for name, classes in others.items():
        print(row(name, split_confusion(tuning, classes), split=False))
    print(f"\nBest mean of the thin and thick IoU on the tuning half: {best}.")
    print(f"\nHeld-out half ({len(held_out)} pairs), per class:\n\n{header}")
    print(row(f"cloudfree mask, thin below {best}", split_confusion(held_out, split(best))))
    for name, classes in others.items():
        print(row(name, split_confusion(held_out, classes), split=False))


def main() -> None:
    parser = pairs_parser(__doc__)
    parser.add_argument("--variants", action="store_true",
                        help="also score the variants of `cloudfree mask` behind its defaults")
    parser.add_argument("--clear", type=Path, default=CLEAR_SCENE,
                        help="a cloud-free 13-band L1C scene for one more false alarm figure")
    parser.add_argument("--blend", type=float, default=1.0,
                        help="score clear + BLEND * (cloudy - clear) instead of each cloudy date: "
                             "its real cloud made thin (default 1, the cloudy date itself)")
    parser.add_argument("--withheld", action="store_true",
                        help="also score the default mask with B10 (and B01 with B10) withheld")
    parser.add_argument("--twin-reference", action="store_true",
                        help="also give the share of the cloud classed snow by `cloudfree mask "
                             "--reference` with the cloud-free twin as the reference")
    parser.add_argument("--snow", type=Path,
                        help="no other table: a real snow scene (as the pool's BigEarthNet "
                             "S2B_MSIL2A_20180204T94161_57_38); the shares of cloud classed "
                             "snow and of its snow kept, with and without the snow rules")
    parser.add_argument("--thin", action="store_true",
                        help="no other table: the per-class IoU of clear, thin and thick cloud, "
                             "the split tuned on the tuning half and scored on the held-out")
    parser.add_argument("--bright-land", action="store_true",
                        help="no other table: the defaults and --no-bright-land on the "
                             "tuning half, the held-out half and all the pairs")
    parser.add_argument("--filled", action="store_true",
                        help="no other table: what remove fills by default (the mask, its "
                             "buffer and the haze ring) on the tuning half, the held-out half "
                             "and all the pairs")
    parser.add_argument("--half", choices=("tuning", "held-out"),
                        help="only the pairs of this half of the by-scene split")
    args = parser.parse_args()
    print(code_version.describe(), flush=True)
    if args.twin_reference and args.blend != 1:
        parser.error("--twin-reference runs on the files as they are: leave --blend out")
    pairs = blended(load_pairs(args.folders), args.blend)
    if args.half:
        pairs = halves(pairs)[args.half == "held-out"]
    if args.snow:
        snow_kept(pairs, args.snow)
        return
    if args.thin:
        thin_split(pairs)
        return
    with open_sentinel2(args.clear) as s2:
        clear = s2.read()
    truth = sum(int(p.truth.sum()) for p in pairs) / sum(p.truth.size for p in pairs)
    zones = {z: sum(int((w & p.truth).sum()) for p in pairs for zz, w in p.zones().items()
                    if zz == z) for z in ("thick", "edge", "rest")}
    print(f"{len(pairs)} pairs, {truth:.1%} of the pixels cloud by the truth; cloud pixels in "
          f"the thick cores / edge zone / rest: {zones['thick']} / {zones['edge']} / "
          f"{zones['rest']}\n")
    print("| mask | IoU | precision | recall | cores: recall | edge zone: IoU | rest: IoU | "
          f"cloud on the clear twins: mean / worst | cloud on {args.clear.stem} |\n"
          "|---|---|---|---|---|---|---|---|---|")
    rows = [(name, masker, pairs) for name, masker in
            methods(args.variants, args.withheld).items()]
    if args.bright_land or args.filled:
        variants = ((("defaults", ours(MaskParams())),
                     ("--no-bright-land", ours(MaskParams(land=False)))) if args.bright_land else
                    (("filled by remove", filled),))
        parts = ((f"{args.half} half", pairs),) if args.half else zip(
            ("tuning half", "held-out half", "all"), (*halves(pairs), pairs), strict=True)
        rows = [(f"{label}, {name}", masker, part) for label, part in parts
                for name, masker in variants]
    for name, masker, part in rows:
        r = score(masker, part, clear)
        print(f"| {name} | {r['iou']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['thick_recall']:.3f} | {r['edge_iou']:.3f} | {r['rest_iou']:.3f} | "
              f"{r['clear_mean']:.1%} / {r['clear_max']:.1%} | {r['clear_scene']:.1%} |")
    print()
    snow_share(pairs, args.twin_reference)
    if args.withheld:
        full = ours(MaskParams())
        for name, masker in list(methods(False, True).items())[1:3]:
            both = [(full(p.cloudy), masker(p.cloudy)) for p in pairs]
            same = sum(int((a & b).sum()) for a, b in both)
            either = sum(int((a | b).sum()) for a, b in both)
            print(f"{name}: IoU with the full score's mask {same / max(either, 1):.4f} "
                  f"({either - same} of {sum(a.size for a, _ in both)} pixels differ)")


if __name__ == "__main__":
    main()
