"""On-call alerts through the real Airflow: a task that fails for good sends exactly one alert to each
configured channel (a real SMTP server, and Slack, PagerDuty and webhook stand-ins on loopback), naming
the DAG, task, run, try, error and log; when the task succeeds again its PagerDuty incident is resolved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

from embedded.airflow_api import AirflowClient
from embedded.polling import wait_until
from embedded.settings import StackSettings
from tests.alert_receivers import Receivers, alert_receivers

pytestmark = pytest.mark.integration

DAG = "ingest_instagram"


@pytest.fixture
def receivers(airflow: AirflowClient) -> Iterator[Receivers]:
    """Every channel configured in Airflow, pointing at local receivers; removed afterwards so that later
    tests' failures are not sent to receivers that are gone."""
    with alert_receivers() as running:
        connections = running.connections()
        for connection_id, fields in connections.items():
            airflow.put_connection(connection_id, **fields)
        try:
            yield running
        finally:
            for connection_id in connections:
                airflow.delete_connection(connection_id)


def wait_for(condition: Callable[[], object]) -> None:
    """Callbacks run just after the task's state is recorded: give them a moment to deliver."""
    wait_until(condition, timeout_s=30, interval_s=0.5, what="the alerts to arrive")


def test_a_failed_task_alerts_each_channel_once_and_its_success_resolves_the_page(
    airflow: AirflowClient, stack_settings: StackSettings, receivers: Receivers
) -> None:
    base = stack_settings.sandbox_url
    airflow.put_connection(
        "instagram_logged_out",
        conn_type="http",
        host=f"{base}/instagram/graph/v21.0",
        password="sandbox-instagram-access-token",
        extra=json.dumps({"user_id": "17841400000000001", "web_url": f"{base}/instagram", "robots_permission": True}),
    )
    failing_conf = {"mode": "browser", "connection_id": "instagram_logged_out", "hashtags": ["cat"]}

    run_id, state = airflow.run(DAG, failing_conf, timeout_s=300)

    assert state == "failed"
    failed = [task["task_id"] for task in airflow.task_instances(DAG, run_id) if task["state"] == "failed"]
    assert failed == ["discover"]
    inbox = receivers.inbox
    wait_for(lambda: receivers.mailbox.messages and inbox.slack and inbox.pagerduty and inbox.webhook)
    log_url = f"{stack_settings.airflow_url}/dags/{DAG}/runs/{quote(run_id)}/tasks/discover?try_number=1"
    [mail] = receivers.mailbox.messages
    body = mail.get_body(preferencelist=("html",)).get_content()
    assert mail["Subject"] == f"Colorflow task failed: {DAG}.discover (try 1)"
    assert run_id in body, body
    assert "login" in body.lower() and log_url in body, body
    [slack] = inbox.slack
    assert f"Run: {run_id}" in slack["text"] and "Try: 1" in slack["text"] and log_url in slack["text"]
    [page] = inbox.pagerduty
    assert (page["event_action"], page["dedup_key"]) == ("trigger", f"colorflow/{DAG}/discover")
    assert page["payload"]["custom_details"]["run_id"] == run_id and page["links"][0]["href"] == log_url
    [hook] = inbox.webhook
    assert (hook["dag_id"], hook["task_id"], hook["run_id"], hook["try_number"]) == (DAG, "discover", run_id, 1)
    assert "login" in hook["error"].lower() and hook["log_url"] == log_url

    _, state = airflow.run(DAG, {"hashtags": ["cat"]}, timeout_s=300)

    assert state == "success"
    wait_for(lambda: len(inbox.pagerduty) > 1)
    assert [event["event_action"] for event in inbox.pagerduty] == ["trigger", "resolve"]
    assert inbox.pagerduty[1]["dedup_key"] == f"colorflow/{DAG}/discover"
    assert len(receivers.mailbox.messages) == len(inbox.slack) == len(inbox.webhook) == 1, "a success is no alert"
