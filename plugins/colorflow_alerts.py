"""On-call alerts for every Colorflow task.

DAG-level failure callbacks are unreliable in Airflow 3, so each DAG attaches `FailureAlert` (and
`ResolveIncident`) to every task through `task_defaults()`. `FailureAlert` fires once per final failure,
after retries are spent, and sends the failure to every channel that has an Airflow connection:

- e-mail: `colorflow_alerts_email`, an `smtp` connection (host, port, login, password; extra `to`,
  `from_email`, and `disable_tls`/`disable_ssl` for a plain relay);
- Slack: `colorflow_alerts_slack`, a `slackwebhook` connection (password: the incoming webhook URL or its
  token);
- PagerDuty Events v2: `colorflow_alerts_pagerduty`, a `pagerduty_events` connection (password: the
  integration's routing key; host only to reach another region's endpoint);
- a generic JSON webhook: `colorflow_alerts_webhook`, an `http` connection (host: the full URL; optional
  login/password for basic auth, extra `headers`).

A failure is never dropped silently: it is always logged at ERROR with everything on-call needs, and a
channel that cannot be reached is logged with the reason, without keeping the others from being told.
A PagerDuty incident stays open until the same task succeeds again; `ResolveIncident` then resolves it.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseHook, BaseNotifier, Variable
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

logger = logging.getLogger("colorflow.alerts")

ERROR_LINES = 5
EMAIL_CONNECTION = "colorflow_alerts_email"
SLACK_CONNECTION = "colorflow_alerts_slack"
PAGERDUTY_CONNECTION = "colorflow_alerts_pagerduty"
WEBHOOK_CONNECTION = "colorflow_alerts_webhook"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com"
HTTP_TIMEOUT_S = 10
# An open PagerDuty incident is remembered in an Airflow Variable per task, so that the task's next success,
# in whatever run and on whatever worker, knows there is something to resolve.
OPEN_INCIDENT_VARIABLE = "colorflow_open_incident__{dag_id}__{task_id}"


@dataclass(frozen=True)
class Failure:
    """The facts of a failed task that every alert carries."""

    dag_id: str | None
    task_id: str | None
    map_index: int
    run_id: str | None
    try_number: int | None
    error_type: str | None
    error: str
    log_url: str | None

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> Failure:
        task_instance = context.get("ti") or context.get("task_instance")
        error = context.get("exception")
        map_index = getattr(task_instance, "map_index", -1)
        return cls(
            dag_id=getattr(task_instance, "dag_id", None),
            task_id=getattr(task_instance, "task_id", None),
            map_index=-1 if map_index is None else map_index,
            run_id=getattr(task_instance, "run_id", None) or context.get("run_id"),
            try_number=getattr(task_instance, "try_number", None),
            error_type=type(error).__name__ if error else None,
            error="".join(str(error).splitlines(keepends=True)[:ERROR_LINES]).strip()
            if error
            else "no exception recorded",
            log_url=getattr(task_instance, "log_url", None),
        )

    @property
    def task(self) -> str:
        """The task as people name it: its id, with the map index of a mapped task."""
        return f"{self.task_id}[{self.map_index}]" if self.map_index >= 0 else str(self.task_id)

    @property
    def title(self) -> str:
        return f"Colorflow task failed: {self.dag_id}.{self.task} (try {self.try_number})"

    @property
    def incident_key(self) -> str:
        """One PagerDuty incident per task, whatever the run: repeated failures add to it, not page anew."""
        return f"colorflow/{self.dag_id}/{self.task_id}"

    def lines(self) -> list[tuple[str, str]]:
        return [
            ("DAG", str(self.dag_id)),
            ("Task", self.task),
            ("Run", str(self.run_id)),
            ("Try", str(self.try_number)),
            ("Error", f"{self.error_type}: {self.error}" if self.error_type else self.error),
            ("Log", str(self.log_url)),
        ]

    def text(self) -> str:
        return "\n".join([self.title, *(f"{label}: {value}" for label, value in self.lines())])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "task": self.task, "title": self.title}


def describe_failure(context: dict[str, Any]) -> dict[str, Any]:
    """The facts of a failed task as a plain dict (what the webhook and PagerDuty details carry)."""
    return Failure.from_context(context).to_dict()


def configured_connection(connection_id: str) -> Any | None:
    """The Airflow connection of an alert channel, or None when the channel is not set up."""
    try:
        return BaseHook.get_connection(connection_id)
    except AirflowNotFoundException:
        return None


def _is_transient(error: BaseException) -> bool:
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return error.response.status_code == 429 or error.response.status_code >= 500
    return isinstance(error, (requests.ConnectionError, requests.Timeout))


def post_json(url: str, body: dict[str, Any], **kwargs: Any) -> Any:
    """POST a JSON alert, retrying what the receiver may get over (refused connections, 429, 5xx); returns the
    `requests` response. Both libraries are imported here, when an alert goes out, not when a DAG is parsed."""
    import requests
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    retrying = Retrying(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=8),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            response = requests.post(url, json=body, timeout=HTTP_TIMEOUT_S, **kwargs)
            response.raise_for_status()
    return response


def send_email(connection: Any, failure: Failure) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    recipients = connection.extra_dejson.get("to")
    if not recipients:
        raise ValueError(f"connection {connection.conn_id!r} names no recipients: set extra 'to'")
    rows = "".join(
        f"<tr><th align='left'>{label}</th><td><pre>{html.escape(value)}</pre></td></tr>"
        for label, value in failure.lines()
    )
    body = f"<p>{html.escape(failure.title)}</p><table>{rows}</table>"
    if failure.log_url:
        body += f"<p><a href='{html.escape(failure.log_url)}'>Open the task log</a></p>"
    with SmtpHook(smtp_conn_id=connection.conn_id) as hook:
        hook.send_email_smtp(to=recipients, subject=failure.title, html_content=body)


def send_slack(connection: Any, failure: Failure) -> None:
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    fields = "\n".join(f"*{label}:* {value}" for label, value in failure.lines() if label not in ("Error", "Log"))
    error = f"{failure.error_type}: {failure.error}" if failure.error_type else failure.error
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": failure.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": fields}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{error[:2900]}```"}},
    ]
    if failure.log_url:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{failure.log_url}|Open the task log>"}})
    SlackWebhookHook(slack_webhook_conn_id=connection.conn_id).send(text=failure.text(), blocks=blocks)


def _pagerduty_enqueue_url(connection: Any) -> str:
    base = connection.host if connection.host and "://" in connection.host else PAGERDUTY_EVENTS_URL
    return f"{base.rstrip('/')}/v2/enqueue"


def send_pagerduty(connection: Any, failure: Failure) -> None:
    if not connection.password:
        raise ValueError(f"connection {connection.conn_id!r} has no routing key: set its password")
    event: dict[str, Any] = {
        "routing_key": connection.password,
        "event_action": "trigger",
        "dedup_key": failure.incident_key,
        "payload": {
            "summary": failure.title,
            "source": f"airflow/{failure.dag_id}",
            "severity": "error",
            "component": str(failure.task_id),
            "group": str(failure.dag_id),
            "class": failure.error_type or "failure",
            "custom_details": failure.to_dict(),
        },
        "client": "Colorflow Airflow",
    }
    if failure.log_url:
        event["client_url"] = failure.log_url
        event["links"] = [{"href": failure.log_url, "text": "Task log"}]
    post_json(_pagerduty_enqueue_url(connection), event)
    try:
        Variable.set(_incident_variable(failure.dag_id, failure.task_id), failure.incident_key)
    except Exception as error:  # the page went out; only its automatic resolution is lost
        logger.warning("incident %s must be resolved by hand: cannot record it (%s)", failure.incident_key, error)


def send_webhook(connection: Any, failure: Failure) -> None:
    if not connection.host or "://" not in connection.host:
        raise ValueError(f"connection {connection.conn_id!r} needs the full URL (with http:// or https://) as host")
    auth = (connection.login, connection.password or "") if connection.login else None
    headers = connection.extra_dejson.get("headers") or {}
    post_json(
        connection.host,
        {"event": "task_failed", **failure.to_dict(), "text": failure.text()},
        auth=auth,
        headers=headers,
    )


CHANNELS: dict[str, tuple[str, Callable[[Any, Failure], None]]] = {
    "email": (EMAIL_CONNECTION, send_email),
    "slack": (SLACK_CONNECTION, send_slack),
    "pagerduty": (PAGERDUTY_CONNECTION, send_pagerduty),
    "webhook": (WEBHOOK_CONNECTION, send_webhook),
}


def alert(failure: Failure) -> list[str]:
    """Log the failure loudly and send it to every configured channel; the channels that took it."""
    logger.error(
        "COLORFLOW TASK FAILED: dag=%s task=%s run=%s try=%s\n%s: %s\nlog: %s",
        failure.dag_id,
        failure.task,
        failure.run_id,
        failure.try_number,
        failure.error_type,
        failure.error,
        failure.log_url,
    )
    configured, delivered = 0, []
    for name, (connection_id, send) in CHANNELS.items():
        connection = configured_connection(connection_id)
        if connection is None:
            continue
        configured += 1
        try:
            send(connection, failure)
        except Exception as error:  # one unreachable channel must not keep the others from being told
            logger.error(
                "COLORFLOW ALERT NOT DELIVERED to %s (%s): %s: %s", name, connection_id, type(error).__name__, error
            )
        else:
            delivered.append(name)
    if not configured:
        logger.error(
            "no alert channel is configured (connections %s): this failure is reported in the logs only",
            ", ".join(connection_id for connection_id, _ in CHANNELS.values()),
        )
    elif delivered:
        logger.info("alert sent to %s", ", ".join(delivered))
    return delivered


class FailureAlert(BaseNotifier):
    """Reports a task's final failure to on-call."""

    def notify(self, context: dict[str, Any]) -> None:
        alert(Failure.from_context(context))


