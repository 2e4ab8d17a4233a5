"""One spelling per option: the same flags (and, for shared options, help) in every command."""

from __future__ import annotations

from collections import defaultdict

import click
import pytest
from helpers import SUMMER_S2

from cloudfree.cli.commands import main
from cloudfree.cli.options import SHARED

#: Shared options whose help says what this command writes there (output) or does with it
#: (model: run it, or export it, which has no default; s1_path: required by coregister, by the
#: networks only in remove).
_HELP_PER_COMMAND = {"output", "model", "s1_path"}


def visible_options() -> dict[str, list[tuple[str, click.Option]]]:
    """Long flag -> (command, option) for every option help shows, over all commands."""
    found = defaultdict(list)
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                long = max(param.opts, key=len)
                found[long].append((name, param))
    return found


def test_the_same_flag_has_the_same_spellings_and_name_everywhere():
    for long, uses in visible_options().items():
        spellings = {(tuple(sorted(p.opts)), tuple(p.secondary_opts), p.name) for _, p in uses}
        assert len(spellings) == 1, f"{long}: {sorted(spellings)} in {[c for c, _ in uses]}"


def test_shared_options_have_one_help():
    for long, uses in visible_options().items():
        name = uses[0][1].name
        if name in SHARED and name not in _HELP_PER_COMMAND:
            helps = {p.help for _, p in uses}
            assert len(helps) == 1, f"{long}: {helps}"


def test_the_unified_spellings():
    options = visible_options()
    commands = {flag: {c for c, _ in uses} for flag, uses in options.items()}
    assert commands["--checkpoint"] == {"remove", "batch", "export-onnx", "evaluate"}
    assert commands["--output"] >= {"mask", "remove", "coregister", "batch", "export-onnx",
                                    "train"}
    assert commands["--mask-method"] == {"mask", "remove", "evaluate"}
    assert commands["--json"] == {"mask", "remove", "evaluate"}
    assert not {"--out", "--method"} & set(options)
    assert all(p.is_flag for _, p in options["--json"])


@pytest.mark.parametrize("old, new", [(["--method", "dsen2cr"], ["--mask-method", "dsen2cr"])])
def test_old_spellings_still_work(tmp_path, old, new, cli):
    outputs = []
    for i, args in enumerate((old, new)):
        out = tmp_path / f"m{i}.tif"
        result = cli("mask", str(SUMMER_S2), "-o", str(out), "--json",
                     "-q", *args)
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    import rasterio

    with rasterio.open(tmp_path / "m0.tif") as a, rasterio.open(tmp_path / "m1.tif") as b:
        assert a.tags()["MASK_METHOD"] == b.tags()["MASK_METHOD"] == "dsen2cr"
        assert (a.read() == b.read()).all()


@pytest.mark.parametrize("command", [
    ["mask", SUMMER_S2],
    ["export-onnx", "--model", "cloudfree-fillnet"],
])
def test_a_file_output_with_a_trailing_slash_is_refused(tmp_path, command, cli):
    """``-o o.tif/`` names a folder; it wrote the file ``o.tif``."""
    out = f"{tmp_path / 'o.tif'}/"
    result = cli(*command, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: Invalid value for '-o' / '--output': {out} ends with a slash, which names a "
        "folder: give a file name.")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_output_may_end_with_a_slash(tmp_path):
    from cloudfree.cli.options import FILE_OUT, PATH

    assert PATH.convert(f"{tmp_path}/run/", None, None) == tmp_path / "run"
    assert FILE_OUT.convert(f"{tmp_path}/o.tif", None, None) == tmp_path / "o.tif"
