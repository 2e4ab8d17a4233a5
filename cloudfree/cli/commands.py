"""The ``cloudfree`` command line: one small function per command, the work is in the library.

Exit codes: 0 done, 1 failed (bad data, I/O), 2 usage error (bad options, existing output).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click
import rasterio.errors
from click.core import ParameterSource

from cloudfree import __version__
from cloudfree.cli import options as opt
from cloudfree.cli.options import INPUT, PATH, TILE_SIZE
from cloudfree.core.errors import CloudfreeError, OutOfMemory, UsageError, spelled
from cloudfree.core.memory import address_space_limit, check_room_for_torch, out_of_memory
from cloudfree.core.paths import Url, as_url
from cloudfree.core.stop import (
    Interrupted,
    as_interrupted,
    note_stops_after_work,
    raise_on_stop_signals,
    signal_name,
    stop_requested,
)
from cloudfree.core.threads import THREADS_RANGE, WARP_THREADS_RANGE
from cloudfree.fill.median import FILL_METHODS, MAX_CORRECTION
from cloudfree.inference.bundled import DEFAULT_MODEL
from cloudfree.inference.tiling import BATCH_SIZE_RANGE, FEATHER_RANGE, OVERLAP_RANGE
from cloudfree.io.rasters import BLOCK_RANGE, MASK_BLOCK
from cloudfree.io.sentinel2 import MASK_CODES


class _Command(click.Command):
    """A command that tells a ``--bbox`` written with commas to space its four numbers."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes ``args``
        try:
            return super().parse_args(ctx, args)
        except click.UsageError:
            box = given[given.index("--bbox") + 1:][:1] if "--bbox" in given else []
            if box and "," in box[0]:
                raise click.BadParameter(
                    f"{box[0]!r}: give the box as four numbers separated by spaces "
                    "(--bbox MINX MINY MAXX MAXY), not commas", ctx, param_hint="'--bbox'"
                ) from None
            raise


class _Group(click.Group):
    """Turns library errors into one line on stderr and the right exit code."""

    command_class = _Command

    def invoke(self, ctx: click.Context):
        try:
            result = super().invoke(ctx)
            note_stops_after_work()
            return result
        except KeyboardInterrupt as exc:
            _stopped(as_interrupted(exc))
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if stop_requested() is not None:  # a stop broke into native code (an import...),
                _stopped(Interrupted(stop_requested()))  # which raised an error of its own
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            if out_of_memory(exc):
                click.echo(f"Error: out of memory{_memory_advice(exc, command)}", err=True)
                sys.exit(1)
            if isinstance(exc, CloudfreeError):
                click.echo(f"Error: {in_flags(exc, command)}", err=True)
                sys.exit(exc.exit_code)
            if isinstance(exc, OSError | rasterio.errors.RasterioError):
                click.echo(f"Error: {exc}", err=True)
                sys.exit(1)
            raise


def _stopped(stop: Interrupted) -> NoReturn:
    click.echo(f"Interrupted ({signal_name(stop.signum)}); "
               f"{stop.message or 'no output written'}.", err=True)
    sys.exit(stop.exit_code)


def _memory_advice(exc: Exception, command: click.Command | None) -> str:
    """What to say after "out of memory": why, when known, and the options that use less."""
    if isinstance(exc, OutOfMemory):
        return f": {exc}; raise the limit"
    limit = address_space_limit()
    why = "" if limit is None else \
        f" (the address-space limit, ulimit -v, of {limit / 2**30:.1f} GiB)"
    flags = [f for f in ("--batch-size", "--block", "--tile", "--threads")
             if command is not None and any(f in p.opts for p in command.params)]
    return why + (f"; try a smaller {' or '.join(flags)}" if flags else "")


def in_flags(exc: CloudfreeError, command: click.Command | None) -> str:
    """The library's message with each ``name=`` of an argument spelled as the command's flag."""
    return spelled(exc, {} if command is None else command_flags(command))


def command_flags(command: click.Command) -> dict[str, tuple[str, bool | str]]:
    """Each option's Python name, with its longest flag and whether it is a switch (for an
    on/off pair, its off flag)."""
    return {p.name: (max(p.opts, key=len),
                     p.secondary_opts[0] if p.is_flag and p.secondary_opts else p.is_flag)
            for p in command.params if isinstance(p, click.Option) and p.name}


