"""The embedded stack's commands: `colorflow stack up|down|status|demo|screenshots` and `colorflow airflow ...`
(also `python -m embedded ...`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from embedded import services, workers
from embedded.settings import StackSettings, get_stack_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="stack_command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="start Airflow, MLflow and the sandbox; returns once all are healthy",
        description="Start PostgreSQL, the sandbox, MLflow and Airflow (api-server, scheduler, dag-processor,"
        " triggerer) on loopback, each health-checked; what already runs is left as it is. With `--executor"
        " celery`, also Redis and Celery workers: COLORFLOW_DEFAULT_WORKERS on queue `default` (2) and one on"
        " queue `gpu`, each with its own log in the logs folder.",
    )
    up.add_argument(
        "--executor",
        choices=["local", "celery"],
        help="LocalExecutor, or CeleryExecutor with Redis and workers (default: COLORFLOW_EXECUTOR, else local)",
    )
    up.set_defaults(run=_up)
    commands.add_parser(
        "down", help="stop what `up` started", description="Stop the services `up` started, by their PID files."
    ).set_defaults(run=_down)
    commands.add_parser(
        "status", help="show each service's state", description="Show each service: healthy, unhealthy or stopped."
    ).set_defaults(run=_status)
    commands.add_parser(
        "demo",
        help="run the whole pipeline through Airflow, print a summary, check the UIs",
        description="Run every DAG of the pipeline through the running stack (ingestion with backfills,"
        " validation, the dataset, training, the lake audit), print what it did and where to look, then check"
        " the Airflow and MLflow UIs in headless Chromium. Start the stack first (`colorflow stack up`).",
    ).set_defaults(run=_demo)
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
    screenshots.set_defaults(run=_screenshots)


def run_airflow(arguments: list[str]) -> None:
    """Replace this process with the Airflow CLI, configured as the stack's components are."""
    settings = services.as_running(get_stack_settings())
    os.execve(services.BIN / "airflow", ["airflow", *arguments], services.airflow_env(settings))


def _up(args: argparse.Namespace) -> int:
    settings = get_stack_settings()
    if args.executor:
        settings = settings.model_copy(update={"executor": args.executor})
    services.up(settings)
    _print_addresses(settings)
    return 0


def _print_addresses(settings: StackSettings) -> None:
    print(f"Airflow UI  {settings.airflow_url}  (login {settings.airflow_username} / {settings.airflow_password})")
    print(f"MLflow UI   {settings.mlflow_tracking_uri}")
    print(f"Studio      {settings.studio_url}  (colorize photos and clips with the registry's models)")
    if settings.sandbox:
        print(f"Sandbox     {settings.sandbox_url}")
    if settings.executor == "celery":
        for worker in workers.workers(settings):
            print(f"Worker      {worker.node}  queue {worker.queue}, concurrency {worker.concurrency}")
    print(f"Logs        {settings.logs_dir}")


def _down(args: argparse.Namespace) -> int:
    stopped = services.down(get_stack_settings())
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    for name, state in services.status(get_stack_settings()).items():
        print(f"{name:<24} {state}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from embedded.demo import run_demo

    return run_demo(services.as_running(get_stack_settings()))


def _screenshots(args: argparse.Namespace) -> int:
    # Imported here: MLflow, Selenium and the model code take seconds to import, which `up` need not wait.
    from embedded import ui_check

    given = {"folder": args.folder, "dag_id": args.dag_id, "run_id": args.run_id, "timeout_s": args.timeout}
    return ui_check.report(get_stack_settings(), **{name: value for name, value in given.items() if value is not None})
