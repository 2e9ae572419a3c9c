"""The HTTP client every web connector uses, so that every source is polite and safe in the same way.

- Retries with exponential backoff on connection errors, 429 and 5xx, honoring `Retry-After`
  (urllib3's `Retry`), and again when a body arrives cut short (tenacity).
- A minimum interval between requests to the same host (per process).
- Timeouts on connect and read, a cap on body size, and checks of the content type, so a login page
  or an error page served with status 200 is an error instead of a stored "photo".
- Refusal of private, loopback, link-local and other internal addresses, on the first request and on
  every redirect, unless the host is on the explicit allow-list (the sandbox). This keeps a response
  that points at `169.254.169.254` or `127.0.0.1` from making Colorflow fetch internal resources.
- Secrets in query strings are redacted from every message.
- `stream` opens a GET the same way but leaves its body to the caller, for downloads that go to disk.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

SECRET_PARAMETERS = frozenset(
    {
        "api_key",
        "access_token",
        "client_id",
        "key",
        "token",
        "sig",
        "signature",
        "oh",
        "x-goog-signature",
        "x-amz-signature",
        "x-amz-security-token",
    }
)
RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK_BYTES = 64 * 1024

T = TypeVar("T")


class HttpError(RuntimeError):
    """A request that failed for good; the message names the URL (secrets redacted) and the cause."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BlockedAddress(HttpError):
    """The URL resolves to an internal address that is not allow-listed."""


class BodyTooLarge(HttpError):
    pass


class UnexpectedContentType(HttpError):
    pass


class IncompleteBody(HttpError):
    """Fewer bytes arrived than the server announced."""


def redact_url(url: str) -> str:
    """`url` with the values of secret-looking query parameters replaced, for logs and errors."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (name, "REDACTED" if name.lower() in SECRET_PARAMETERS else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


_SECRET_NAMES = "|".join(sorted(SECRET_PARAMETERS))
_SECRET_IN_TEXT = re.compile(rf"\b((?:{_SECRET_NAMES})=)[^&\s\"']+", re.IGNORECASE)


class _RedactSecrets(logging.Filter):
    """urllib3 logs each request line, query string included, at DEBUG: redact secrets there too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRET_IN_TEXT.sub(r"\1REDACTED", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactSecrets())