def default_output(src: Path | Url, suffix: str) -> Path:
    """``scene.tif`` -> ``scene<suffix>.tif`` beside it (``X.SAFE`` -> ``X<suffix>.tif``); for a
    URL, in the current folder."""
    url = as_url(src)
    src = Path(url.name) if url is not None else Path(src)
    return src.parent / f"{src.stem if src.suffix else src.name}{suffix}.tif"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cloudfree")
def main() -> None:
    """Remove clouds from whole Sentinel-2 scenes, with Sentinel-1 and other dates where given."""
    opt.setup_logging(False)
    raise_on_stop_signals()


@main.command(short_help="Cloud, shadow and snow mask of a Sentinel-2 scene.")
@click.argument("scene", type=INPUT)
@opt.output("Output mask GeoTIFF [default: <scene>_mask.tif].")
@opt.mask_params()
@click.option("--score", "score_path", type=PATH,
              help="Also write the float32 cloud score to this GeoTIFF.")
@click.option("--reference", "references", type=INPUT, multiple=True, metavar="S2",
              help="Sentinel-2 of another date of the same place, in any form SCENE takes "
                   "(repeatable, any CRS): "
                   "where the dates see the ground clear, clouds, haze and shadows are found "
                   "by comparing the scene with them.")
@click.option("--thin/--no-thin", default=True, show_default=True,
              help="Write thin cloud, which the land shows through, as its own class (4); "
                   "--no-thin: as cloud (1), for tools that read 1 as all the cloud.")
@opt.as_json
@click.option("--block", type=click.IntRange(*BLOCK_RANGE), default=MASK_BLOCK,
              show_default=True, help="Window size in pixels for streaming the scene.")
@click.option("--threads", type=click.IntRange(*THREADS_RANGE),
              help="Windows read and classified at once [default: all usable cores].")
@opt.offset
@opt.level
@opt.area
@opt.geotiff_outputs
@opt.quiet
def mask(scene, output, mask_params, score_path, references, thin, as_json, block, threads,
         offset, level, bbox, bbox_crs, overwrite, creation_options, cog, quiet):
    """Cloud (1), shadow (2), snow (3), thin cloud (4; cloud with --no-thin) mask of a
    Sentinel-2 scene; 0 clear, 255 nodata.

    SCENE: a GeoTIFF of named bands (unnamed: 13 in L1C order, 12 in L2A order), an L1C or
    L2A .SAFE folder, a folder of per-band files or a STAC item (.json); GeoTIFFs (COGs best)
    and STAC items may be http(s) URLs, read by byte ranges.
    """
    from cloudfree.pipeline.mask import mask_scene

    summary = mask_scene(scene, output or default_output(scene, "_mask"), mask_params,
                         offset=offset, level=level, bbox=bbox, bbox_crs=bbox_crs,
                         score_path=score_path, overwrite=overwrite,
                         creation_options=creation_options, block=block, threads=threads,
                         cog=cog, quiet=quiet, references=references, thin=thin)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{summary['output']}: cloud {summary['cloud_fraction']:.1%}"
                   + (f" (thin {summary['thin_cloud_fraction']:.1%})" if thin else "")
                   + (f", shadow {summary['shadow_fraction']:.1%}" if mask_params.shadow else "")
                   + f", snow {summary['snow_fraction']:.1%} of valid pixels")


def _share_or_none(ctx: click.Context, param: click.Parameter, value: str | None) -> dict:
    """``--max-correction``: a share >= 0, or none (unbounded); not given: the default."""
    if value is None:
        return {}
    if value.lower() == "none":
        return {"max_correction": None}
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not share >= 0:
        raise click.BadParameter(f"{value!r} is not a share >= 0 (such as 0.25) or none")
    return {"max_correction": share}


@main.command(short_help="Remove clouds from a Sentinel-2 scene, with Sentinel-1 and other "
                         "dates where given.")
@opt.s1_s2("<s2>_cloudfree.tif", s1_required=False,
           s1_note=f"Optional for the default model, {DEFAULT_MODEL}, which then fills each "
                   "cloud from clear land of the same radar kind; needed by the fill networks "
                   "(a bundled network, a checkpoint or ONNX).")
@click.option("--reference", "references", type=INPUT, multiple=True, metavar="S2",
              help="Sentinel-2 of another date of the same place, in any form --s2 takes "
                   "(repeatable, any CRS): clouds it sees clear are filled from it; the model "
                   "fills the rest.")
