"""Flickr stand-in: the REST endpoint (`/services/rest/`, standing for https://www.flickr.com/services/rest/),
the static photo host (`/live`, standing for https://live.staticflickr.com) and bare photo pages (`/photos`).

It serves the sandbox library as Flickr photo records and keeps the behaviours of the real service that a
connector has to survive, because a connector tested only against a polite stand-in breaks on the real one:
- Errors arrive with HTTP 200 and `"stat": "fail"` (100 invalid API key, 112 unknown method, 111 unknown
  format, 3 parameterless search), never as an HTTP error status, and in JSON labelled `text/plain`.
- Numbers sometimes arrive as strings: `total`, `license`, `dateupload`, `height_o`/`width_o` are strings
  while `page`, `pages`, `perpage`, `farm`, `height_l`/`width_l` are numbers.
- A search returns at most its first 4,000 results. Pages past that repeat the last page within the limit,
  while `total` and `pages` still count everything, so a naive pager sees new page numbers but old photos.
  The tag `crowd` matches 4,600 synthetic photos uploaded over the single day before the library's anchor,
  enough to hit the limit; each reuses library image `i % 360` for its bytes under its own id and secret.
- `min_upload_date` and `max_upload_date` are both inclusive and take unix timestamps or MySQL datetimes.
- `per_page` defaults to 100 and is capped at 500; extras decide which optional fields a record carries.
- A search lists only the sizes a photo has: none larger than its original, and no original where its owner
  keeps it private. License ids mean what `flickr.photos.licenses.getInfo` says (Flickr's own table, ids as
  strings, in Flickr's order).
- A static URL with an unknown id, a wrong secret or server, or a size the photo does not have is answered
  with a redirect to the "photo unavailable" placeholder, a real image served with HTTP 200 (as Flickr
  redirects to https://s.yimg.com/pw/images/en-us/photo_unavailable.png), so a 404 check never notices it.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cached_property, lru_cache
from typing import Any
from xml.etree import ElementTree

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from PIL import Image, ImageDraw, ImageOps

from sandbox.credentials import FLICKR_API_KEY
from sandbox.library import AUTHORS, PhotoLibrary

PREFIX = "flickr"

SEARCH_RESULT_LIMIT = 4000  # Flickr returns at most the first 4,000 results of any search
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 500
CROWD_TAG = "crowd"
CROWD_SIZE = 4600
SERVER = "65535"  # the server id modern Flickr uploads carry
FARM = 66
JPEG_QUALITY = 88
PLACEHOLDER_SIZE = (500, 374)

# flickr.photos.licenses.getInfo as Flickr answered it on 2023-11-05 (tests/captures/flickr), in its own
# order. The CC 4.0 ids Flickr added in June 2025 are left out: no real answer listing them was found.
LICENSES: dict[int, tuple[str, str]] = {
    0: ("All Rights Reserved", ""),
    4: ("Attribution License", "https://creativecommons.org/licenses/by/2.0/"),
    6: ("Attribution-NoDerivs License", "https://creativecommons.org/licenses/by-nd/2.0/"),
    3: ("Attribution-NonCommercial-NoDerivs License", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    2: ("Attribution-NonCommercial License", "https://creativecommons.org/licenses/by-nc/2.0/"),
    1: ("Attribution-NonCommercial-ShareAlike License", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    5: ("Attribution-ShareAlike License", "https://creativecommons.org/licenses/by-sa/2.0/"),
    7: ("No known copyright restrictions", "https://www.flickr.com/commons/usage/"),
    8: ("United States Government Work", "http://www.usa.gov/copyright.shtml"),
    9: ("Public Domain Dedication (CC0)", "https://creativecommons.org/publicdomain/zero/1.0/"),
    10: ("Public Domain Mark", "https://creativecommons.org/publicdomain/mark/1.0/"),
}
# The crowd is all openly licensed, so a search with an open-license allow-list still finds all 4,600.
CROWD_LICENSES = (4, 5, 7, 8, 9, 10)

# Size suffixes of the static host (misc.urls): longest edge in pixels, and whether the size is a square crop.
# A size larger than the original is never made, so a search lists only the sizes a photo has. Sizes from h
# (1600) up each have their own secret; no library original is that large, so none is ever listed or served.
SIZES: dict[str, tuple[int, bool]] = {
    "s": (75, True),
    "q": (150, True),
    "t": (100, False),
    "m": (240, False),
    "n": (320, False),
    "w": (400, False),
    "": (500, False),
    "z": (640, False),
    "c": (800, False),
    "b": (1024, False),
    "h": (1600, False),
    "k": (2048, False),
}
ORIGINAL = "o"
# extras=url_* names and the size suffix each stands for.
URL_EXTRAS = {
    "url_sq": "s",
    "url_q": "q",
    "url_t": "t",
    "url_s": "m",
    "url_n": "n",
    "url_w": "w",
    "url_m": "",
    "url_z": "z",
    "url_c": "c",
    "url_l": "b",
    "url_h": "h",
    "url_k": "k",
    "url_o": ORIGINAL,
}
# Owners may keep their originals to themselves: every photo whose number ends in 3 does, so a search asking
# for url_o gets it for the others only (a real 2024 search got it for none).
STATIC_NAME = re.compile(r"(?P<id>\d+)_(?P<secret>[0-9a-f]+)(?:_(?P<suffix>[0-9a-z]+))?\.(?P<ext>[a-z]+)")
REAL_KEY_FORMAT = re.compile(r"[0-9a-f]{32}")  # real Flickr API keys are 32 hex digits


class FlickrFailure(Exception):
    """A call Flickr answers with `stat: fail` (and HTTP 200)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class FlickrPhoto:
    """One photo as Flickr knows it; `number` is the library image whose bytes it serves."""

    id: str
    number: int
    secret: str
    original_secret: str
    owner: str
    owner_name: str
    path_alias: str
    title: str
    tags: tuple[str, ...]
    uploaded_at: int
    license: int


