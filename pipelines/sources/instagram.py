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
A hashtag result is an IMAGE, a VIDEO (skipped) or a CAROUSEL_ALBUM, which has no media_url of its own:
its items come in the same request (`children{...}`), and each IMAGE item is a photo of its own (its id,
its media_url, its permalink or else the album's, its timestamp or else the album's).
Media URLs are signed CDN URLs that expire (`oe`); `fetch` asks the Graph API once for a fresh URL of a
photo (post or album item) whose URL has expired. Hashtag media carry no author name (Meta strips
`username`); the license is Instagram's terms: all rights reserved.

Browser mode (`discover_browser`) reads hashtag pages the way a person does: headless Chromium through
Selenium, logged in with a session cookie the operator supplies, scrolling until no more posts load, the
posts in the window are all read, or the page lists posts older than the window. A real grid tile is only a
link to `/p/<shortcode>/` (2025: `/<username>/p/<shortcode>/`) around an image, with no time and no owner
(`tests/captures/instagram/`), so the grid gives the posts and the page's own JSON describes them: Chromium's
performance log lists the responses the page fetched, and the bodies of its web GraphQL hashtag responses
(`data.hashtag.edge_hashtag_to_media` and `edge_hashtag_to_top_posts`) are read over the DevTools protocol.
A node gives the media id (`id`), `taken_at_timestamp`, the full-size `display_url` and `owner.id`; videos
are skipped, and an album (`GraphSidecar`) gives its cover only, since the hashtag feed does not list its
other items. A tile the JSON does not describe (real pages carry their first page inside the document, not
as a response of their own) is read from the post's page: `time[datetime]` of its permalink, the owner's
profile link and the first image; its media id is the one its shortcode encodes (`media_id_of`). The source
id is that web media id, which is not the Graph API's id for the same post: the two modes agree on a post's
`page_url` (`/p/<shortcode>/`), not on its id. The author is a username where the page shows one (a 2025
tile's link or the post page's owner link), else None: the JSON names the owner only by number, kept as
`extra["owner_id"]`. Instagram's robots.txt disallows all but named search engines, so this mode refuses to
start unless the operator has recorded permission (`robots_permission`). The browser identifies itself with
Colorflow's user agent, the one robots.txt was checked for.

Connections (Airflow, duck-typed here): host = Graph API base URL (`https://graph.facebook.com/v21.0`),
password = access token, extra = `{"user_id": ..., "web_url": "https://www.instagram.com",
"session_token": <sessionid cookie>, "robots_permission": false}`. The cookie sits under a name containing
"token" so that Airflow masks it like the password. Tokens and cookies never appear in logs or errors: the
token goes to the Graph API in an `Authorization: Bearer` header (never in a URL), only to the configured
host, and the browser session (which sets the cookie and reads request headers back in the performance log)
runs with Selenium's wire log held above DEBUG.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import string
import urllib.robotparser
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
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
# Instagram grants no license: its terms keep every right with the poster. No term of the vocabulary fits.
LICENSE_TEXT = "Instagram (all rights reserved)"
DEFAULT_GRAPH_VERSION = "v21.0"
GRAPH_ITEM_FIELDS = "id,media_type,media_url,permalink,timestamp"
# A CAROUSEL_ALBUM has no media_url of its own: its photos are its children, asked for in the same request.
GRAPH_MEDIA_FIELDS = f"{GRAPH_ITEM_FIELDS},caption,children{{{GRAPH_ITEM_FIELDS}}}"
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
POST_PAGE_TIMEOUT_S = 10.0
DEFAULT_MAX_SCROLLS = 50
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
SHORTCODE_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
SHORTCODE_ID_LENGTH = 11
# A post link, relative to the site: `p/<shortcode>` (2020) or `<username>/p/<shortcode>` (2025).
POST_PATH = re.compile(r"(?:(?P<username>[A-Za-z0-9._]{1,30})/)?p/(?P<shortcode>[A-Za-z0-9_-]+)")
USERNAME = re.compile(r"[A-Za-z0-9._]{1,30}")
NOT_USERNAMES = frozenset({"accounts", "direct", "explore", "p", "reel", "reels", "stories", "tv"})
JSON_REQUEST_TYPES = frozenset({"XHR", "Fetch"})


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