@click.option("--reference-s1", "reference_s1", multiple=True, metavar="S1|none",
              callback=lambda ctx, p, v: tuple(None if x.lower() == "none" else
                                               as_url(x) or Path(x) for x in v),
              help="Sentinel-1 of each reference's date, in the order of --reference (none to "
                   "skip one): pixels whose backscatter changed since do not take it. Needs --s1.")
@click.option("--source-out", type=PATH, help="With --reference: also write the source map "
              "(0 observed, 1..N reference, 254 model, 255 nodata).")
@click.option("--days-out", type=PATH, help="With --reference: also write the days from the "
              "scene's date to each pixel's source date (int16; 0 observed, -32768 the model "
              "or unknown).")
@click.option("--uncertainty-out", type=PATH, help="Also write the expected error of each "
              "filled pixel: per band, the standard deviation in DN (float32; 0 where the pixel "
              "is kept as observed, NaN at nodata).")
@click.option("--temporal-mask/--no-temporal-mask", default=None,
              help="With --reference: find clouds, haze and shadows by comparing the dates, "
                   "fill only those, and give a date no weight where it disagrees with the "
                   "others; --no-temporal-mask: the single-date mask [default: on for a scene "
                   "with B02 and B04 (L1C and L2A), off otherwise].")
@click.option("--dehaze/--no-dehaze", default=None,
              help="With --reference: where the other dates agree that the scene is hazy all "
                   "over (brighter than they are, most in blue), lower the whole output, kept "
                   "pixels and fill, by that smooth haze [default: off].")
@opt.model_choice()
@click.option("--s1-aligned", is_flag=True,
              help="The S1 is already on the S2 grid: skip co-registration.")
@click.option("--tile", type=TILE_SIZE,
              help="Tile size in pixels [default: the model's].")
@click.option("--overlap", type=click.IntRange(*OVERLAP_RANGE),
              help="Tile overlap in pixels [default: from the receptive field].")
@click.option("--batch-size", type=click.IntRange(*BATCH_SIZE_RANGE), default=8,
              show_default=True, help="Tiles per forward pass.")
@opt.precision()
@click.option("--composite/--no-composite", default=True, show_default=True,
              help="Keep clear pixels and fill clouds, or write the raw prediction.")
@click.option("--feather", type=click.IntRange(*FEATHER_RANGE), default=2, show_default=True,
              metavar="PIXELS",
              help="Width of the transition inside the edge of the filled region, from the "
                   "pixels as seen to the fill (where thin cloud is restored, from the land "
                   "restored under it; with --reference, cloud pixels are replaced in full: "
                   "it lies in the buffer).")
@click.option("--fill", "fill_method", type=click.Choice(FILL_METHODS), default="local",
              show_default=True,
              help="Base of the fill models: clear pixels nearby that match in S1, with the "
                   "haze ring around clouds (local), or the scene's clear-sky median (median).")
@click.option("--restore/--no-restore", default=True, show_default=True,
              help="With --fill local: where the land still shows through thin cloud and haze "
                   "(and under the clouds' shadows, see --shadow), take the veil off (relight "
                   "the shadow) instead of filling it; only opaque cloud is filled.")
@click.option("--max-correction", metavar="SHARE|none", callback=_share_or_none,
              help="Bound on the fill network's correction of its base, as a share of the base "
                   f"per band [default: {MAX_CORRECTION}; on the local base, less where clear "
                   "land of the same S1 kind is near]; none leaves it unbounded.")
@click.option("--mask-out", type=PATH, help="Also write the mask used.")
@click.option("--mask-in", type=INPUT, metavar="MASK",
              help="Fill by this mask of the scene instead of finding its clouds: a raster on "
                   "the scene's grid (or a whole multiple of its pixels) whose first band holds "
                   "cloudfree's classes (0 clear, 1 cloud, 2 shadow, 3 snow, 4 thin cloud, 255 "
                   "no data), as `cloudfree mask` and --mask-out write them; a 0/1 cloud mask "
                   "works as it is (the shadows its clouds cast are then found, as without a "
                   "mask); other tools' codes with --mask-in-codes. --buffer still "
                   "grows its clouds (0: not at all); with --reference the dates fill what it "
                   "marks.")
