"""Manage the embedded Colorflow stack: `python -m embedded --help` lists the commands, and
`python -m embedded COMMAND --help` tells more about one."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from embedded import services
from embedded.demo import run_demo
from embedded.settings import get_stack_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embedded", description="Manage the embedded Colorflow stack (Airflow, MLflow, sandbox)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="start Airflow, MLflow and the sandbox; returns once all are healthy")
    commands.add_parser("status", help="show each service's state")
    commands.add_parser("demo", help="run the pipeline through Airflow, print a summary, check the UIs")
    screenshots = commands.add_parser(
        "screenshots",
        help="check the Airflow and MLflow UIs in headless Chromium, saving a screenshot per check",
        description="Log in to the Airflow UI of the stack `up` started, check that the DAG list shows every"
        " DAG and that a successful run's page shows its tasks green, then that the MLflow UI lists the"
        " newest training run with its metrics and shows the champion in the model registry. Prints each"
        " screenshot's path; exits 1, naming what was not seen, when a check fails.",
    )
    screenshots.add_argument(
        "--folder", type=Path, help="where the PNG files go (default: <COLORFLOW_HOME>/screenshots)"
    )
    screenshots.add_argument("--dag-id", help="DAG whose run page is checked (default: train_colorizer)")
    screenshots.add_argument("--run-id", help="run whose page is checked (default: the DAG's newest successful run)")
    screenshots.add_argument("--timeout", type=float, help="seconds to wait for each thing a page should show (30)")
    commands.add_parser("down", help="stop what `up` started")
    # Everything after `airflow` goes to the Airflow CLI untouched, --help included.
    commands.add_parser(
        "airflow",
        add_help=False,
        help="the Airflow CLI with the stack's settings: python -m embedded airflow ARGS... (e.g. dags trigger X)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "airflow":
        os.execve(services.BIN / "airflow", ["airflow", *extra], services.airflow_env(get_stack_settings()))
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = get_stack_settings()
    if args.command == "up":
        services.up(settings)
        print(f"Airflow UI  {settings.airflow_url}  (login {settings.airflow_username} / {settings.airflow_password})")
        print(f"MLflow UI   {settings.mlflow_tracking_uri}")
        if settings.sandbox:
            print(f"Sandbox     {settings.sandbox_url}")
        print(f"Logs        {settings.logs_dir}")
    elif args.command == "down":
        stopped = services.down(settings)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.command == "status":
        for name, state in services.status(settings).items():
            print(f"{name:<24} {state}")
    elif args.command == "screenshots":
        # Imported here: MLflow, Selenium and the model code take seconds to import, which `up` need not wait.
        from embedded import ui_check

        given = {"folder": args.folder, "dag_id": args.dag_id, "run_id": args.run_id, "timeout_s": args.timeout}
        return ui_check.report(settings, **{name: value for name, value in given.items() if value is not None})
    else:
        return run_demo(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
