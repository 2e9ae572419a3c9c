"""Instagram stand-in: the Graph API hashtag search, the media CDN with signed URLs, and a hashtag web page
that only a real browser can read.

Routes, relative to `/instagram` (production: the hosts in brackets):
- Graph API under `/graph/{version}/` [https://graph.facebook.com/{version}]:
  `GET ig_hashtag_search?user_id=&q=` gives `{"data": [{"id": "<17 digits>"}]}`; `GET {hashtag-id}` (id, name);
  `GET {hashtag-id}/recent_media` and `/top_media` with `user_id`, `fields`, `limit` (at most 50) and `after`,
  paged with `paging.cursors.after` and `paging.next`; `GET {media-id}?fields=media_url,...` (a fresh signed
  URL); `GET {user-id}/recently_searched_hashtags`. The access token comes as `access_token` or in an
  `Authorization: Bearer` header. Errors are Graph error objects
  (`{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}`, HTTP 400):
  a missing token is code 104, a token that is not the sandbox's is code 190, an unknown node is code 100
  with subcode 33, and a field the node does not have is code 100 (hashtag media never carry `username`).
- The 30-hashtag budget: each Instagram account may query at most 30 unique hashtags per rolling 7 days;
  a hashtag counts from its first `ig_hashtag_search`, and searching it again in those 7 days is free. The
  31st new hashtag is refused with HTTP 400, `OAuthException`, code 24, subcode 2207034. Meta documents the
  limit but not this error's code and subcode (its error table does not list it), so those two numbers are
  the stand-in's own; the connector keeps its own ledger and stops before it would get this error.
- Media CDN [scontent.cdninstagram.com]: `GET /cdn/{media-id}.jpg?oh=<hmac>&oe=<hex unix expiry>`. A bad
  signature is 403 "Bad URL hash", a good one past its expiry 403 "URL signature expired". URLs live
  `url_ttl_s` seconds (an hour unless changed), so a URL found by discovery can expire before it is fetched.
- Web [www.instagram.com]: `GET /robots.txt` (named search crawlers only, `User-agent: *` disallowed);
  `GET /explore/tags/{tag}/` without the `sessionid` cookie redirects (302) to `/accounts/login/?next=...`;
  with it, an HTML shell whose grid is empty until its JavaScript fetches `GET /api/v1/tags/web_info/
  ?tag_name=&max_id=` (cookie and `X-IG-App-ID` header required) 12 posts at a time, appending more as the
  spinner at the bottom scrolls into view, until the tag is exhausted. A plain HTTP fetch sees no posts.
- Admin (tests only): `POST /_admin/reset` clears the hashtag budgets and counters and restores the
  defaults; `POST /_admin/config {"url_ttl_s": N, "now": "<ISO time>"}` changes the URL lifetime and moves
  the service's clock (it keeps ticking from there); `GET /_admin/stats` counts hashtag searches.

Media come from the photo library: a photo's hashtags are its keywords, its owner is the library author.
Posting times: the library spreads photos over 30 days, but recent_media only reaches 24 hours back, which
would leave about 12 photos, one or two per hashtag, in reach. Instagram is busier than that, so here the
library's 30 days are compressed, order kept, into the 4 days that end at midnight after the library's
anchor date: a post's time is `day_end - (day_end - created_at) * 4 / 31`, between 3 days before the anchor
date and about 21:00 on it. About a quarter of all posts (some 10 for a 40-photo hashtag) fall in any
24 hours, so a daily run for yesterday, made soon after midnight, finds about a day's posts. Posts whose
time is still ahead of the service's clock are not published yet and appear nowhere. Every tenth post
(numbers ending in 7) is a VIDEO; the stand-in has no video bytes, so the CDN answers 404 for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
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
SPREAD_DAYS = 4
SESSION_COOKIE_NAME = "sessionid"
WEB_APP_ID = "936619743392459"  # the id Instagram's web client sends as X-IG-App-ID
# Fields a hashtag edge may return (Meta: "You cannot request the username field on returned media objects").
EDGE_FIELDS = frozenset(
    {"id", "media_type", "media_url", "permalink", "caption", "timestamp", "like_count", "comments_count", "children"}
)
NODE_FIELDS = EDGE_FIELDS | {"username"}
DEFAULT_MEDIA_FIELDS = ("id",)
PAGE_TEMPLATE = Path(__file__).with_name("instagram_page.html")

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
    """One post as the stand-in serves it, derived from one library photo."""

    number: int
    media_id: str
    shortcode: str
    timestamp: datetime
    media_type: str
    owner: str
    hashtags: tuple[str, ...]
    caption: str
    like_count: int
    comments_count: int


def hashtag_id(tag: str) -> str:
    """The static, global id of a hashtag, 17 digits like Meta's (the same for every app and user)."""
    digest = int(hashlib.sha256(f"instagram-hashtag:{tag}".encode()).hexdigest(), 16)
    return f"178{digest % 10**14:014d}"


