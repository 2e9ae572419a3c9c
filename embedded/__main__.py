"""`python -m embedded COMMAND`: the embedded stack's commands, as `colorflow stack COMMAND` (and
`python -m embedded airflow ...` as `colorflow airflow ...`)."""

from __future__ import annotations

import argparse
import logging
import sys

from embedded.commands import add_arguments, run_airflow


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["airflow"]:
        run_airflow(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m embedded", description="Manage the embedded Colorflow stack.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
