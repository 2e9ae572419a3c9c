"""The failure alert names what on-call needs, and is never silent."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from colorflow_alerts import FailureAlert, describe_failure, overdue_run_alert, task_defaults


def failed_context() -> dict:
    task_instance = SimpleNamespace(
        dag_id="ingest_local",
        task_id="store",
        map_index=3,
        run_id="manual__2026-11-23",
        try_number=3,
        log_url="http://127.0.0.1:8080/dags/ingest_local/runs/manual__2026-11-23/tasks/store?try_number=3",
    )
    error = RuntimeError("S3 refused the upload\nline 2\nline 3\nline 4\nline 5\nline 6 is cut")
    return {"ti": task_instance, "exception": error}


def test_describe_failure_keeps_the_first_lines_of_the_error() -> None:
    facts = describe_failure(failed_context())
    assert facts["dag_id"] == "ingest_local" and facts["task_id"] == "store" and facts["try_number"] == 3
    assert facts["error_type"] == "RuntimeError"
    assert facts["error"].startswith("S3 refused the upload") and "line 6" not in facts["error"]
    assert facts["log_url"].endswith("try_number=3")


def test_with_no_channel_the_failure_is_logged_at_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="colorflow.alerts"):
        FailureAlert().notify(failed_context())
    message = caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.ERROR
    for fact in ("ingest_local", "store", "manual__2026-11-23", "try=3", "S3 refused the upload", "log: http://"):
        assert fact in message


def test_task_defaults_attach_retries_and_the_alert() -> None:
    defaults = task_defaults()
    assert defaults["retries"] >= 1
    assert any(isinstance(callback, FailureAlert) for callback in defaults["on_failure_callback"])


def test_fail_fast_turns_permanent_errors_into_a_failure_without_retries() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from colorflow_alerts import fail_fast

    with pytest.raises(AirflowFailException, match="PermissionError: login wall"), fail_fast(PermissionError):
        raise PermissionError("login wall")
    with pytest.raises(ValueError), fail_fast(PermissionError):
        raise ValueError("retry me")


def test_an_overdue_run_is_reported_loudly(caplog: pytest.LogCaptureFixture) -> None:
    context = {"dag_run": {"dag_id": "train_colorizer", "run_id": "asset_triggered__2026-11-23"}}

    asyncio.run(overdue_run_alert(context=context, expected="finished within 8:00:00"))

    record = next(record for record in caplog.records if "COLORFLOW RUN OVERDUE" in record.getMessage())
    assert record.levelno == logging.ERROR
    assert "train_colorizer" in record.getMessage() and "asset_triggered__2026-11-23" in record.getMessage()
    assert "finished within 8:00:00" in record.getMessage()
