"""The page a person opens after a validation run: `reports/quality/<run>/index.html` in the lake.

Great Expectations' own Data Docs load their styles and scripts from CDNs, so on an offline machine (or a
lake browsed through a file share) they render as bare text. This report is one self-contained file
instead: inline CSS, no scripts, thumbnails as `data:` URIs, links only to the files beside it. It shows the
summary counts first, then every batch expectation with its outcome, the sources, and the rejected images
grouped by reason, each with a small thumbnail, its sources and all its reasons.

A batch can hold 100,000 images, so the page shows at most `CARDS_PER_GROUP` images per reason and says how
many more there are: its size and the time to render it do not grow with the number of rejects. The complete
list is `rejected.json` beside it, every rejected image once in sha256 order with its raw key, sources,
license, reasons and reason labels, one image per line so that it can be read a line at a time. The raw Great
Expectations results (`rows.json`, `batch.json`) are written beside it too, for whoever needs every detail.

Every piece of text that came from data (reasons, sources, licenses, run ids) is HTML-escaped on the page:
sources are outside parties, and a file name or license string must never become markup. `rejected.json`
holds the same text as it was, JSON-encoded.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from pipelines.html_tables import html_table, page_text
from pipelines.settings import MAX_PIXELS
from pipelines.storage import ObjectStore

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.quality.verdicts import BatchCheck, ImageVerdict

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 96
# Images shown per reason group, each with its thumbnail: enough to see what went wrong, and few enough that a
# batch of 100,000 rejects still gives a page of a few hundred kilobytes; `rejected.json` lists the rest.
CARDS_PER_GROUP = 60
REJECTED_FILE = "rejected.json"

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


def _summary_section(summary: Mapping[str, Any]) -> str:
    failures = summary.get("batch_failures") or []
    if failures:
        banner = '<div class="banner fail"><strong>Batch rejected.</strong> ' + "<br>".join(
            page_text(message) for message in failures
        )
        banner += "<br>The source probably changed; row verdicts below were recorded all the same.</div>"
    else:
        banner = '<div class="banner pass"><strong>Batch passed</strong> its expectations.</div>'
    counts = [
        ("images validated", summary.get("images", 0)),
        ("accepted", summary.get("accepted", 0)),
        ("rejected", summary.get("rejected", 0)),
    ]
    rows = [(page_text(name), page_text(count)) for name, count in counts]
    reasons = [(page_text(label), page_text(count)) for label, count in (summary.get("by_reason") or {}).items()]
    by_reason = (
        "<h3>Rejections by reason</h3>"
        + html_table(["reason", "images"], reasons, numeric=[1])
        + '<p class="muted">An image with several reasons counts under each.</p>'
        if reasons
        else ""
    )
    return "<h2>Summary</h2>" + banner + html_table(["", "count"], rows, numeric=[1]) + by_reason


def _batch_section(checks: Sequence[BatchCheck], sources: pd.DataFrame) -> str:
    rows = []
    for check in checks:
        outcome = '<span class="pass">pass</span>' if check.passed else '<span class="fail">FAIL</span>'
        details = "<br>".join(page_text(message) for message in check.failures)
        rows.append((f"<code>{page_text(check.check)}</code>", page_text(check.description), outcome, details))
    checks_table = (
        html_table(["check", "why", "result", "details"], rows) if rows else '<p class="muted">No batch to judge.</p>'
    )
    source_rows = [
        (
            page_text("whole batch" if row["scope"] == "batch" else row["source"]),
            page_text(row["images"]),
            page_text(row["not_decodable"]),
            page_text(row["rejected"]),
            page_text(f"{row['rejected_pct']:.0f}%"),
        )
        for row in sources.to_dict(orient="records")
    ]
    return (
        "<h2>Batch expectations</h2>"
        + checks_table
        + "<h3>Sources</h3>"
        + html_table(
            ["source", "images", "not decodable", "rejected", "rejected share"], source_rows, numeric=[1, 2, 3, 4]
        )
    )


def rejected_images(table: pd.DataFrame, verdicts: Mapping[str, ImageVerdict]) -> Iterator[dict[str, Any]]:
    """Every rejected image in sha256 order, as `rejected.json` lists it: sha256, raw key, sources, license,
    readable reasons and reason labels. A generator, so that neither the page nor the file holds every
    entry at once."""
    ordered = table.sort_values("sha256")
    # Columns as Python lists: iterating an Arrow-backed string column yields one value at a time, slowly.
    columns = (ordered[column].tolist() for column in ("sha256", "raw_key", "sources", "license"))
    for sha256, raw_key, sources, license_text in zip(*columns, strict=True):
        verdict = verdicts[sha256]
        if verdict.accepted:
            continue
        yield {
            "sha256": sha256,
            "raw_key": raw_key,
            "sources": sources.split(",") if sources else [],
            "license": license_text,
            "reasons": verdict.reasons,
            "labels": verdict.labels,
        }


def _card(store: ObjectStore, image: Mapping[str, Any], decodes: bool, thumbnail_side: int) -> str:
    """One rejected image: its thumbnail (when it decodes), short hash, sources and every reason."""
    uri = thumbnail_data_uri(store.get(image["raw_key"]), thumbnail_side) if decodes else None
    short = page_text(image["sha256"][:12])
    picture = f'<img src="{uri}" alt="{short}">' if uri else "no preview"
    reasons = "".join(f"<li>{page_text(reason)}</li>" for reason in image["reasons"])
    return (
        f'<div class="card"><div class="thumb">{picture}</div><div class="meta">'
        f"<code>{short}</code><br>from {page_text(', '.join(image['sources']) or 'no source')}"
        f"<ul>{reasons}</ul></div></div>"
    )


def _rejected_section(
    store: ObjectStore, table: pd.DataFrame, verdicts: Mapping[str, ImageVerdict], thumbnail_side: int
) -> str:
    """The rejected images by reason, the largest group first: the first `CARDS_PER_GROUP` of each group as
    cards, then how many more `rejected.json` lists. An image with several reasons is shown in each group,
    its card rendered once."""
    counts: Counter[str] = Counter()
    shown: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for image in rejected_images(table, verdicts):
        for label in image["labels"]:
            counts[label] += 1
            if len(shown[label]) < CARDS_PER_GROUP:
                shown[label].append(image)
    if not counts:
        return '<h2>Rejected images</h2><p class="muted">None.</p>'
    decodes = dict(zip(table["sha256"].tolist(), table["decodes"].tolist(), strict=True))
    cards: dict[str, str] = {}
    parts = ["<h2>Rejected images</h2>"]
    for label in sorted(counts, key=lambda name: (-counts[name], name)):
        for image in shown[label]:
            if image["sha256"] not in cards:
                cards[image["sha256"]] = _card(store, image, decodes[image["sha256"]], thumbnail_side)
        group = "".join(cards[image["sha256"]] for image in shown[label])
        parts.append(f'<h3>{page_text(label)} ({counts[label]})</h3><div class="cards">{group}</div>')
        more = counts[label] - len(shown[label])
        if more:
            parts.append(
                f'<p class="muted">and {more} more — every rejected image with its reasons is in '
                f'<a href="{REJECTED_FILE}">{REJECTED_FILE}</a></p>'
            )
    return "".join(parts)


def _accepted_section(table: pd.DataFrame, verdicts: Mapping[str, ImageVerdict]) -> str:
    per_source: dict[str, int] = defaultdict(int)
    for sha256, sources in zip(table["sha256"].tolist(), table["sources"].tolist(), strict=True):
        if verdicts[sha256].accepted:
            for source in sources.split(",") if sources else ["(none)"]:
                per_source[source] += 1
    total = sum(1 for verdict in verdicts.values() if verdict.accepted)
    rows = [(page_text(source), page_text(count)) for source, count in sorted(per_source.items())]
    listing = html_table(["source", "accepted"], rows, numeric=[1]) if rows else ""
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
    run_id = page_text(summary.get("run_id"))
    body = "".join(
        [
            f'<h1>Image quality report</h1><p class="muted">Run <code>{run_id}</code></p>',
            _summary_section(summary),
            _batch_section(checks, sources),
            _rejected_section(store, table, verdicts, thumbnail_side),
            _accepted_section(table, verdicts),
            f'<h2>Details</h2><p>Every rejected image with its sources, license and reasons: <a href="{REJECTED_FILE}">'
            f"{REJECTED_FILE}</a> (one image per line, in sha256 order). Great Expectations results: "
            '<a href="rows.json">rows.json</a> (one row per image), <a href="batch.json">batch.json</a> (per source); '
            'run summary: <a href="summary.json">summary.json</a>.</p>',
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
    """Write `index.html` under `prefix`, and beside it `rejected.json` and the Great Expectations results;
    the page's address."""
    with store.open_write(f"{prefix}{REJECTED_FILE}") as sink:
        sink.write(b"[")
        for number, image in enumerate(rejected_images(table, verdicts)):
            sink.write((",\n" if number else "\n").encode() + json.dumps(image, ensure_ascii=False).encode("utf-8"))
        sink.write(b"\n]\n")
    store.put(f"{prefix}rows.json", json.dumps(row_validation, indent=1, default=str).encode())
    store.put(f"{prefix}batch.json", json.dumps(batch_validation, indent=1, default=str).encode())
    page = render_report(store, summary=summary, table=table, verdicts=verdicts, sources=sources, checks=checks)
    store.put(f"{prefix}index.html", page.encode("utf-8"))
    return store.uri(f"{prefix}index.html")
