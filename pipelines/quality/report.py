"""The page a person opens after a validation run: `reports/quality/<run>/index.html` in the lake.

Great Expectations' own Data Docs load their styles and scripts from CDNs, so on an offline machine (or a
lake browsed through a file share) they render as bare text. This report is one self-contained file
instead: inline CSS, no scripts, thumbnails as `data:` URIs, links only to the files beside it. It shows the
summary counts, every batch expectation with its outcome, the sources, and the rejected images grouped by
reason with a small thumbnail, their sources and all their reasons. The raw Great Expectations results
(`rows.json`, `batch.json`) are written beside it for whoever needs every detail.

Every piece of text that came from data (reasons, sources, licenses, run ids) is HTML-escaped: sources are
outside parties, and a file name or license string must never become markup.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from pipelines.settings import MAX_PIXELS
from pipelines.storage import ObjectStore

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.quality.verdicts import BatchCheck, ImageVerdict

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 96
# Thumbnails per reason group: enough to see what went wrong; the rest are listed without a picture so a
# batch of thousands of rejects still gives a page a browser opens quickly.
THUMBNAILS_PER_GROUP = 60

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #1d2430; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d8dde6; }
.muted { color: #5b6573; } code { font-size: .92em; background: #f1f3f7; padding: 0 .25em; border-radius: 3px; }
table { border-collapse: collapse; margin: .6em 0; } th, td { text-align: left; padding: .3em .8em;
       border-bottom: 1px solid #e3e7ee; vertical-align: top; } th { background: #f6f7fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #17663a; font-weight: 600; } .fail { color: #a4161a; font-weight: 600; }
.banner { padding: .7em 1em; border-radius: 6px; margin: 1em 0; }
.banner.pass { background: #e7f6ec; } .banner.fail { background: #fdecec; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { width: 19em; border: 1px solid #e3e7ee; border-radius: 6px; padding: .5em; display: flex; gap: .6em; }
.thumb { width: 96px; height: 96px; flex: none; display: flex; align-items: center; justify-content: center;
         background: #f1f3f7; border-radius: 4px; overflow: hidden; font-size: .8em; color: #5b6573; }
.thumb img { max-width: 96px; max-height: 96px; }
.card ul { margin: .2em 0 0 1em; padding: 0; } .card .meta { font-size: .85em; overflow-wrap: anywhere; }
"""


