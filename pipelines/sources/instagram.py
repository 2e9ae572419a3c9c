"""Instagram: photos by hashtag, through the official Graph API by default, or a real browser when an
operator chooses to.

Graph mode (`discover_graph`) is the route Instagram offers to apps: `ig_hashtag_search` turns a hashtag into
its static id, and `/{hashtag-id}/recent_media` (posts of the last 24 hours) and, on request, `/top_media`
list posts, paged with cursors. Two rules of the API shape this module:
- An account may query only 30 unique hashtags per rolling 7 days. Hashtag ids never change, so they are
  cached in the lake (`sources/instagram/hashtag_ids.json`) together with a ledger of when each hashtag
  last started a 7-day period; a run refuses, before sending anything, to start a 31st. The ledger counts
  a hashtag again whenever it is used after its 7 days are over, which is right whether Meta counts id
  look-ups only or every query. Two tasks writing the ledger at once can lose one update (the last write
  wins); the API's own refusal, which becomes SourceUnavailable, is the backstop.
- recent_media reaches only 24 hours back and is not strictly ordered, so every page is read and posts
  are kept by their timestamp; a window that ended more than 24 hours ago can only be served by top_media.
  Schedule the daily run soon after midnight.
Media URLs are signed CDN URLs that expire (`oe`); `fetch` asks the Graph API once for a fresh URL of a
post whose URL has expired. Hashtag media carry no author name (Meta strips `username`); the license is
Instagram's terms: all rights reserved.

Browser mode (`discover_browser`) reads hashtag pages the way a person does: headless Chromium through
Selenium, logged in with a session cookie the operator supplies, scrolling until no more posts load, then
BeautifulSoup over the rendered page. Instagram's robots.txt disallows all but named search engines, so
this mode refuses to start unless the operator has recorded permission (`robots_permission`). The browser
identifies itself with Colorflow's user agent, the one robots.txt was checked for.

Connections (Airflow, duck-typed here): host = Graph API base URL (`https://graph.facebook.com/v21.0`),
password = access token, extra = `{"user_id": ..., "web_url": "https://www.instagram.com",
"session_token": <sessionid cookie>, "robots_permission": false}`. The cookie sits under a name containing
"token" so that Airflow masks it like the password. Tokens and cookies never appear in logs or errors: the
token goes to the Graph API in an `Authorization: Bearer` header (never in a URL), only to the configured
host, and the cookie is set in the browser with Selenium's wire log held above DEBUG.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.robotparser
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from pipelines.browser import CHROMEDRIVER, CHROMIUM_BINARY, HeadlessChromium
from pipelines.http import HttpClient, HttpError, HttpPolicy, UnexpectedContentType
from pipelines.settings import Settings, get_settings
from pipelines.sources.contract import WebService
from pipelines.sources.web import Candidate, SourceUnavailable, Window, unique
from pipelines.storage import ObjectNotFound, ObjectStore, open_store

logger = logging.getLogger(__name__)

SOURCE = "instagram"
LICENSE = "Instagram (all rights reserved)"
DEFAULT_GRAPH_VERSION = "v21.0"
GRAPH_MEDIA_FIELDS = "id,media_type,media_url,permalink,caption,timestamp"
GRAPH_PAGE_SIZE = 50  # the API's maximum page size
MAX_GRAPH_PAGES = 200  # a safety stop against a cursor that never ends
RECENT_MEDIA_REACH = timedelta(hours=24)
HASHTAG_BUDGET = 30
HASHTAG_PERIOD = timedelta(days=7)
STATE_KEY = "sources/instagram/hashtag_ids.json"
ACCESS_TOKEN_CODES = frozenset({102, 104, 190})
# Graph error codes that mean "slow down or try later" rather than "this will never work".
TRANSIENT_CODES = frozenset({1, 2, 4, 17, 32, 341, 613})
EXPIRED_URL_TEXT = "URL signature expired"
SESSION_COOKIE_NAME = "sessionid"
FIRST_POSTS_TIMEOUT_S = 15.0
SCROLL_SETTLE_S = 3.0
DEFAULT_MAX_SCROLLS = 50
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class InstagramConfig:
    """How to reach Instagram: the Graph API for the default mode, the website and a session for the browser."""

    graph_url: str
    access_token: str = field(repr=False)
    user_id: str
    web_url: str | None = None
    session_cookie: str | None = field(default=None, repr=False)
    robots_permission: bool = False

    @classmethod
    def from_connection(cls, connection: Any) -> InstagramConfig:
        """Build from an Airflow Connection (or anything with `.host`, `.password`, `.login`, `.extra_dejson`)."""
        extra = dict(getattr(connection, "extra_dejson", None) or {})
        host = (getattr(connection, "host", None) or "").strip()
        if not host:
            raise ValueError("the Instagram connection needs the Graph API base URL as its host")
        if "://" not in host:
            host = f"https://{host}"
        if not urlsplit(host).path.strip("/"):
            host = f"{host.rstrip('/')}/{extra.get('api_version', DEFAULT_GRAPH_VERSION)}"
        user_id = str(extra.get("user_id") or getattr(connection, "login", None) or "")
        if not user_id:
            raise ValueError("the Instagram connection needs the Instagram account id (extra user_id, or login)")
        permission = extra.get("robots_permission", False)
        return cls(
            graph_url=host.rstrip("/"),
            access_token=getattr(connection, "password", None) or "",
            user_id=user_id,
            web_url=(extra.get("web_url") or None),
            session_cookie=extra.get("session_token") or extra.get("session_cookie") or None,
            robots_permission=permission if isinstance(permission, bool) else str(permission).lower() in TRUE_WORDS,
        )


def client(config: InstagramConfig, settings: Settings | None = None) -> HttpClient:
    """The shared HTTP client, allowed to reach the configured hosts (the sandbox on loopback, in tests)."""
    settings = settings or get_settings()
    return HttpClient(HttpPolicy(allowed_hosts=frozenset(settings.http_allowed_hosts)))


def normalize_hashtag(text: str) -> str:
    return text.strip().lstrip("#").lower()


def parse_graph_time(text: str) -> datetime:
    """Graph API times look like `2026-11-22T10:00:00+0000`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)