def _photo_id(serial: int) -> str:
    # 11 digits starting with 53, like ids of current uploads; 7,654,321 is coprime with 10**9, so ids are distinct.
    return f"53{(serial * 7_654_321 + 10_000_000) % 10**9:09d}"


def _secret(kind: str, photo_id: str) -> str:
    return hashlib.sha1(f"flickr-{kind}-{photo_id}".encode()).hexdigest()[:10]


def _nsid(author_index: int) -> str:
    return f"{12_345_678 + author_index * 1_111_111}@N0{5 + author_index % 3}"


class FlickrCatalogue:
    """The library's photos plus the synthetic crowd, as Flickr photo records, and their encodings."""

    def __init__(self, library: PhotoLibrary) -> None:
        self.library = library
        self._sizes: dict[int, tuple[int, int]] = {}
        self._sizes_lock = threading.Lock()

    @cached_property
    def photos(self) -> list[FlickrPhoto]:
        authors = {username: index for index, (_, username) in enumerate(AUTHORS)}
        photos = []
        for photo in self.library.photos:
            photo_id = _photo_id(photo.number)
            photos.append(
                FlickrPhoto(
                    id=photo_id,
                    number=photo.number,
                    secret=_secret("secret", photo_id),
                    original_secret=_secret("original", photo_id),
                    owner=_nsid(authors[photo.author_username]),
                    owner_name=photo.author_name,
                    path_alias=photo.author_username,
                    title=f"{photo.keywords[0].title()} {photo.slug}",
                    tags=photo.keywords,
                    uploaded_at=int(photo.created_at.timestamp()),
                    license=photo.license_id,
                )
            )
        crowd_day = datetime.combine(self.library.anchor - timedelta(days=1), time(), tzinfo=UTC)
        count = len(self.library.photos)
        for index in range(CROWD_SIZE):
            photo_id = _photo_id(count + index)
            name, username = AUTHORS[index % len(AUTHORS)]
            photos.append(
                FlickrPhoto(
                    id=photo_id,
                    number=index % count,
                    secret=_secret("secret", photo_id),
                    original_secret=_secret("original", photo_id),
                    owner=_nsid(index % len(AUTHORS)),
                    owner_name=name,
                    path_alias=username,
                    title=f"Crowd {index:04d}",
                    tags=(CROWD_TAG, "festival"),
                    uploaded_at=int(crowd_day.timestamp()) + index * 86400 // CROWD_SIZE,
                    license=CROWD_LICENSES[index % len(CROWD_LICENSES)],
                )
            )
        return photos

    @cached_property
    def by_id(self) -> dict[str, FlickrPhoto]:
        return {photo.id: photo for photo in self.photos}

    def measure_all(self) -> None:
        """Measure every library image once, so that the first search with url_* extras answers at once."""
        for photo in self.library.photos:
            self.native_size(photo.number)

    def native_size(self, number: int) -> tuple[int, int]:
        """Width and height of a library image as served whole; measured once per image, then remembered."""
        # The lock is held while measuring: the background measurement and a request never measure twice.
        with self._sizes_lock:
            if number not in self._sizes:
                self._sizes[number] = self.library.size(number)
            return self._sizes[number]

    def has_size(self, photo: FlickrPhoto, suffix: str) -> bool:
        """Whether the photo has this size: squares always, the original unless its owner hides it, other
        sizes when the original is at least as large."""
        if suffix == ORIGINAL:
            return photo.number % 10 != 3
        edge, square = SIZES[suffix]
        return square or max(self.native_size(photo.number)) >= edge

    def static_path_at_most(self, photo: FlickrPhoto, suffix: str) -> str:
        """The photo's static path at size `suffix`, or at the largest smaller size it has."""
        ladder = [size for size, (_, square) in SIZES.items() if not square]
        ladder = sorted(ladder[: ladder.index(suffix) + 1], key=lambda size: SIZES[size][0], reverse=True)
        return static_path(photo, next(size for size in ladder if self.has_size(photo, size)))

    def size_of(self, number: int, suffix: str) -> tuple[int, int]:
        """Dimensions of a size as the static host serves it; Flickr never scales a photo up."""
        if suffix == ORIGINAL:
            return self.native_size(number)
        edge, square = SIZES[suffix]
        if square:
            return edge, edge
        width, height = self.native_size(number)
        if max(width, height) <= edge:
            return width, height
        if width >= height:
            return edge, max(1, round(height * edge / width))
        scaled_width = max(1, round(width * edge / height))
        return scaled_width, max(1, round(height * scaled_width / width))

    def encode(self, number: int, suffix: str) -> bytes:
        if suffix == ORIGINAL:
            return self.library.encode(number)
        edge, square = SIZES[suffix]
        if square:
            return _square(self.library, number, edge)
        width, _ = self.size_of(number, suffix)
        return self.library.encode(number, width=width)


