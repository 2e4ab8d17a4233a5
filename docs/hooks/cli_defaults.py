"""MkDocs hook: the CLI reference shows no default where a Click option has none.

mkdocs-click prints Click's internal ``Sentinel.UNSET`` for options without a default value.
"""

UNSET = "<td><code>Sentinel.UNSET</code></td>"


def on_page_content(html: str, **kwargs) -> str:
    """Replace the sentinel's cell with an empty one."""
    return html.replace(UNSET, "<td></td>")