def _incident_variable(dag_id: str | None, task_id: str | None) -> str:
    return OPEN_INCIDENT_VARIABLE.format(dag_id=dag_id, task_id=task_id)


def resolve_incident(dag_id: str, task_id: str) -> bool:
    """Resolve the task's open PagerDuty incident, if an alert opened one; whether PagerDuty was told."""
    variable = _incident_variable(dag_id, task_id)
    incident_key = Variable.get(variable, default=None)
    if incident_key is None:
        return False
    connection = configured_connection(PAGERDUTY_CONNECTION)
    if connection is not None and connection.password:
        event = {"routing_key": connection.password, "event_action": "resolve", "dedup_key": incident_key}
        post_json(_pagerduty_enqueue_url(connection), event)
        logger.info("resolved PagerDuty incident %s: %s.%s succeeded", incident_key, dag_id, task_id)
        Variable.delete(variable)
        return True
    Variable.delete(variable)  # the channel was removed since: nothing left to resolve through
    return False


class ResolveIncident(BaseNotifier):
    """Closes the loop of `FailureAlert`: the task works again, so its page is resolved."""

    def notify(self, context: dict[str, Any]) -> None:
        task_instance = context.get("ti") or context.get("task_instance")
        try:
            resolve_incident(task_instance.dag_id, task_instance.task_id)
        except Exception as error:  # the incident stays open and the next success tries again
            logger.error(
                "could not resolve the PagerDuty incident of %s.%s: %s",
                task_instance.dag_id,
                task_instance.task_id,
                error,
            )


def task_defaults(retries: int = 2) -> dict[str, Any]:
    """`default_args` for every Colorflow DAG: retries with backoff from the settings' first delay, the failure
    alert and its resolution."""
    from pipelines.settings import get_settings

    return {
        "owner": "colorflow",
        "retries": retries,
        "retry_delay": timedelta(seconds=get_settings().retry_delay_seconds),
        "retry_exponential_backoff": True,
        "on_failure_callback": [FailureAlert()],
        "on_success_callback": [ResolveIncident()],
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
    usual, either way someone should look before it holds its pool for hours more.

    The scheduler hands the triggerer the run as the REST API shows it (`DAGRunResponse`), whose id is
    `dag_run_id`."""
    dag_run = (context or {}).get("dag_run") or {}
    logger.error(
        "COLORFLOW RUN OVERDUE: dag=%s run=%s is still running past its deadline (%s)",
        dag_run.get("dag_id"),
        dag_run.get("dag_run_id"),
        details.get("expected", "see the DAG's deadline"),
    )
