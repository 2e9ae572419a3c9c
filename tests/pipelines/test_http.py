"""The shared HTTP client against real servers: retries, Retry-After, cut bodies, caps, content types,
and refusal of internal addresses (redirects included)."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from pipelines.http import (
    BlockedAddress,
    BodyTooLarge,
    HttpClient,
    HttpError,
    HttpPolicy,
    UnexpectedContentType,
    check_destination,
    host_key,
    redact_url,
)


@pytest.fixture
def client(sandbox_url: str) -> HttpClient:
    return HttpClient(HttpPolicy(allowed_hosts=frozenset({host_key(sandbox_url)}), backoff_s=0.05))


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers by path: a redirect to the cloud metadata address, a big body, or a login page."""

    def do_GET(self) -> None:
        if self.path == "/redirect-to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        elif self.path == "/big":
            body = b"x" * 4096
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()  # no Content-Length: the cap must hold while streaming
            self.wfile.write(body)
        else:
            body = b"<html><body>Log in to continue</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tricky_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_get_json(client: HttpClient, sandbox_url: str) -> None:
    assert client.get_json(f"{sandbox_url}/healthz")["status"] == "ok"


def test_429_with_retry_after_waits_then_succeeds(client: HttpClient, sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="429", times=2, retry_after=1)
    started = time.monotonic()
    assert client.get_json(f"{sandbox_url}/healthz")["status"] == "ok"
    assert time.monotonic() - started >= 1.9, "Retry-After: 1 twice should delay about two seconds"


def test_5xx_is_retried(client: HttpClient, sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="500", times=2)
    assert client.get_json(f"{sandbox_url}/healthz")["status"] == "ok"


def test_persistent_5xx_fails_with_the_status(client: HttpClient, sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="500", times=50)
    with pytest.raises(HttpError, match="HTTP 500") as raised:
        client.get_json(f"{sandbox_url}/healthz")
    assert raised.value.status == 500


def test_a_body_cut_short_is_retried(client: HttpClient, sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="truncate", times=2)
    assert client.get_json(f"{sandbox_url}/healthz")["status"] == "ok"


def test_a_body_always_cut_short_is_an_error_not_data(client: HttpClient, sandbox_url: str, faults) -> None:
    faults(path_prefix="/healthz", kind="truncate", times=50)
    with pytest.raises(HttpError, match=r"cut short|announced bytes"):
        client.get_json(f"{sandbox_url}/healthz")


def test_a_slow_server_times_out(sandbox_url: str, faults) -> None:
    impatient = HttpClient(
        HttpPolicy(allowed_hosts=frozenset({host_key(sandbox_url)}), read_timeout_s=0.5, retries=1, backoff_s=0.05)
    )
    faults(path_prefix="/healthz", kind="slow", delay_s=3, times=5)
    with pytest.raises(HttpError, match=r"ReadTimeoutError \(timeouts connect 10s, read 0\.5s\)"):
        impatient.get_json(f"{sandbox_url}/healthz")


def test_html_where_json_or_an_image_was_expected(tricky_server: str) -> None:
    client = HttpClient(HttpPolicy(allowed_hosts=frozenset({host_key(tricky_server)})))
    with pytest.raises(UnexpectedContentType, match=r"expected application/json .* got text/html .*Log in"):
        client.get_json(f"{tricky_server}/login")
    with pytest.raises(UnexpectedContentType, match="expected image/"):
        client.get_image(f"{tricky_server}/login")


def test_the_body_cap_holds_without_content_length(tricky_server: str) -> None:
    client = HttpClient(HttpPolicy(allowed_hosts=frozenset({host_key(tricky_server)}), max_body_bytes=1000))
    with pytest.raises(BodyTooLarge):
        client.get_image(f"{tricky_server}/big")


def test_a_redirect_to_an_internal_address_is_refused(tricky_server: str) -> None:
    client = HttpClient(HttpPolicy(allowed_hosts=frozenset({host_key(tricky_server)})))
    with pytest.raises(BlockedAddress, match=r"169\.254\.169\.254"):
        client.get_json(f"{tricky_server}/redirect-to-metadata")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "http://localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.0.1/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "file:///etc/passwd",
    ],
)
def test_internal_destinations_are_refused_unless_allow_listed(url: str) -> None:
    with pytest.raises(BlockedAddress):
        check_destination(url, allowed_hosts=())


def test_allow_list_and_public_addresses_pass() -> None:
    check_destination("http://127.0.0.1:8790/unsplash/api", allowed_hosts=["127.0.0.1:8790"])
    check_destination("https://93.184.216.34/photo.jpg", allowed_hosts=())
    with pytest.raises(BlockedAddress):
        check_destination("http://127.0.0.1:9999/", allowed_hosts=["127.0.0.1:8790"])


def test_secrets_are_redacted_from_urls() -> None:
    shown = redact_url("https://api.flickr.com/services/rest/?method=x&api_key=s3cret&access_token=t0ken&page=2")
    assert "s3cret" not in shown and "t0ken" not in shown
    assert "page=2" in shown and "method=x" in shown


def test_secrets_are_redacted_from_urllib3_debug_logs(
    client: HttpClient, sandbox_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        client.get_json(f"{sandbox_url}/healthz", params={"api_key": "s3cret-key", "page": 2})
    assert "healthz" in caplog.text and "page=2" in caplog.text
    assert "s3cret-key" not in caplog.text