@click.option("--mask-in-codes", "mask_codes", type=click.Choice(MASK_CODES),
              default="cloudfree", show_default=True,
              help="The codes --mask-in holds: cloudfree's, Fmask's (0 land, 1 water, 2 shadow, "
                   "3 snow, 4 cloud, 255 no data), an L2A scene classification's (scl) or "
                   "OmniCloudMask's and CloudSEN12's (0 clear, 1 thick, 2 thin cloud, 3 "
                   "shadow).")
@click.option("--mask-in-threshold", "mask_threshold", type=float, metavar="P",
              help="--mask-in holds a cloud probability (s2cloudless's, Earth Engine's "
                   "S2_CLOUD_PROBABILITY, Sentinel Hub's CLP), not classes: cloud where it "
                   "reaches P, in the mask's units (0.4 for a 0-1 map, 40 for a 0-100 layer).")
@click.option("--preview", type=PATH,
              help="Also write a PNG quicklook: input RGB | mask | output RGB.")
@opt.mask_params(buffer=5, s1=True)
@opt.as_json
@opt.offset
@opt.level
@opt.area
@opt.geotiff_outputs
@opt.quiet
def remove(s2_path, s1_path, output, as_json, quiet, max_correction, restore, **options):
    """Remove clouds from a Sentinel-2 scene with the help of Sentinel-1 and other dates."""
    from cloudfree.fill.restore import RestoreParams
    from cloudfree.pipeline.options import split_options
    from cloudfree.pipeline.remove import remove_scene

    grouped = split_options({"restoring": RestoreParams() if restore else None,
                             **max_correction, **options})
    summary = remove_scene(s2_path, s1_path, output or default_output(s2_path, "_cloudfree"),
                           quiet=quiet, **grouped)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        sources = summary.get("pixels_by_source")
        dates = "" if sources is None else \
            f", {sources['references']} pixels from other dates, the rest"
        shadow = (f" and {summary['shadow_fraction']:.1%} shadow"
                  if summary["shadow_fraction"] > 0 else "")
        click.echo(f"{summary['output']}: filled {summary['cloud_fraction']:.1%} cloud{shadow}"
                   f"{dates} with {summary['model']} in {summary['seconds']:.1f} s")


@main.command(short_help="List the network architectures and the bundled models.")
def models():
    """List the network architectures (presets, parameter counts) and the bundled models."""
    from cloudfree.inference.model_list import catalog_lines

    click.echo("\n".join(catalog_lines()))


@main.command("export-onnx", short_help="Export a checkpoint or bundled network to ONNX.")
@opt.model_option("Bundled network to export instead of a checkpoint", networks_only=True)
@opt.checkpoint(required=False)
@opt.output("ONNX model to write.", required=True)
@click.option("--tile", type=TILE_SIZE, default=256, show_default=True,
              help="Fixed tile size in pixels the model will run on (the batch stays dynamic).")
@opt.overwrite
@opt.quiet
def export_onnx_command(model, checkpoint, output, tile, overwrite, quiet):
    """Export a checkpoint or bundled model to ONNX (opset 17) with its scaling and bands in
    the metadata."""
    from cloudfree.inference.bundled import FILL_MODEL, bundled_models

    check_room_for_torch()
    from cloudfree.inference.onnx_export import export_checkpoint, exportable

    bundled = bundled_models()
    if (model is None) == (checkpoint is None):
        raise UsageError("give one of --checkpoint PATH and --model NAME (bundled: "
                         f"{', '.join(bundled)})")
    if model == FILL_MODEL:
        raise UsageError(f"{FILL_MODEL} has no network to export: it fills without one; "
                         f"exportable: {exportable()}", "checkpoint")
    if model is not None and model not in bundled:
        raise UsageError(f"no bundled model {model!r} (bundled: {', '.join(bundled)})")
    path = export_checkpoint(bundled[model] if model else checkpoint, output, tile,
                             overwrite=overwrite)
    click.echo(f"{path}: {tile}x{tile} tiles, dynamic batch")


@main.command(short_help="Run remove (or mask) on every scene under a folder.")
@click.argument("scenes", type=INPUT)
@opt.output("Output folder: <scene>.tif (remove) or <scene>_mask.tif (mask).", required=True,
            folder=True)
@click.option("--command", type=click.Choice(["remove", "mask"]), default="remove",
              show_default=True, help="What to run on each scene.")