def _text(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def thumbnail_data_uri(data: bytes, side: int = THUMBNAIL_SIDE, max_pixels: int = MAX_PIXELS) -> str | None:
    """A JPEG thumbnail at most `side` pixels square as a `data:` URI, or None when the bytes do not decode
    (or declare more than `max_pixels`, which the quality stage already refused to decode)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                return None
            image.draft("RGB", (side * 2, side * 2))  # JPEG decodes at a reduced scale; others ignore it
            shown = ImageOps.exif_transpose(image)
            shown.thumbnail((side, side))
            if shown.mode in ("RGBA", "LA", "PA", "P") or "transparency" in shown.info:
                rgba = shown.convert("RGBA")
                shown = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            buffer = io.BytesIO()
            shown.convert("RGB").save(buffer, format="JPEG", quality=80)
    except Exception:  # an undecodable file has no preview; the report says so instead of failing
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """An HTML table from already escaped cells."""
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


def _summary_section(summary: Mapping[str, Any]) -> str:
    failures = summary.get("batch_failures") or []
    if failures:
        banner = '<div class="banner fail"><strong>Batch rejected.</strong> ' + "<br>".join(
            _text(message) for message in failures
        )
        banner += "<br>The source probably changed; row verdicts below were recorded all the same.</div>"
    else:
        banner = '<div class="banner pass"><strong>Batch passed</strong> its expectations.</div>'
    counts = [
        ("images validated", summary.get("images", 0)),
        ("accepted", summary.get("accepted", 0)),
        ("rejected", summary.get("rejected", 0)),
    ]
    rows = [(_text(name), _text(count)) for name, count in counts]
    reasons = [(_text(label), _text(count)) for label, count in (summary.get("by_reason") or {}).items()]
    by_reason = (
        "<h3>Rejections by reason</h3>"
        + _table(["reason", "images"], reasons, numeric=[1])
        + '<p class="muted">An image with several reasons counts under each.</p>'
        if reasons
        else ""
    )
    return "<h2>Summary</h2>" + banner + _table(["", "count"], rows, numeric=[1]) + by_reason


def _batch_section(checks: Sequence[BatchCheck], sources: pd.DataFrame) -> str:
    rows = []
    for check in checks:
        outcome = '<span class="pass">pass</span>' if check.passed else '<span class="fail">FAIL</span>'
        details = "<br>".join(_text(message) for message in check.failures)
        rows.append((f"<code>{_text(check.check)}</code>", _text(check.description), outcome, details))
    checks_table = (
        _table(["check", "why", "result", "details"], rows) if rows else '<p class="muted">No batch to judge.</p>'
    )
    source_rows = [
        (
            _text("whole batch" if row["scope"] == "batch" else row["source"]),
            _text(row["images"]),
            _text(row["not_decodable"]),
            _text(row["rejected"]),
            _text(f"{row['rejected_pct']:.0f}%"),
        )
        for row in sources.to_dict(orient="records")
    ]
    return (
        "<h2>Batch expectations</h2>"
        + checks_table
        + "<h3>Sources</h3>"
        + _table(["source", "images", "not decodable", "rejected", "rejected share"], source_rows, numeric=[1, 2, 3, 4])
    )


def _rejected_section(
    store: ObjectStore, table: pd.DataFrame, verdicts: Mapping[str, ImageVerdict], thumbnail_side: int
) -> str:
    rows = {row["sha256"]: row for row in table.to_dict(orient="records")}
    groups: dict[str, list[str]] = defaultdict(list)
    for sha256, verdict in sorted(verdicts.items()):
        for label in verdict.labels:
            groups[label].append(sha256)
    if not groups:
        return '<h2>Rejected images</h2><p class="muted">None.</p>'
    thumbnails: dict[str, str | None] = {}
    parts = ["<h2>Rejected images</h2>"]
    for label in sorted(groups, key=lambda name: (-len(groups[name]), name)):
        members = groups[label]
        cards = []
        for position, sha256 in enumerate(members):
            row = rows[sha256]
            if position < THUMBNAILS_PER_GROUP and sha256 not in thumbnails:
                thumbnails[sha256] = (
                    thumbnail_data_uri(store.get(row["raw_key"]), thumbnail_side) if row["decodes"] else None
                )
            uri = thumbnails.get(sha256) if position < THUMBNAILS_PER_GROUP else None
            picture = f'<img src="{uri}" alt="{_text(sha256[:12])}">' if uri else "no preview"
            reasons = "".join(f"<li>{_text(reason)}</li>" for reason in verdicts[sha256].reasons)
            cards.append(
                f'<div class="card"><div class="thumb">{picture}</div><div class="meta">'
                f"<code>{_text(sha256[:12])}</code><br>from {_text(row['sources'] or 'no source')}"
                f"<ul>{reasons}</ul></div></div>"
            )
        parts.append(f'<h3>{_text(label)} ({len(members)})</h3><div class="cards">{"".join(cards)}</div>')
    return "".join(parts)


def _accepted_section(table: pd.DataFrame, verdicts: Mapping[str, ImageVerdict]) -> str:
    per_source: dict[str, int] = defaultdict(int)
    for sha256, sources in zip(table["sha256"], table["sources"], strict=True):
        if verdicts[sha256].accepted:
            for source in sources.split(",") if sources else ["(none)"]:
                per_source[source] += 1
    total = sum(1 for verdict in verdicts.values() if verdict.accepted)
    rows = [(_text(source), _text(count)) for source, count in sorted(per_source.items())]
    listing = _table(["source", "accepted"], rows, numeric=[1]) if rows else ""
    return f"<h2>Accepted images</h2><p>{total} accepted for training.</p>{listing}"


def render_report(
    store: ObjectStore,
    *,
    summary: Mapping[str, Any],
    table: pd.DataFrame,
    verdicts: Mapping[str, ImageVerdict],
    sources: pd.DataFrame,
    checks: Sequence[BatchCheck],
    thumbnail_side: int = THUMBNAIL_SIDE,
) -> str:
    """The report page as one self-contained HTML document."""
    run_id = _text(summary.get("run_id"))
    body = "".join(
        [
            f'<h1>Image quality report</h1><p class="muted">Run <code>{run_id}</code></p>',
            _summary_section(summary),
            _batch_section(checks, sources),
            _rejected_section(store, table, verdicts, thumbnail_side),
            _accepted_section(table, verdicts),
            '<h2>Details</h2><p>Great Expectations results: <a href="rows.json">rows.json</a> (one row per image), '
            '<a href="batch.json">batch.json</a> (per source); run summary: <a href="summary.json">summary.json</a>.'
            "</p>",
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Quality report {run_id}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def write_report(
    store: ObjectStore,
    prefix: str,
    *,
    summary: Mapping[str, Any],
    table: pd.DataFrame,
    verdicts: Mapping[str, ImageVerdict],
    sources: pd.DataFrame,
    checks: Sequence[BatchCheck],
    row_validation: Mapping[str, Any],
    batch_validation: Mapping[str, Any],
) -> str:
    """Write `index.html` and the Great Expectations results beside it under `prefix`; the page's address."""
    store.put(f"{prefix}rows.json", json.dumps(row_validation, indent=1, default=str).encode())
    store.put(f"{prefix}batch.json", json.dumps(batch_validation, indent=1, default=str).encode())
    page = render_report(store, summary=summary, table=table, verdicts=verdicts, sources=sources, checks=checks)
    store.put(f"{prefix}index.html", page.encode("utf-8"))
    return store.uri(f"{prefix}index.html")