# -- Graph API ---------------------------------------------------------------------------------------------


class AccessTokenRefused(SourceUnavailable):
    """The Graph API refused the access token: nothing works until an operator renews it."""


class _GraphCaller:
    """Graph API requests with the token attached, and Graph error objects turned into clear exceptions."""

    def __init__(self, config: InstagramConfig, http: HttpClient) -> None:
        self.config, self.http = config, http

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        url = f"{self.config.graph_url}/{path.lstrip('/')}"
        try:
            # The token travels in a header, not the query string, so no URL that gets logged anywhere holds it.
            fetched = self.http.request(
                "GET",
                url,
                params=params,
                headers={"Authorization": f"Bearer {self.config.access_token}"},
                expect=("application/json", "text/javascript"),
                ok_statuses=(200, 400, 401, 403, 404),
            )
        except UnexpectedContentType as error:
            raise SourceUnavailable(
                f"the Instagram Graph API answered with something other than JSON: {error}"
            ) from None
        try:
            body = json.loads(fetched.content)
        except ValueError:
            raise SourceUnavailable(f"the Instagram Graph API sent invalid JSON for {path}") from None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            raise self._error(body["error"], fetched.status, path)
        if fetched.status != 200 or not isinstance(body, dict):
            raise SourceUnavailable(f"the Instagram Graph API answered HTTP {fetched.status} for {path}")
        return body

    def _error(self, error: dict[str, Any], status: int, path: str) -> Exception:
        code, subcode = error.get("code"), error.get("error_subcode")
        message = str(error.get("message", "no message"))
        if self.config.access_token:
            message = message.replace(self.config.access_token, "REDACTED")
        described = f"Instagram Graph API error on {path} (HTTP {status}, code {code}, subcode {subcode}): {message}"
        if code in ACCESS_TOKEN_CODES:
            return AccessTokenRefused(f"{described}. The access token was refused: renew it in the connection.")
        if error.get("is_transient") or code in TRANSIENT_CODES:
            return HttpError(f"{described} (temporary: try again later)", status=status)
        return SourceUnavailable(described)

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Items of every page of an edge. The next page is asked for with `paging.cursors.after` from our own
        base URL, never by following `paging.next`, so the token only ever goes to the configured host."""
        after: str | None = None
        for _ in range(MAX_GRAPH_PAGES):
            body = self.get(path, **params, **({"after": after} if after else {}))
            yield from body.get("data") or []
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return
        logger.warning("stopped reading %s after %d pages", path, MAX_GRAPH_PAGES)


@dataclass
class HashtagLedger:
    """Hashtag ids (static and global) and when each hashtag last started a 7-day period for an account."""

    ids: dict[str, str] = field(default_factory=dict)
    counted: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, store: ObjectStore | None) -> HashtagLedger:
        if store is None:
            return cls()
        try:
            data = json.loads(store.get(STATE_KEY))
        except ObjectNotFound:
            return cls()
        except ValueError:
            logger.warning("ignoring unreadable hashtag cache %s", store.uri(STATE_KEY))
            return cls()
        return cls(
            ids=dict(data.get("hashtag_ids", {})), counted={k: dict(v) for k, v in data.get("counted", {}).items()}
        )

    def save(self, store: ObjectStore | None) -> None:
        if store is not None:
            body = {"hashtag_ids": self.ids, "counted": self.counted}
            store.put(STATE_KEY, json.dumps(body, indent=1, sort_keys=True).encode())

    def active(self, user_id: str, now: datetime) -> dict[str, datetime]:
        """Hashtags whose 7-day period is still running for `user_id`, with its start."""
        periods = {tag: datetime.fromisoformat(start) for tag, start in self.counted.get(user_id, {}).items()}
        return {tag: start for tag, start in periods.items() if now - start < HASHTAG_PERIOD}

    def count(self, user_id: str, tag: str, now: datetime) -> None:
        self.counted.setdefault(user_id, {})[tag] = now.isoformat()


def _check_budget(ledger: HashtagLedger, user_id: str, tags: list[str], now: datetime) -> None:
    active = ledger.active(user_id, now)
    new = [tag for tag in tags if tag not in active]
    if len(active) + len(new) > HASHTAG_BUDGET:
        frees_at = min(active.values(), default=now) + HASHTAG_PERIOD
        raise SourceUnavailable(
            f"Instagram allows {HASHTAG_BUDGET} unique hashtags per rolling 7 days and {len(active)} are in use;"
            f" querying {', '.join(new)} would need {len(new)} more. Use hashtags already queried this week"
            f" ({', '.join(sorted(active)) or 'none'}), or wait: the next one frees up at"
            f" {frees_at:%Y-%m-%d %H:%M} UTC."
        )


def _hashtag_ids(
    graph: _GraphCaller, ledger: HashtagLedger, user_id: str, tags: list[str], now: datetime
) -> dict[str, str]:
    _check_budget(ledger, user_id, tags, now)
    active = ledger.active(user_id, now)
    found = {}
    for tag in tags:
        if tag not in ledger.ids:
            body = graph.get("ig_hashtag_search", user_id=user_id, q=tag)
            results = body.get("data") or []
            if not results or not results[0].get("id"):
                raise SourceUnavailable(f"ig_hashtag_search found no hashtag id for #{tag}")
            ledger.ids[tag] = str(results[0]["id"])
        if tag not in active:
            ledger.count(user_id, tag, now)
        found[tag] = ledger.ids[tag]
    return found


def _graph_candidate(item: dict[str, Any], tag: str, edge: str, posted_at: datetime) -> Candidate:
    return Candidate(
        source=SOURCE,
        source_id=str(item["id"]),
        url=item["media_url"],
        page_url=item.get("permalink"),
        author=item.get("username"),
        license=LICENSE,
        extra={"via": "graph", "hashtag": tag, "edge": edge, "timestamp": posted_at.isoformat()},
    )


def discover_graph(
    config: InstagramConfig,
    http: HttpClient,
    window: Window,
    hashtags: Iterable[str],
    limit: int | None = None,
    state_store: ObjectStore | None = None,
    include_top: bool = False,
) -> list[Candidate]:
    """Photos posted inside `window` under any of `hashtags`, found through the Graph API.

    `state_store` keeps the hashtag-id cache and budget ledger between runs (without it every run looks
    every hashtag up again). `include_top` also reads top_media, which is not limited to the last 24 hours.
    """
    tags = list(dict.fromkeys(normalize_hashtag(tag) for tag in hashtags if normalize_hashtag(tag)))
    if not tags:
        return []
    graph = _GraphCaller(config, http)
    now = datetime.now(UTC)
    if window.end <= now - RECENT_MEDIA_REACH and not include_top:
        logger.warning(
            "window %s to %s ended more than 24 hours ago: recent_media cannot reach it", window.start, window.end
        )
    ledger = HashtagLedger.load(state_store)
    try:
        ids = _hashtag_ids(graph, ledger, config.user_id, tags, now)
    finally:
        ledger.save(state_store)
    edges = ("recent_media", "top_media") if include_top else ("recent_media",)
    found: list[Candidate] = []
    for tag, tag_id in ids.items():
        for edge in edges:
            items = graph.pages(
                f"{tag_id}/{edge}", user_id=config.user_id, fields=GRAPH_MEDIA_FIELDS, limit=GRAPH_PAGE_SIZE
            )
            for item in items:
                if item.get("media_type") != "IMAGE" or not item.get("media_url") or not item.get("timestamp"):
                    continue
                posted_at = parse_graph_time(item["timestamp"])
                if posted_at in window:
                    found.append(_graph_candidate(item, tag, edge, posted_at))
            found = unique(found)
            if limit is not None and len(found) >= limit:
                logger.info("instagram graph: limit of %d reached at #%s", limit, tag)
                return found[:limit]
    logger.info("instagram graph: %d photos for %s in %s to %s", len(found), tags, window.start, window.end)
    return found


def refresh_media_url(config: InstagramConfig, http: HttpClient, media_id: str) -> str:
    """A freshly signed URL for one post, for when the one found at discovery has expired."""
    body = _GraphCaller(config, http).get(media_id, fields="media_url")
    if not body.get("media_url"):
        raise HttpError(f"the Graph API gave no media_url for media {media_id}")
    return body["media_url"]


def fetch(config: InstagramConfig, http: HttpClient, candidate: Candidate) -> bytes:
    """The photo's bytes. An expired signed URL found through the Graph API is renewed once."""
    try:
        return http.get_image(candidate.url).content
    except HttpError as error:
        expired = error.status == 403 and EXPIRED_URL_TEXT in str(error)
        if not (expired and candidate.extra.get("via") == "graph"):
            raise
    logger.info("media %s: signed URL expired, asking the Graph API for a fresh one", candidate.source_id)
    try:
        fresh = refresh_media_url(config, http, candidate.source_id)
    except AccessTokenRefused:
        raise
    except SourceUnavailable as error:
        # The post itself is gone or hidden: a loss of this one photo, recorded as its fetch failure.
        raise HttpError(f"media {candidate.source_id}: expired URL could not be renewed: {error}") from None
    return http.get_image(fresh).content


