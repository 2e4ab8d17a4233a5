"""The ``cloudfree`` command line: one small function per command, the work is in the library.

Exit codes: 0 done, 1 failed (bad data, I/O), 2 usage error (bad options, existing output).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click
import rasterio.errors
from click.core import ParameterSource

from cloudfree import __version__
from cloudfree.errors import CloudfreeError, UsageError
from cloudfree.rasterio_io import parse_creation_options
from cloudfree.signals import as_interrupted, raise_on_stop_signals, signal_name

#: Tile sizes every command accepts: below 16 px a network sees too little context.
TILE_SIZE = click.IntRange(16, 8192)


class _Group(click.Group):
    """Turns library errors into one line on stderr and the right exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CloudfreeError as exc:
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            click.echo(f"Error: {in_flags(exc, command)}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            stop = as_interrupted(exc)
            click.echo(f"Interrupted ({signal_name(stop.signum)}); "
                       f"{stop.message or 'no output written'}.", err=True)
            sys.exit(stop.exit_code)
        except (OSError, rasterio.errors.RasterioError) as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except MemoryError:
            click.echo("Error: out of memory; try a smaller --block or --batch-size", err=True)
            sys.exit(1)


def in_flags(exc: CloudfreeError, command: click.Command | None) -> str:
    """The library's message with each ``name=`` of an argument spelled as the command's flag."""
    text = str(exc)
    if not isinstance(exc, UsageError) or command is None:
        return text
    options = {p.name: p for p in command.params if isinstance(p, click.Option)}
    for name in exc.params:
        option = options.get(name)
        if option is None:
            continue
        flag = max(option.opts, key=len)
        if option.is_flag:
            text = text.replace(f"{name}=True", flag)
        text = text.replace(f"{name}=", f"{flag} ")
    return text


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cloudfree: %(message)s"))
    logger = logging.getLogger("cloudfree")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def quiet_option(f):
    """--quiet: no progress bar, warnings only."""
    def callback(ctx, param, value):
        _setup_logging(value)
        return value

    return click.option("--quiet", "-q", is_flag=True, callback=callback, expose_value=True,
                        is_eager=True, help="No progress bar or informational messages.")(f)


def output_options(f):
    """--overwrite and --co NAME=VALUE, as in rio, and --cog/--no-cog."""
    f = click.option("--cog/--no-cog", default=True, show_default=True,
                     help="Write Cloud Optimized GeoTIFFs with internal overviews; --no-cog "
                          "skips that step (faster).")(f)
    f = click.option("--co", "creation_options", multiple=True, metavar="NAME=VALUE",
                     callback=lambda ctx, p, v: parse_creation_options(v),
                     help="GDAL creation option for the output GeoTIFF (repeatable).")(f)
    return click.option("--overwrite", is_flag=True, help="Replace an existing output.")(f)


def offset_option(f):
    """--offset auto|0|1000 for every command reading Sentinel-2."""
    return click.option(
        "--offset", type=click.Choice(["auto", "0", "1000"]), default="auto", show_default=True,
        help="Radiometric offset (DN) of processing baseline 04.00+ L1C products; auto reads "
             "product metadata (SAFE) or tags, else assumes 0.")(f)


def mask_options(method_flag: str, buffer: int = 0):
    """Cloud-mask options shared by `mask` and `remove`, collected into ``mask_params``."""
    from cloudfree.masking import MaskParams

    def decorate(f):
        options = [
            click.option(method_flag, "mask_method", type=click.Choice(["score", "dsen2cr"]),
                         default="score", show_default=True,
                         help="score: Sen2Cor-style score (CARF eq. 13-16); dsen2cr: soft NDSI "
                              "in the score, 5x5 grey closing and 7x7 mean filter."),
            click.option("--threshold", type=click.FloatRange(0, 1), default=0.2,
                         show_default=True, help="Cloud where the score exceeds this."),
            click.option("--ndsi-threshold", type=click.FloatRange(-1, 1), default=0.6,
                         show_default=True,
                         help="Snow (not cloud) where NDSI = (B03-B11)/(B03+B11) reaches this."),
            click.option("--buffer", type=click.IntRange(0, 1000), default=buffer,
                         show_default=True,
                         metavar="PIXELS", help="Dilate clouds (and shadows) by this radius."),
            click.option("--shadow", is_flag=True,
                         help="Also flag cloud shadow (class 2) from CSI=(B08+B11)/2."),
            click.option("--hot/--no-hot", default=True, show_default=True,
                         help="Cloud only where HOT = B02 - 0.5*B04 - 0.08 > 0 (haze optimised "
                              "transform): keeps bright soil and roofs out of the mask."),
        ]
        for option in reversed(options):
            f = option(f)

        def wrapper(*args, mask_method, threshold, ndsi_threshold, buffer, shadow, hot,
                    **kwargs):
            params = MaskParams(method=mask_method, threshold=threshold,
                                ndsi_threshold=ndsi_threshold, buffer=buffer, shadow=shadow,
                                hot=hot)
            return f(*args, mask_params=params, **kwargs)

        return functools.update_wrapper(wrapper, f)

    return decorate


def s1_s2_options(default_name: str):
    """--s1, --s2, -o and the co-registration options shared by `coregister` and `remove`."""
    options = [
        click.option("--s1", "s1_path", required=True, type=click.Path(path_type=Path),
                     help="Sentinel-1 GeoTIFF with VV and VH (dB or linear power), any CRS "
                          "overlapping the S2."),
        click.option("--s2", "s2_path", required=True, type=click.Path(path_type=Path),
                     help="Sentinel-2 L1C scene: 13-band GeoTIFF or .SAFE folder."),
        click.option("-o", "--output", type=click.Path(path_type=Path),
                     help=f"Output GeoTIFF [default: {default_name}]."),
        click.option("--s1-units", type=click.Choice(["auto", "db", "linear"]), default="auto",
                     show_default=True, help="Units of the S1 values; auto decides from them."),
        click.option("--refine/--no-refine", default=True, show_default=True,
                     help="Estimate the residual S1-S2 shift and correct it when reliable."),
        click.option("--max-shift", type=click.FloatRange(0.5, 100), default=10.0,
                     show_default=True, metavar="PIXELS",
                     help="Largest shift the refinement searches for."),
    ]

    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def default_output(src: Path, suffix: str) -> Path:
    """``scene.tif`` -> ``scene<suffix>.tif`` beside it (``X.SAFE`` -> ``X<suffix>.tif``)."""
    src = Path(src)
    return src.parent / f"{src.stem if src.suffix else src.name}{suffix}.tif"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cloudfree")
def main() -> None:
    """SAR-assisted cloud removal for whole Sentinel-2 scenes."""
    _setup_logging(False)
    raise_on_stop_signals()


@main.command()
@click.argument("scene", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output mask GeoTIFF [default: <scene>_mask.tif].")
@mask_options("--method")
@click.option("--score", "score_path", type=click.Path(path_type=Path),
              help="Also write the float32 cloud score to this GeoTIFF.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("--block", type=click.IntRange(64, 16384), default=1024, show_default=True,
              help="Window size in pixels for streaming the scene.")
@click.option("--threads", type=click.IntRange(1, 1024),
              help="Windows read and classified at once [default: all usable cores].")
@offset_option
@output_options
@quiet_option
def mask(scene, output, mask_params, score_path, as_json, block, threads, offset, overwrite,
         creation_options, cog, quiet):
    """Cloud (1), shadow (2), snow (3) mask of a Sentinel-2 L1C scene; 0 clear, 255 nodata."""
    from cloudfree.mask_scene import mask_scene

    summary = mask_scene(scene, output or default_output(scene, "_mask"), mask_params,
                         offset=offset,
                         score_path=score_path, overwrite=overwrite,
                         creation_options=creation_options, block=block, threads=threads,
                         cog=cog,
                         quiet=quiet)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{summary['output']}: cloud {summary['cloud_fraction']:.1%}"
                   + (f", shadow {summary['shadow_fraction']:.1%}" if mask_params.shadow else "")
                   + f", snow {summary['snow_fraction']:.1%} of valid pixels")


@main.command()
@s1_s2_options("<s2>_cloudfree.tif")
@click.option("--model", help="Bundled model: cloudfree-fillnet (default) or the "
              "network-free median-fill.")
@click.option("--checkpoint", type=click.Path(path_type=Path),
              help="cloudfree or official GLF-CR checkpoint.")
@click.option("--onnx", type=click.Path(path_type=Path), help="ONNX model from export-onnx.")
@click.option("--s1-aligned", is_flag=True,
              help="The S1 is already on the S2 grid: skip co-registration.")
@click.option("--tile", type=TILE_SIZE,
              help="Tile size in pixels [default: the model's].")
@click.option("--overlap", type=click.IntRange(0, 4096),
              help="Tile overlap in pixels [default: from the receptive field].")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32",
              show_default=True, help="fp16/bf16 run under autocast (GPU).")
