"""Instagram stand-in: the Graph API hashtag search, the media CDN with signed URLs, and hashtag and post web
pages that only a real browser can read, built after the real responses in `tests/captures/instagram/`.

Routes, relative to `/instagram` (production: the hosts in brackets):
- Graph API under `/graph/{version}/` [https://graph.facebook.com/{version}]:
  `GET ig_hashtag_search?user_id=&q=` gives `{"data": [{"id": "<17 digits>"}]}`; `GET {hashtag-id}` (id, name);
  `GET {hashtag-id}/recent_media` and `/top_media` with `user_id`, `fields`, `limit` (at most 50) and `after`,
  paged with `paging.cursors.after` and `paging.next`; `GET {media-id}?fields=media_url,...` (a fresh signed
  URL, for a carousel's children too); `GET {user-id}/recently_searched_hashtags`. The access token comes as
  `access_token` or in an `Authorization: Bearer` header. Errors are Graph error objects
  (`{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}`, HTTP 400):
  a missing token is code 104, a token that is not the sandbox's is code 190, an unknown node is code 100
  with subcode 33, and a field the node does not have is code 100 (hashtag media never carry `username`).
  Fields may be expanded as Meta's are: `children{id,media_type,media_url,permalink,timestamp}`. As in the
  captures, a `CAROUSEL_ALBUM` has no `media_url` of its own, its items are in `children.data[]`, each with
  its own id and shortcode, and an item may be a `VIDEO`; media that are not albums carry no `children`.
- The 30-hashtag budget: each Instagram account may query at most 30 unique hashtags per rolling 7 days;
  a hashtag counts from its first `ig_hashtag_search`, and searching it again in those 7 days is free. The
  31st new hashtag is refused with HTTP 400, `OAuthException`, code 24, subcode 2207034. Meta documents the
  limit but not this error's code and subcode (its error table does not list it), so those two numbers are
  the stand-in's own; the connector keeps its own ledger and stops before it would get this error.
- Media CDN [scontent.cdninstagram.com]: `GET /cdn/{media-id}.jpg?oh=<hmac>&oe=<hex unix expiry>`, and with
  `stp=dst-jpg_e35_s{N}x{N}` a copy N pixels wide (the web's thumbnails). A bad signature is 403 "Bad URL
  hash", a good one past its expiry 403 "URL signature expired". URLs live `url_ttl_s` seconds (an hour
  unless changed), so a URL found by discovery can expire before it is fetched.
- Web [www.instagram.com]: `GET /robots.txt` (named search crawlers only, `User-agent: *` disallowed);
  `GET /explore/tags/{tag}/` without the `sessionid` cookie redirects (302) to `/accounts/login/?next=...`.
  With it, an HTML shell that carries the first page of posts as data (`window._sharedData`, as the real
  page did), which its JavaScript renders into grid tiles; scrolling the progress bar into view fetches
  further pages from `GET /graphql/query/?query_hash=<hashtag query>&variables={"tag_name","first","after"}`
  (cookie and `X-IG-App-ID` header required), until `has_next_page` is false. Both carry the web GraphQL
  hashtag object of the 2022 capture: `edge_hashtag_to_media{count, page_info{has_next_page, end_cursor},
  edges[].node}` and `edge_hashtag_to_top_posts`, whose nodes have `__typename` (GraphImage, GraphVideo,
  GraphSidecar with its cover only), `id` (the web media id, which the shortcode encodes, not the Graph
  API's id), `shortcode`, `taken_at_timestamp`, `display_url`, `thumbnail_resources`, `dimensions`,
  `owner{id}` (no username), `is_video` and `accessibility_caption`. A tile is what a real one is, a link
  around an image: `<a href="/p/<shortcode>/"><div class="_aagu"><div class="_aagv"><img alt src srcset>`,
  with no time, owner or id; an album's tile adds `svg[aria-label="Carousel"]`. A plain HTTP fetch of the
  page sees no tiles.
  `GET /p/{shortcode}/` (and `/{username}/p/{shortcode}/`) is the post page, marked up like the 2025
  capture: the media box (`div._aagv img`, or a `video`), the caption header with the owner's link
  `a[href="/<username>/"]` and a `time[datetime]` a second after the post's, and the permalink
  `/<username>/p/<shortcode>/` around the post's own `time[datetime]` (`2025-08-15T14:01:23.000Z`). Every
  page also links to the logged-in viewer's own profile. A carousel item's shortcode opens its album's page.
- Admin (tests only): `POST /_admin/reset` clears the hashtag budgets and counters and restores the
  defaults; `POST /_admin/config {"url_ttl_s": N, "now": "<ISO time>"}` changes the URL lifetime and moves
  the service's clock (it keeps ticking from there); `GET /_admin/stats` counts hashtag searches and the
  GraphQL hashtag pages served.

Media come from the photo library: a photo's hashtags are its keywords, its owner is the library author.
Posting times: the library spreads photos over 30 days, but recent_media only reaches 24 hours back, which
would leave about 12 photos, one or two per hashtag, in reach. Instagram is busier than that, so here the
library's 30 days are compressed, order kept, into the 4 days that end at midnight after the library's
anchor date: a post's time is `day_end - (day_end - created_at) * 4 / 31`, between 3 days before the anchor
date and about 21:00 on it. About a quarter of all posts (some 10 for a 40-photo hashtag) fall in any
24 hours, so a daily run for yesterday, made soon after midnight, finds about a day's posts. Posts whose
time is still ahead of the service's clock are not published yet and appear nowhere. Every tenth post
(numbers ending in 7) is a VIDEO; the stand-in has no video bytes, so the CDN answers 404 for them. Every
tenth (numbers ending in 3) is a CAROUSEL_ALBUM of three items: its own photo, a VIDEO, and the next
variant of the same photo (number + 9, which is then no post of its own).
Ids: Graph media ids are 17 digits; the web's media id (pk) is a different number, as in the captures, and
encodes the posting time the way Instagram's does ((milliseconds since Instagram's epoch) << 23, plus 23
low bits); the shortcode is that pk in base 64 (alphabet `A-Z a-z 0-9 - _`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from functools import cached_property, wraps
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from sandbox.credentials import INSTAGRAM_ACCESS_TOKEN, INSTAGRAM_SESSION_COOKIE, INSTAGRAM_USER_ID
from sandbox.library import DAYS_SPANNED, LibraryPhoto, PhotoLibrary

PREFIX = "instagram"

HASHTAG_LIMIT = 30
HASHTAG_PERIOD = timedelta(days=7)
HASHTAG_LIMIT_CODE = 24
HASHTAG_LIMIT_SUBCODE = 2207034
DEFAULT_URL_TTL_S = 3600
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 50  # Meta: "Responses are paginated with a maximum limit of 50 results per page."
RECENT_REACH = timedelta(hours=24)  # Meta: recent_media "only returns media objects published within 24 hours"
WEB_PAGE_SIZE = 12
TOP_POSTS = 9  # the hashtag page's "Top posts" grid
SPREAD_DAYS = 4
SESSION_COOKIE_NAME = "sessionid"
VIEWER_USERNAME = "colorflow.operator"  # whose session the sandbox cookie is
WEB_APP_ID = "936619743392459"  # the id Instagram's web client sends as X-IG-App-ID
# The web client's persisted GraphQL query for a hashtag's posts (as scrapers of 2019-2022 send it).
HASHTAG_QUERY_HASH = "9b498c08113f1e09617a1703c22b2f32"
INSTAGRAM_EPOCH_MS = 1314220021721  # checked: the captures' shortcodes decode to their posting times with it
SHORTCODE_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
THUMBNAIL_WIDTHS = (150, 240, 320, 480, 640)  # the 2020 tile's srcset and the 2022 thumbnail_resources
THUMBNAIL_STP = re.compile(r"dst-jpg_e35_s(\d+)x\d+")
CAROUSEL_EVERY = 10
CAROUSEL_DIGIT = 3
CAROUSEL_PARTNER = 9  # a carousel's third item is the next variant of the same library photo
# Fields a hashtag edge may return (Meta: "You cannot request the username field on returned media objects").
EDGE_FIELDS = frozenset(
    {"id", "media_type", "media_url", "permalink", "caption", "timestamp", "like_count", "comments_count", "children"}
)
NODE_FIELDS = EDGE_FIELDS | {"username"}
CHILD_FIELDS = frozenset({"id", "media_type", "media_url", "permalink", "timestamp"})
DEFAULT_MEDIA_FIELDS = ("id",)
WEB_TYPENAMES = {"IMAGE": "GraphImage", "VIDEO": "GraphVideo", "CAROUSEL_ALBUM": "GraphSidecar"}
TAG_PAGE_TEMPLATE = Path(__file__).with_name("instagram_tag_page.html")
POST_PAGE_TEMPLATE = Path(__file__).with_name("instagram_post_page.html")
ROBOTS_TXT = """\
# Notice: collecting data from this site by automated means is not allowed unless you hold express
# written permission, and then only for the purpose that permission names.