@lru_cache(maxsize=256)
def _square(library: PhotoLibrary, number: int, edge: int) -> bytes:
    image = ImageOps.fit(library.image(number), (edge, edge), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def placeholder_png() -> bytes:
    """The fixed "photo unavailable" image: a grey card with a crossed-out picture frame."""
    width, height = PLACEHOLDER_SIZE
    image = Image.new("RGB", PLACEHOLDER_SIZE, (238, 238, 238))
    draw = ImageDraw.Draw(image)
    frame = (width // 2 - 60, height // 2 - 45, width // 2 + 60, height // 2 + 45)
    draw.rectangle(frame, outline=(170, 170, 170), width=6)
    draw.polygon(
        [(frame[0] + 12, frame[3] - 12), (width // 2, height // 2 - 5), (frame[2] - 12, frame[3] - 12)],
        fill=(200, 200, 200),
    )
    draw.line((frame[0] - 20, frame[3] + 20, frame[2] + 20, frame[1] - 20), fill=(150, 150, 150), width=8)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def parse_date(value: str | None) -> int | None:
    """A search bound as unix seconds: Flickr takes unix timestamps or MySQL datetimes (read here as UTC)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return int(float(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T"))
    except ValueError:
        return None  # Flickr ignores a bound it cannot read
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _int_or(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None and value.strip() else default
    except ValueError:
        return default


def _words(value: str | None) -> list[str]:
    return [word.strip().lower() for word in (value or "").split(",") if word.strip()]


def search(catalogue: FlickrCatalogue, params: Mapping[str, str]) -> list[FlickrPhoto]:
    """All photos matching a flickr.photos.search query, sorted as asked (before the 4,000 limit)."""
    tags = _words(params.get("tags"))
    wanted = [tag for tag in tags if not tag.startswith("-")]
    excluded = {tag[1:] for tag in tags if tag.startswith("-")}
    text = (params.get("text") or "").strip().lower()
    user_id = (params.get("user_id") or "").strip()
    low, high = parse_date(params.get("min_upload_date")), parse_date(params.get("max_upload_date"))
    if not (tags or text or user_id or low is not None or high is not None):
        raise FlickrFailure(3, "Parameterless searches have been disabled. Please use flickr.photos.getRecent instead.")
    licenses = {int(item) for item in _words(params.get("license")) if item.isdigit()}
    match_all = params.get("tag_mode", "any").lower() == "all"

    def matches(photo: FlickrPhoto) -> bool:
        if wanted and not (all if match_all else any)(tag in photo.tags for tag in wanted):
            return False
        if excluded & set(photo.tags):
            return False
        if text and not all(word in photo.title.lower() or word in photo.tags for word in text.split()):
            return False
        if user_id and photo.owner != user_id:
            return False
        if licenses and photo.license not in licenses:
            return False
        return (low is None or photo.uploaded_at >= low) and (high is None or photo.uploaded_at <= high)

    found = [photo for photo in catalogue.photos if matches(photo)]
    ascending = params.get("sort", "date-posted-desc") in ("date-posted-asc", "date-taken-asc")
    return sorted(found, key=lambda photo: (photo.uploaded_at, photo.id), reverse=not ascending)


def page_of(found: list[FlickrPhoto], page: int, per_page: int) -> list[FlickrPhoto]:
    """The photos Flickr answers for `page`: past the first 4,000 results, the last page within them again."""
    reachable = found[:SEARCH_RESULT_LIMIT]
    last_reachable = max(1, math.ceil(len(reachable) / per_page))
    page = min(page, last_reachable)
    return reachable[(page - 1) * per_page : page * per_page]


def photo_record(catalogue: FlickrCatalogue, photo: FlickrPhoto, extras: Iterable[str], static_url: str) -> dict:
    """One photo as flickr.photos.search lists it in JSON, with the fields its extras ask for."""
    record: dict[str, Any] = {
        "id": photo.id,
        "owner": photo.owner,
        "secret": photo.secret,
        "server": SERVER,
        "farm": FARM,
        "title": photo.title,
        "ispublic": 1,
        "isfriend": 0,
        "isfamily": 0,
    }
    extras = set(extras)
    if "license" in extras:
        record["license"] = str(photo.license)
    if "date_upload" in extras:
        record["dateupload"] = str(photo.uploaded_at)
    if "owner_name" in extras:
        record["ownername"] = photo.owner_name
    if "path_alias" in extras:
        record["pathalias"] = photo.path_alias
    if "tags" in extras:
        record["tags"] = " ".join(photo.tags)
    if "original_format" in extras:
        record["originalsecret"], record["originalformat"] = photo.original_secret, "jpg"
    for extra, suffix in URL_EXTRAS.items():
        if extra not in extras or not catalogue.has_size(photo, suffix):
            continue
        label = extra.removeprefix("url_")
        width, height = catalogue.size_of(photo.number, suffix)
        record[extra] = static_url + static_path(photo, suffix)
        # Original dimensions come as strings, the others as numbers: both happen in real responses.
        record[f"height_{label}"] = str(height) if suffix == ORIGINAL else height
        record[f"width_{label}"] = str(width) if suffix == ORIGINAL else width
    return record


def static_path(photo: FlickrPhoto, suffix: str) -> str:
    if suffix == ORIGINAL:
        return f"/{SERVER}/{photo.id}_{photo.original_secret}_o.jpg"
    return f"/{SERVER}/{photo.id}_{photo.secret}{'_' + suffix if suffix else ''}.jpg"


def check_api_key(api_key: str | None) -> None:
    if api_key == FLICKR_API_KEY:
        return
    if api_key and REAL_KEY_FORMAT.fullmatch(api_key):
        raise FlickrFailure(100, "Invalid API Key (Key not found)")
    raise FlickrFailure(100, "Invalid API Key (Key has invalid format)")


def _xml(payload: dict) -> bytes:
    """The REST (XML) form of a payload, for callers that do not ask for JSON."""
    root = ElementTree.Element("rsp", stat=payload["stat"])
    if payload["stat"] != "ok":
        ElementTree.SubElement(root, "err", code=str(payload["code"]), msg=payload["message"])
    for name, body in payload.items():
        if not isinstance(body, dict):
            continue
        element = ElementTree.SubElement(root, name, {k: str(v) for k, v in body.items() if not isinstance(v, list)})
        for child_name, children in ((k, v) for k, v in body.items() if isinstance(v, list)):
            for child in children:
                ElementTree.SubElement(element, child_name, {k: str(v) for k, v in child.items()})
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def respond(params: Mapping[str, str], payload: dict) -> Response:
    """The payload in the format asked for: JSON, JSONP (Flickr's default JSON form) or REST XML."""
    response_format = params.get("format", "rest")
    if response_format == "json":
        if params.get("nojsoncallback") == "1" and payload.get("stat") == "fail":
            # As Flickr answered a bad key in 2012 (tests/captures/flickr): JSON, labelled text/plain.
            return Response(json.dumps(payload), media_type="text/plain; charset=utf-8")
        if params.get("nojsoncallback") == "1":
            return JSONResponse(payload)
        callback = params.get("jsoncallback") or "jsonFlickrApi"
        body = f"{callback}({json.dumps(payload)})"
        return Response(body, media_type="text/javascript")
    return Response(_xml(payload), media_type="text/xml")


def create_router(library: PhotoLibrary) -> APIRouter:
    catalogue = FlickrCatalogue(library)
    threading.Thread(target=catalogue.measure_all, name="flickr-sizes", daemon=True).start()
    router = APIRouter(tags=["flickr"])

    def static_url(request: Request) -> str:
        """Where this host's static photos live, as seen by the caller (url_for needs a whole photo path)."""
        return str(request.url_for("flickr_static", server=SERVER, name="_")).removesuffix(f"/{SERVER}/_")

    def photos_search(request: Request, params: Mapping[str, str]) -> dict:
        found = search(catalogue, params)
        per_page = min(max(1, _int_or(params.get("per_page"), DEFAULT_PER_PAGE)), MAX_PER_PAGE)
        page = max(1, _int_or(params.get("page"), 1))
        extras = {extra.strip() for extra in (params.get("extras") or "").split(",") if extra.strip()}
        base = static_url(request)
        return {
            "photos": {
                "page": page,
                "pages": math.ceil(len(found) / per_page),
                "perpage": per_page,
                "total": str(len(found)),  # a string, as Flickr long sent it
                "photo": [photo_record(catalogue, photo, extras, base) for photo in page_of(found, page, per_page)],
            },
            "stat": "ok",
        }

    def licenses_get_info(request: Request, params: Mapping[str, str]) -> dict:
        listed = [{"id": str(key), "name": name, "url": url} for key, (name, url) in LICENSES.items()]
        return {"licenses": {"license": listed}, "stat": "ok"}

    methods = {"flickr.photos.search": photos_search, "flickr.photos.licenses.getInfo": licenses_get_info}

    @router.get("/services/rest/", summary="Flickr REST endpoint (flickr.photos.search, licenses.getInfo)")
    def rest(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            if params.get("format", "rest") not in ("rest", "json"):
                raise FlickrFailure(111, f'Format "{params["format"]}" not found')
            check_api_key(params.get("api_key"))
            method = params.get("method", "")
            if method not in methods:
                raise FlickrFailure(112, f'Method "{method}" not found')
            payload = methods[method](request, params)
        except FlickrFailure as failure:
            payload = {"stat": "fail", "code": failure.code, "message": failure.message}
        return respond(params, payload)

    def unavailable(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("flickr_photo_unavailable")), status_code=302)

    @router.get("/live/{server}/{name}", name="flickr_static", summary="Static photo host (live.staticflickr.com)")
    def static(request: Request, server: str, name: str) -> Response:
        parsed = STATIC_NAME.fullmatch(name)
        photo = catalogue.by_id.get(parsed["id"]) if parsed else None
        if parsed is None or photo is None or server != SERVER:
            return unavailable(request)
        suffix = parsed["suffix"] or ""
        if suffix == ORIGINAL:
            valid = parsed["secret"] == photo.original_secret and parsed["ext"] == "jpg"
        else:
            valid = suffix in SIZES and parsed["secret"] == photo.secret and parsed["ext"] == "jpg"
        valid = valid and catalogue.has_size(photo, suffix)
        if not valid:
            return unavailable(request)
        return Response(catalogue.encode(photo.number, suffix), media_type="image/jpeg")

    @router.get("/yimg/pw/images/en-us/photo_unavailable.png", name="flickr_photo_unavailable")
    def photo_unavailable() -> Response:
        return Response(placeholder_png(), media_type="image/png")

    @router.get("/photos/{owner}/{photo_id}/", response_class=HTMLResponse, summary="A photo's page")
    def photo_page(request: Request, owner: str, photo_id: str) -> HTMLResponse:
        photo = catalogue.by_id.get(photo_id)
        if photo is None or owner not in (photo.owner, photo.path_alias):
            return HTMLResponse("<h1>Page not found</h1>", status_code=404)
        name, url = LICENSES[photo.license]
        image = static_url(request) + static_path(photo, "z")
        return HTMLResponse(
            f"<html><head><title>{html.escape(photo.title)} | Flickr</title></head><body>"
            f'<h1>{html.escape(photo.title)}</h1><img src="{image}" alt="{html.escape(photo.title)}">'
            f'<p>by <a href="../">{html.escape(photo.owner_name)}</a>, <a href="{url}">{html.escape(name)}</a></p>'
            "</body></html>"
        )

    @router.get("/photos/{owner}/", response_class=HTMLResponse, summary="A member's photostream")
    def photostream(request: Request, owner: str) -> HTMLResponse:
        own = [photo for photo in catalogue.photos if owner in (photo.owner, photo.path_alias)]
        if not own:
            return HTMLResponse("<h1>Page not found</h1>", status_code=404)
        links = "".join(f'<li><a href="{photo.id}/">{html.escape(photo.title)}</a></li>' for photo in own[:100])
        return HTMLResponse(f"<html><body><h1>{html.escape(own[0].owner_name)}</h1><ul>{links}</ul></body></html>")

    return router
