"""A takedown's impact report, `reports/takedowns/<id>.json` and `.html` in the lake: what was withdrawn,
which dataset versions held it, which runs trained on those and which model versions (and aliases) came of
them. The same text is what `colorflow takedown` prints, shorter."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipelines.html_tables import html_table, page_text
from pipelines.storage import ObjectNotFound, ObjectStore

REPORTS_PREFIX = "reports/takedowns"


def report_keys(takedown_id: str) -> tuple[str, str]:
    return f"{REPORTS_PREFIX}/{takedown_id}.json", f"{REPORTS_PREFIX}/{takedown_id}.html"


def write_report(store: ObjectStore, takedown_id: str, report: dict[str, Any]) -> bool:
    """Write both files unless the lake already holds this very report; True when written."""
    json_key, html_key = report_keys(takedown_id)
    text = json.dumps(report, indent=2, sort_keys=True).encode()
    try:
        if store.get(json_key) == text and store.exists(html_key):
            return False
    except ObjectNotFound:
        pass
    store.put(html_key, render_html(report).encode())
    store.put(json_key, text)  # last: its presence means the page is there too
    return True


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    return (
        html_table(headers, [[page_text(value) for value in row] for row in rows])
        if rows
        else f"<p>{page_text(empty)}</p>"
    )


def render_html(report: dict[str, Any]) -> str:
    takedown = report["takedown"]
    named = ", ".join(f"{kind} {value}" for kind, value in takedown["selector"].items())
    sightings = [
        (image["sha256"][:16], sighting["source"], sighting["source_id"], sighting["page_url"], sighting["author"])
        for image in report["images"]
        for sighting in image["sightings"]
    ]
    sections = [
        f"<h1>Takedown {page_text(takedown['id'])}</h1>",
        f"<p>Named: {page_text(named)}<br>Reason: {page_text(takedown['reason'])}<br>"
        f"Requested by: {page_text(takedown['requested_by'])} on {page_text(takedown['requested_at'])}</p>",
        f"<h2>Withdrawn images ({len(report['images'])})</h2>",
        "<p>Their bytes are deleted from the lake; their sha256 and source ids stay as a tombstone that refuses"
        " them at every later ingestion, and every later dataset build leaves them out.</p>",
        _table(("sha256", "source", "source id", "page", "author"), sightings, "none"),
        "<h2>Published dataset versions that contain them</h2>",
        _table(
            ("version", "created", "samples", "withdrawn members"),
            [(v["version"], v["created_at"], v["samples"], v["withdrawn_members"]) for v in report["dataset_versions"]],
            "No published dataset version contains them.",
        ),
        "<h2>Training runs on those versions</h2>",
        _table(
            ("run", "name", "experiment", "dataset version", "status"),
            [
                (r["run_id"], r["run_name"], r["experiment"], r["dataset_version"], r["status"])
                for r in report["training_runs"]
            ],
            "No training run used those versions.",
        ),
        "<h2>Registered model versions from those runs</h2>",
        "<p>Each is tagged <code>contains_withdrawn</code> in the registry.</p>",
        _table(
            ("model", "version", "aliases", "run"),
            [(m["name"], m["version"], ", ".join(m["aliases"]) or "-", m["run_id"]) for m in report["model_versions"]],
            "No registered model came from those runs.",
        ),
    ]
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "th{background:#f4f4f4}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Takedown {page_text(takedown['id'])}</title><style>{style}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def describe(report: dict[str, Any]) -> str:
    """The report in a few lines for a terminal."""
    takedown = report["takedown"]
    lines = [
        f"takedown {takedown['id']}: {len(report['images'])} image(s) withdrawn"
        f" (asked by {takedown['requested_by']}: {takedown['reason']})",
        "  dataset versions: "
        + (
            ", ".join(f"{v['version']} ({v['withdrawn_members']} member(s))" for v in report["dataset_versions"])
            or "none"
        ),
        "  training runs: " + (", ".join(run["run_id"] for run in report["training_runs"]) or "none"),
        "  model versions: "
        + (
            ", ".join(
                f"{m['name']} v{m['version']}" + (f" ({', '.join(m['aliases'])})" if m["aliases"] else "")
                for m in report["model_versions"]
            )
            or "none"
        ),
    ]
    return "\n".join(lines)
