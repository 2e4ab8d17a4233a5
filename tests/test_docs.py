"""The documentation: the site builds in strict mode, its CLI reference holds every option of every
command, and the README stays short, starts with CI's commands and leads to every guide."""

from __future__ import annotations

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