@click.option("--composite/--no-composite", default=True, show_default=True,
              help="Keep clear pixels and fill clouds, or write the raw prediction.")
@click.option("--feather", type=click.IntRange(0, 256), default=8, show_default=True,
              metavar="PIXELS", help="Width of the transition inside cloud edges.")
@click.option("--mask-out", type=click.Path(path_type=Path), help="Also write the mask used.")
@click.option("--preview", type=click.Path(path_type=Path),
              help="Also write a PNG quicklook: input RGB | mask | output RGB.")
@mask_options("--mask-method", buffer=5)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@offset_option
@output_options
@quiet_option
def remove(s2_path, s1_path, output, as_json, quiet, **options):
    """Remove clouds from a Sentinel-2 scene with the help of Sentinel-1."""
    from cloudfree.remove_scene import remove_scene

    summary = remove_scene(s2_path, s1_path, output or default_output(s2_path, "_cloudfree"),
                           quiet=quiet, **options)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"{summary['output']}: filled {summary['cloud_fraction']:.1%} cloud with "
                   f"{summary['model']} ({summary['tiles_run']} tiles, {summary['seconds']:.1f} s)")


@main.command()
def models():
    """List the network architectures (presets, parameter counts) and the bundled models."""
    from cloudfree.catalog import catalog_lines

    click.echo("\n".join(catalog_lines()))


