"""`colorflow takedown`: remove photos at their author's request, and say where they went."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys

from pipelines.catalog import open_catalog
from pipelines.settings import get_settings
from pipelines.storage import open_store
from pipelines.takedowns.apply import TakedownOutcome, apply_takedown
from pipelines.takedowns.report import describe
from pipelines.takedowns.request import TakedownRequest

logger = logging.getLogger(__name__)

REBUILD_DAG = "build_dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = """\
examples:
  colorflow takedown --source flickr --source-id 53012345 --reason "author's request" --requested-by ana@example.org
  colorflow takedown --author "Ana Lima" --reason "author's request" --requested-by legal --rebuild

The photos' bytes are deleted, they become withdrawn in the catalog, every later dataset build leaves them
out, and the same bytes or source ids are refused at ingestion. The impact report (dataset versions, runs,
model versions and their aliases) is printed and kept in the lake under reports/takedowns/. Repeating a
takedown changes nothing; one that names nothing known says so, changes nothing and exits 1."""
    named = parser.add_argument_group("what to remove (one way)")
    named.add_argument("--source", help="the source (unsplash, flickr, instagram, coco, ...), with --source-id")
    named.add_argument("--source-id", help="the photo's id at that source")
    named.add_argument("--page-url", help="the photo's page (or image) URL")
    named.add_argument("--author", help="every photo by this author (name or profile URL, any case)")
    named.add_argument("--sha256", help="the image with these bytes")
    parser.add_argument("--reason", required=True, help="why the photos are removed (kept with the takedown)")
    parser.add_argument("--requested-by", required=True, help="who asked (a name or address)")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help=f"then trigger the Airflow DAG {REBUILD_DAG} for each affected dataset version's params: the new"
        " version leaves the photos out, and its publication triggers train_colorizer",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        request = TakedownRequest(
            reason=args.reason,
            requested_by=args.requested_by,
            source=args.source,
            source_id=args.source_id,
            page_url=args.page_url,
            author=args.author,
            sha256=args.sha256,
        )
    except ValueError as error:
        print(f"colorflow takedown: {error}", file=sys.stderr)
        return 2
    settings = get_settings()
    outcome = apply_takedown(
        request, open_store(settings=settings), open_catalog(settings), settings.mlflow_tracking_uri
    )
    if not outcome.known:
        print(f"nothing known matches {request.describe()}: nothing changed", file=sys.stderr)
        return 1
    print(json.dumps(outcome.report, indent=2) if args.json else describe(outcome.report))
    print(summary_line(outcome, open_store(settings=settings).uri(outcome.report["report"]["html"])))
    if args.rebuild:
        for conf in outcome.rebuild_confs():
            trigger_rebuild(conf)
    return 0


def summary_line(outcome: TakedownOutcome, report_uri: str) -> str:
    if not outcome.changed:
        return f"already applied: nothing changed. Report: {report_uri}"
    return (
        f"{len(outcome.newly_withdrawn)} newly withdrawn, {len(outcome.objects_deleted)} objects deleted,"
        f" {len(outcome.models_tagged)} model versions tagged contains_withdrawn. Report: {report_uri}"
    )


def trigger_rebuild(conf: dict) -> None:
    """A build_dataset run with `conf`, through the Airflow CLI with the stack's settings."""
    command = [sys.executable, "-m", "colorflow", "airflow", "dags", "trigger", REBUILD_DAG, "--conf", json.dumps(conf)]
    triggered = subprocess.run(command, capture_output=True, text=True)
    if triggered.returncode != 0:
        raise RuntimeError(f"could not trigger {REBUILD_DAG}: {triggered.stderr.strip()[-2000:]}")
    print(f"triggered {REBUILD_DAG} with {json.dumps(conf)}")
