"""The `colorflow` command: one entry point for what people run by hand.

    colorflow lake audit [--repair] [--checksums]

Each subcommand's `--help` says everything it takes. Heavy libraries are imported by the subcommand that
needs them, so `colorflow --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta

PROG = "colorflow"


def _lake_audit(args: argparse.Namespace) -> int:
    from pipelines.catalog import open_catalog, utcnow
    from pipelines.lake_audit import LakeDrift, check_lake
    from pipelines.settings import get_settings
    from pipelines.storage import open_store

    settings = get_settings()
    try:
        check_lake(
            open_store(settings=settings),
            open_catalog(settings),
            f"cli-{utcnow():%Y%m%dT%H%M%S.%fZ}",
            checksums=args.checksums,
            repair=args.repair,
            grace=timedelta(minutes=args.grace_minutes),
            stale_after=timedelta(hours=args.stale_after_hours),
        )
    except LakeDrift as drift:
        print(drift, file=sys.stderr)
        return 1
    return 0


def _add_lake_commands(commands: argparse._SubParsersAction) -> None:
    lake = commands.add_parser(
        "lake", help="check the lake against the catalog", description="The lake and its catalog."
    )
    lake_commands = lake.add_subparsers(dest="lake_command", required=True, metavar="COMMAND")
    audit = lake_commands.add_parser(
        "audit",
        help="compare the lake with the catalog and report drift; exits 1 when drift remains",
        description="Compare the lake with the catalog: raw objects with no image row, image rows whose object"
        " is missing, sightings of unknown images, dataset members in missing shards, and staged writes or"
        " multipart uploads left unfinished. Prints a summary, keeps the full JSON report in the lake under"
        " reports/audit/, and exits 1 when drift remains (0 when the lake is clean or everything found was"
        " repaired). Time grows linearly with the lake; memory stays at one hash bucket of it.",
    )
    audit.add_argument(
        "--repair",
        action="store_true",
        help="rebuild what the lake can rebuild: image rows from their objects' bytes, raw objects from their"
        " quarantine copies; throw stale unfinished writes away",
    )
    audit.add_argument(
        "--checksums", action="store_true", help="also hash every raw object and shard (reads the whole lake)"
    )
    audit.add_argument(
        "--grace-minutes",
        type=float,
        default=60,
        help="leave out objects and rows younger than this, which a running task may still be writing (60)",
    )
    audit.add_argument(
        "--stale-after-hours", type=float, default=24, help="unfinished writes older than this are drift (24)"
    )
    audit.set_defaults(run=_lake_audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Colorflow learns to colorize black-and-white photographs. These commands run its pieces by"
        " hand; the pipeline itself runs in Airflow.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_lake_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
