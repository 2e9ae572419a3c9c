"""The `colorflow` command: one entry point for what people run by hand.

Each command's options live with the code that runs it (`add_arguments` beside `run`), so
`python -m models.colorize`, `python -m pipelines.stitch` and `python -m embedded` keep working with the
same options. Only the command being run is imported: `colorflow --help` answers at once, while
`colorflow train --help` loads PyTorch to list the trainer's options. A command with subcommands (`lake`)
imports only the subcommand being run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

PROG = "colorflow"
EXAMPLES = """\
examples:
  colorflow stack up                        start Airflow, MLflow and the sandbox on this machine
  colorflow stack demo                      run the whole pipeline through Airflow, print a summary
  colorflow colorize old/*.jpg -o colored/  colorize photos with the champion model
  colorflow colorize reel.mp4 -o color.mp4  colorize a film clip, its sound kept
  colorflow studio                          the Studio page on http://127.0.0.1:5600/
  colorflow dataset build --source flickr   stitch accepted images into a dataset version
  colorflow takedown --source flickr --source-id 53012345 --reason "author's request" --requested-by ana
                                            withdraw a photo; print which datasets and models it reached
  colorflow train --dataset VERSION         train on a dataset version over every GPU of this machine
  colorflow lake audit --repair             compare the lake with the catalog, rebuild what drifted
  colorflow lake lifecycle --dry-run        the lake's storage tiers and expiries, as they would be applied
  colorflow airflow dags list               the Airflow CLI with the stack's settings

`colorflow COMMAND --help` says everything a command takes.
"""


@dataclass(frozen=True)
class Command:
    """A command: where its options and its run live (or its subcommands), and what to say of it in the list."""

    module: str
    help: str
    description: str
    subcommands: dict[str, Command] = field(default_factory=dict)


COMMANDS: dict[str, Command] = {
    "colorize": Command(
        "models.colorize",
        "colorize photos with a registered model",
        "Colorize photos (files or folders) at full resolution with a model from the MLflow registry; writes"
        " one PNG per photo, and one H.264 MP4 per film clip (sound kept, color steadied over time). A file"
        " that cannot be read is named with the reason and the others go on.",
    ),
    "studio": Command(
        "studio.cli",
        "serve the Studio page: colorize photos and clips in a browser",
        "Colorflow Studio: a web page to colorize photos and film clips with any model of the MLflow registry,"
        " compare before and after, set the strength and download the results. `make up` starts it too.",
    ),
    "dataset": Command(
        "pipelines.stitch.cli",
        "build or show a dataset version of Lab shards",
        "Dataset versions: immutable sets of Lab shards in the lake, stitched from every accepted image.",
    ),
    "train": Command(
        "models.launch",
        "train the colorizer on a dataset version",
        "Train the pix2pix colorizer on a dataset version, over every GPU of this machine (torchrun) or on the"
        " CPU, tracked in MLflow with checkpoints in the lake. The train_colorizer DAG runs the same trainer.",
    ),
    "takedown": Command(
        "pipelines.takedowns.cli",
        "remove photos at their author's request, with the impact report",
        "Withdraw photos named by source and source id, page URL, author or sha256: their bytes are deleted,"
        " later builds leave them out, ingestion refuses them again, and the registered model versions trained"
        " on them are tagged contains_withdrawn. Prints which dataset versions, runs and model versions they"
        " reached, and keeps that report in the lake under reports/takedowns/.",
    ),
    "stack": Command(
        "embedded.commands",
        "start, stop, check or demo the local stack",
        "The embedded stack on this machine: Airflow, MLflow, PostgreSQL and the sandbox, on loopback.",
    ),
    "lake": Command(
        "",
        "audit the lake, or apply its storage tiers and expiries",
        "The lake's upkeep: its audit against the catalog, and its lifecycle rules.",
        {
            "audit": Command(
                "pipelines.lake_audit",
                "audit the lake against the catalog",
                "Compare the lake with the catalog: raw objects with no image row, image rows whose object is"
                " missing, sightings of unknown images, dataset members in missing shards, and staged writes or"
                " multipart uploads left unfinished. Prints a summary, keeps the full JSON report in the lake"
                " under reports/audit/, and exits 1 when drift remains (0 when the lake is clean or everything"
                " found was repaired). Time grows linearly with the lake; memory stays at one hash bucket of it.",
            ),
            "lifecycle": Command(
                "pipelines.lake_lifecycle",
                "apply the lake's storage tiers and expiries (S3 lifecycle rules)",
                "Apply the lake's lifecycle rules to its S3 bucket (AWS, MinIO): raw/ to cheaper storage classes\n"
                "as it ages; quarantine/, reports/ and the intermediate checkpoints of finished runs deleted\n"
                "after their days; unfinished multipart uploads thrown away. The rules are the lake's, under its\n"
                "prefix; the bucket's other rules are kept. Days and classes: COLORFLOW_LIFECYCLE_* settings.\n"
                "A file:// lake has no lifecycle engine: the lake_housekeeping DAG does its expiries every day,\n"
                "--expire-now does them at once. The DAG also reapplies the rules to an S3 bucket daily.",
            ),
        },
    ),
}
AIRFLOW = Command("embedded.commands", "the Airflow CLI with the stack's settings (colorflow airflow --help)", "")


def build_parser(command: str | None = None, subcommand: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of `command` (the one being run, and its `subcommand` if it has any)
    loaded."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Colorflow learns to colorize black-and-white photographs.\n"
        "These commands run its pieces by hand; the pipeline itself runs in Airflow.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        subparser = commands.add_parser(name, help=spec.help, description=spec.description)
        if name != command:
            continue
        if not spec.subcommands:
            importlib.import_module(spec.module).add_arguments(subparser)
            continue
        nested = subparser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
        for sub_name, sub_spec in spec.subcommands.items():
            target = nested.add_parser(sub_name, help=sub_spec.help, description=sub_spec.description)
            if sub_name == subcommand:
                importlib.import_module(sub_spec.module).add_arguments(target)
    commands.add_parser("airflow", help=AIRFLOW.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["airflow"]:  # everything after it, --help included, is Airflow's
        from embedded.commands import run_airflow

        run_airflow(arguments[1:])
    # The first words are the command and, for a command with subcommands, the subcommand.
    command, subcommand, *_ = [argument for argument in arguments if not argument.startswith("-")] + [None, None]
    args = build_parser(command, subcommand).parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
