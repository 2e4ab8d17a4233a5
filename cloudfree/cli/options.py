"""Every option more than one command takes, defined once: same name, flags and help everywhere.

Old spellings stay accepted, hidden from help, for one release (:func:`hidden_alias`).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import click

from cloudfree.core.messages import OncePerRun
from cloudfree.core.paths import Url, as_url
from cloudfree.inference.tiling import TILE_RANGE
from cloudfree.io.options import MAX_SHIFT_RANGE
from cloudfree.output.geotiff import parse_creation_options

#: Tile sizes every command accepts (``inference.tiling.TILE_RANGE``).
TILE_SIZE = click.IntRange(*TILE_RANGE)


class NumberRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN, which no range bound can catch."""

    def convert(self, value, param, ctx) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number.", param, ctx)
        return number


#: A URL's scheme at the start of a value (two letters at least: ``C://`` is a Windows drive).
URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")


class _Path(click.Path):
    """``click.Path`` that refuses an empty string (which would mean the current folder) and,
    for a file (``file``), a trailing slash (which names a folder, and ``Path`` drops)."""

    #: What this reads besides local paths (``_Input``: http(s) URLs).
    urls = ""

    def __init__(self, file: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.file = file

    def convert(self, value, param, ctx) -> Path:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path.", param, ctx)
        scheme = URL_SCHEME.match(value) if isinstance(value, str) else None
        if scheme is not None:  # a Path would fold its // and look for a local file
            self.fail(f"{value}: {scheme[1]}:// URLs are not read or written here; give a "
                      f"local path{self.urls}.", param, ctx)
        if self.file and isinstance(value, str) and value.endswith(("/", os.sep)):
            self.fail(f"{value} ends with a slash, which names a folder: give a file name.",
                      param, ctx)
        return super().convert(value, param, ctx)


class _Input(_Path):
    """An input: a path, or an http(s) URL kept as written (``Url``; a Path would fold it)."""

    urls = " or an http(s) URL"

    def convert(self, value, param, ctx) -> Path | Url:
        url = as_url(value)
        return url if url is not None else super().convert(value, param, ctx)


PATH = _Path(path_type=Path)
#: Inputs that may be read over the network: Sentinel-2 and Sentinel-1 rasters, STAC items.
INPUT = _Input(path_type=Path)
#: A file to write.
FILE_OUT = _Path(file=True, path_type=Path)
#: The option names this module defines (the Python names click passes the commands).
SHARED = ("output", "overwrite", "creation_options", "cog", "model", "checkpoint", "onnx",
          "device", "precision", "quiet", "verbose", "as_json", "offset", "mask_method", "s1_path",
          "s2_path", "s1_units", "refine", "max_shift", "bbox", "bbox_crs")

Decorator = Callable[[Callable], Callable]


def setup_logging(quiet: bool, verbose: bool = False) -> None:
    """Log cloudfree messages to stderr, each one once per run: errors only when quiet, the
    routine notes on how the inputs were read and what was done too when verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cloudfree: %(message)s"))
    logger = logging.getLogger("cloudfree")
    logger.handlers[:] = [handler]
    logger.filters[:] = [OncePerRun()]
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


def hidden_alias(old: str, name: str, **kwargs) -> Decorator:
    """Accept ``old`` as a hidden spelling of the option ``name`` (it wins when given)."""
    dest = f"{name}_old_spelling"

    def decorate(f):
        def wrapper(*args, **values):
            given = values.pop(dest)
            if given is not None:
                values[name] = given
            return f(*args, **values)

        wrapper = functools.update_wrapper(wrapper, f)
        return click.option(old, dest, hidden=True, default=None, **kwargs)(wrapper)

    return decorate


def output(help: str, required: bool = False, folder: bool = False) -> Decorator:
    """-o/--output, a file unless ``folder``; its help names what the command writes and its
    default."""
    return click.option("-o", "--output", type=PATH if folder else FILE_OUT, required=required,
                        help=help)


def overwrite(f):
    return click.option("--overwrite", is_flag=True, help="Replace existing outputs.")(f)


def geotiff_outputs(f):
    """--overwrite, --co NAME=VALUE (as in rio) and --cog/--no-cog."""
    f = click.option("--cog/--no-cog", default=True, show_default=True,
                     help="Write Cloud Optimized GeoTIFFs with internal overviews; --no-cog "
                          "skips that step (faster).")(f)
    f = click.option("--co", "creation_options", multiple=True, metavar="NAME=VALUE",
                     callback=lambda ctx, p, v: parse_creation_options(v),
                     help="GDAL creation option for the output GeoTIFF (repeatable).")(f)
    return overwrite(f)


def quiet(f):
    """--quiet: errors only, no progress bar; --verbose: the routine notes too."""
    def callback(ctx, param, value):
        ctx.meta[f"cloudfree.{param.name}"] = value
        setup_logging(ctx.meta.get("cloudfree.quiet", False),
                      ctx.meta.get("cloudfree.verbose", False))
        return value

    f = click.option("--verbose", "-v", is_flag=True, callback=callback, expose_value=False,
                     is_eager=True, help="Also say how each input was read and how the clouds "
                                         "were filled (--quiet wins).")(f)
    return click.option("--quiet", "-q", is_flag=True, callback=callback, expose_value=True,
                        is_eager=True, help="No progress bar, warnings or notes: errors "
                                            "only.")(f)


def as_json(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print the result as JSON on stdout.")(f)


#: What --device takes (cloudfree.inference.engines.resolve_device): shown as its metavar.
DEVICES = "auto|cpu|cuda|cuda:N"


def bundled_names(networks_only: bool = False) -> list[str]:
    """The bundled models' names, the default first (``networks_only``: those with a network)."""
    from cloudfree.inference.bundled import DEFAULT_MODEL, FILL_MODEL, bundled_models

    names = sorted(bundled_models(), key=lambda name: (name != DEFAULT_MODEL, name))
    return [name for name in names if not (networks_only and name == FILL_MODEL)]


def model_option(what: str, after: str = "", networks_only: bool = False) -> Decorator:
    """--model NAME: ``what`` it is, the bundled models it takes by name, then ``after``."""
    names = bundled_names(networks_only)
    listed = (" or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else
              names[0] if names else "none in this installation")
    return click.option("--model", metavar="NAME",
                        help=f"{what}: {listed} (see `cloudfree models`){after}.")


def model_choice(default_device: str | None = "auto") -> Decorator:
    """--model, -c/--checkpoint, --onnx, --device: the model to run and where."""
    from cloudfree.inference.bundled import DEFAULT_MODEL

    options = [
        model_option("Bundled model", f" [default: {DEFAULT_MODEL} when no checkpoint or ONNX "
                                      "is given]"),
        checkpoint(required=False),
        click.option("--onnx", type=PATH, help="ONNX model from export-onnx."),
        device(default_device),
    ]
    return _all(options)


def checkpoint(required: bool) -> Decorator:
    return click.option("-c", "--checkpoint", type=PATH, required=required,
                        help="cloudfree or official GLF-CR checkpoint.")


def device(default: str | None = "auto") -> Decorator:
    return click.option("--device", default=default, show_default=default is not None,
                        metavar=f"[{DEVICES}]",
                        help="Where to run: auto (the GPU when one is usable, else the CPU), "
                             "cpu, cuda or cuda:N (the GPU numbered N, from 0).")


def precision(default: str | None = "fp32") -> Decorator:
    return click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]),
                        default=default, show_default=default is not None,
                        help="Arithmetic; fp16/bf16 run under autocast (fp16 on a GPU only).")


