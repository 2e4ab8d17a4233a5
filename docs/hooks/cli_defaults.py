"""MkDocs hook: the CLI reference shows each command's help and defaults as ``--help`` does.

mkdocs-click writes the help into Markdown as it is, so a placeholder such as ``<s2>`` would be
taken for an HTML tag (and dropped by the browser) and ``_on_`` for emphasis; its table prints
Click's internal ``Sentinel.UNSET`` for an option without a default, and ``True`` where
``--help`` says ``refine``. This hook has it write the option tables and the command
descriptions as plain text (Markdown and HTML characters escaped), each default as ``--help``
shows it and each metavar (such as ``[auto|cpu|cuda|cuda:N]``) as the option's type.
"""

from __future__ import annotations

import html
import inspect
import re

import click
from mkdocs_click import _docs

#: Characters Python-Markdown would read as markup; each is written as an escaped character.
MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!])")


def plain(text: str) -> str:
    """``text`` as Markdown that renders as the text itself, also inside a table cell."""
    text = html.escape(text, quote=False)  # <s2> stays text, & stays &
    return MARKDOWN.sub(r"\\\1", text).replace("|", "&#x7C;")


def shown_default(option: click.Option, ctx: click.Context) -> str:
    """The default as ``--help`` shows it after the help (empty where it shows none)."""
    if hasattr(option, "get_help_extra"):  # Click 8.2+
        return str(option.get_help_extra(ctx).get("default", ""))
    record = option.get_help_record(ctx)
    found = re.search(r"\[default: (.*?)(?:; [^;\]]*)*\]$", record[1] if record else "")
    return found.group(1) if found else ""


def option_type(option: click.Option) -> str:
    """The value the option takes, in mkdocs-click's words ("float range (between 0 and 1)");
    its metavar instead of the type's name where it names one (``PIXELS (between ...)``)."""
    words = _docs._format_table_option_type(option)
    if not option.metavar:
        return words
    ranged = isinstance(option.type, click.IntRange | click.FloatRange)
    return plain(option.metavar) + (words.removeprefix(option.type.name) if ranged else "")


def option_row(option: click.Option, ctx: click.Context) -> str:
    names = ", ".join(f"`{flag}`" for flag in option.opts)
    if option.secondary_opts:
        names += " / " + ", ".join(f"`{flag}`" for flag in option.secondary_opts)
    default = "required" if option.required else shown_default(option, ctx)
    return (f"| {names} | {option_type(option)} | {plain(option.help or '')} | "
            f"{plain(default)} |")


def table_options(ctx: click.Context, show_hidden: bool = False):
    """The options table, each row's text as ``--help`` writes it."""
    options = [p for p in ctx.command.get_params(ctx) if isinstance(p, click.Option)
               and (show_hidden or not p.hidden)]
    if not options:
        return
    yield "**Options:**"
    yield ""
    yield "| Name | Type | Description | Default |"
    yield "| ---- | ---- | ----------- | ------- |"
    for option in options:
        yield option_row(option, ctx)
    yield ""


def description(ctx: click.Context, remove_ascii_art: bool = False):
    """The command's help, its paragraphs as plain text."""
    text = ctx.command.help or ctx.command.short_help
    if not text:
        return
    for line in inspect.cleandoc(text).splitlines():
        yield plain(line)
    yield ""


def on_config(config, **kwargs):
    """Have mkdocs-click write the tables and descriptions as above (before any page)."""
    _docs._make_table_options = table_options
    _docs._make_description = description
    return config