@click.option("--jobs", "-j", type=click.IntRange(1, 1024),
              help="Local worker processes [default: one per GPU, else 1].")
@click.option("--resume", is_flag=True, help="Skip scenes whose output exists (outputs only "
              "appear when complete).")
@click.option("--report", "report_path", type=PATH, help="Write a run report (.json/.csv).")
@click.option("--stac", type=PATH, metavar="DIR",
              help="Write a STAC catalog of the finished scenes to DIR (--resume adds to it).")
@click.option("--references", "references", type=click.IntRange(0, 250), default=0,
              metavar="K", help="remove: each scene also takes up to K other scenes of the "
              "folder as references, nearest dates first, with their S1 (one that does not "
              "overlap it or cannot be read is skipped with a warning; the next is taken).")
@click.option("--temporal-mask/--no-temporal-mask", default=None,
              help="remove with --references: find each scene's clouds by comparing the dates, "
                   "or not (see remove --temporal-mask) [default: on for scenes with B02 "
                   "and B04 (L1C and L2A), off otherwise].")
@click.option("--dehaze/--no-dehaze", default=None,
              help="remove with --references: lower a scene the other dates agree is hazy all "
                   "over to their level (see remove --dehaze) [default: off].")
@click.option("--masks", is_flag=True, default=None,
              help="remove: also write OUT/<scene>_mask.tif, the mask used.")
@click.option("--uncertainty", is_flag=True, default=None,
              help="remove: also write OUT/<scene>_uncertainty.tif, the expected error of each "
                   "filled pixel (see remove --uncertainty-out).")
@click.option("--thin/--no-thin", default=None,
              help="mask: write thin cloud as its own class (4), or as cloud (1); see mask "
                   "--thin [default: --thin].")
@click.option("--dask-scheduler", metavar="ADDRESS",
              help="Run on this Dask scheduler (tcp://host:8786 or scheduler JSON file).")
@click.option("--s2-pattern", default="*s2*.tif", show_default=True,
              help="S2 file in a scene folder (case-insensitive glob); .SAFE folders, "
              "per-band folders and STAC items are found without it.")
@click.option("--s1-pattern", default="*s1*.tif", show_default=True,
              help="S1 file in a scene folder (case-insensitive glob).")
@click.option("--mask-pattern", metavar="GLOB",
              help="remove: fill each scene by its own mask, the file of its scene folder this "
                   "case-insensitive glob matches (see remove --mask-in; scene folders only) "
                   "[default: none, the clouds are found].")
@click.option("--mask-in-codes", "mask_codes", type=click.Choice(MASK_CODES), default=None,
              help="With --mask-pattern: the codes the masks hold (see remove --mask-in-codes) "
                   "[default: cloudfree].")
@click.option("--mask-in-threshold", "mask_threshold", type=float, metavar="P",
              help="With --mask-pattern: the masks hold a cloud probability, cloud from P (see "
                   "remove --mask-in-threshold).")
@opt.model_choice(default_device=None)
@click.option("--tile", type=TILE_SIZE, help="Tile size in pixels [default: the model's].")
@click.option("--batch-size", type=click.IntRange(*BATCH_SIZE_RANGE),
              help="Tiles per forward pass.")
@opt.precision(default=None)
@opt.offset
@opt.level
@opt.area
@opt.geotiff_outputs
@opt.quiet
def batch(scenes, output, command, jobs, resume, report_path, stac, references,
          temporal_mask, dehaze, masks, uncertainty, thin, dask_scheduler,
          s2_pattern, s1_pattern, mask_pattern, mask_codes, mask_threshold, model, checkpoint, onnx,
          device, tile,
          batch_size, precision, offset, level, bbox, bbox_crs, overwrite, creation_options, cog,
          quiet):
    """Run remove (or mask) on every scene folder, or S1/S2 pair, under SCENES.

    --masks, --mask-pattern, --uncertainty, --model, --checkpoint, --onnx, --device, --tile,
    --batch-size and --precision apply to remove only, --thin to mask only.
    """
    from cloudfree.pipeline.batch import run_batch

    options = {"model": model, "checkpoint": checkpoint, "onnx": onnx, "device": device,
               "tile": tile,
               "batch_size": batch_size, "precision": precision, "offset": offset,
               "level": None if level == "auto" else level,
               "overwrite": overwrite or None, "creation_options": creation_options or None,
               "cog": cog, "masks": masks, "uncertainty": uncertainty,
               "temporal_mask": temporal_mask, "dehaze": dehaze, "bbox": bbox,
               "bbox_crs": bbox_crs, "thin": thin, "mask_codes": mask_codes,
               "mask_threshold": mask_threshold}
    result = run_batch(scenes, output, command=command, jobs=jobs, resume=resume,
                       report=report_path,
                       dask_scheduler=dask_scheduler, s2_pattern=s2_pattern,
                       s1_pattern=s1_pattern, options=options, stac=stac, quiet=quiet,
                       references=references, mask_pattern=mask_pattern,
                       flags=command_flags(click.get_current_context().command))
    click.echo(result.summary())
    result.check()