User-agent: Googlebot
Disallow: /api/
Disallow: /accounts/
Disallow: /explore/

User-agent: Bingbot
Disallow: /api/
Disallow: /accounts/
Disallow: /explore/

User-agent: DuckDuckBot
Disallow: /api/
Disallow: /accounts/
Disallow: /explore/

User-agent: Applebot
Disallow: /api/
Disallow: /accounts/

User-agent: facebookexternalhit
Disallow: /api/

User-agent: *
Disallow: /
"""

LOGIN_PAGE = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Login • Instagram (sandbox)</title></head>
<body><main>
<h1>Instagram</h1>
<form method="post" action="">
  <input type="hidden" name="next" value="{next}">
  <label>Phone number, username, or email <input name="username" autocomplete="username"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label>
  <button type="submit">Log in</button>
</form>
<p>Log in to see photos and videos from friends.</p>
</main></body></html>
"""


@dataclass(frozen=True)
class InstagramMedia:
    """One post, or one item of a carousel album, as the stand-in serves it, derived from a library photo
    (`number`: the photo whose bytes it shows)."""

    number: int
    media_id: str
    web_id: str
    shortcode: str
    timestamp: datetime
    media_type: str
    owner: str
    owner_name: str
    hashtags: tuple[str, ...]
    caption: str
    like_count: int
    comments_count: int
    children: tuple[InstagramMedia, ...] = ()

    @property
    def cover(self) -> InstagramMedia:
        """What a grid shows for the post: an album's first item, else the post itself."""
        return self.children[0] if self.children else self


