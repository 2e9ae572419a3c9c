"""Local stand-ins for the alert channels: a real SMTP server (aiosmtpd) and one HTTP server on loopback
that answers as Slack incoming webhooks, the PagerDuty Events API v2 and a plain JSON webhook do, and keeps
everything it is sent for the tests to read.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from embedded.ports import free_port

SLACK_PATH = "/slack/services"
SLACK_TOKEN = "T0COLORFLOW/B0ONCALL/sandboxwebhooktoken"
PAGERDUTY_ROUTING_KEY = "R0COLORFLOWSANDBOXROUTINGKEY0001"
WEBHOOK_PATH = "/hooks/colorflow"
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass
class Mailbox:
    """aiosmtpd handler that keeps each message it accepts."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append(message)
        return "250 Message accepted for delivery"


@dataclass
class Inbox:
    """What the HTTP stand-in was sent, by channel: the parsed JSON bodies, in arrival order."""

    slack: list[dict[str, Any]] = field(default_factory=list)
    pagerduty: list[dict[str, Any]] = field(default_factory=list)
    webhook: list[dict[str, Any]] = field(default_factory=list)
    webhook_auth: list[str | None] = field(default_factory=list)


def _handler(inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read the inbox, not the access log."""

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except ValueError:
                self._answer(400, {"status": "invalid event", "message": "Event object is invalid"})
                return
            if self.path == f"{SLACK_PATH}/{SLACK_TOKEN}":
                inbox.slack.append(body)
                self._answer(200, "ok")
            elif self.path.startswith(SLACK_PATH):
                self._answer(403, "invalid_token")
            elif self.path == "/v2/enqueue":
                self._pagerduty(body)
            elif self.path == WEBHOOK_PATH:
                inbox.webhook.append(body)
                inbox.webhook_auth.append(self.headers.get("Authorization"))
                self._answer(200, {"received": True})
            else:
                self._answer(404, {"error": "not found"})

        def _pagerduty(self, event: dict[str, Any]) -> None:
            """Events API v2: 202 with the dedup key when the event is well formed, 400 with errors if not."""
            errors = []
            if event.get("routing_key") != PAGERDUTY_ROUTING_KEY:
                errors.append("'routing_key' is invalid")
            if event.get("event_action") not in PAGERDUTY_ACTIONS:
                errors.append("'event_action' is invalid")
            if event.get("event_action") == "trigger":
                payload = event.get("payload") or {}
                errors += [
                    f"'payload.{key}' is missing" for key in ("summary", "source", "severity") if key not in payload
                ]
            elif not event.get("dedup_key"):
                errors.append("'dedup_key' is required for this action")
            if errors:
                self._answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
                return
            inbox.pagerduty.append(event)
            dedup_key = event.get("dedup_key") or f"generated-{len(inbox.pagerduty)}"
            self._answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

        def _answer(self, status: int, body: Any) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@dataclass
class Receivers:
    """Running receivers and the Airflow connections (as REST API bodies) that point the channels at them."""

    mailbox: Mailbox
    inbox: Inbox
    smtp_port: int
    http_url: str

    def connections(self) -> dict[str, dict[str, Any]]:
        return {
            "colorflow_alerts_email": {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": self.smtp_port,
                "extra": json.dumps(
                    {
                        "to": ["oncall@colorflow.test", "data-team@colorflow.test"],
                        "from_email": "airflow@colorflow.test",
                        "disable_tls": True,
                        "disable_ssl": True,
                        "retry_limit": 1,
                    }
                ),
            },
            "colorflow_alerts_slack": {
                "conn_type": "slackwebhook",
                "host": f"{self.http_url}{SLACK_PATH}",
                "password": SLACK_TOKEN,
            },
            "colorflow_alerts_pagerduty": {
                "conn_type": "pagerduty_events",
                "host": self.http_url,
                "password": PAGERDUTY_ROUTING_KEY,
            },
            "colorflow_alerts_webhook": {
                "conn_type": "http",
                "host": f"{self.http_url}{WEBHOOK_PATH}",
                "login": "colorflow",
                "password": "webhook-secret",
            },
        }


@contextlib.contextmanager
def alert_receivers() -> Iterator[Receivers]:
    """Start the SMTP and HTTP receivers on loopback ports; stop them afterwards."""
    mailbox, inbox = Mailbox(), Inbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", free_port()), _handler(inbox))
    thread = threading.Thread(target=http.serve_forever, name="alert-receiver", daemon=True)
    thread.start()
    try:
        yield Receivers(mailbox, inbox, smtp.port, f"http://127.0.0.1:{http.server_address[1]}")
    finally:
        http.shutdown()
        http.server_close()
        smtp.stop()