@main.command(short_help="Warp Sentinel-1 onto the Sentinel-2 grid.")
@opt.s1_s2("<s1>_on_<s2>.tif")
@click.option("--threads", type=click.IntRange(*WARP_THREADS_RANGE), default=2,
              show_default=True, help="Warp threads.")
@click.option("--report", "report_path", type=PATH,
              help="Write the shift field, its reliability, the per-window estimates with their "
                   "evidence (per half, per band) and the overlap as JSON to this file.")
@opt.offset
@opt.geotiff_outputs
@opt.quiet
def coregister(s1_path, s2_path, output, s1_units, refine, max_shift, threads, report_path,
               offset, overwrite, creation_options, cog, quiet):
    """Warp Sentinel-1 onto the Sentinel-2 grid with sub-pixel shift refinement."""
    from cloudfree.coregister.s1_to_s2 import coregister_file, summary_line

    out = output or default_output(s1_path, f"_on_{(as_url(s2_path) or Path(s2_path)).stem}")
    r = coregister_file(s1_path, s2_path, out, s1_units=s1_units, refine=refine,
                        max_shift=max_shift, threads=threads, offset=offset, overwrite=overwrite,
                        creation_options=creation_options, report_path=report_path, cog=cog,
                        quiet=quiet)
    click.echo(summary_line(r))


@main.command(short_help="Train a network on S1/S2 triplets.")
@click.argument("data", type=PATH)
@click.option("--arch", default="dsen2cr", show_default=True,
              help="Architecture (dsen2cr, glfcr, carf, ibhfn, sgbafm, fillnet).")
@click.option("--preset", default="small", show_default=True, help="Preset of the architecture.")
@click.option("--loss", type=click.Choice(["l1", "carl", "cloudaware", "ibhfn"]),
              help="l1 (GLF-CR), carl (DSen2-CR), cloudaware (CARF eq. 17-18), ibhfn (IB-HFN "
              "joint objective). Default: the architecture's own (l1 for glfcr and sgbafm).")
@click.option("--recipe", type=click.Choice(["paper"]),
              help="Set the paper's optimiser, learning rate, schedule, batch, epochs and crop "
              "(glfcr, carf, sgbafm); options given explicitly win.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True,
              help="Epochs in all (a resumed run continues up to this).")
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True,
              help="Samples per optimiser step (per GPU under torchrun).")
@click.option("--crop", type=click.IntRange(8), default=128, show_default=True,
              help="Random crop size in pixels.")
@click.option("--lr", type=opt.NumberRange(0, min_open=True), default=1e-4, show_default=True,
              help="Learning rate at the schedule's peak (cosine warms up to it, the others "
                   "start from it).")
@click.option("--weight-decay", type=opt.NumberRange(0), default=0.0, show_default=True,
              help="AdamW weight decay; 0 uses Adam.")
@click.option("--schedule", type=click.Choice(["cosine", "step", "exponential", "constant"]),
              default="cosine", show_default=True,
              help="cosine with warm-up, step (GLF-CR's halving every 5 epochs), exponential "
              "(times --decay every epoch) or constant.")
@click.option("--decay", type=opt.NumberRange(0, 1, min_open=True), default=0.8,
              show_default=True, help="Per-epoch factor of the exponential schedule.")
@click.option("--clip", type=opt.NumberRange(0), default=1.0, show_default=True,
              help="Gradient-norm clipping (0: off).")
