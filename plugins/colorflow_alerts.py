"""Failure alerts for every Colorflow task.

DAG-level failure callbacks are unreliable in Airflow 3, so each DAG attaches `FailureAlert` to every
task through `task_defaults()`. It fires once per final failure, after retries are spent. A failure is
never dropped silently: with no alert channel configured it is logged at ERROR with everything on-call
needs to act on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

logger = logging.getLogger("colorflow.alerts")

ERROR_LINES = 5


def describe_failure(context: dict[str, Any]) -> dict[str, Any]:
    """The facts of a failed task that every alert carries."""
    task_instance = context.get("ti") or context.get("task_instance")
    error = context.get("exception")
    error_text = "".join(str(error).splitlines(keepends=True)[:ERROR_LINES]) if error else "no exception recorded"
    return {
        "dag_id": getattr(task_instance, "dag_id", None),
        "task_id": getattr(task_instance, "task_id", None),
        "map_index": getattr(task_instance, "map_index", -1),
        "run_id": getattr(task_instance, "run_id", None) or context.get("run_id"),
        "try_number": getattr(task_instance, "try_number", None),
        "error_type": type(error).__name__ if error else None,
        "error": error_text,
        "log_url": getattr(task_instance, "log_url", None),
    }


class FailureAlert(BaseNotifier):
    """Reports a task's final failure."""

    def notify(self, context: dict[str, Any]) -> None:
        facts = describe_failure(context)
        logger.error(
            "COLORFLOW TASK FAILED: dag=%s task=%s map_index=%s run=%s try=%s\n%s: %s\nlog: %s",
            facts["dag_id"],
            facts["task_id"],
            facts["map_index"],
            facts["run_id"],
            facts["try_number"],
            facts["error_type"],
            facts["error"],
            facts["log_url"],
        )


def task_defaults(retries: int = 2, retry_delay: timedelta = timedelta(seconds=30)) -> dict[str, Any]:
    """`default_args` for every Colorflow DAG: retries with backoff and the failure alert on each task."""
    return {
        "owner": "colorflow",
        "retries": retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "on_failure_callback": [FailureAlert()],
    }


@contextlib.contextmanager
def fail_fast(*permanent: type[BaseException]) -> Iterator[None]:
    """Turn errors that retrying cannot fix (a bad key, a login wall) into an immediate task failure.

    Airflow retries every other exception; these go straight to the failure alert with their message.
    """
    try:
        yield
    except permanent as error:
        raise AirflowFailException(f"{type(error).__name__}: {error}") from error


async def overdue_run_alert(context: dict[str, Any] | None = None, **details: Any) -> None:
    """A DAG run is far past its expected time (an Airflow deadline was missed): stuck or much slower than
    usual, either way someone should look before it holds its pool for hours more."""
    dag_run = (context or {}).get("dag_run") or {}
    logger.error(
        "COLORFLOW RUN OVERDUE: dag=%s run=%s is still running past its deadline (%s)",
        dag_run.get("dag_id") if isinstance(dag_run, dict) else getattr(dag_run, "dag_id", None),
        dag_run.get("run_id") if isinstance(dag_run, dict) else getattr(dag_run, "run_id", None),
        details.get("expected", "see the DAG's deadline"),
    )
