"""Help that says what each command takes, no more: no option's help speaks for another command,
choices are listed, every option has help; export-onnx and models deal in networks only."""

from __future__ import annotations

import click
import pytest

from cloudfree.cli.commands import main

EXPORTABLE = "cloudfree-fillnet, cloudfree-fillnet-fast (bundled)"


def help_text(cli, *command: str) -> str:
    """``--help`` of a command, its lines joined (wrapping aside)."""
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_top_level_help_names_s1_as_optional_and_summaries_are_whole(cli):
    text = help_text(cli)
    assert "SAR-assisted" not in text
    assert "Remove clouds from whole Sentinel-2 scenes, with Sentinel-1 and other dates where " \
           "given." in text
    assert "..." not in text.removeprefix("Usage: main [OPTIONS] COMMAND [ARGS]...")
    for name, command in main.commands.items():
        summary = command.get_short_help_str(limit=1000)
        assert summary.endswith(".") and summary in text, name


def test_s1_help_speaks_for_its_own_command(cli):
    coregister = help_text(cli, "coregister")
    assert "remove:" not in coregister and "median-fill" not in coregister
    assert "Sentinel-1 GeoTIFF with VV and VH (dB or linear power), any CRS overlapping the " \
           "S2; a file or an http(s) URL. [required]" in coregister
    remove = help_text(cli, "remove")
    assert "remove:" not in remove and "--model median-fill" not in remove
    assert "Optional for the default model, median-fill, which then fills each cloud from " \
           "clear land of the same radar kind; needed by the fill networks (a bundled network, " \
           "a checkpoint or ONNX)." in remove


def test_mask_reference_takes_any_form_of_the_scene(cli):
    text = help_text(cli, "mask")
    assert "Sentinel-2 of another date of the same place, in any form SCENE takes" in text
    assert "Sentinel-2 L1C of another date" not in text


@pytest.mark.parametrize("command", ["remove", "batch", "evaluate"])
def test_model_and_device_list_their_choices(cli, command):
    text = help_text(cli, command)
    assert "--model TEXT" not in text and "--device TEXT" not in text
    assert "--model NAME Bundled model: median-fill, cloudfree-fillnet or " \
           "cloudfree-fillnet-fast (see `cloudfree models`) [default: median-fill when no " \
           "checkpoint or ONNX is given]." in text
    assert "--device [auto|cpu|cuda|cuda:N] Where to run: auto (the GPU when one is usable, " \
           "else the CPU), cpu, cuda or cuda:N (the GPU numbered N, from 0)." in text


def test_export_onnx_lists_the_networks_only(cli):
    text = help_text(cli, "export-onnx")
    assert "--model NAME Bundled network to export instead of a checkpoint: cloudfree-fillnet " \
           "or cloudfree-fillnet-fast (see `cloudfree models`)." in text


def test_train_device_lists_its_choices(cli):
    assert "--device [auto|cpu|cuda|cuda:N]" in help_text(cli, "train")


def test_every_visible_option_has_help():
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, (name, param.opts)


def test_train_batch_size_lr_and_seed_say_what_they_are(cli):
    text = help_text(cli, "train")
    assert "--batch-size INTEGER RANGE Samples per optimiser step (per GPU under torchrun)." \
        in text
    assert "--lr FLOAT RANGE Learning rate at the schedule's peak" in text
    assert "--seed INTEGER Random seed of the sample order and of each sample's crop" in text


def test_export_onnx_refuses_median_fill_in_one_line(tmp_path, cli):
    output = tmp_path / "median.onnx"
    result = cli("export-onnx", "--model", "median-fill", "-o", output)
    assert result.exit_code == 2
    assert result.output == ("Error: median-fill has no network to export: it fills without "
                             f"one; exportable: {EXPORTABLE} or --checkpoint PATH of a trained "
                             "network\n")
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_export_onnx_refuses_the_fill_checkpoint_too(tmp_path, cli):
    from cloudfree.inference.bundled import bundled_model

    output = tmp_path / "median.onnx"
    result = cli("export-onnx", "-c", bundled_model("median-fill"), "-o", output)
    assert result.exit_code == 2
    assert result.output == ("Error: median-fill (architecture fill) has no network to export: "
                             f"it fills without one; exportable: {EXPORTABLE} or --checkpoint "
                             "PATH of a trained network\n")
    assert list(tmp_path.iterdir()) == []


def test_models_lists_no_internal_fill_architecture(cli):
    result = cli("models")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    architectures = [line.strip() for line in lines if line.startswith("  ")
                     and not line.startswith("    ") and ":" not in line]
    assert "fill" not in architectures and "fillnet" in architectures
    assert not any(line.split()[-2:] == ["rf", "0"] for line in lines)
    assert any(line.startswith("  median-fill (default): ") for line in lines)