# -- browser mode ------------------------------------------------------------------------------------------


def check_robots(config: InstagramConfig, http: HttpClient, urls: Iterable[str]) -> None:
    """Raise SourceUnavailable unless robots.txt lets our user agent read `urls` or the operator has recorded
    permission. Missing robots.txt (404) allows; 401 or 403 disallow, as robots.txt conventions say."""
    agent = http.policy.user_agent
    robots_url = f"{(config.web_url or '').rstrip('/')}/robots.txt"
    rules = urllib.robotparser.RobotFileParser(robots_url)
    try:
        fetched = http.request("GET", robots_url, ok_statuses=(200, 401, 403, 404), expect=("text/",))
    except UnexpectedContentType:
        fetched = None
    if fetched is None or fetched.status == 404:
        rules.allow_all = True
    elif fetched.status in (401, 403):
        rules.disallow_all = True
    else:
        rules.parse(fetched.content.decode("utf-8", "replace").splitlines())
    refused = [url for url in urls if not rules.can_fetch(agent, url)]
    if not refused:
        return
    if config.robots_permission:
        logger.info("robots.txt disallows %s for %s; going ahead on the operator's recorded permission", refused, agent)
        return
    raise SourceUnavailable(
        f"{robots_url} disallows {', '.join(refused)} for {agent.split('/')[0]}: browser mode needs the"
        " operator's written permission from Instagram, recorded as robots_permission=true in the connection"
    )