def media_id(number: int) -> str:
    return f"179{number:014d}"


def normalize_tag(text: str) -> str:
    return text.strip().lstrip("#").lower()


def _shortcode(number: int) -> str:
    digest = hashlib.sha256(f"instagram-post:{number}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:8]).decode().rstrip("=")


def _post_time(photo: LibraryPhoto, day_end: datetime) -> datetime:
    age = (day_end - photo.created_at) * SPREAD_DAYS / (DAYS_SPANNED + 1)
    return (day_end - age).replace(microsecond=0)


def graph_timestamp(moment: datetime) -> str:
    """Graph API time format: `2026-11-22T10:00:00+0000`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


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

    def configure(self, change: ConfigChange) -> None:
        with self._lock:
            if change.url_ttl_s is not None:
                self.url_ttl_s = change.url_ttl_s
            if change.now is not None:
                moment = change.now if change.now.tzinfo else change.now.replace(tzinfo=UTC)
                self._clock_offset = moment - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    @cached_property
    def media(self) -> list[InstagramMedia]:
        """Every post, newest first."""
        day_end = datetime.combine(self.library.anchor, time(), tzinfo=UTC) + timedelta(days=1)
        posts = []
        for photo in self.library.photos:
            tags = photo.keywords
            posts.append(
                InstagramMedia(
                    number=photo.number,
                    media_id=media_id(photo.number),
                    shortcode=_shortcode(photo.number),
                    timestamp=_post_time(photo, day_end),
                    media_type="VIDEO" if photo.number % 10 == 7 else "IMAGE",
                    owner=photo.author_username,
                    hashtags=tags,
                    caption=f"{photo.slug.replace('-', ' ')} " + " ".join(f"#{tag}" for tag in tags),
                    like_count=(photo.number * 7919 + 13) % 4000,
                    comments_count=(photo.number * 104729) % 90,
                )
            )
        return sorted(posts, key=lambda post: (post.timestamp, post.number), reverse=True)

    @cached_property
    def _by_id(self) -> dict[str, InstagramMedia]:
        return {post.media_id: post for post in self.media}

    @cached_property
    def _by_shortcode(self) -> dict[str, InstagramMedia]:
        return {post.shortcode: post for post in self.media}

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

    def sign(self, filename: str) -> tuple[str, str]:
        """`oh` and `oe` for a CDN file: an HMAC over the name and the hex expiry."""
        expiry = f"{int(self.now().timestamp()) + self.url_ttl_s:08x}"
        return self._digest(filename, expiry), expiry

    def _digest(self, filename: str, expiry: str) -> str:
        return hmac.new(self._signing_key, f"{filename}:{expiry}".encode(), hashlib.sha256).hexdigest()[:32]

    def check_signature(self, filename: str, oh: str | None, oe: str | None) -> str | None:
        """None when the URL is valid, else the CDN's 403 text."""
        if not oh or not oe or not hmac.compare_digest(self._digest(filename, oe), oh):
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


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind == "offset" and value.isdigit():
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise graph_error("(#100) The after cursor is not valid", 100)


def create_router(library: PhotoLibrary) -> APIRouter:
    service = InstagramService(library)
    router = APIRouter(tags=["instagram"])

    def media_url(request: Request, post: InstagramMedia, extension: str | None = None) -> str:
        filename = f"{post.media_id}.{extension or ('mp4' if post.media_type == 'VIDEO' else 'jpg')}"
        oh, oe = service.sign(filename)
        return f"{request.url_for('instagram_cdn', filename=filename)}?oh={oh}&oe={oe}"

    def permalink(request: Request, post: InstagramMedia) -> str:
        return str(request.url_for("instagram_post", shortcode=post.shortcode))

    def media_fields(request: Request, post: InstagramMedia, fields: list[str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in fields:
            if name == "id":
                values["id"] = post.media_id
            elif name == "media_type":
                values["media_type"] = post.media_type
            elif name == "media_url":
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
            # `children` exists only on CAROUSEL_ALBUM media, which the stand-in does not serve.
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

    def parse_fields(fields: str | None, allowed: frozenset[str], node_type: str) -> list[str]:
        names = [name.strip() for name in (fields or "").split(",") if name.strip()] or list(DEFAULT_MEDIA_FIELDS)
        for name in names:
            if name not in allowed:
                raise graph_error(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})", 100)
        return names

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
            names = parse_fields(fields, frozenset({"id", "name"}), "ShadowIGHashtag")
            return {"id": node_id, **({"name": tag} if "name" in names else {})}
        post = service.post(node_id)
        if post is not None:
            return media_fields(request, post, parse_fields(fields, NODE_FIELDS, "ShadowIGMedia"))
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
        names = parse_fields(fields, EDGE_FIELDS, "ShadowIGMedia")
        size = min(max(limit or DEFAULT_PAGE_SIZE, 1), MAX_PAGE_SIZE)
        posts = service.recent(tag) if edge == "recent_media" else service.top(tag)
        start = _offset(after)
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
    def cdn(filename: str, oh: str | None = None, oe: str | None = None) -> Response:
        refusal = service.check_signature(filename, oh, oe)
        if refusal:
            return PlainTextResponse(refusal, status_code=403)
        stem, _, extension = filename.partition(".")
        post = service.post(stem)
        if post is None or extension != "jpg":
            return PlainTextResponse("Not Found", status_code=404)
        data = library.encode(post.number)
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

    @router.get("/explore/tags/{tag}/", name="instagram_tag_page")
    def tag_page(request: Request, tag: str) -> Response:
        if not logged_in(request):
            login_url = request.url_for("instagram_login")
            return RedirectResponse(f"{login_url}?next={quote(request.url.path, safe='')}", status_code=302)
        name = normalize_tag(tag)
        base = request.url_for("instagram_robots").path.removesuffix("/robots.txt")
        replacements = {
            "__TAG__": html.escape(name),
            "__COUNT__": str(len(service.tagged(name))),
            "__API__": html.escape(request.url_for("instagram_web_info").path),
            "__BASE__": html.escape(base),
            "__APP_ID__": WEB_APP_ID,
        }
        page = PAGE_TEMPLATE.read_text(encoding="utf-8")
        for placeholder, value in replacements.items():
            page = page.replace(placeholder, value)
        return HTMLResponse(page)

    @router.get("/api/v1/tags/web_info/", name="instagram_web_info")
    def web_info(request: Request, tag_name: str = "", max_id: str | None = None) -> JSONResponse:
        if not logged_in(request):
            refusal = {"message": "Please wait a few minutes before you try again.", "require_login": True}
            return JSONResponse({**refusal, "status": "fail"}, status_code=401)
        if request.headers.get("X-IG-App-ID") != WEB_APP_ID:
            return JSONResponse({"message": "useragent mismatch", "status": "fail"}, status_code=400)
        name = normalize_tag(tag_name)
        posts = service.tagged(name)
        try:
            start = int(base64.urlsafe_b64decode(max_id + "=" * (-len(max_id) % 4))) if max_id else 0
        except ValueError:
            return JSONResponse({"message": "invalid max_id", "status": "fail"}, status_code=400)
        page = posts[start : start + WEB_PAGE_SIZE]
        more = start + WEB_PAGE_SIZE < len(posts)
        items = [
            {
                "id": post.media_id,
                "code": post.shortcode,
                "media_type": 2 if post.media_type == "VIDEO" else 1,
                "taken_at": int(post.timestamp.timestamp()),
                "user": {"username": post.owner},
                "caption": {"text": post.caption},
                "accessibility_caption": f"Photo by {post.owner}. {post.caption}",
                "image_versions2": {"candidates": [{"url": media_url(request, post, "jpg")}]},
            }
            for post in page
        ]
        next_max_id = base64.urlsafe_b64encode(str(start + WEB_PAGE_SIZE).encode()).decode() if more else None
        recent = {"items": items, "more_available": more, "next_max_id": next_max_id}
        return JSONResponse({"data": {"name": name, "media_count": len(posts), "recent": recent}, "status": "ok"})

    @router.get("/p/{shortcode}/", name="instagram_post")
    def post_page(request: Request, shortcode: str) -> HTMLResponse:
        post = service.post_by_shortcode(shortcode)
        if post is None:
            return HTMLResponse("<!DOCTYPE html><title>Page not found</title><h1>Page not found</h1>", 404)
        image = html.escape(media_url(request, post, "jpg"))
        caption = html.escape(post.caption)
        body = (
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{caption}</title>'
            f'<meta property="og:image" content="{image}"></head>'
            f'<body><article><img src="{image}" alt="{caption}"><p>@{html.escape(post.owner)}</p>'
            f'<p>{caption}</p><time datetime="{post.timestamp.isoformat()}"></time></article></body></html>'
        )
        return HTMLResponse(body)

    @router.post("/_admin/reset", status_code=204, name="instagram_admin_reset")
    def admin_reset() -> None:
        service.reset()

    @router.post("/_admin/config", name="instagram_admin_config")
    def admin_config(change: ConfigChange) -> dict[str, Any]:
        service.configure(change)
        return {"url_ttl_s": service.url_ttl_s, "now": service.now().isoformat()}

    @router.get("/_admin/stats", name="instagram_admin_stats")
    def admin_stats() -> dict[str, Any]:
        return {"hashtag_searches": service.hashtag_searches, "now": service.now().isoformat()}

    return router