def hashtag_id(tag: str) -> str:
    """The static, global id of a hashtag, 17 digits like Meta's (the same for every app and user)."""
    digest = int(hashlib.sha256(f"instagram-hashtag:{tag}".encode()).hexdigest(), 16)
    return f"178{digest % 10**14:014d}"


def media_id(number: int, item: int | None = None) -> str:
    """A Graph API media id, 17 digits; carousel items get their own."""
    return f"179{number:014d}" if item is None else f"18{item}{number:014d}"


def web_media_id(moment: datetime, number: int, item: int | None = None) -> int:
    """The web's media id (pk): milliseconds since Instagram's epoch in the high bits, as real ids carry them.
    A carousel's items were created a millisecond or so after it."""
    milliseconds = round(moment.timestamp() * 1000) + (0 if item is None else item + 1)
    return ((milliseconds - INSTAGRAM_EPOCH_MS) << 23) | (number % 2**23)


def shortcode_of(pk: int) -> str:
    """A post's shortcode: its web media id in base 64."""
    digits = ""
    while pk:
        pk, digit = divmod(pk, 64)
        digits = SHORTCODE_ALPHABET[digit] + digits
    return digits or SHORTCODE_ALPHABET[0]


def owner_id(username: str) -> str:
    """An account's numeric id, 11 digits like the 2022 capture's `owner.id`."""
    digest = int(hashlib.sha256(f"instagram-user:{username}".encode()).hexdigest(), 16)
    return str(10**10 + digest % (9 * 10**10))


def normalize_tag(text: str) -> str:
    return text.strip().lstrip("#").lower()


def _post_time(photo: LibraryPhoto, day_end: datetime) -> datetime:
    age = (day_end - photo.created_at) * SPREAD_DAYS / (DAYS_SPANNED + 1)
    return (day_end - age).replace(microsecond=0)


def graph_timestamp(moment: datetime) -> str:
    """Graph API time format: `2026-11-22T10:00:00+0000`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def web_timestamp(moment: datetime) -> str:
    """A post page's `time[datetime]`: `2025-08-15T14:01:23.000Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_fields(text: str) -> list[tuple[str, str | None]]:
    """Meta's field list, `a,b,children{c,d}`, as (name, the text inside its braces or None)."""
    fields, depth, current = [], 0, ""
    for character in f"{text},":
        if character == "," and depth == 0:
            name, _, inner = current.strip().partition("{")
            if name:
                fields.append((name.strip(), inner[:-1] if inner.endswith("}") else None))
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(character, 0)
        current += character
    return fields