def offset(f):
    """--offset auto|0|1000 for every command reading Sentinel-2."""
    return click.option(
        "--offset", type=click.Choice(["auto", "0", "1000"]), default="auto", show_default=True,
        help="Radiometric offset (DN) of processing baseline 04.00+ products (L1C and L2A); "
             "auto reads product metadata (SAFE, STAC) or tags, else assumes 0.")(f)


def level(f):
    """--level auto|L1C|L2A for the commands that mask or fill Sentinel-2."""
    return click.option(
        "--level", type=click.Choice(["auto", "L1C", "L2A"], case_sensitive=False),
        default="auto", show_default=True,
        help="Processing level: L1C (top of atmosphere) or L2A (bottom of atmosphere, with the "
             "scene classification SCL); auto reads the metadata, else the band set.")(f)


def area(f):
    """--bbox MINX MINY MAXX MAXY and --bbox-crs for the commands that mask or fill a scene."""
    f = click.option(
        "--bbox-crs", metavar="CRS",
        help="CRS of --bbox, as PROJ reads it: EPSG:4326 for longitude and latitude "
             "[default: the scene's].")(f)
    return click.option(
        "--bbox", type=float, nargs=4, default=None, metavar="MINX MINY MAXX MAXY",
        help="Process only this box of the scene (in its CRS unless --bbox-crs): the outputs "
             "are the scene's grid cropped to it, snapped outward to whole pixels; a box "
             "reaching beyond the scene is clipped to it.")(f)


