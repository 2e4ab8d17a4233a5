"""remove's option groups and the library's argument checks: a wrong type or a value the
command line's ranges refuse is one UsageError naming the argument, before anything is
written; batch checks its options once, before any scene."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest
from helpers import ROOT, SUMMER_S1, SUMMER_S2, documented_parameters

from cloudfree import MaskParams, coregister_file, mask_scene, remove_scene, run_batch
from cloudfree.cli.commands import command_flags, main
from cloudfree.core.errors import UsageError
from cloudfree.io.options import InputOptions
from cloudfree.pipeline.options import (
    GROUPS,
    EngineOptions,
    FillOptions,
    OutputOptions,
    ReferenceOptions,
    split_options,
)

SERIES = ROOT / "examples" / "data" / "series"
NOT_A_DICT = ("creation_options=['COMPRESS=ZSTD'] must be a dict of GDAL creation options, "
              "such as {'compress': 'zstd'}, or None")
NOT_A_PATH = "must be a path (a str or pathlib.Path)"
ONE_PATH = "references='x.tif' is one path where a list of them is taken: give references=['x.tif']"


@pytest.mark.parametrize("call, message", [
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, mask_params=None),
     "mask_params=None must be a MaskParams"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, fill={"feather": 4}),
     "fill={'feather': 4} must be a FillOptions"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine={"model": "median-fill"}),
     "engine={'model': 'median-fill'} must be an EngineOptions"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out,
                              outputs=OutputOptions(creation_options=["COMPRESS=ZSTD"])),
     NOT_A_DICT),
    (lambda out: mask_scene(SUMMER_S2, out, creation_options=["COMPRESS=ZSTD"]), NOT_A_DICT),
    (lambda out: coregister_file(SUMMER_S1, SUMMER_S2, out, creation_options=["COMPRESS=ZSTD"]),
     NOT_A_DICT),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(tile="abc")),
     "tile='abc' must be a whole number of pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(tile=64.5)),
     "tile=64.5 must be a whole number of pixels"),
    (lambda out: remove_scene(None, SUMMER_S1, out), f"s2_path=None {NOT_A_PATH}"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, None), f"output=None {NOT_A_PATH}"),
    (lambda out: mask_scene(None, out), f"scene=None {NOT_A_PATH}"),
    (lambda out: coregister_file(SUMMER_S1, None, out), f"s2_path=None {NOT_A_PATH}"),
    (lambda out: remove_scene(SUMMER_S2, None, out,
                              dates=ReferenceOptions(references="x.tif")), ONE_PATH),
    (lambda out: mask_scene(SUMMER_S2, out, references="x.tif"), ONE_PATH),
    (lambda out: remove_scene(SUMMER_S2, None, out,
                              dates=ReferenceOptions(references=[SUMMER_S2, None])),
     f"references=None {NOT_A_PATH}"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(device="tpu")),
     "device=tpu must be auto, cpu, cuda or cuda:N"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, fill=FillOptions(composite="no")),
     "composite='no' must be True or False"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, mask_params=MaskParams(buffer="5")),
     "buffer='5' must be a whole number of pixels"),
    (lambda out: mask_scene(SUMMER_S2, out, MaskParams(threshold="0.2")),
     "threshold='0.2' must be a number"),
    (lambda out: mask_scene(SUMMER_S2, out, MaskParams(shadow="yes")),
     "shadow='yes' must be True, False or None (the command's default)"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, mask_params=MaskParams(hot=0)),
     "hot=0 must be True or False"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, quiet="no"),
     "quiet='no' must be True or False"),
    (lambda out: mask_scene(SUMMER_S2, out, overwrite="no"),
     "overwrite='no' must be True or False"),
    (lambda out: mask_scene(SUMMER_S2, out, cog="no"), "cog='no' must be True or False"),
    (lambda out: coregister_file(SUMMER_S1, SUMMER_S2, out, quiet="no"),
     "quiet='no' must be True or False"),
    (lambda out: run_batch(SERIES, out, resume="yes"), "resume='yes' must be True or False"),
    (lambda out: run_batch(SERIES, out, s2_pattern=5),
     "s2_pattern=5 must be a file name pattern (a str such as '*_s2.tif')"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, inputs=InputOptions(s1_units="dB")),
     "s1_units='dB' must be one of auto, db, linear"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out, engine=EngineOptions(overlap=-1)),
     "overlap=-1 must be in 0..4096 pixels"),
    (lambda out: remove_scene(SUMMER_S2, SUMMER_S1, out,
                              fill=FillOptions(max_correction=float("nan"))),
     "max_correction=nan must be a share >= 0 (such as 0.25) or None"),
    (lambda out: remove_scene(SUMMER_S2, None, out,
                              dates=ReferenceOptions(references=[SUMMER_S2], reference_count=0)),
     "reference_count=0 must be at least 1"),
    (lambda out: run_batch(SERIES, out, options={"bogus": 1}),
     "bogus=1 is not an option of remove (see EngineOptions, FillOptions, InputOptions, "
     "ReferenceOptions and OutputOptions for those there are)"),
    (lambda out: run_batch(SERIES, out, options={"feather": -1}),
     "feather=-1 must be in 0..256 pixels"),
    (lambda out: run_batch(SERIES, out, options={"mask_out": "m.tif"}),
     "mask_out='m.tif': batch sets it for each scene; give masks=True, uncertainty=True or "
     "references=K instead"),
    (lambda out: run_batch(SERIES, out, command="mask", options={"offset": 500}),
     "offset=500 must be auto, 0 or 1000"),
    (lambda out: run_batch(SERIES, out, options=[("tile", 64)]),
     "options=[('tile', 64)] must be a dict of options by name, or None"),
])
def test_wrong_arguments_are_named_before_any_work(tmp_path, call, message):
    """Types the command line cannot give and values out of its ranges: one UsageError naming
    the argument (no AttributeError, TypeError or letter-by-letter path), nothing written."""
    with pytest.raises(UsageError) as error:
        call(tmp_path / "out.tif")
    assert str(error.value) == message
    assert list(tmp_path.iterdir()) == []


def test_batch_refuses_an_unknown_option_once_before_any_scene(tmp_path, monkeypatch):
    from cloudfree.pipeline import batch

    ran = []
    monkeypatch.setattr(batch, "run_scene", lambda task: ran.append(task))
    with pytest.raises(UsageError, match="^bogus=1 is not an option of remove"):
        run_batch(SERIES, tmp_path / "out", options={"model": "median-fill", "bogus": 1})
    assert ran == [] and not (tmp_path / "out").exists()


def test_split_options_sorts_options_by_name_into_their_groups():
    params = MaskParams(buffer=3)
    grouped = split_options({"tile": 64, "feather": 4, "s1_units": "db", "mask_out": "m.tif",
                             "references": ["a.tif"], "mask_params": params})
    assert grouped == {"engine": EngineOptions(tile=64), "fill": FillOptions(feather=4),
                       "inputs": InputOptions(s1_units="db"),
                       "dates": ReferenceOptions(references=("a.tif",)),
                       "outputs": OutputOptions(mask_out="m.tif"), "mask_params": params}
    assert split_options({}) == {key: group() for key, group in GROUPS.items()}


def test_every_option_is_named_as_the_command_line_names_it():
    """So that an error naming a field reads as the remove command's flag there."""
    flags = command_flags(main.commands["remove"])
    library_only = {"restoring", "uncertainty_model", "reference_count"}  # --restore: a switch
    names = {f.name for group in GROUPS.values() for f in fields(group)}
    assert names - library_only <= set(flags)
    assert library_only - set(flags) == library_only


@pytest.mark.parametrize("group", [*GROUPS.values()], ids=lambda g: g.__name__)
def test_every_option_is_documented(group):
    assert documented_parameters(group) == {f.name for f in fields(group)}


def test_remove_scene_takes_at_most_ten_parameters():
    assert len(inspect.signature(remove_scene).parameters) <= 10
