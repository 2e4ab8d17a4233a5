"""The documentation: the site builds in strict mode, its CLI reference holds every option of every
command, and the README stays short, starts with CI's commands and leads to every guide."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cloudfree.cli.commands import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
INSTALL = ("pip install torch==2.13.0 && pip install -e . && cloudfree remove --s1 "
           "examples/data/s1.tif --s2 examples/data/s2.tif -o cloudfree_sample.tif --overwrite")
TESTS = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q'
#: The pages a reader must reach within two clicks from the README, by what they cover.
GUIDES = {
    "mask": "docs/guides/masks.md",
    "co-register": "docs/guides/coregister.md",
    "remove with S1": "docs/guides/remove.md",
    "remove without S1, other dates": "docs/guides/other-dates.md",
    "GPU": "docs/guides/gpu.md",
    "batch": "docs/guides/batch.md",
    "ONNX": "docs/guides/onnx.md",
    "train": "docs/guides/training.md",
}
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as ``mkdocs build --strict`` writes it: any broken link or anchor, missing page
    or docstring the API page cannot render fails the build."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_site_builds_with_every_page_of_the_nav(site):
    for page in ("guides/remove", "guides/other-dates", "reference/cli", "reference/api",
                 "benchmarks/masks", "models/cloudfree-fillnet", "limitations", "changelog"):
        assert (site / page / "index.html").is_file(), page
    # the model card is included from beside the weights, not a stub
    card = (site / "models" / "cloudfree-fillnet" / "index.html").read_text()
    assert "Held-out figures" in card and "residual_4294" in card
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "remove_scene" in api and "max_correction" in api  # rendered from the docstring


def command_sections(html: str) -> dict[str, str]:
    """Each command's part of the CLI reference page, from its heading to the next one's."""
    starts = sorted((html.index(f'id="{name}"'), name) for name in main.commands)
    ends = [start for start, _ in starts[1:]] + [len(html)]
    return {name: html[start:end] for (start, name), end in zip(starts, ends, strict=True)}


def test_cli_reference_holds_every_option_of_every_command(site):
    sections = command_sections((site / "reference" / "cli" / "index.html").read_text())
    assert set(sections) == set(main.commands)
    checked = 0
    for name, command in main.commands.items():
        section = sections[name]
        assert f"cloudfree {name} [OPTIONS]" in section, name  # the usage line
        for param in command.params:
            if getattr(param, "hidden", False):
                continue  # hidden from --help too (aliases kept for old scripts)
            if isinstance(param, click.Argument):
                assert param.name.upper() in section, (name, param.name)
                continue
            for flag in (*param.opts, *param.secondary_opts):
                assert f"<code>{flag}</code>" in section, (name, flag)
                checked += 1
            if param.help:  # the help text itself, as --help prints it (first words)
                first = param.help.split()[0].replace("<", "&lt;").replace(">", "&gt;")
                assert first in section, (name, param.opts, first)
    assert checked > 100


CELL = re.compile(r"<td>(.*?)</td>", re.S)
ROW = re.compile(r"<tr>\s*(<td>.*?)</tr>", re.S)


def text(html_part: str) -> str:
    """What a reader sees of a piece of the page: no tags, entities read, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", html_part)).split())


def option_rows(section: str) -> dict[str, list[str]]:
    """Each option's row of a command's table, as text: longest flag -> [names, type,
    description, default]."""
    rows = {}
    for row in ROW.findall(section):
        cells = [text(cell) for cell in CELL.findall(row)]
        flags = re.findall(r"--?[\w-]+", cells[0].split(" / ")[0])  # not --no-...
        rows[max(flags, key=len)] = cells
    return rows


def help_defaults(option: click.Option, ctx: click.Context) -> list[str]:
    """Every default the option's line of ``--help`` shows: after the help (show_default) and
    inside it (``[default: <s2>_cloudfree.tif]``)."""
    record = option.get_help_record(ctx)
    return [found.strip() for found in re.findall(r"\[default: ([^;\]]*)", record[1])]


def test_cli_reference_shows_help_and_defaults_as_help_does(site):
    sections = command_sections((site / "reference" / "cli" / "index.html").read_text())
    parent = click.Context(main, info_name="cloudfree")
    shown = 0
    for name, command in main.commands.items():
        rows = option_rows(sections[name])
        ctx = click.Context(command, info_name=name, parent=parent)
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            _, kind, description, default = rows[max(param.opts, key=len)]
            assert description == " ".join((param.help or "").split()), (name, param.opts)
            for value in help_defaults(param, ctx):
                assert value == default or f"[default: {value}" in description, \
                    (name, param.opts, value)
                shown += 1
            if param.metavar:  # the choices --help shows: [auto|cpu|cuda|cuda:N], NAME...
                assert kind.startswith(param.metavar), (name, param.opts, kind)
        # the command's own help, as --help prints it, line breaks aside
        assert " ".join(command.help.split()) in text(sections[name]), name
    assert shown > 60
    remove, coregister = option_rows(sections["remove"]), option_rows(sections["coregister"])
    assert remove["--output"][2] == "Output GeoTIFF [default: <s2>_cloudfree.tif]."
    assert coregister["--output"][2] == "Output GeoTIFF [default: <s1>_on_<s2>.tif]."
    assert remove["--refine"][3] == "refine" and remove["--device"][3] == "auto"
    assert remove["--device"][1] == "[auto|cpu|cuda|cuda:N]"
    assert remove["--s1"][3] == "" and coregister["--s1"][3] == "required"
    assert "Sentinel.UNSET" not in sections["remove"] and "<em>" not in sections["coregister"]


def test_cli_reference_summaries_are_whole_sentences(site):
    page = (site / "reference" / "cli" / "index.html").read_text()
    listed = dict(re.findall(r"<li><em>([\w-]+)</em>: (.*?)</li>", page))
    assert set(listed) == set(main.commands)
    for name, summary in listed.items():
        summary = text(summary)
        assert summary == main.commands[name].get_short_help_str(limit=1000), name
        assert summary[0].isupper() and summary.endswith(".") and "..." not in summary, name


def test_readme_is_short_and_starts_with_the_commands_ci_runs():
    text = README.read_text()
    assert len(text.splitlines()) < 250
    commands = re.findall(r"^    (\S.*)$", text, re.M)
    assert commands[:2] == [INSTALL, TESTS]
    ci = (ROOT / ".ci" / "run").read_text()
    for step in TESTS.split(" && "):
        assert step.removeprefix("python -m ") in ci, step
    for path in re.findall(r"examples/\S+\.tif", INSTALL):
        assert (ROOT / path).is_file(), path


def links(page: Path) -> list[Path]:
    """The local files a Markdown page links to (anchors dropped); each must exist."""
    found = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"
        found.append(path)
    return found


def test_readme_links_resolve_and_reach_every_guide_in_two_clicks():
    first = links(README)
    reached = set(first)
    for page in first:
        if page.suffix == ".md" and page.is_relative_to(ROOT / "docs"):
            reached.update(links(page))
    for topic, guide in GUIDES.items():
        assert (ROOT / guide).resolve() in reached, topic


def test_user_text_has_no_issue_numbers_or_work_history():
    pages = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "cloudfree" / "models").glob("*.md"))]
    internal = re.compile(r"\bissues? \d+|\b(this|that|next|first|second|third) round\b|"
                          r"\b(this|that|a|next|previous) session\b|\blent for\b", re.I)
    for page in pages:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not internal.search(line), f"{page.relative_to(ROOT)}:{number}: {line}"
