"""The failure alert names what on-call needs, and is never silent."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from colorflow_alerts import FailureAlert, ResolveIncident, describe_failure, overdue_run_alert, task_defaults
from tests.alert_receivers import PAGERDUTY_ROUTING_KEY, Receivers, alert_receivers


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
    failed, unconfigured = caplog.records[-2:]
    message = failed.getMessage()
    assert failed.levelno == unconfigured.levelno == logging.ERROR
    assert "no alert channel is configured" in unconfigured.getMessage()
    for fact in ("ingest_local", "store", "manual__2026-11-23", "try=3", "S3 refused the upload", "log: http://"):
        assert fact in message


def test_task_defaults_attach_retries_the_alert_and_its_resolution() -> None:
    defaults = task_defaults()
    assert defaults["retries"] >= 1
    assert any(isinstance(callback, FailureAlert) for callback in defaults["on_failure_callback"])
    assert any(isinstance(callback, ResolveIncident) for callback in defaults["on_success_callback"])


@pytest.fixture
def receivers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receivers]:
    """Every alert channel configured, as environment connections, against local receivers."""
    with alert_receivers() as running:
        for connection_id, fields in running.connections().items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{connection_id.upper()}", json.dumps(fields))
        yield running


def test_a_failure_reaches_every_configured_channel_once_with_its_facts(receivers: Receivers) -> None:
    FailureAlert().notify(failed_context())

    facts = ("ingest_local", "store[3]", "manual__2026-11-23", "S3 refused the upload", "try_number=3")
    [mail] = receivers.mailbox.messages
    assert mail["Subject"] == "Colorflow task failed: ingest_local.store[3] (try 3)"
    assert {"oncall@colorflow.test", "data-team@colorflow.test"} <= {a.strip() for a in mail["To"].split(",")}
    mail_body = mail.get_body(preferencelist=("html",)).get_content()
    assert all(fact in mail_body for fact in facts) and "line 6" not in mail_body
    [slack] = receivers.inbox.slack
    assert all(fact in slack["text"] for fact in facts)
    assert "Try: 3" in slack["text"] and any(block["type"] == "header" for block in slack["blocks"])
    [page] = receivers.inbox.pagerduty
    assert (page["event_action"], page["routing_key"]) == ("trigger", PAGERDUTY_ROUTING_KEY)
    assert page["dedup_key"] == "colorflow/ingest_local/store"
    assert page["payload"]["severity"] == "error" and "ingest_local.store[3]" in page["payload"]["summary"]
    assert page["payload"]["custom_details"]["run_id"] == "manual__2026-11-23"
    assert page["links"][0]["href"].endswith("try_number=3")
    [hook] = receivers.inbox.webhook
    assert hook["event"] == "task_failed" and hook["dag_id"] == "ingest_local" and hook["task_id"] == "store"
    assert (hook["map_index"], hook["run_id"], hook["try_number"]) == (3, "manual__2026-11-23", 3)
    assert hook["error"].startswith("S3 refused the upload") and hook["log_url"].endswith("try_number=3")
    assert receivers.inbox.webhook_auth == ["Basic " + base64.b64encode(b"colorflow:webhook-secret").decode()]


def test_an_unreachable_channel_is_logged_and_the_others_are_still_told(
    receivers: Receivers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {"conn_type": "slackwebhook", "host": f"{receivers.http_url}/slack/services", "password": "T0/B0/revoked"}
    monkeypatch.setenv("AIRFLOW_CONN_COLORFLOW_ALERTS_SLACK", json.dumps(broken))

    with caplog.at_level(logging.ERROR, logger="colorflow.alerts"):
        FailureAlert().notify(failed_context())

    assert receivers.inbox.slack == []
    assert len(receivers.mailbox.messages) == len(receivers.inbox.pagerduty) == len(receivers.inbox.webhook) == 1
    undelivered = [record.getMessage() for record in caplog.records if "NOT DELIVERED" in record.getMessage()]
    assert len(undelivered) == 1 and "slack" in undelivered[0] and "revoked" not in undelivered[0]


def test_fail_fast_turns_permanent_errors_into_a_failure_without_retries() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from colorflow_alerts import fail_fast

    with pytest.raises(AirflowFailException, match="PermissionError: login wall"), fail_fast(PermissionError):
        raise PermissionError("login wall")
    with pytest.raises(ValueError), fail_fast(PermissionError):
        raise ValueError("retry me")


def test_an_overdue_run_is_reported_loudly(caplog: pytest.LogCaptureFixture) -> None:
    # What Airflow's scheduler sends with a missed deadline: the run as the REST API shows it.
    context = {
        "dag_run": {"dag_id": "train_colorizer", "dag_run_id": "asset_triggered__2026-11-23", "state": "running"},
        "deadline": {"id": "0193", "deadline_time": "2026-11-23T08:00:00+00:00"},
    }

    asyncio.run(overdue_run_alert(context=context, expected="finished within 8:00:00"))

    record = next(record for record in caplog.records if "COLORFLOW RUN OVERDUE" in record.getMessage())
    assert record.levelno == logging.ERROR
    assert "train_colorizer" in record.getMessage() and "asset_triggered__2026-11-23" in record.getMessage()
    assert "finished within 8:00:00" in record.getMessage()