def mask_method(f):
    """--mask-method, with the old ``mask --method`` as a hidden alias."""
    f = hidden_alias("--method", "mask_method", type=click.Choice(["score", "dsen2cr"]))(f)
    return click.option("--mask-method", type=click.Choice(["score", "dsen2cr"]),
                        default="score", show_default=True,
                        help="score: Sen2Cor-style score (CARF eq. 13-16); dsen2cr: soft NDSI "
                             "in the score, 5x5 grey closing and 7x7 mean filter (the detector "
                             "GLF-CR binned its test set with).")(f)


def mask_params(buffer: int = 0, s1: bool = False) -> Decorator:
    """Cloud-mask options shared by `mask` and `remove`, collected into ``mask_params``; with
    ``s1`` (`remove`), the test that reads Sentinel-1 too, and --shadow/--no-shadow on by
    default for a single date (`remove` relights the shadows its clouds cast; `mask` flags the
    scene's dark land, off by default)."""
    from cloudfree.mask.classify import MAX_BUFFER, MaskParams

    def decorate(f):
        def wrapper(*args, mask_method, threshold, ndsi_threshold, buffer, shadow, hot, land,
                    scl, built_up=True, **kwargs):
            params = MaskParams(method=mask_method, threshold=threshold,
                                ndsi_threshold=ndsi_threshold, buffer=buffer, shadow=shadow,
                                hot=hot, land=land, scl=scl, built_up=built_up)
            return f(*args, mask_params=params, **kwargs)

        wrapper = functools.update_wrapper(wrapper, f)
        options = [
            mask_method,
            click.option("--threshold", type=NumberRange(0, 1), default=0.2,
                         show_default=True, help="Cloud where the score exceeds this."),
            click.option("--ndsi-threshold", type=NumberRange(-1, 1), default=0.6,
                         show_default=True,
                         help="Snow (not cloud) where NDSI = (B03-B11)/(B03+B11) reaches this."),
            click.option("--buffer", type=click.IntRange(0), default=buffer,
                         show_default=True,
                         metavar="PIXELS",
                         help=f"Dilate clouds (and shadows) by this radius, at most {MAX_BUFFER}."),
            click.option("--shadow/--no-shadow", default=None if s1 else False,
                         show_default=not s1,
                         help="Relight (or with --no-restore, fill) the shadows the scene's "
                              "clouds cast: the dark pixels (CSI=(B08+B11)/2) on the side "
                              "where the clouds' outlines, displaced alike, fall on dark "
                              "land; dark land elsewhere is kept (needs B08 and B11; skipped "
                              "without them); with --reference, those the dates see darker "
                              "in NIR and SWIR than the land there, with their penumbra, are "
                              "filled from them [default: on]."
                         if s1 else
                         "Also flag cloud shadow (class 2) from CSI=(B08+B11)/2: the "
                         "scene's darkest land, which takes in dark forest and water too."),
            click.option("--hot/--no-hot", default=True, show_default=True,
                         help="Cloud only where HOT = B02 - 0.5*B04 - 0.08 > 0 (haze optimised "
                              "transform): keeps bright soil and roofs out of the mask."),
            click.option("--bright-land/--no-bright-land", "land", default=True,
                         show_default=True,
                         help="Leave out of the mask what scores as cloud but shows no "
                              "parallax between B07, B08 and B8A, land's short-wave infrared "
                              "(B11) and the texture of built-up land, or land's short-wave "
                              "infrared and the red of sand or a dim B01 against B02 (L1C), or "
                              "is about as bright in B11 as in B8A with no opaque cloud near "
                              "(without B10, as in L2A), or is faint textured land far from any "
                              "cloud, or barely scores and shows land plainly, or lies "
                              "alone in a speck of a few pixels, or in a small patch dimmer at "
                              "945 nm (B09) than the land around (L1C): bright roofs, greenhouses, "
                              "roads, sand; and grow the buffer and haze ring only from clouds "
                              "with parallax and a cloud's colour (needs B07, B08, B8A and B11; "
                              "skipped without them). Where other dates judge the clouds "
                              "(--reference), they judge such land."),
            click.option("--scl/--no-scl", default=True, show_default=True,
                         help="On L2A input with its scene classification (SCL), take clouds "
                              "(medium, high probability, thin cirrus), cloud shadow and snow "
                              "from it; --no-scl: the score from the bands."),
        ]
        if s1:
            options.append(click.option(
                "--s1-built-up/--no-s1-built-up", "built_up", default=True, show_default=True,
                help="With --s1: leave out of the mask what scores as cloud but has no cloud "
                     "scoring 0.6 or more near it and Sentinel-1 VV backscatter above -5 dB on "
                     "average: the double bounce of roofs and walls (S1 sees through cloud; a "
                     "real cloud over a town has confident pixels near)."))
        return _all(options)(wrapper)

    return decorate