def host_key(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


def check_destination(url: str, allowed_hosts: Iterable[str]) -> None:
    """Raise BlockedAddress unless `url` is allow-listed or resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedAddress(f"refusing {redact_url(url)}: only http and https URLs with a host are fetched")
    allowed = {entry.lower() for entry in allowed_hosts}
    if parts.hostname.lower() in allowed or host_key(url) in allowed:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except socket.gaierror as error:
        raise HttpError(f"cannot resolve {parts.hostname}: {error}") from None
    internal = sorted(address for address in addresses if _is_internal(address.split("%")[0]))
    if internal:
        raise BlockedAddress(
            f"refusing {redact_url(url)}: {parts.hostname} resolves to internal address {', '.join(internal)}"
            " (add the host to the allow-list only if it is meant to be reached)"
        )


class _GuardedAdapter(HTTPAdapter):
    """Checks every outgoing request, redirects included, before it leaves the process."""

    def __init__(self, allowed_hosts: frozenset[str], **kwargs: Any) -> None:
        self.allowed_hosts = allowed_hosts
        super().__init__(**kwargs)

    def send(self, request, *args, **kwargs):
        check_destination(request.url, self.allowed_hosts)
        return super().send(request, *args, **kwargs)


@dataclass(frozen=True)
class HttpPolicy:
    """How a connector talks to one service."""

    allowed_hosts: frozenset[str] = frozenset()
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = 4
    backoff_s: float = 0.5
    max_body_bytes: int = 50 * 1024 * 1024
    min_interval_s: float = 0.0
    # A server may ask for a pause of hours; each wait is cut to this, so a worker is not held that long
    # (after the last retry the request fails, and the task's own retry comes back later).
    max_retry_after_s: int = 120
    user_agent: str = "ColorflowBot/0.1 (+https://github.com/colorflow)"
    # Sent to every host this client calls (image hosts, URLs from responses): never put secrets here;
    # connectors add credentials per request to their own API host.
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fetched:
    """A response body that arrived whole."""

    url: str
    status: int
    content_type: str
    content: bytes
    headers: Mapping[str, str]


class HttpClient:
    def __init__(self, policy: HttpPolicy | None = None) -> None:
        self.policy = policy or HttpPolicy()
        self._session = requests.Session()
        self._session.headers["User-Agent"] = self.policy.user_agent
        self._session.headers.update(self.policy.headers)
        # urllib3 retries answers (429, 5xx); tenacity, in `request`, retries broken connections and bodies.
        retry_rule = Retry(
            total=None,
            connect=0,
            read=0,
            other=0,
            status=self.policy.retries,
            backoff_factor=self.policy.backoff_s,
            status_forcelist=RETRY_STATUSES,
            respect_retry_after_header=True,
            retry_after_max=self.policy.max_retry_after_s,
            raise_on_status=False,
            allowed_methods=None,
        )
        adapter = _GuardedAdapter(self.policy.allowed_hosts, max_retries=retry_rule)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._last_request: dict[str, float] = {}
        self._pace_lock = threading.Lock()

    def _pace(self, url: str) -> None:
        if self.policy.min_interval_s <= 0:
            return
        key = host_key(url)
        with self._pace_lock:
            wait = self._last_request.get(key, 0.0) + self.policy.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request[key] = time.monotonic()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[str, ...] | None = None,
        ok_statuses: Iterable[int] = (200,),
        allow_redirects: bool = True,
    ) -> Fetched:
        """One request, with retries; the whole body, checked against the size cap and `expect`ed types."""
        attempt = self._retrying(self._request_once)
        try:
            return attempt(method, url, params, headers, expect, frozenset(ok_statuses), allow_redirects)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise self._connection_failure(method, url, error) from None

    @contextlib.contextmanager
    def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, ok_statuses: Iterable[int] = (200, 206)
    ) -> Iterator[requests.Response]:
        """A GET whose body is left for the caller to read with `response.iter_content`, for bodies that go
        to disk rather than memory (dumps of many GiB), so the size cap does not apply.

        Opening is guarded, paced and retried like `request`; a status outside `ok_statuses` is an HttpError
        with a redacted excerpt of the body. Errors while the caller reads the body (a cut connection, a short
        body) reach it as requests raises them, because only the caller knows how to resume.
        """
        opening = self._retrying(self._open_stream)
        try:
            response = opening(url, headers)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise self._connection_failure("GET", url, error) from None
        with response:
            if response.status_code not in frozenset(ok_statuses):
                try:
                    excerpt = next(response.iter_content(200), b"").decode("utf-8", "replace").strip()
                except requests.RequestException:
                    excerpt = "(body unreadable)"
                raise HttpError(
                    f"GET {redact_url(response.url)}: HTTP {response.status_code}: {excerpt}",
                    status=response.status_code,
                )
            yield response

    def _open_stream(self, url: str, headers: Mapping[str, str] | None) -> requests.Response:
        self._pace(url)
        timeout = (self.policy.connect_timeout_s, self.policy.read_timeout_s)
        return self._session.get(url, headers=headers, timeout=timeout, stream=True)

    def _retrying(self, function: Callable[..., T]) -> Callable[..., T]:
        """`function` retried with backoff when the connection fails or a body arrives cut short."""
        return retry(
            retry=retry_if_exception_type((IncompleteBody, requests.ConnectionError, requests.Timeout)),
            stop=stop_after_attempt(self.policy.retries + 1),
            wait=wait_exponential(multiplier=self.policy.backoff_s, max=30),
            reraise=True,
        )(function)

    def _connection_failure(self, method: str, url: str, error: requests.RequestException) -> HttpError:
        # The root cause (refused, reset, read timeout) says more than requests' wrapper, whose text
        # would also repeat the URL with its secrets.
        cause = getattr(error.args[0], "reason", None) if error.args else None
        described = type(cause or error).__name__
        timeout_text = f"connect {self.policy.connect_timeout_s:g}s, read {self.policy.read_timeout_s:g}s"
        return HttpError(f"{method} {redact_url(url)} failed: {described} (timeouts {timeout_text})")

    def _request_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        expect: tuple[str, ...] | None,
        ok_statuses: frozenset[int],
        allow_redirects: bool,
    ) -> Fetched:
        self._pace(url)
        timeout = (self.policy.connect_timeout_s, self.policy.read_timeout_s)
        with self._session.request(
            method, url, params=params, headers=headers, timeout=timeout, stream=True, allow_redirects=allow_redirects
        ) as response:
            shown = redact_url(response.url)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            announced = int(response.headers.get("Content-Length") or 0)
            if announced > self.policy.max_body_bytes:
                raise BodyTooLarge(f"{shown}: {announced} bytes announced, the cap is {self.policy.max_body_bytes}")
            body = bytearray()
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    body += chunk
                    if len(body) > self.policy.max_body_bytes:
                        raise BodyTooLarge(f"{shown}: body exceeds the cap of {self.policy.max_body_bytes} bytes")
            except requests.exceptions.ChunkedEncodingError as error:
                raise IncompleteBody(f"{shown}: body cut short after {len(body)} bytes ({error})") from None
            if announced and len(body) < announced and "Content-Encoding" not in response.headers:
                raise IncompleteBody(f"{shown}: {len(body)} of {announced} announced bytes arrived")
            if response.status_code not in ok_statuses:
                excerpt = bytes(body[:200]).decode("utf-8", "replace").strip()
                raise HttpError(
                    f"{method} {shown}: HTTP {response.status_code}: {excerpt}", status=response.status_code
                )
            if expect and not content_type.startswith(expect):
                excerpt = bytes(body[:80]).decode("utf-8", "replace").strip()
                raise UnexpectedContentType(
                    f"{shown}: expected {' or '.join(expect)} but got {content_type or 'no content type'}"
                    f" (starts with {excerpt!r})",
                    status=response.status_code,
                )
            return Fetched(response.url, response.status_code, content_type, bytes(body), dict(response.headers))

    def get_json(self, url: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        fetched = self.request("GET", url, params=params, expect=("application/json", "text/javascript"), **kwargs)
        try:
            return json.loads(fetched.content)
        except ValueError:
            raise HttpError(f"{redact_url(fetched.url)}: the body is not valid JSON") from None

    def get_image(self, url: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Fetched:
        return self.request("GET", url, params=params, expect=("image/",), **kwargs)