@main.command("export-onnx")
@click.option("--checkpoint", "-c", required=True, type=click.Path(path_type=Path),
              help="cloudfree or official GLF-CR checkpoint.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="ONNX model to write.")
@click.option("--tile", type=TILE_SIZE, default=256, show_default=True,
              help="Fixed tile size in pixels the model will run on (the batch stays dynamic).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@quiet_option
def export_onnx(checkpoint, output, tile, overwrite, quiet):
    """Export a checkpoint to ONNX (opset 17) with its scaling and bands in the metadata."""
    from cloudfree.onnx_export import export_checkpoint

    path = export_checkpoint(checkpoint, output, tile, overwrite=overwrite)
    click.echo(f"{path}: {tile}x{tile} tiles, dynamic batch")


@main.command()
@click.argument("scenes", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder: <scene>.tif (remove) or <scene>_mask.tif (mask).")
@click.option("--command", type=click.Choice(["remove", "mask"]), default="remove",
              show_default=True, help="What to run on each scene.")
@click.option("--jobs", "-j", type=click.IntRange(1, 1024),
              help="Local worker processes [default: one per GPU, else 1].")
@click.option("--resume", is_flag=True, help="Skip scenes whose output exists (outputs only "
              "appear when complete).")
@click.option("--report", type=click.Path(path_type=Path), help="Write a run report (.json/.csv).")
@click.option("--stac", type=click.Path(path_type=Path), metavar="DIR",
              help="Write a STAC catalog of the finished scenes to DIR (--resume adds to it).")
@click.option("--masks", is_flag=True, default=None,
              help="remove: also write OUT/<scene>_mask.tif, the mask used.")
@click.option("--dask-scheduler", metavar="ADDRESS",
              help="Run on this Dask scheduler (tcp://host:8786 or scheduler JSON file).")
@click.option("--s2-pattern", default="*s2*.tif", show_default=True,
              help="S2 file in a scene folder (case-insensitive glob; .SAFE folders too).")
@click.option("--s1-pattern", default="*s1*.tif", show_default=True,
              help="S1 file in a scene folder (case-insensitive glob).")
@click.option("--model", help="remove: model name (see `cloudfree models`).")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="remove: checkpoint file.")
@click.option("--device", help="remove: auto, cpu, cuda or cuda:N.")
@click.option("--tile", type=TILE_SIZE, help="remove: tile size in pixels.")
@click.option("--batch-size", type=click.IntRange(1, 1024), help="remove: tiles per batch.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]),
              help="remove: arithmetic on GPU.")
@offset_option
@output_options
@quiet_option
def batch(scenes, out_dir, command, jobs, resume, report, stac, masks, dask_scheduler, s2_pattern,
          s1_pattern, model, checkpoint, device, tile, batch_size, precision, offset, overwrite,
          creation_options, cog, quiet):
    """Run remove (or mask) on every scene folder, or S1/S2 pair, under SCENES."""
    from cloudfree.batch import run_batch

    options = {"model": model, "checkpoint": checkpoint, "device": device, "tile": tile,
               "batch_size": batch_size, "precision": precision, "offset": offset,
               "overwrite": overwrite or None, "creation_options": creation_options or None,
               "cog": cog, "masks": masks}
    result = run_batch(scenes, out_dir, command=command, jobs=jobs, resume=resume, report=report,
                       dask_scheduler=dask_scheduler, s2_pattern=s2_pattern,
                       s1_pattern=s1_pattern, options=options, stac=stac, quiet=quiet)
    click.echo(result.summary())
    result.check()


@main.command()
@s1_s2_options("<s1>_on_<s2>.tif")
@click.option("--threads", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Warp threads.")
@click.option("--report", "report_path", type=click.Path(path_type=Path),
              help="Write the shift field, its reliability, the per-window estimates and the "
                   "overlap as JSON to this file.")
@offset_option
@output_options
@quiet_option
def coregister(s1_path, s2_path, output, s1_units, refine, max_shift, threads, report_path,
               offset, overwrite, creation_options, cog, quiet):
    """Warp Sentinel-1 onto the Sentinel-2 grid with sub-pixel shift refinement."""
    from cloudfree.coregister import coregister_file, summary_line

    out = output or default_output(s1_path, f"_on_{Path(s2_path).stem}")
    r = coregister_file(s1_path, s2_path, out, s1_units=s1_units, refine=refine,
                        max_shift=max_shift, threads=threads, offset=offset, overwrite=overwrite,
                        creation_options=creation_options, report_path=report_path, cog=cog,
                        quiet=quiet)
    click.echo(summary_line(r))


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--arch", default="dsen2cr", show_default=True,
              help="Architecture (dsen2cr, glfcr, carf, ibhfn, sgbafm).")
@click.option("--preset", default="small", show_default=True, help="Preset of the architecture.")
@click.option("--loss", type=click.Choice(["l1", "carl", "cloudaware", "ibhfn"]),
              help="l1 (GLF-CR), carl (DSen2-CR), cloudaware (CARF eq. 17-18), ibhfn (IB-HFN "
              "joint objective). Default: the architecture's own (l1 for glfcr and sgbafm).")
@click.option("--recipe", type=click.Choice(["paper"]),
              help="Set the paper's optimiser, learning rate, schedule, batch, epochs and crop "
              "(glfcr, carf, sgbafm); options given explicitly win.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True,
              help="Epochs in all (a resumed run continues up to this).")
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True)
@click.option("--crop", type=click.IntRange(8), default=128, show_default=True,
              help="Random crop size in pixels.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True,
              help="AdamW weight decay; 0 uses Adam.")
@click.option("--schedule", type=click.Choice(["cosine", "step", "exponential", "constant"]),
              default="cosine", show_default=True,
              help="cosine with warm-up, step (GLF-CR's halving every 5 epochs), exponential "
              "(times --decay every epoch) or constant.")
@click.option("--decay", type=click.FloatRange(0, 1, min_open=True), default=0.8,
              show_default=True, help="Per-epoch factor of the exponential schedule.")
@click.option("--clip", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Gradient-norm clipping (0: off).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("run"),
              show_default=True, help="Folder for last.pt, train_state.pt and log.csv.")
@click.option("--resume", is_flag=True, help="Continue the run in --out.")
@click.option("--overwrite", is_flag=True, help="Start over in an --out that holds a run.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@click.option("--amp", is_flag=True, help="Mixed precision (GPU only).")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Data-loading processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@quiet_option
def train(data, arch, preset, loss, recipe, epochs, batch_size, crop, lr, weight_decay,
          schedule, decay, clip, out_dir, resume, overwrite, device, amp, workers, seed, quiet):
    """Train a network on S1/S2 triplets under DATA (SEN12MS-CR or s1/ s2_cloudy/ s2_cloudfree/).

    Multi-GPU: torchrun --nproc_per_node N -m cloudfree train ...
    """
    from cloudfree.training.loop import TrainConfig, train_folder
    from cloudfree.training.recipes import with_recipe

    ctx = click.get_current_context()
    given = {k for k in ctx.params if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    values = dict(arch=arch, preset=preset, loss=loss, epochs=epochs, batch_size=batch_size,
                  crop=crop, lr=lr, weight_decay=weight_decay, schedule=schedule, decay=decay,
                  clip=clip, amp=amp, device=device, seed=seed, workers=workers, quiet=quiet)
    config = TrainConfig(**with_recipe(recipe, arch, values, given))
    summary = train_folder(data, config, out_dir, resume=resume, overwrite=overwrite)
    click.echo(f"{summary['checkpoint']}: {summary['step']} steps, log {summary['log']}")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", help="Bundled model name (see `cloudfree models`).")
@click.option("--checkpoint", "-c", type=click.Path(path_type=Path), help="Checkpoint file.")
@click.option("--onnx", type=click.Path(path_type=Path), help="ONNX model file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "json_path", type=click.Path(path_type=Path),
              help="Write the full report (overall, per bin, per sample) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path),
              help="Write one row per sample and method as CSV.")
@click.option("--mask-method", type=click.Choice(["score", "dsen2cr"]), default="score",
              show_default=True, help="Cloud detector that bins cloud cover; dsen2cr is the one "
              "GLF-CR binned its test set with.")
@click.option("--ssim", type=click.Choice(["valid", "official"]), default="valid",
              show_default=True, help="valid: SSIM over pixels whose window fits the image; "
              "official: GLF-CR's released code (zero padding), comparable with its tables.")
@quiet_option
def evaluate(data, model, checkpoint, onnx, device, json_path, csv_path, mask_method, ssim,
             quiet):
    """PSNR, SSIM, SAM, MAE on triplets under DATA, beside the cloudy-input and median-fill
    baselines, overall and by cloud cover (0-20 ... 80-100 %)."""
    from cloudfree.engines import open_engine
    from cloudfree.masking import MaskParams
    from cloudfree.training.evaluate import evaluate_folder, table, write_csv, write_json

    engine = open_engine(model=model, checkpoint=checkpoint, onnx=onnx, device=device)
    report = evaluate_folder(data, engine, MaskParams(method=mask_method), quiet, ssim)
    if json_path:
        write_json(report, json_path)
    if csv_path:
        write_csv(report["rows"], csv_path)
    click.echo(table(report))
