"""The options of ``remove``, in groups, each checked when it is made: the model and how it runs
(:class:`EngineOptions`), the fill (:class:`FillOptions`), the other dates
(:class:`ReferenceOptions`) and the files written (:class:`OutputOptions`); how the inputs are
read is :class:`cloudfree.io.options.InputOptions` and the mask
:class:`cloudfree.mask.classify.MaskParams`.

The command line and ``batch`` give the options by their names alone (``tile=64``,
``feather=4``); :func:`split_options` sorts them into the groups, so that a value is checked in
one place whoever gives it. Each field is named as the command line's option, so that an error
naming it (``feather=1000 must be in 0..256 pixels``) reads as its flag there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from cloudfree.core.arguments import (
    check_choice,
    check_kind,
    check_number,
    check_path,
    check_paths,
    check_switch,
    check_whole,
)
from cloudfree.core.errors import UsageError
from cloudfree.fill.median import FILL_METHODS, MAX_CORRECTION
from cloudfree.fill.restore import RestoreParams
from cloudfree.fill.uncertainty import SigmaModel
from cloudfree.inference.bundled import DEFAULT_MODEL
from cloudfree.inference.engines import DEVICE_NAME, PRECISIONS, Engine, model_file, open_engine
from cloudfree.inference.tiling import BATCH_SIZE_RANGE, FEATHER_RANGE, OVERLAP_RANGE, TILE_RANGE
from cloudfree.io.options import InputOptions
from cloudfree.mask.classify import MaskParams
from cloudfree.output.geotiff import check_options_kind

#: The optional outputs of ``OutputOptions``.
OPTIONAL_OUTPUTS = ("mask_out", "preview", "source_out", "days_out", "uncertainty_out")


@dataclass(frozen=True)
class EngineOptions:
    """The model that fills the clouds, and how it runs.

    Parameters
    ----------
    model : str, optional
        Bundled model name (``cloudfree models``). Default: ``median-fill`` when neither
        ``checkpoint`` nor ``onnx`` is given; give exactly one of the three.
    checkpoint : path, optional
        A cloudfree or official GLF-CR checkpoint. Default: none.
    onnx : path, optional
        An ONNX model from ``export-onnx``. Default: none.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Default: ``"auto"``.
    precision : {"fp32", "fp16", "bf16"}
        Arithmetic; fp16 and bf16 run under autocast (fp16 on a GPU only). Default: ``"fp32"``.
    tile : int, optional
        Tile size in pixels, 16 to 8192. Default: the model's.
    overlap : int, optional
        Tile overlap in pixels, 0 to half the tile. Default: from the receptive field.
    batch_size : int
        Tiles per forward pass, 1 to 1024. Default: 8.
    """

    model: str | None = None
    checkpoint: Path | str | None = None
    onnx: Path | str | None = None
    device: str = "auto"
    precision: str = "fp32"
    tile: int | None = None
    overlap: int | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        check_kind("model", self.model, str | None, "a bundled model's name or None")
        check_path("checkpoint", self.checkpoint, optional=True)
        check_path("onnx", self.onnx, optional=True)
        if not isinstance(self.device, str) or not re.fullmatch(DEVICE_NAME, self.device):
            raise UsageError(f"device={self.device} must be auto, cpu, cuda or cuda:N",
                             "device")
        check_choice("precision", self.precision, PRECISIONS)
        if self.tile is not None:
            check_whole("tile", self.tile, *TILE_RANGE, "pixels")
        if self.overlap is not None:
            check_whole("overlap", self.overlap, *OVERLAP_RANGE, "pixels")
        check_whole("batch_size", self.batch_size, *BATCH_SIZE_RANGE)

    @property
    def bundled(self) -> str | None:
        """The bundled model's name: ``model``, or the default one when neither a checkpoint
        nor an ONNX model is given."""
        if self.model is None and self.checkpoint is None and self.onnx is None:
            return DEFAULT_MODEL
        return self.model

    @property
    def name(self) -> str:
        """The model as the messages and tags name it."""
        return str(self.bundled or self.checkpoint or self.onnx)

    def weights(self) -> Path:
        """The file behind the model."""
        return model_file(model=self.bundled, checkpoint=self.checkpoint, onnx=self.onnx)

    def open(self, device: str | None = None) -> Engine:
        """The engine, on ``device`` (default: the options' own)."""
        return open_engine(model=self.bundled, checkpoint=self.checkpoint, onnx=self.onnx,
                           device=device or self.device, precision=self.precision)


@dataclass(frozen=True)
class FillOptions:
    """How the masked pixels are filled and put into the output.

    Parameters
    ----------
    fill_method : {"local", "median"}
        Base of the models built on the classical fill (``median-fill``, ``cloudfree-fillnet``):
        clear pixels nearby that match in S1, with the thin haze around clouds filled too
        (``fill.local``), or the scene's clear-sky median alone. Default: ``"local"``.
    composite : bool
        Keep clear pixels and fill the masked ones (True), or write the raw prediction (False).
        Default: True.
    feather : int
        Width in pixels of the transition inside the edge of the filled region, 0 to 256.
        What other dates fill replaces the pixels the mask calls cloud in full: the ramp lies
        in the buffer. Default: 2.
    max_correction : float or None
        Bound on the correction a fill model's network makes to its base, as a share of the
        base per band (``median-fill`` makes none). On the local base it shrinks where clear
        land of the pixel's S1 kind is near (``fill.local.correction_bound``). None: unbounded.
        Default: ``MAX_CORRECTION``.
    restoring : RestoreParams or None
        On the local base, where the land still shows through thin cloud and haze, take the
        veil off, and relight cloud shadows (with ``MaskParams.shadow``), instead of filling
        them (``fill.restore``); None fills all of them. Default: ``RestoreParams()``.
    uncertainty_model : SigmaModel, optional
        The map from the fill's terms to sigma, for ``OutputOptions.uncertainty_out``. Default:
        the calibration shipped with the package (``SigmaModel.load()``).
    """

    fill_method: str = "local"
    composite: bool = True
    feather: int = 2
    max_correction: float | None = MAX_CORRECTION
    restoring: RestoreParams | None = RestoreParams()
    uncertainty_model: SigmaModel | None = None

    def __post_init__(self) -> None:
        check_choice("fill_method", self.fill_method, FILL_METHODS)
        check_switch("composite", self.composite)
        check_whole("feather", self.feather, *FEATHER_RANGE, "pixels")
        if self.max_correction is not None:
            try:
                check_number("max_correction", self.max_correction, 0)
            except UsageError:
                raise UsageError(f"max_correction={self.max_correction!r} must be a share >= 0 "
                                 "(such as 0.25) or None", "max_correction") from None
        check_kind("restoring", self.restoring, RestoreParams | None, "a RestoreParams or None")
        check_kind("uncertainty_model", self.uncertainty_model, SigmaModel | None,
                   "a SigmaModel or None")


@dataclass(frozen=True)
class ReferenceOptions:
    """Other dates of the same place, to fill from and to find the clouds with.

    Parameters
    ----------
    references : sequence of paths
        Sentinel-2 scenes of other dates of the same place (any CRS or grid overlapping it):
        masked pixels they see clear are filled from them, radiometrically adjusted
        (``dates.fill``); the model fills the rest. Default: none.
    reference_s1 : sequence of paths or None
        One Sentinel-1 file (or None) per reference, in order: where the backscatter changed
        between the target's S1 and it beyond speckle, that reference is not taken. Default:
        none.
    reference_count : int, optional
        Take only the first ``reference_count`` of ``references`` that overlap the scene and
        can be read, skipping the others with a warning (``batch`` gives every other scene,
        nearest dates first). Default: None, every reference, and one that does not overlap
        or cannot be read is an error.
    temporal_mask : bool or None
        With ``references``: find the target's clouds, haze and shadows by comparing it with
        the other dates (``dates.temporal_mask``), fill only those (clear pixels stay as
        observed), and give a reference no weight where it disagrees with the others; False:
        the single-date mask. Default: None, True for a target with B02 and B04 (L1C and
        L2A), where it was measured to win (``temporal_mask.judges_by_default``), False
        otherwise.
    dehaze : bool or None
        With ``references``: where the other dates agree that the target is hazy all over
        (brighter than they are over the same clear land, most in blue, beyond what clear
        dates differ by), lower the whole output, kept pixels and fill, by that smooth haze
        (``dates.dehaze``). Default: None, ``dehaze.BY_DEFAULT`` (off).
    """

    references: Sequence[Path | str] = ()
    reference_s1: Sequence[Path | str | None] = ()
    reference_count: int | None = None
    temporal_mask: bool | None = None
    dehaze: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", check_paths("references", self.references))
        object.__setattr__(self, "reference_s1",
                           check_paths("reference_s1", self.reference_s1, none_items=True))
        if self.reference_count is not None:
            check_whole("reference_count", self.reference_count, 1)
        if self.temporal_mask is not None:
            check_switch("temporal_mask", self.temporal_mask)
        if self.dehaze is not None:
            check_switch("dehaze", self.dehaze)


@dataclass(frozen=True)
class OutputOptions:
    """The files written beside the output, and how.

    Parameters
    ----------
    mask_out : path, optional
        Also write the uint8 class mask used. Default: none.
    preview : path, optional
        Also write a PNG quicklook (input RGB, mask, output RGB). Default: none.
    source_out : path, optional
        Also write the uint8 source map (0 observed, 1..N the references in order, 254 the
        single-date model, 255 nodata); needs references. Default: none.
    days_out : path, optional
        Also write the int16 days from the target to the date each pixel came from (0
        observed, negative an earlier reference, -32768 the model, an undated reference or
        target, or nodata); needs references. Default: none.
    uncertainty_out : path, optional
        Also write the float32 standard deviation, in DN, of the error expected at each filled
        pixel and band (``fill.uncertainty``): 0 where the pixel is kept as observed, NaN at
        nodata. Default: none.
    overwrite : bool
        Replace existing outputs. Default: False.
    creation_options : dict, optional
        GDAL GeoTIFF creation options, ``{"compress": "zstd"}``. Default: none.
    cog : bool
        Write Cloud Optimized GeoTIFFs with internal overviews. Default: True.
    """

    mask_out: Path | str | None = None
    preview: Path | str | None = None
    source_out: Path | str | None = None
    days_out: Path | str | None = None
    uncertainty_out: Path | str | None = None
    overwrite: bool = False
    creation_options: Mapping[str, str] | None = field(default=None, hash=False)
    cog: bool = True

    def __post_init__(self) -> None:
        for name in OPTIONAL_OUTPUTS:
            check_path(name, getattr(self, name), optional=True)
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.preview is not None and self.preview.suffix.lower() != ".png":
            raise UsageError(f"preview={self.preview}: the quicklook is a PNG; give a .png path",
                             "preview")
        check_switch("overwrite", self.overwrite)
        check_options_kind(self.creation_options)
        check_switch("cog", self.cog)


#: remove_scene's option groups, by the keyword it takes each under.
GROUPS = {"engine": EngineOptions, "fill": FillOptions, "inputs": InputOptions,
          "dates": ReferenceOptions, "outputs": OutputOptions}
#: Each option's group, by the option's name.
GROUP_OF = {f.name: key for key, group in GROUPS.items() for f in fields(group)}
#: The class of each of remove_scene's option keywords.
KINDS = {**GROUPS, "mask_params": MaskParams}


def check_kinds(options: Mapping[str, object]) -> None:
    """Refuse an option group that is not of its class (``mask_params=None``)."""
    for key, value in options.items():
        name = KINDS[key].__name__
        check_kind(key, value, KINDS[key], f"{'an' if name[0] in 'AEIOU' else 'a'} {name}")


def split_options(options: Mapping[str, object]) -> dict[str, object]:
    """``remove_scene``'s keywords (``engine=EngineOptions(...)``, ...) from options given by
    their names alone (``tile=64``, ``feather=4``), as the command line and ``batch`` give
    them; ``mask_params`` passes as it is. A name that is no option is refused, naming it."""
    grouped: dict[str, dict[str, object]] = {key: {} for key in GROUPS}
    extra = {}
    for name, value in options.items():
        if name == "mask_params":
            extra[name] = value
        elif name in GROUP_OF:
            grouped[GROUP_OF[name]][name] = value
        else:
            raise UsageError(f"{name}={value!r} is not an option of remove (see EngineOptions, "
                             "FillOptions, InputOptions, ReferenceOptions and OutputOptions "
                             "for those there are)", name)
    check_kinds(extra)
    return {key: GROUPS[key](**values) for key, values in grouped.items()} | extra
