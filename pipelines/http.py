"""The HTTP client every web connector uses, so that every source is polite and safe in the same way.

- Retries with exponential backoff on connection errors, 429 and 5xx, honoring `Retry-After`
  (urllib3's `Retry`), and again when a body arrives cut short (tenacity).
- A minimum interval between a service's calls (API requests and pages) to one host (per process); image
  downloads are not paced but capped: a task may fetch from many threads, and a host sees at most
  `max_per_host` requests in flight at once.
- DNS answers cached per client (per task) for `dns_ttl_s`, so thousands of requests to one CDN host do not
  each resolve it; the address guard checks the cached answer.
- `get_image` refuses what its publisher marks as not for AI training: an `X-Robots-Tag` of `noai` or
  `noimageai`, or an HTML page whose robots meta says so (`RefusedForAI`), unless the policy turns it off.
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
from dataclasses import dataclass, field, replace
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


class RefusedForAI(HttpError):
    """The publisher marks the file as not to be used for AI training (`noai`, `noimageai`)."""


NO_AI_DIRECTIVES = frozenset({"noai", "noimageai"})
_ROBOTS_META = re.compile(
    r"""<meta\s[^>]*name\s*=\s*["']?robots["']?[^>]*content\s*=\s*["']([^"']*)["']"""
    r"""|<meta\s[^>]*content\s*=\s*["']([^"']*)["'][^>]*name\s*=\s*["']?robots["']?""",
    re.IGNORECASE,
)


def no_ai_directives(headers: Mapping[str, str], html: bytes | None = None) -> set[str]:
    """The `noai`/`noimageai` directives a response carries: in `X-Robots-Tag` (all of its values, with or
    without a user agent before them, as in `otherbot: noai`) or, for an HTML page, in its robots meta."""
    values = [value for name, value in headers.items() if name.lower() == "x-robots-tag"]
    if html:
        text = html[:65536].decode("utf-8", "replace")
        values += [first or second for first, second in _ROBOTS_META.findall(text)]
    found = set()
    for value in values:
        for directive in re.split(r"[,\s]+", value.lower()):
            found.add(directive.rpartition(":")[2].strip())
    return found & NO_AI_DIRECTIVES


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


class Resolver:
    """DNS answers remembered for `ttl_s`, for one client (one task): its requests to a host share one
    lookup. Thread-safe."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._answers: dict[tuple[str, int], tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()
        self.lookups = 0

    def addresses(self, host: str, port: int) -> frozenset[str]:
        with self._lock:
            remembered = self._answers.get((host, port))
            if remembered and remembered[0] > time.monotonic():
                return remembered[1]
        try:
            found = frozenset(info[4][0] for info in socket.getaddrinfo(host, port))
        except socket.gaierror as error:
            raise HttpError(f"cannot resolve {host}: {error}") from None
        with self._lock:
            self.lookups += 1
            self._answers[host, port] = (time.monotonic() + self.ttl_s, found)
        return found


def check_destination(url: str, allowed_hosts: Iterable[str], resolver: Resolver | None = None) -> None:
    """Raise BlockedAddress unless `url` is allow-listed or resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedAddress(f"refusing {redact_url(url)}: only http and https URLs with a host are fetched")
    allowed = {entry.lower() for entry in allowed_hosts}
    if parts.hostname.lower() in allowed or host_key(url) in allowed:
        return
    addresses = (resolver or Resolver(0)).addresses(parts.hostname, parts.port or 443)
    internal = sorted(address for address in addresses if _is_internal(address.split("%")[0]))
    if internal:
        raise BlockedAddress(
            f"refusing {redact_url(url)}: {parts.hostname} resolves to internal address {', '.join(internal)}"
            " (add the host to the allow-list only if it is meant to be reached)"
        )


class _GuardedAdapter(HTTPAdapter):
    """Checks every outgoing request, redirects included, before it leaves the process."""

    def __init__(self, allowed_hosts: frozenset[str], resolver: Resolver, **kwargs: Any) -> None:
        self.allowed_hosts, self.resolver = allowed_hosts, resolver
        super().__init__(**kwargs)

    def send(self, request, *args, **kwargs):
        check_destination(request.url, self.allowed_hosts, self.resolver)
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
    # Between calls to one host; image downloads are not paced, only capped by `max_per_host`, so they run
    # side by side (a service's rate limits count its API calls, not the files its CDN serves).
    min_interval_s: float = 0.0
    # Requests in flight to one host at once, however many threads share the client.
    max_per_host: int = 4
    dns_ttl_s: float = 300.0
    # Files whose publisher says `noai` / `noimageai` are not stored; an operator may decide otherwise.
    honour_no_ai: bool = True
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
    """One service's HTTP client; threads may share it (each gets its own session, all share the pacing, the
    per-host caps and the DNS answers)."""

    def __init__(self, policy: HttpPolicy | None = None) -> None:
        self.policy = policy or HttpPolicy()
        self.resolver = Resolver(self.policy.dns_ttl_s)
        self._sessions = threading.local()
        self._last_request: dict[str, float] = {}
        self._pace_lock = threading.Lock()
        self._host_slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()

    def limit_fetching(self, max_per_host: int, honour_no_ai: bool) -> None:
        """Set what an operator chose for this source's downloads (its connection's extra), before any request:
        the per-host cap of requests in flight, and whether `noai` marks are honoured."""
        self.policy = replace(self.policy, max_per_host=max_per_host, honour_no_ai=honour_no_ai)

    @property
    def _session(self) -> requests.Session:
        """This thread's session: requests' sessions are not made to be shared between threads."""
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = self._new_session()
        return session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = self.policy.user_agent
        session.headers.update(self.policy.headers)
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
        adapter = _GuardedAdapter(self.policy.allowed_hosts, self.resolver, max_retries=retry_rule)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    @contextlib.contextmanager
    def _host_slot(self, url: str) -> Iterator[None]:
        """Hold one of the host's `max_per_host` slots while a request to it is in flight."""
        key = host_key(url)
        with self._slots_lock:
            slots = self._host_slots.setdefault(key, threading.BoundedSemaphore(self.policy.max_per_host))
        with slots:
            yield

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
        paced: bool = True,
    ) -> Fetched:
        """One request, with retries; the whole body, checked against the size cap and `expect`ed types.
        `paced`: whether it waits its turn after the host's last call (see `HttpPolicy.min_interval_s`)."""
        attempt = self._retrying(self._request_once)
        try:
            return attempt(method, url, params, headers, expect, frozenset(ok_statuses), allow_redirects, paced)
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
        with self._host_slot(url):
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
        paced: bool,
    ) -> Fetched:
        if paced:
            self._pace(url)
        timeout = (self.policy.connect_timeout_s, self.policy.read_timeout_s)
        with (
            self._host_slot(url),
            self._session.request(
                method,
                url,
                params=params,
                headers=headers,
                timeout=timeout,
                stream=True,
                allow_redirects=allow_redirects,
            ) as response,
        ):
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
        """An image; `RefusedForAI` when its publisher marks it `noai` or `noimageai` (in `X-Robots-Tag`, or
        in the robots meta of the HTML page served instead), `UnexpectedContentType` when it is no image."""
        fetched = self.request("GET", url, params=params, paced=False, **kwargs)
        if self.policy.honour_no_ai:
            html = fetched.content if fetched.content_type == "text/html" else None
            refused = no_ai_directives(fetched.headers, html)
            if refused:
                raise RefusedForAI(
                    f"{redact_url(fetched.url)}: its publisher says {', '.join(sorted(refused))}: not used for AI"
                    " training",
                    status=fetched.status,
                )
        if not fetched.content_type.startswith("image/"):
            excerpt = fetched.content[:80].decode("utf-8", "replace").strip()
            raise UnexpectedContentType(
                f"{redact_url(fetched.url)}: expected image/ but got {fetched.content_type or 'no content type'}"
                f" (starts with {excerpt!r})",
                status=fetched.status,
            )
        return fetched