def parse_tag_page(page_source: str, page_url: str) -> list[tuple[Candidate, datetime | None]]:
    """The posts on a rendered hashtag page, with their times; videos are left out."""
    soup = BeautifulSoup(page_source, "html.parser")
    posts = []
    for link in soup.select('a[href*="/p/"]'):
        image = link.find("img", attrs={"data-media-id": True})
        if image is None or not image.get("src") or image.get("data-media-type", "IMAGE") != "IMAGE":
            continue
        stamp = image.get("data-timestamp")
        taken_at = datetime.fromtimestamp(int(stamp), UTC) if stamp and stamp.isdigit() else None
        candidate = Candidate(
            source=SOURCE,
            source_id=str(image["data-media-id"]),
            url=urljoin(page_url, image["src"]),
            page_url=urljoin(page_url, link["href"]),
            author=image.get("data-owner") or None,
            license=LICENSE,
            extra={"via": "browser", "timestamp": taken_at.isoformat() if taken_at else None},
        )
        posts.append((candidate, taken_at))
    return posts


@contextlib.contextmanager
def _webdriver_debug_log_off() -> Iterator[None]:
    """Selenium logs every WebDriver command's payload at DEBUG, which would put the session cookie in logs."""
    wire_log = logging.getLogger("selenium.webdriver.remote.remote_connection")
    level = wire_log.level
    wire_log.setLevel(max(logging.INFO, level))
    try:
        yield
    finally:
        wire_log.setLevel(level)