def graph_photos(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The photos one hashtag result holds, as Graph media items: the item itself when it is an IMAGE; for a
    CAROUSEL_ALBUM, each IMAGE child, with the album's permalink and timestamp where the child has none and the
    album's id as `album_id`; nothing for a VIDEO."""
    if item.get("media_type") == "IMAGE":
        return [dict(item)]
    if item.get("media_type") != "CAROUSEL_ALBUM":
        return []
    inherited = {"permalink": item.get("permalink"), "timestamp": item.get("timestamp"), "album_id": item.get("id")}
    children = (item.get("children") or {}).get("data") or []
    return [
        {**inherited, **{name: value for name, value in child.items() if value}}
        for child in children
        if child.get("media_type") == "IMAGE"
    ]


def _graph_candidate(photo: dict[str, Any], tag: str, edge: str, posted_at: datetime) -> Candidate:
    album = {"album_id": str(photo["album_id"])} if photo.get("album_id") else {}
    return Candidate(
        source=SOURCE,
        source_id=str(photo["id"]),
        url=photo["media_url"],
        page_url=photo.get("permalink"),
        author=photo.get("username"),
        license_text=LICENSE_TEXT,
        extra={"via": "graph", "hashtag": tag, "edge": edge, "timestamp": posted_at.isoformat(), **album},
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
                for photo in graph_photos(item):
                    if not photo.get("media_url") or not photo.get("timestamp"):
                        continue
                    posted_at = parse_graph_time(photo["timestamp"])
                    if posted_at in window:
                        found.append(_graph_candidate(photo, tag, edge, posted_at))
            found = unique(found)
            if limit is not None and len(found) >= limit:
                logger.info("instagram graph: limit of %d reached at #%s", limit, tag)
                return found[:limit]
    logger.info("instagram graph: %d photos for %s in %s to %s", len(found), tags, window.start, window.end)
    return found


def refresh_media_url(config: InstagramConfig, http: HttpClient, media_id: str) -> str:
    """A freshly signed URL for one photo (a post, or an album's child), for when the one found at discovery
    has expired."""
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


def media_id_of(shortcode: str) -> str:
    """The web media id a shortcode stands for: its first 11 characters are that id in base 64 (alphabet
    `A-Z a-z 0-9 - _`); private posts' longer shortcodes add more after them. Checked against the captures:
    `CXuQxOdPfss` decodes to its GraphQL node's id, a 2025 tile's shortcode to the media id in its image URL's
    `ig_cache_key`, and the 2020 grid's 39-character codes to ids whose time bits give the day its alt text
    names. The web's media ids are not the Graph API's: the two modes agree on a post's permalink, not its id."""
    number = 0
    for character in shortcode[:SHORTCODE_ID_LENGTH]:
        number = number * 64 + SHORTCODE_ALPHABET.index(character)
    return str(number)


@dataclass(frozen=True)
class Tile:
    """A post as a rendered grid shows it: a link to the post around an image. Real tiles carry no time and no
    owner id; 2025 links name the owner (`/<username>/p/<shortcode>/`), 2020 ones (`/p/<shortcode>/`) do not."""

    shortcode: str
    image_url: str
    username: str | None = None


@dataclass(frozen=True)
class WebPost:
    """A post as the web client's GraphQL hashtag JSON describes it (`edges[].node`)."""

    media_id: str
    shortcode: str
    typename: str
    taken_at: datetime
    display_url: str
    owner_id: str | None
    is_video: bool
    top: bool  # from edge_hashtag_to_top_posts, which is ordered by popularity, not time


@dataclass(frozen=True)
class PostPage:
    """What a post's own page shows: when it was posted, by whom, and its (first) image, or that it is a video."""

    taken_at: datetime | None
    owner: str | None
    image_url: str | None
    is_video: bool


def _site_path(href: str, site_url: str) -> str | None:
    """`href`'s path below the site's root, without slashes at its ends; None for a link off the site."""
    site = urlsplit(f"{site_url.rstrip('/')}/")
    target = urlsplit(urljoin(site.geturl(), href))
    if target.netloc != site.netloc or not target.path.startswith(site.path):
        return None
    return target.path[len(site.path) :].strip("/")


def parse_tag_page(page_source: str, site_url: str) -> list[Tile]:
    """The post tiles of a rendered grid (a hashtag page, a profile, "more posts"), in page order, once each.
    Links are read relative to `site_url`, so a site served below a path (the sandbox's) reads the same."""
    soup = BeautifulSoup(page_source, "html.parser")
    tiles: dict[str, Tile] = {}
    for link in soup.select("a[href]"):
        post = POST_PATH.fullmatch(_site_path(link["href"], site_url) or "")
        image = link.find("img", src=True)
        if post and image is not None and post["shortcode"] not in tiles:
            tiles[post["shortcode"]] = Tile(post["shortcode"], urljoin(site_url, image["src"]), post["username"])
    return list(tiles.values())


def _web_post(node: Any, top: bool) -> WebPost | None:
    if not isinstance(node, dict):
        return None
    stamp = node.get("taken_at_timestamp")
    if not (node.get("id") and node.get("shortcode") and node.get("display_url") and isinstance(stamp, int)):
        return None
    return WebPost(
        media_id=str(node["id"]),
        shortcode=str(node["shortcode"]),
        typename=str(node.get("__typename") or ""),
        taken_at=datetime.fromtimestamp(stamp, UTC),
        display_url=str(node["display_url"]),
        owner_id=str((node.get("owner") or {}).get("id") or "") or None,
        is_video=bool(node.get("is_video")) or node.get("__typename") == "GraphVideo",
        top=top,
    )


def parse_hashtag_json(body: Any) -> list[WebPost]:
    """The posts in one web GraphQL hashtag response: `data.hashtag` (from /graphql/query/), `graphql.hashtag`
    (the older `?__a=1` page data) or a bare `hashtag`; its recent posts, then its top posts. Any other JSON
    the page fetched holds none."""
    if not isinstance(body, dict):
        return []
    envelope = next(
        (value for value in (body.get("data"), body.get("graphql"), body) if isinstance(value, dict)),
        {},
    )
    hashtag = envelope.get("hashtag")
    if not isinstance(hashtag, dict):
        return []
    posts = []
    for edge_name, top in (("edge_hashtag_to_media", False), ("edge_hashtag_to_top_posts", True)):
        for edge in (hashtag.get(edge_name) or {}).get("edges") or []:
            post = _web_post((edge or {}).get("node"), top)
            if post is not None:
                posts.append(post)
    return posts


def _links_to_post(link: Any, site_url: str, shortcode: str) -> bool:
    post = POST_PATH.fullmatch(_site_path(link["href"], site_url) or "") if link and link.get("href") else None
    return post is not None and post["shortcode"] == shortcode


def _owner_near(stamp: Any, site_url: str) -> str | None:
    """The profile link (`/<username>/`) closest around the post's time: the caption header's, not the
    viewer's own profile link in the page's navigation."""
    for ancestor in stamp.parents:
        for link in ancestor.select("a[href]"):
            path = _site_path(link["href"], site_url)
            if path and USERNAME.fullmatch(path) and path not in NOT_USERNAMES:
                return path
    return None


def _web_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None


def parse_post_page(page_source: str, site_url: str, shortcode: str) -> PostPage:
    """A rendered post page (2025 capture). The media box's first item is the post's photo (`div._aagv img`)
    or a `video`; an album shows its cover first. The post's time is the `time[datetime]` inside its own
    permalink, since the caption header's is the caption's (a moment later); the owner is the profile link
    nearest that time."""
    soup = BeautifulSoup(page_source, "html.parser")
    media = soup.select_one("div._aagv img[src], video")
    stamps = soup.select("time[datetime]")
    stamp = next(
        (found for found in stamps if _links_to_post(found.find_parent("a"), site_url, shortcode)),
        stamps[0] if stamps else None,
    )
    is_video = media is not None and media.name == "video"
    return PostPage(
        taken_at=_web_time(stamp["datetime"]) if stamp else None,
        owner=_owner_near(stamp, site_url) if stamp else None,
        image_url=urljoin(site_url, media["src"]) if media is not None and not is_video else None,
        is_video=is_video,
    )


class _PageJson:
    """The JSON the page itself fetched, from Chromium's performance log (DevTools network events): a JSON
    response of an XHR or fetch is noted when it arrives, and its body read with `Network.getResponseBody`
    once it has finished loading. The log also holds request headers, cookie included: nothing of it is
    logged."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.arrived: set[str] = set()

    def bodies(self) -> list[Any]:
        """The JSON bodies that finished loading since the last call."""
        from selenium.common.exceptions import WebDriverException

        bodies = []
        for entry in self.driver.get_log("performance"):
            event = json.loads(entry["message"])["message"]
            params = event.get("params") or {}
            request_id = params.get("requestId")
            if event.get("method") == "Network.responseReceived":
                mime_type = (params.get("response") or {}).get("mimeType", "")
                if params.get("type") in JSON_REQUEST_TYPES and "json" in mime_type:
                    self.arrived.add(request_id)
            elif event.get("method") == "Network.loadingFinished" and request_id in self.arrived:
                self.arrived.discard(request_id)
                try:
                    answer = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": request_id})
                except WebDriverException:
                    logger.info("a JSON response was gone from the browser before its body could be read")
                    continue
                text = answer.get("body", "")
                if answer.get("base64Encoded"):
                    text = base64.b64decode(text).decode("utf-8", "replace")
                with contextlib.suppress(ValueError):
                    bodies.append(json.loads(text))
        return bodies


@contextlib.contextmanager
def _webdriver_debug_log_off() -> Iterator[None]:
    """Selenium logs every WebDriver command's payload and answer at DEBUG: the session cookie when it is set,
    and the request headers that the performance log hands back."""
    wire_log = logging.getLogger("selenium.webdriver.remote.remote_connection")
    level = wire_log.level
    wire_log.setLevel(max(logging.INFO, level))
    try:
        yield
    finally:
        wire_log.setLevel(level)


def _refuse_login_wall(driver: Any, what: str) -> None:
    if "/accounts/login" in urlsplit(driver.current_url).path:
        raise SourceUnavailable(
            f"login wall: {what} redirected to the login page; the session cookie ({SESSION_COOKIE_NAME}) was"
            " refused (expired or logged out): renew it in the connection"
        )


_COUNT_TILES = "return document.querySelectorAll('a[href*=\"/p/\"] img').length"
_STILL_LOADING = "return document.querySelector('[role=progressbar]') !== null"
_POST_SHOWN = "return document.querySelector('time[datetime]') !== null"


def _scroll_tag_page(driver: Any, tag: str, enough: Callable[[], bool], max_scrolls: int) -> None:
    """Scroll until the page stops adding posts or `enough()` says the posts read so far suffice."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def first_posts(browser: Any) -> bool:
        return browser.execute_script(_COUNT_TILES) > 0 or not browser.execute_script(_STILL_LOADING)

    try:
        WebDriverWait(driver, FIRST_POSTS_TIMEOUT_S, poll_frequency=0.1).until(first_posts)
    except TimeoutException:
        raise SourceUnavailable(
            f"the #{tag} page showed no posts within {FIRST_POSTS_TIMEOUT_S:.0f}s: Instagram's page may have changed"
        ) from None
    for _ in range(max_scrolls):
        if not driver.execute_script(_STILL_LOADING) or enough():
            return
        shown = driver.execute_script(_COUNT_TILES)
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        try:
            WebDriverWait(driver, SCROLL_SETTLE_S, poll_frequency=0.1).until(
                lambda browser, before=shown: (
                    browser.execute_script(_COUNT_TILES) > before or not browser.execute_script(_STILL_LOADING)
                )
            )
        except TimeoutException:
            logger.info("#%s: no new posts appeared after scrolling; %d shown", tag, shown)
            return
    logger.warning("#%s: stopped after %d scrolls", tag, max_scrolls)


def _browser_candidate(
    web_url: str,
    tag: str,
    shortcode: str,
    *,
    media_id: str,
    url: str,
    taken_at: datetime,
    author: str | None,
    **extra: Any,
) -> Candidate:
    return Candidate(
        source=SOURCE,
        source_id=media_id,
        url=url,
        page_url=f"{web_url}/p/{shortcode}/",
        author=author,
        license_text=LICENSE_TEXT,
        extra={"via": "browser", "hashtag": tag, "timestamp": taken_at.isoformat(), **extra},
    )


def _post_page_photo(driver: Any, web_url: str, tag: str, tile: Tile, window: Window) -> Candidate | None:
    """The photo of a tile the page's JSON did not describe, read from the post's own page; None for a video
    or a post outside the window."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    page_url = f"{web_url}/p/{tile.shortcode}/"
    driver.get(page_url)
    _refuse_login_wall(driver, f"post {tile.shortcode}")
    with contextlib.suppress(TimeoutException):
        WebDriverWait(driver, POST_PAGE_TIMEOUT_S, poll_frequency=0.1).until(
            lambda browser: browser.execute_script(_POST_SHOWN)
        )
    post = parse_post_page(driver.page_source, web_url, tile.shortcode)
    if post.is_video:
        return None
    if post.taken_at is None or post.image_url is None:
        logger.warning("%s shows no time or no photo: skipped; Instagram's post page may have changed", page_url)
        return None
    if post.taken_at not in window:
        return None
    return _browser_candidate(
        web_url,
        tag,
        tile.shortcode,
        media_id=media_id_of(tile.shortcode),
        url=post.image_url,
        taken_at=post.taken_at,
        author=tile.username or post.owner,
        read_from="post_page",
    )


def _tag_page_photos(
    driver: Any,
    page_json: _PageJson,
    config: InstagramConfig,
    http: HttpClient,
    tag: str,
    window: Window,
    wanted: int | None,
    max_scrolls: int,
) -> list[Candidate]:
    """The photos of one hashtag page posted inside `window`; once `wanted` are found, no more post pages are
    opened for them."""
    web_url = (config.web_url or "").rstrip("/")
    page_json.bodies()  # drops what earlier pages fetched
    driver.get(f"{web_url}/explore/tags/{tag}/")
    _refuse_login_wall(driver, f"the #{tag} page")
    described: dict[str, WebPost] = {}

    def enough() -> bool:
        for body in page_json.bodies():
            for post in parse_hashtag_json(body):
                described.setdefault(post.shortcode, post)
        photos = [post for post in described.values() if not post.is_video and post.taken_at in window]
        recent = [post.taken_at for post in described.values() if not post.top]
        return (wanted is not None and len(photos) >= wanted) or (bool(recent) and min(recent) < window.start)

    _scroll_tag_page(driver, tag, enough, max_scrolls)
    enough()  # the JSON that came with the last scroll
    tiles = parse_tag_page(driver.page_source, web_url)
    found, undescribed = [], []
    for tile in tiles:
        post = described.get(tile.shortcode)
        if post is None:
            undescribed.append(tile)
        elif not post.is_video and post.taken_at in window:
            found.append(
                _browser_candidate(
                    web_url,
                    tag,
                    tile.shortcode,
                    media_id=post.media_id,
                    url=post.display_url,
                    taken_at=post.taken_at,
                    author=tile.username,
                    owner_id=post.owner_id,
                    typename=post.typename,
                    read_from="graphql",
                )
            )
    logger.info(
        "#%s: %d posts shown, %d described by the page's JSON, %d photos in the window; %d post pages to open",
        tag,
        len(tiles),
        len(tiles) - len(undescribed),
        len(found),
        len(undescribed),
    )
    if undescribed and (wanted is None or len(found) < wanted):
        check_robots(config, http, [f"{web_url}/p/{tile.shortcode}/" for tile in undescribed])
    for tile in undescribed:
        if wanted is not None and len(found) >= wanted:
            break
        candidate = _post_page_photo(driver, web_url, tag, tile, window)
        if candidate is not None:
            found.append(candidate)
    return found


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
    """Photos posted inside `window` under `hashtags`, read from the rendered hashtag pages: the grid's post
    links, each described by the GraphQL JSON the page fetched as it scrolled, or else by the post's own page."""
    tags = list(dict.fromkeys(normalize_hashtag(tag) for tag in hashtags if normalize_hashtag(tag)))
    if not config.web_url:
        raise SourceUnavailable("browser mode needs the Instagram website address (web_url) in the connection")
    if not config.session_cookie:
        raise SourceUnavailable(
            "login wall: Instagram shows hashtag pages only to logged-in visitors; put an operator's session"
            f" cookie ({SESSION_COOKIE_NAME}) in the connection as session_token"
        )
    web_url = config.web_url.rstrip("/")
    check_robots(config, http, [f"{web_url}/explore/tags/{tag}/" for tag in tags])
    found: list[Candidate] = []
    agent = http.policy.user_agent
    with (
        _webdriver_debug_log_off(),
        HeadlessChromium(agent, binary=chromium_binary, driver_path=chromedriver, performance_log=True) as driver,
    ):
        # A cookie can only be set for the site the browser is on: open a light page of the host first.
        driver.get(f"{web_url}/robots.txt")
        site = urlsplit(web_url)
        cookie = {"name": SESSION_COOKIE_NAME, "value": config.session_cookie, "path": "/", "httpOnly": True}
        driver.add_cookie({**cookie, "secure": site.scheme == "https"})
        page_json = _PageJson(driver)
        for tag in tags:
            wanted = None if limit is None else limit - len(found)
            photos = _tag_page_photos(driver, page_json, config, http, tag, window, wanted, max_scrolls)
            found = unique([*found, *photos])
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


CONNECTOR = WebService(InstagramConfig.from_connection, client, SOURCE, discover_for_run, fetch)