def s1_s2(default_name: str, s1_required: bool = True, s1_note: str = "") -> Decorator:
    """--s1, --s2, -o and the co-registration options shared by `coregister` and `remove`;
    ``s1_note`` follows the --s1 help (when the command needs it)."""
    return _all([
        click.option("--s1", "s1_path", required=s1_required, type=INPUT,
                     help="Sentinel-1 GeoTIFF with VV and VH (dB or linear power), any CRS "
                          "overlapping the S2; a file or an http(s) URL."
                          + (f" {s1_note}" if s1_note else "")),
        click.option("--s2", "s2_path", required=True, type=INPUT,
                     help="Sentinel-2 L1C or L2A scene: GeoTIFF of named bands (unnamed: 13 "
                          "in L1C order, 12 in L2A order), .SAFE folder, folder of per-band "
                          "files or STAC item (.json), local or at an http(s) URL (GeoTIFFs, "
                          "COGs best, and items read by byte ranges, not downloaded)."),
        output(f"Output GeoTIFF [default: {default_name}]."),
        click.option("--s1-units", type=click.Choice(["auto", "db", "linear"]), default="auto",
                     show_default=True, help="Units of the S1 values; auto decides from them."),
        click.option("--refine/--no-refine", default=True, show_default=True,
                     help="Estimate the residual S1-S2 shift and correct it when reliable."),
        click.option("--max-shift", type=NumberRange(*MAX_SHIFT_RANGE), default=10.0,
                     show_default=True, metavar="PIXELS",
                     help="Largest shift the refinement searches for."),
    ])


def _all(options: list[Decorator]) -> Decorator:
    """Apply ``options`` so that they show in help in list order."""
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate
