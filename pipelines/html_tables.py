"""The pieces every HTML report in the lake is built of (the quality report, the takedown report): text made
safe for a page, and tables. No template engine: the pages are a few tables, and nothing here runs scripts."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


def page_text(value: Any) -> str:
    """`value` as page text, escaped (None as nothing)."""
    return html.escape("" if value is None else str(value), quote=True)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table from already escaped cells; the `numeric` columns are marked for right alignment."""
    head = "".join(f"<th>{header}</th>" for header in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if index in numeric else f"<td>{cell}</td>" for index, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
