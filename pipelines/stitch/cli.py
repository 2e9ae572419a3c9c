"""`colorflow dataset build|show|card`, also run as `python -m pipelines.stitch`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipelines import stitch
from pipelines.stitch.build import stitch_dataset
from pipelines.stitch.card import write_card
from pipelines.stitch.layout import card_keys
from pipelines.stitch.params import ShardParams
from pipelines.stitch.publish import describe, load_manifest
from pipelines.storage import ObjectNotFound, open_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`colorflow dataset build|show|card` (and `python -m pipelines.stitch`)."""
    commands = parser.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build",
        help="build (or find) the dataset version of the accepted images",
        description="Stitch the accepted images into a dataset version of Lab shards in the lake, or find the"
        " version they already make; prints its summary. The DAG build_dataset runs the same steps.",
    )
    build.add_argument("--source", action="append", default=None, help="only images from this source (repeatable)")
    build.add_argument("--since", help="only images first fetched on or after this day (YYYY-MM-DD)")
    build.add_argument("--until", help="only images first fetched before this day (YYYY-MM-DD)")
    build.add_argument(
        "--load-size", type=int, default=ShardParams.load_size, help="side of the stored square (%(default)s)"
    )
    build.add_argument("--shard-size", type=int, default=ShardParams.shard_size, help="samples per shard (%(default)s)")
    build.add_argument("--workers", type=int, default=1, help="processes writing shards (%(default)s)")
    build.set_defaults(run=_build)
    show = commands.add_parser(
        "show", help="print a published version's summary", description="Print a published version's summary."
    )
    show.add_argument("version", help="the dataset version (as build prints it)")
    show.set_defaults(run=_show)
    card = commands.add_parser(
        "card",
        help="write a published version's dataset card and print where it is",
        description="Write the dataset card (card.md and card.json beside the manifest: sources, licenses and the"
        " credit they require, quality, splits, limitations) from the catalog as it is now. Builds write it;"
        " this gives one to a version published before cards existed, or renews one after a takedown.",
    )
    card.add_argument("version", help="the dataset version (as build prints it)")
    card.set_defaults(run=_card)


def _show(args: argparse.Namespace) -> int:
    from pipelines.settings import get_settings

    store = open_store(settings=get_settings())
    try:
        print(describe(load_manifest(store, args.version)))
    except ObjectNotFound:
        print(f"error: no published dataset version {args.version}", file=sys.stderr)
        return 1
    card = card_keys(args.version)["card.md"]
    if store.exists(card):
        print(f"  card: {store.uri(card)}")
    else:
        print(f"  card: none yet (published before cards): `colorflow dataset card {args.version}` writes it")
    return 0


def _card(args: argparse.Namespace) -> int:
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings

    settings = get_settings()
    store = open_store(settings=settings)
    try:
        manifest = load_manifest(store, args.version)
    except ObjectNotFound:
        print(f"error: no published dataset version {args.version}", file=sys.stderr)
        return 1
    write_card(store, open_catalog(settings), manifest)
    for key in card_keys(args.version).values():
        print(store.uri(key))
    return 0


def _build(args: argparse.Namespace) -> int:
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings

    settings = get_settings()
    store = open_store(settings=settings)
    params = ShardParams.from_dict(
        {
            "sources": args.source,
            "since": args.since,
            "until": args.until,
            "load_size": args.load_size,
            "shard_size": args.shard_size,
        }
    )
    manifest = stitch_dataset(store, open_catalog(settings), params, workers=args.workers, lake_url=settings.lake_url)
    print(describe(manifest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.stitch", description=stitch.__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args.run(args)