class _GraphFailure(Exception):
    """Raised inside a Graph endpoint to answer with a Graph error object."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__("graph error")
        self.response = response


def graph_error(
    message: str, code: int, subcode: int | None = None, kind: str = "OAuthException", status: int = 400
) -> _GraphFailure:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = False
    error["fbtrace_id"] = secrets.token_urlsafe(9)
    headers = {}
    if code == 190:
        headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{message}"'
    return _GraphFailure(JSONResponse({"error": error}, status_code=status, headers=headers))


def _graph_endpoint(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a raised `_GraphFailure` into its response (routers have no exception handlers of their own)."""

    @wraps(function)
    def answer(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except _GraphFailure as failure:
            return failure.response

    return answer


class ConfigChange(BaseModel):
    url_ttl_s: int | None = Field(default=None, ge=0, description="Lifetime of signed CDN URLs in seconds.")
    now: datetime | None = Field(default=None, description="Move the service clock to this time (keeps ticking).")


class InstagramService:
    """The stand-in's data and state: posts, hashtag budgets, URL signing and its clock."""

    def __init__(self, library: PhotoLibrary) -> None:
        self.library = library
        self._signing_key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._tags_by_id = {hashtag_id(tag): tag for photo in library.photos for tag in photo.keywords}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.url_ttl_s = DEFAULT_URL_TTL_S
            self._clock_offset = timedelta()
            self._searched: dict[str, dict[str, datetime]] = {}
            self.hashtag_searches = 0
            self.graphql_pages = 0

    def configure(self, change: ConfigChange) -> None:
        with self._lock:
            if change.url_ttl_s is not None:
                self.url_ttl_s = change.url_ttl_s
            if change.now is not None:
                moment = change.now if change.now.tzinfo else change.now.replace(tzinfo=UTC)
                self._clock_offset = moment - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def count_graphql_page(self) -> None:
        with self._lock:
            self.graphql_pages += 1

    def _carousel_partner(self, number: int) -> int | None:
        partner = number + CAROUSEL_PARTNER
        if number % CAROUSEL_EVERY == CAROUSEL_DIGIT and partner < len(self.library.photos):
            return partner
        return None

    def _media(self, photo: LibraryPhoto, day_end: datetime) -> InstagramMedia:
        posted = _post_time(photo, day_end)
        pk = web_media_id(posted, photo.number)
        tags = photo.keywords
        post = InstagramMedia(
            number=photo.number,
            media_id=media_id(photo.number),
            web_id=str(pk),
            shortcode=shortcode_of(pk),
            timestamp=posted,
            media_type="VIDEO" if photo.number % 10 == 7 else "IMAGE",
            owner=photo.author_username,
            owner_name=photo.author_name,
            hashtags=tags,
            caption=f"{photo.slug.replace('-', ' ')} " + " ".join(f"#{tag}" for tag in tags),
            like_count=(photo.number * 7919 + 13) % 4000,
            comments_count=(photo.number * 104729) % 90,
        )
        partner = self._carousel_partner(photo.number)
        if partner is None:
            return post
        items = []
        for item, (number, media_type) in enumerate(
            ((photo.number, "IMAGE"), (photo.number, "VIDEO"), (partner, "IMAGE"))
        ):
            item_pk = web_media_id(posted, photo.number, item)
            items.append(
                replace(
                    post,
                    number=number,
                    media_id=media_id(photo.number, item),
                    web_id=str(item_pk),
                    shortcode=shortcode_of(item_pk),
                    media_type=media_type,
                )
            )
        return replace(post, media_type="CAROUSEL_ALBUM", children=tuple(items))

    @cached_property
    def media(self) -> list[InstagramMedia]:
        """Every post, newest first."""
        day_end = datetime.combine(self.library.anchor, time(), tzinfo=UTC) + timedelta(days=1)
        photos = self.library.photos
        in_albums = {partner for photo in photos if (partner := self._carousel_partner(photo.number)) is not None}
        posts = [self._media(photo, day_end) for photo in photos if photo.number not in in_albums]
        return sorted(posts, key=lambda post: (post.timestamp, post.number), reverse=True)

    @cached_property
    def _by_id(self) -> dict[str, InstagramMedia]:
        """Posts and carousel items by Graph media id."""
        return {item.media_id: item for post in self.media for item in (post, *post.children)}

    @cached_property
    def _by_shortcode(self) -> dict[str, InstagramMedia]:
        """Posts by their shortcode and by their carousel items' shortcodes."""
        return {item.shortcode: post for post in self.media for item in (post, *post.children)}

    def published(self, post: InstagramMedia | None) -> InstagramMedia | None:
        return post if post is not None and post.timestamp <= self.now() else None

    def post(self, media_id: str) -> InstagramMedia | None:
        return self.published(self._by_id.get(media_id))

    def post_by_shortcode(self, shortcode: str) -> InstagramMedia | None:
        return self.published(self._by_shortcode.get(shortcode))

    def tagged(self, tag: str) -> list[InstagramMedia]:
        """Published posts with `tag`, newest first."""
        now = self.now()
        return [post for post in self.media if tag in post.hashtags and post.timestamp <= now]

    def recent(self, tag: str) -> list[InstagramMedia]:
        oldest = self.now() - RECENT_REACH
        return [post for post in self.tagged(tag) if post.timestamp >= oldest]

    def top(self, tag: str) -> list[InstagramMedia]:
        return sorted(self.tagged(tag), key=lambda post: (-post.like_count, post.number))

    def tag_for_id(self, node_id: str) -> str | None:
        with self._lock:
            return self._tags_by_id.get(node_id)

    def search_hashtag(self, user_id: str, tag: str) -> str:
        """The hashtag's id, spending one of the user's 30 weekly hashtags if it is new to them."""
        with self._lock:
            now = self.now()
            searched = self._searched.setdefault(user_id, {})
            for old_tag, first in list(searched.items()):
                if now - first >= HASHTAG_PERIOD:
                    del searched[old_tag]
            if tag not in searched:
                if len(searched) >= HASHTAG_LIMIT:
                    raise graph_error(
                        f"(#{HASHTAG_LIMIT_CODE}) This Instagram account has reached the limit of {HASHTAG_LIMIT}"
                        " unique hashtags it can query within a rolling 7 day period",
                        HASHTAG_LIMIT_CODE,
                        HASHTAG_LIMIT_SUBCODE,
                    )
                searched[tag] = now
            self.hashtag_searches += 1
            found = hashtag_id(tag)
            self._tags_by_id[found] = tag
            return found

    def recently_searched(self, user_id: str) -> list[str]:
        with self._lock:
            now = self.now()
            searched = self._searched.get(user_id, {})
            return [hashtag_id(tag) for tag, first in searched.items() if now - first < HASHTAG_PERIOD]

    def sign(self, filename: str, stp: str = "") -> tuple[str, str]:
        """`oh` and `oe` for a CDN file: an HMAC over the name, the variant asked for and the hex expiry."""
        expiry = f"{int(self.now().timestamp()) + self.url_ttl_s:08x}"
        return self._digest(filename, stp, expiry), expiry

    def _digest(self, filename: str, stp: str, expiry: str) -> str:
        message = f"{filename}:{stp}:{expiry}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()[:32]

    def check_signature(self, filename: str, stp: str, oh: str | None, oe: str | None) -> str | None:
        """None when the URL is valid, else the CDN's 403 text."""
        if not oh or not oe or not hmac.compare_digest(self._digest(filename, stp, oe), oh):
            return "Bad URL hash"
        try:
            expiry = int(oe, 16)
        except ValueError:
            return "Bad URL hash"
        if int(self.now().timestamp()) >= expiry:
            return "URL signature expired"
        return None


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int | None:
    """The position a cursor stands for; None for a cursor the service never gave."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    kind, _, value = text.partition(":")
    return int(value) if kind == "offset" and value.isdigit() else None


def _fill(template: Path, values: dict[str, str]) -> str:
    page = template.read_text(encoding="utf-8")
    for placeholder, value in values.items():
        page = page.replace(placeholder, value)
    return page


def create_router(library: PhotoLibrary) -> APIRouter:
    service = InstagramService(library)
    router = APIRouter(tags=["instagram"])

    def media_url(
        request: Request, post: InstagramMedia, extension: str | None = None, width: int | None = None
    ) -> str:
        filename = f"{post.media_id}.{extension or ('mp4' if post.media_type == 'VIDEO' else 'jpg')}"
        stp = f"dst-jpg_e35_s{width}x{width}" if width else ""
        oh, oe = service.sign(filename, stp)
        variant = f"stp={stp}&" if stp else ""
        return f"{request.url_for('instagram_cdn', filename=filename)}?{variant}oh={oh}&oe={oe}"

    def permalink(request: Request, post: InstagramMedia) -> str:
        return str(request.url_for("instagram_post", shortcode=post.shortcode))

    def media_fields(request: Request, post: InstagramMedia, fields: list[tuple[str, str | None]]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, inner in fields:
            if name == "id":
                values["id"] = post.media_id
            elif name == "media_type":
                values["media_type"] = post.media_type
            elif name == "media_url" and post.media_type != "CAROUSEL_ALBUM":
                values["media_url"] = media_url(request, post)
            elif name == "permalink":
                values["permalink"] = permalink(request, post)
            elif name == "caption":
                values["caption"] = post.caption
            elif name == "timestamp":
                values["timestamp"] = graph_timestamp(post.timestamp)
            elif name == "like_count":
                values["like_count"] = post.like_count
            elif name == "comments_count":
                values["comments_count"] = post.comments_count
            elif name == "username":
                values["username"] = post.owner
            elif name == "children" and post.children:
                item_fields = checked_fields(inner, CHILD_FIELDS, "ShadowIGMedia")
                values["children"] = {"data": [media_fields(request, item, item_fields) for item in post.children]}
        values.setdefault("id", post.media_id)
        return values

    def authenticate(request: Request, access_token: str | None) -> None:
        token = access_token
        header = request.headers.get("Authorization", "")
        if not token and header.split(" ", 1)[0].lower() in ("bearer", "oauth"):
            token = header.split(" ", 1)[1].strip() if " " in header else ""
        if not token:
            raise graph_error("An access token is required to request this resource.", 104)
        if not hmac.compare_digest(token.encode(), INSTAGRAM_ACCESS_TOKEN.encode()):
            raise graph_error("Invalid OAuth access token - Cannot parse access token", 190)

    def require_user(user_id: str | None) -> str:
        if not user_id:
            raise graph_error("(#100) The parameter user_id is required", 100)
        if user_id != INSTAGRAM_USER_ID:
            raise graph_error(
                f"(#100) user_id {user_id} is not an Instagram Business or Creator account this token can act for",
                100,
            )
        return user_id

    def checked_fields(text: str | None, allowed: frozenset[str], node_type: str) -> list[tuple[str, str | None]]:
        fields = parse_fields(text or "") or [(name, None) for name in DEFAULT_MEDIA_FIELDS]
        for name, inner in fields:
            if name not in allowed or (inner is not None and name != "children"):
                raise graph_error(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})", 100)
        return fields

    def unknown_node(node_id: str) -> _GraphFailure:
        return graph_error(
            f"Unsupported get request. Object with ID '{node_id}' does not exist, cannot be loaded due to missing"
            " permissions, or does not support this operation. Please read the Graph API documentation at"
            " https://developers.facebook.com/docs/graph-api",
            100,
            33,
            kind="GraphMethodException",
        )

    @router.get("/graph/{version}/ig_hashtag_search", name="instagram_hashtag_search")
    @_graph_endpoint
    def hashtag_search(
        request: Request,
        version: str,
        user_id: str | None = None,
        q: str | None = None,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        authenticate(request, access_token)
        user = require_user(user_id)
        tag = normalize_tag(q or "")
        if not tag or not tag.replace("_", "").isalnum():
            raise graph_error("(#100) Param q must be a hashtag name without spaces or symbols", 100)
        return {"data": [{"id": service.search_hashtag(user, tag)}]}

    @router.get("/graph/{version}/{node_id}", name="instagram_graph_node")
    @_graph_endpoint
    def graph_node(
        request: Request, version: str, node_id: str, fields: str | None = None, access_token: str | None = None
    ) -> dict[str, Any]:
        authenticate(request, access_token)
        tag = service.tag_for_id(node_id)
        if tag is not None:
            names = [name for name, _ in checked_fields(fields, frozenset({"id", "name"}), "ShadowIGHashtag")]
            return {"id": node_id, **({"name": tag} if "name" in names else {})}
        post = service.post(node_id)
        if post is not None:
            return media_fields(request, post, checked_fields(fields, NODE_FIELDS, "ShadowIGMedia"))
        if node_id == INSTAGRAM_USER_ID:
            return {"id": node_id}
        raise unknown_node(node_id)

    @router.get("/graph/{version}/{node_id}/{edge}", name="instagram_graph_edge")
    @_graph_endpoint
    def graph_edge(
        request: Request,
        version: str,
        node_id: str,
        edge: str,
        user_id: str | None = None,
        fields: str | None = None,
        limit: int | None = None,
        after: str | None = None,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        authenticate(request, access_token)
        if node_id == INSTAGRAM_USER_ID and edge == "recently_searched_hashtags":
            return {"data": [{"id": found} for found in service.recently_searched(node_id)]}
        tag = service.tag_for_id(node_id)
        if tag is None:
            raise unknown_node(node_id)
        if edge not in ("recent_media", "top_media"):
            raise graph_error(f"(#100) Tried accessing nonexisting field ({edge}) on node type (ShadowIGHashtag)", 100)
        require_user(user_id)
        names = checked_fields(fields, EDGE_FIELDS, "ShadowIGMedia")
        size = min(max(limit or DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)
        posts = service.recent(tag) if edge == "recent_media" else service.top(tag)
        start = _offset(after)
        if start is None:
            raise graph_error("(#100) The after cursor is not valid", 100)
        page = posts[start : start + size]
        answer: dict[str, Any] = {"data": [media_fields(request, post, names) for post in page]}
        if start + size < len(posts):
            cursor = _cursor(start + size)
            answer["paging"] = {
                "cursors": {"after": cursor},
                "next": str(request.url.include_query_params(after=cursor, limit=size)),
            }
        return answer

    @router.get("/cdn/{filename}", name="instagram_cdn")
    def cdn(filename: str, oh: str | None = None, oe: str | None = None, stp: str = "") -> Response:
        refusal = service.check_signature(filename, stp, oh, oe)
        if refusal:
            return PlainTextResponse(refusal, status_code=403)
        stem, _, extension = filename.partition(".")
        post = service.post(stem)
        thumbnail = THUMBNAIL_STP.fullmatch(stp)
        if post is None or extension != "jpg" or (stp and not thumbnail):
            return PlainTextResponse("Not Found", status_code=404)
        data = library.encode(post.number, width=int(thumbnail.group(1)) if thumbnail else None)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=1209600"})

    @router.get("/robots.txt", name="instagram_robots")
    def robots() -> PlainTextResponse:
        return PlainTextResponse(ROBOTS_TXT)

    @router.get("/accounts/login/", name="instagram_login")
    def login(next_path: str = Query("/", alias="next")) -> HTMLResponse:
        return HTMLResponse(LOGIN_PAGE.format(next=html.escape(next_path)))

    def logged_in(request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE_NAME, "")
        return hmac.compare_digest(cookie.encode(), INSTAGRAM_SESSION_COOKIE.encode())

    def site_base(request: Request) -> str:
        """The site's root path (`/instagram` here, empty on the real host), for the links pages carry."""
        return request.url_for("instagram_robots").path.removesuffix("/robots.txt")

    def web_node(request: Request, post: InstagramMedia) -> dict[str, Any]:
        """A post as the web GraphQL hashtag JSON describes it: an album by its cover only."""
        cover = post.cover
        width, height = library.size(cover.number)
        thumbnails = [
            {"src": media_url(request, cover, "jpg", size), "config_width": size, "config_height": size}
            for size in THUMBNAIL_WIDTHS
        ]
        # As in the capture, an album's node has no `comments_disabled`.
        return {
            **({} if post.children else {"comments_disabled": False}),
            "__typename": WEB_TYPENAMES[post.media_type],
            "id": post.web_id,
            "edge_media_to_caption": {"edges": [{"node": {"text": post.caption}}]},
            "shortcode": post.shortcode,
            "edge_media_to_comment": {"count": post.comments_count},
            "taken_at_timestamp": int(post.timestamp.timestamp()),
            "dimensions": {"height": height, "width": width},
            "display_url": media_url(request, cover, "jpg"),
            "edge_liked_by": {"count": post.like_count},
            "edge_media_preview_like": {"count": post.like_count},
            "owner": {"id": owner_id(post.owner)},
            "thumbnail_src": thumbnails[-1]["src"],
            "thumbnail_resources": thumbnails,
            "is_video": post.media_type == "VIDEO",
            "accessibility_caption": f"Photo by {post.owner_name} on {post.timestamp:%B} {post.timestamp.day},"
            f" {post.timestamp:%Y}.",
        }

    def web_hashtag(request: Request, tag: str, start: int, size: int) -> dict[str, Any]:
        """The web GraphQL hashtag object with one page of its recent posts, in the 2022 capture's shape."""
        posts = service.tagged(tag)
        top = service.top(tag)[:TOP_POSTS]
        more = start + size < len(posts)
        return {
            "id": hashtag_id(tag),
            "name": tag,
            "allow_following": False,
            "is_following": False,
            "is_top_media_only": False,
            "profile_pic_url": media_url(request, top[0].cover, "jpg", THUMBNAIL_WIDTHS[0]) if top else "",
            "edge_hashtag_to_media": {
                "count": len(posts),
                "page_info": {"has_next_page": more, "end_cursor": _cursor(start + size) if more else None},
                "edges": [{"node": web_node(request, post)} for post in posts[start : start + size]],
            },
            "edge_hashtag_to_top_posts": {"edges": [{"node": web_node(request, post)} for post in top]},
            "edge_hashtag_to_content_advisory": {"count": 0, "edges": []},
            "edge_hashtag_to_related_tags": {"edges": []},
            "edge_hashtag_to_null_state": {"edges": []},
        }

    @router.get("/explore/tags/{tag}/", name="instagram_tag_page")
    def tag_page(request: Request, tag: str) -> Response:
        if not logged_in(request):
            login_url = request.url_for("instagram_login")
            return RedirectResponse(f"{login_url}?next={quote(request.url.path, safe='')}", status_code=302)
        name = normalize_tag(tag)
        first_page = {
            "entry_data": {"TagPage": [{"graphql": {"hashtag": web_hashtag(request, name, 0, WEB_PAGE_SIZE)}}]}
        }
        values = {
            "__TAG__": html.escape(name),
            "__COUNT__": str(len(service.tagged(name))),
            "__API__": html.escape(request.url_for("instagram_graphql").path),
            "__QUERY_HASH__": HASHTAG_QUERY_HASH,
            "__PAGE_SIZE__": str(WEB_PAGE_SIZE),
            "__BASE__": html.escape(site_base(request)),
            "__APP_ID__": WEB_APP_ID,
            # `<` escaped so that no text in the data can close the script element.
            "__SHARED_DATA__": json.dumps(first_page).replace("<", "\\u003c"),
        }
        return HTMLResponse(_fill(TAG_PAGE_TEMPLATE, values))

    @router.get("/graphql/query/", name="instagram_graphql")
    def graphql_query(request: Request, query_hash: str = "", variables: str = "{}") -> JSONResponse:
        if not logged_in(request):
            refusal = {"message": "Please wait a few minutes before you try again.", "require_login": True}
            return JSONResponse({**refusal, "status": "fail"}, status_code=401)
        if request.headers.get("X-IG-App-ID") != WEB_APP_ID:
            return JSONResponse({"message": "useragent mismatch", "status": "fail"}, status_code=400)
        try:
            asked = json.loads(variables)
        except ValueError:
            asked = None
        if query_hash != HASHTAG_QUERY_HASH or not isinstance(asked, dict):
            return JSONResponse({"message": "invalid query", "status": "fail"}, status_code=400)
        start = _offset(asked.get("after"))
        size = asked.get("first", WEB_PAGE_SIZE)
        if start is None or not isinstance(size, int):
            return JSONResponse({"message": "invalid variables", "status": "fail"}, status_code=400)
        service.count_graphql_page()
        hashtag = web_hashtag(request, normalize_tag(str(asked.get("tag_name", ""))), start, min(max(size, 1), 50))
        return JSONResponse({"data": {"hashtag": hashtag}, "status": "ok"})

    def slide(request: Request, item: InstagramMedia) -> str:
        """One item of a post page's media box, marked up as in the 2025 capture."""
        if item.media_type == "VIDEO":
            source = html.escape(media_url(request, item))
            return f'<div class="x5yr21d"><video playsinline preload="none" src="{source}"></video></div>'
        width, height = library.size(item.number)
        return (
            f'<div class="_aagu"><div class="_aagv" style="padding-bottom: {100 * height / width:.3f}%;">'
            f'<img alt="Photo by {html.escape(item.owner_name)}." crossorigin="anonymous"'
            f' src="{html.escape(media_url(request, item))}" style="object-fit: cover;"></div>'
            '<div class="_aagw"></div></div>'
        )

    def ago(moment: datetime) -> tuple[str, str]:
        """How the page words a time: short ("22h"), and long ("22 hours ago")."""
        hours = int((service.now() - moment).total_seconds() // 3600)
        if hours < 24:
            return f"{hours}h", f"{hours} hours ago"
        return f"{hours // 24}d", f"{hours // 24} days ago"

    @router.get("/p/{shortcode}/", name="instagram_post")
    @router.get("/{username}/p/{shortcode}/", name="instagram_user_post")
    def post_page(request: Request, shortcode: str, username: str | None = None) -> HTMLResponse:
        post = service.post_by_shortcode(shortcode)
        if post is None or username not in (None, post.owner):
            return HTMLResponse("<!DOCTYPE html><title>Page not found</title><h1>Page not found</h1>", 404)
        caption_time = post.timestamp + timedelta(seconds=1)  # as in the capture: the caption follows the post
        short, long = ago(post.timestamp)
        slides = [slide(request, item) for item in (post.children or (post,))]
        values = {
            "__TITLE__": html.escape(f"{post.owner_name} on Instagram: \u201c{post.caption}\u201d"),
            "__BASE__": html.escape(site_base(request)),
            "__VIEWER__": VIEWER_USERNAME,
            "__SLIDES__": "".join(f"<li>{markup}</li>" for markup in slides),
            "__OWNER__": html.escape(post.owner),
            "__CAPTION__": html.escape(post.caption),
            "__CAPTION_TIME__": web_timestamp(caption_time),
            "__POST_TIME__": web_timestamp(post.timestamp),
            "__DAY__": f"{post.timestamp:%b} {post.timestamp.day}, {post.timestamp:%Y}",
            "__AGO_SHORT__": short,
            "__AGO_LONG__": long,
            "__CODE__": post.shortcode,
        }
        return HTMLResponse(_fill(POST_PAGE_TEMPLATE, values))

    @router.post("/_admin/reset", status_code=204, name="instagram_admin_reset")
    def admin_reset() -> None:
        service.reset()

    @router.post("/_admin/config", name="instagram_admin_config")
    def admin_config(change: ConfigChange) -> dict[str, Any]:
        service.configure(change)
        return {"url_ttl_s": service.url_ttl_s, "now": service.now().isoformat()}

    @router.get("/_admin/stats", name="instagram_admin_stats")
    def admin_stats() -> dict[str, Any]:
        return {
            "hashtag_searches": service.hashtag_searches,
            "graphql_pages": service.graphql_pages,
            "now": service.now().isoformat(),
        }

    return router