_COUNT_POSTS = "return document.querySelectorAll('a[href*=\"/p/\"] img[data-media-id]').length"
_STILL_LOADING = "return document.querySelector('[role=progressbar]') !== null"
_OLDEST_SHOWN = (
    "const shown = document.querySelectorAll('a[href*=\"/p/\"] img[data-timestamp]');"
    "return shown.length ? shown[shown.length - 1].dataset.timestamp : null"
)


def _scroll_tag_page(driver: Any, tag: str, limit: int | None, max_scrolls: int, oldest_wanted: datetime) -> None:
    """Scroll until the page stops adding posts, `limit` posts are shown, or posts older than the window show."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def first_posts(browser: Any) -> bool:
        return browser.execute_script(_COUNT_POSTS) > 0 or not browser.execute_script(_STILL_LOADING)

    try:
        WebDriverWait(driver, FIRST_POSTS_TIMEOUT_S, poll_frequency=0.1).until(first_posts)
    except TimeoutException:
        raise SourceUnavailable(
            f"the #{tag} page showed no posts within {FIRST_POSTS_TIMEOUT_S:.0f}s: Instagram's page may have changed"
        ) from None
    for _ in range(max_scrolls):
        shown = driver.execute_script(_COUNT_POSTS)
        oldest = driver.execute_script(_OLDEST_SHOWN)
        if not driver.execute_script(_STILL_LOADING) or (limit is not None and shown >= limit):
            return
        if oldest and str(oldest).isdigit() and datetime.fromtimestamp(int(oldest), UTC) < oldest_wanted:
            return
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        try:
            WebDriverWait(driver, SCROLL_SETTLE_S, poll_frequency=0.1).until(
                lambda browser, before=shown: (
                    browser.execute_script(_COUNT_POSTS) > before or not browser.execute_script(_STILL_LOADING)
                )
            )
        except TimeoutException:
            logger.info("#%s: no new posts appeared after scrolling; %d shown", tag, shown)
            return
    logger.warning("#%s: stopped after %d scrolls", tag, max_scrolls)


def discover_browser(
    config: InstagramConfig,
    http: HttpClient,
    window: Window,
    hashtags: Iterable[str],
    limit: int | None = None,
    max_scrolls: int = DEFAULT_MAX_SCROLLS,
    chromium_binary: str = CHROMIUM_BINARY,
    chromedriver: str = CHROMEDRIVER,
) -> list[Candidate]:
    """Photos posted inside `window` under `hashtags`, read from the rendered hashtag pages."""
    tags = list(dict.fromkeys(normalize_hashtag(tag) for tag in hashtags if normalize_hashtag(tag)))
    if not config.web_url:
        raise SourceUnavailable("browser mode needs the Instagram website address (web_url) in the connection")
    if not config.session_cookie:
        raise SourceUnavailable(
            "login wall: Instagram shows hashtag pages only to logged-in visitors; put an operator's session"
            f" cookie ({SESSION_COOKIE_NAME}) in the connection as session_token"
        )
    web_url = config.web_url.rstrip("/")
    pages = {tag: f"{web_url}/explore/tags/{tag}/" for tag in tags}
    check_robots(config, http, pages.values())
    found: list[Candidate] = []
    with HeadlessChromium(http.policy.user_agent, binary=chromium_binary, driver_path=chromedriver) as driver:
        # A cookie can only be set for the site the browser is on: open a light page of the host first.
        driver.get(f"{web_url}/robots.txt")
        site = urlsplit(web_url)
        cookie = {"name": SESSION_COOKIE_NAME, "value": config.session_cookie, "path": "/", "httpOnly": True}
        with _webdriver_debug_log_off():
            driver.add_cookie({**cookie, "secure": site.scheme == "https"})
        for tag, page in pages.items():
            driver.get(page)
            if "/accounts/login" in urlsplit(driver.current_url).path:
                raise SourceUnavailable(
                    f"login wall: the #{tag} page redirected to the login page; the session cookie"
                    f" ({SESSION_COOKIE_NAME}) was refused (expired or logged out): renew it in the connection"
                )
            remaining = None if limit is None else limit - len(found)
            _scroll_tag_page(driver, tag, remaining, max_scrolls, window.start)
            posts = parse_tag_page(driver.page_source, driver.current_url)
            in_window = [candidate for candidate, taken_at in posts if taken_at is not None and taken_at in window]
            logger.info("#%s: %d posts rendered, %d in the window", tag, len(posts), len(in_window))
            found = unique(
                [*found, *(replace(candidate, extra={**candidate.extra, "hashtag": tag}) for candidate in in_window)]
            )
            if limit is not None and len(found) >= limit:
                return found[:limit]
    return found


def discover_for_run(
    config: InstagramConfig, http: HttpClient, window: Window, params: Mapping[str, Any]
) -> list[Candidate]:
    """The run's photos: the Graph API's hashtag search (its hashtag-id cache and query budget kept in the
    lake), or with `mode` = browser the rendered hashtag pages."""
    if params.get("mode") == "browser":
        return discover_browser(config, http, window, params["hashtags"], params["limit"], params["max_scrolls"])
    return discover_graph(
        config,
        http,
        window,
        params["hashtags"],
        params["limit"],
        state_store=open_store(),
        include_top=params.get("include_top_media", False),
    )


INSTAGRAM = WebService(InstagramConfig.from_connection, client, SOURCE, discover_for_run, fetch)
