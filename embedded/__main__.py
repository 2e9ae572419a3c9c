"""Manage the embedded Colorflow stack.

python -m embedded up       start Airflow, MLflow and the sandbox (returns once all are healthy)
python -m embedded status   show each service's state
python -m embedded demo     run the pipeline through Airflow and print a summary
python -m embedded down     stop what `up` started
python -m embedded airflow ARGS...
                            the Airflow CLI with the stack's settings (e.g. `airflow dags trigger ingest_local`)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from embedded import services
from embedded.demo import run_demo
from pipelines.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m embedded", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "demo", "airflow"], help="what to do")
    parser.add_argument("airflow_args", nargs=argparse.REMAINDER, help="for `airflow`: the Airflow CLI's arguments")
    args = parser.parse_args(argv)
    if args.command == "airflow":
        environment = services.airflow_env(get_settings())
        os.execve(services.BIN / "airflow", ["airflow", *args.airflow_args], environment)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = get_settings()
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
    else:
        return run_demo(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