@opt.output("Folder for last.pt, train_state.pt and log.csv [default: run].", folder=True)
@opt.hidden_alias("--out", "output", type=PATH)
@click.option("--resume", is_flag=True, help="Continue the run in the output folder.")
@opt.overwrite
@opt.device()
@click.option("--amp", is_flag=True, help="Mixed precision (GPU only).")
@click.option("--workers", type=click.IntRange(0), default=None,
              help="Data-loading processes. Default: 0 on CPU; on a GPU up to 8, one per core.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed of the sample order and of each sample's crop, flips and "
                   "rotation.")
@opt.quiet
def train(data, arch, preset, loss, recipe, epochs, batch_size, crop, lr, weight_decay,
          schedule, decay, clip, output, resume, overwrite, device, amp, workers, seed, quiet):
    """Train a network on S1/S2 triplets under DATA (SEN12MS-CR or s1/ s2_cloudy/ s2_cloudfree/).

    --overwrite starts over in an output folder that holds a run. --resume continues its
    network (its --arch and --preset); the other options apply as given.

    Multi-GPU: torchrun --nproc_per_node N -m cloudfree train ...
    """
    check_room_for_torch()
    from cloudfree.training.loop import TrainConfig, network_of, run_checkpoint, train_folder
    from cloudfree.training.recipes import with_recipe

    ctx = click.get_current_context()
    given = {k for k in ctx.params if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    out = output or Path("run")
    last = run_checkpoint(out) if resume and not overwrite else None
    if last is not None:  # the run's own network, unless --arch or --preset name another (refused)
        run_arch, run_preset = network_of(last)
        arch = arch if "arch" in given else run_arch
        preset = preset if "preset" in given or run_preset is None else run_preset
    values = dict(arch=arch, preset=preset, loss=loss, epochs=epochs, batch_size=batch_size,
                  crop=crop, lr=lr, weight_decay=weight_decay, schedule=schedule, decay=decay,
                  clip=clip, amp=amp, device=device, seed=seed, workers=workers, quiet=quiet)
    config = TrainConfig(**with_recipe(recipe, arch, values, given))
    summary = train_folder(data, config, out, resume=resume, overwrite=overwrite, last=last)
    click.echo(f"{summary['checkpoint']}: {summary['step']} steps, log {summary['log']}")


@main.command(short_help="Score a model on S1/S2 triplets against the baselines.")
@click.argument("data", type=PATH)
@opt.model_choice()
@click.option("--report", "report_path", type=PATH,
              help="Write the full report (overall, per bin, per sample) as JSON.")
@click.option("--csv", "csv_path", type=PATH,
              help="Write one row per sample and method as CSV.")
@opt.as_json
@opt.mask_method
@click.option("--ssim", type=click.Choice(["valid", "official"]), default="valid",
              show_default=True, help="valid: SSIM over pixels whose window fits the image; "
              "official: GLF-CR's released code (zero padding), comparable with its tables.")
@opt.overwrite
@opt.quiet
def evaluate(data, model, checkpoint, onnx, device, report_path, csv_path, as_json, mask_method,
             ssim, overwrite, quiet):
    """PSNR, SSIM, SAM, MAE on triplets under DATA, beside the cloudy-input and median-fill
    baselines, overall and by cloud cover (0-20 ... 80-100 %)."""
    from cloudfree.inference.engines import open_engine
    from cloudfree.mask.classify import MaskParams
    from cloudfree.output.atomic import check_distinct, check_output, output_set, write_json
    from cloudfree.training.datasets import find_samples
    from cloudfree.training.evaluate import evaluate, table, write_csv

    engine = open_engine(model=model, checkpoint=checkpoint, onnx=onnx, device=device)
    samples = find_samples(data)
    inputs = [path for s in samples for path in (s.s1, s.s2_cloudy, s.s2_clear)]
    check_distinct({"report": report_path, "CSV": csv_path})
    for path in filter(None, (report_path, csv_path)):
        check_output(path, overwrite, inputs)
    for path, suffix, what in ((report_path, ".json", "report"), (csv_path, ".csv", "CSV")):
        if path is not None and Path(path).suffix.lower() != suffix:
            raise UsageError(f"{what} {path}: it is written as {suffix[1:].upper()}; name it "
                             f"{suffix}")
    report = evaluate(samples, engine, MaskParams(method=mask_method), quiet, ssim)
    with output_set(overwrite) as together:
        if report_path:
            write_json(report, report_path, overwrite, together)
        if csv_path:
            write_csv(report["rows"], csv_path, overwrite, together)
    click.echo(json.dumps(report, indent=2) if as_json else table(report))
