"""Unsplash stand-in: the parts of api.unsplash.com, images.unsplash.com and unsplash.com that Colorflow reads.

Under the sandbox host's `/unsplash` prefix:
- `api/` stands for https://api.unsplash.com: `GET search/photos`, `GET photos/{id}` and `GET photos/{id}/download`
  (the download trigger). Requests need `Authorization: Client-ID <access key>` (or `client_id=`), else 401
  `{"errors": ["OAuth error: The access token is invalid"]}`. Every authenticated answer carries
  `X-Ratelimit-Limit` and `X-Ratelimit-Remaining`; a key that has spent its hourly budget gets 403 with the
  plain-text body `Rate Limit Exceeded`, as users of the real API report it, or, when the admin asks for it,
  429, which Unsplash's maintainers say the API sends when rate limiting (tests/captures/unsplash/README.md).
- `images/photo-<slug>` stands for https://images.unsplash.com, an imgix host: `w` scales, `fm` re-encodes.
- `photos/{id}`, `@{username}` and `s/photos/{query}` are the unsplash.com pages that attribution links name;
  `dataset/photos.tsv000` is the photos file of the Unsplash Lite Dataset, with its real column names.
- `_admin/` lets tests set the hourly budget and how it is refused (`POST config {"hourly_limit": N,
  "refusal_status": 403 | 429}`), restore both (`POST reset`),
  and count triggered downloads and image requests (`GET stats`).

Photo ids are 11 characters of the same alphabet Unsplash uses, derived from the library number, so they are
the same in every sandbox process. Image sizes are measured on the rendered photos, in a background thread
started with the router, because rendering all of them takes seconds.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import math
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from sandbox import credentials
from sandbox.library import LibraryPhoto, PhotoLibrary

PREFIX = "unsplash"

DEFAULT_HOURLY_LIMIT = 5000  # a production application's budget; demo applications get 50
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 30
ORDERS = ("relevant", "latest")
IXLIB = "rb-4.0.3"  # the imgix client library version real image URLs name
INVALID_TOKEN = "OAuth error: The access token is invalid"
RATE_LIMIT_EXCEEDED = "Rate Limit Exceeded"
SERVER_ZONE = ZoneInfo("America/New_York")  # the API reports times with the offset of its own zone
IMAGE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "pjpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
MAX_IMAGE_WIDTH = 8192  # imgix's largest output
MEASURE_WAIT_S = 120.0  # past this the dataset measures what is left itself
DATASET_COLUMNS = (
    "photo_id",
    "photo_url",
    "photo_image_url",
    "photo_submitted_at",
    "photo_featured",
    "photo_width",
    "photo_height",
    "photo_aspect_ratio",
    "photo_description",
    "photographer_username",
    "photographer_first_name",
    "photographer_last_name",
    "exif_camera_make",
    "exif_camera_model",
    "exif_iso",
    "exif_aperture_value",
    "exif_focal_length",
    "exif_exposure_time",
    "photo_location_name",
    "photo_location_latitude",
    "photo_location_longitude",
    "photo_location_country",
    "photo_location_city",
    "stats_views",
    "stats_downloads",
    "ai_description",
    "ai_primary_landmark_name",
    "ai_primary_landmark_latitude",
    "ai_primary_landmark_longitude",
    "ai_primary_landmark_confidence",
)


def unsplash_id(seed: str) -> str:
    """An 11-character id in Unsplash's alphabet (URL-safe base64), the same for the same seed."""
    return base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode()[:11]


def photo_id(number: int) -> str:
    return unsplash_id(f"photo-{number}")


def image_slug(photo: LibraryPhoto) -> str:
    """The `photo-<slug>` part of an image URL: upload time in milliseconds and 12 hex digits, like real ones."""
    digest = hashlib.sha256(f"image-{photo.number}".encode()).hexdigest()[:12]
    return f"{int(photo.created_at.timestamp() * 1000)}-{digest}"


def description(photo: LibraryPhoto) -> str:
    """What the photographer wrote (the API's `description`, the dataset's `photo_description`)."""
    return f"{photo.keywords[0].capitalize()}, by {photo.author_name}"


def alt_description(photo: LibraryPhoto) -> str:
    """What Unsplash's machine captioning says (`alt_description`, the dataset's `ai_description`)."""
    return f"a photo of {', '.join(photo.keywords[:3])}"


class BudgetConfig(BaseModel):
    hourly_limit: int = Field(ge=0, description="Requests each access key may make per clock hour.")
    refusal_status: Literal[403, 429] = Field(
        default=403, description="How a spent budget is answered: 403 Rate Limit Exceeded, or 429."
    )


class UnsplashService:
    """State and answers of the stand-in; one per sandbox process, shared by its request threads."""

    def __init__(self, library: PhotoLibrary) -> None:
        self.library = library
        self.by_id = {photo_id(photo.number): photo for photo in library.photos}
        self.by_slug = {image_slug(photo): photo for photo in library.photos}
        self.by_username = {photo.author_username: photo for photo in library.photos}
        self._lock = threading.Lock()
        self.hourly_limit, self.refusal_status = DEFAULT_HOURLY_LIMIT, 403
        self._spent: Counter[tuple[str, str]] = Counter()
        self.downloads: Counter[str] = Counter()
        self.image_requests = 0
        self.api_requests = 0
        self._facts: dict[int, tuple[int, int, str]] = {}
        self.measured = threading.Event()

    # Photo facts ------------------------------------------------------------------------------------

    def facts(self, number: int) -> tuple[int, int, str]:
        """Width, height and average color (hex) of the served photo, measured once."""
        found = self._facts.get(number)
        if found is None:
            image = self.library.image(number)
            red, green, blue = image.resize((1, 1)).getpixel((0, 0))[:3]
            found = (image.width, image.height, f"#{red:02X}{green:02X}{blue:02X}")
            self._facts[number] = found  # a race computes the same value twice, which is harmless
        return found

    def measure_all(self) -> None:
        """Measure every photo, on all cores (Pillow releases the GIL), then let the dataset answer."""
        try:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="unsplash-measure") as pool:
                list(pool.map(self.facts, range(len(self.library.photos))))
        finally:
            self.measured.set()

    # Access control and the hourly budget -----------------------------------------------------------

    def access_key(self, request: Request) -> str | None:
        """The presented key if it is valid: `Authorization: Client-ID <key>` or the `client_id` parameter."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        key = value.strip() if scheme.lower() == "client-id" else request.query_params.get("client_id", "")
        return key if key == credentials.UNSPLASH_ACCESS_KEY else None

    def spend(self, key: str) -> int | None:
        """Spend one request of `key`'s budget for this clock hour; the remainder, or None when none was left."""
        hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
        with self._lock:
            self.api_requests += 1
            if self._spent[key, hour] >= self.hourly_limit:
                return None
            self._spent[key, hour] += 1
            return self.hourly_limit - self._spent[key, hour]

    def answer(self, request: Request, handler: Callable[[str], tuple[int, Any]]) -> Response:
        """Authenticate, spend budget, and run `handler(key) -> (status, body)` into a JSON answer."""
        key = self.access_key(request)
        if key is None:
            return JSONResponse({"errors": [INVALID_TOKEN]}, status_code=401)
        remaining = self.spend(key)
        headers = {"X-Ratelimit-Limit": str(self.hourly_limit), "X-Ratelimit-Remaining": str(remaining or 0)}
        if remaining is None:
            return PlainTextResponse(RATE_LIMIT_EXCEEDED, status_code=self.refusal_status, headers=headers)
        status, body = handler(key)
        return JSONResponse(body, status_code=status, headers=headers)

    def configure(self, config: BudgetConfig) -> None:
        with self._lock:
            self.hourly_limit, self.refusal_status = config.hourly_limit, config.refusal_status

    def reset(self) -> None:
        with self._lock:
            self.hourly_limit, self.refusal_status = DEFAULT_HOURLY_LIMIT, 403
            self._spent.clear()

    def stats(self) -> dict[str, Any]:
        """Counters tests compare before and after a run; they only grow, so runs need not reset them."""
        with self._lock:
            return {
                "downloads": dict(self.downloads),
                "image_requests": self.image_requests,
                "api_requests": self.api_requests,
            }

    # JSON objects -----------------------------------------------------------------------------------

    def ixid(self, key: str, context: str, query: str = "", rank: int = 0) -> str:
        """An opaque tracking id like Unsplash's: base64 of the application, the context and the search."""
        application = int(hashlib.sha256(key.encode()).hexdigest()[:5], 16)
        stamp = int(datetime.combine(self.library.anchor, datetime.min.time(), UTC).timestamp())
        fields = f"3|{application}|0|1|{context}|{rank or ''}||{query}|en|0||||{stamp}|0"
        return base64.urlsafe_b64encode(fields.encode()).decode().rstrip("=")

    def image_url(self, base: str, photo: LibraryPhoto, **params: str | int) -> str:
        return f"{base}/images/photo-{image_slug(photo)}?{urlencode(sorted(params.items()))}"

    def user_json(self, base: str, photo: LibraryPhoto) -> dict[str, Any]:
        first_name, _, last_name = photo.author_name.partition(" ")
        username = photo.author_username
        return {
            "id": unsplash_id(f"user-{username}"),
            "username": username,
            "name": photo.author_name,
            "first_name": first_name,
            "last_name": last_name or None,
            "links": {
                "self": f"{base}/api/users/{username}",
                "html": f"{base}/@{username}",
                "photos": f"{base}/api/users/{username}/photos",
            },
        }

    def photo_json(self, base: str, photo: LibraryPhoto, ixid: str) -> dict[str, Any]:
        """A photo as the API describes it, with URLs on this host's image, web and API paths."""
        identifier = photo_id(photo.number)
        width, height, color = self.facts(photo.number)
        created_at = photo.created_at.astimezone(SERVER_ZONE).isoformat(timespec="seconds")
        tracked = {"ixid": ixid, "ixlib": IXLIB}
        jpeg = {**tracked, "crop": "entropy", "fm": "jpg"}
        sized = {**jpeg, "cs": "tinysrgb", "fit": "max", "q": 80}
        return {
            "id": identifier,
            "slug": f"{photo.keywords[0]}-{identifier}",
            "created_at": created_at,
            "updated_at": created_at,
            "promoted_at": None,
            "width": width,
            "height": height,
            "color": color,
            "description": description(photo),
            "alt_description": alt_description(photo),
            "likes": (photo.number * 37) % 500,
            "urls": {
                "raw": self.image_url(base, photo, **tracked),
                "full": self.image_url(base, photo, **jpeg, cs="srgb", q=85),
                "regular": self.image_url(base, photo, **sized, w=1080),
                "small": self.image_url(base, photo, **sized, w=400),
                "thumb": self.image_url(base, photo, **sized, w=200),
            },
            "links": {
                "self": f"{base}/api/photos/{identifier}",
                "html": f"{base}/photos/{identifier}",
                "download": f"{base}/photos/{identifier}/download?{urlencode({'ixid': ixid})}",
                "download_location": f"{base}/api/photos/{identifier}/download?{urlencode({'ixid': ixid})}",
            },
            "user": self.user_json(base, photo),
        }

    # API answers ------------------------------------------------------------------------------------

    def search(
        self, base: str, key: str, query: str | None, page: int, per_page: int, order_by: str
    ) -> tuple[int, dict[str, Any]]:
        """Photos tagged with every word of `query`; `latest` newest first, `relevant` by tag prominence."""
        if not query or not query.strip():
            return 400, {"errors": ["query is missing"]}
        if order_by not in ORDERS:
            return 400, {"errors": [f"order_by must be one of {', '.join(ORDERS)}"]}
        words = query.lower().split()
        matches = [photo for photo in self.library.search(words[0]) if all(word in photo.keywords for word in words)]
        if order_by == "relevant":
            matches.sort(key=lambda photo: (photo.keywords.index(words[0]), photo.number))
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        page = max(page, 1)
        start = (page - 1) * per_page
        results = [
            self.photo_json(base, photo, self.ixid(key, "search", query, start + rank + 1))
            for rank, photo in enumerate(matches[start : start + per_page])
        ]
        return 200, {"total": len(matches), "total_pages": math.ceil(len(matches) / per_page), "results": results}

    def get_photo(self, base: str, key: str, identifier: str) -> tuple[int, dict[str, Any]]:
        photo = self.by_id.get(identifier)
        if photo is None:
            return 404, {"errors": ["Couldn't find Photo"]}
        return 200, self.photo_json(base, photo, self.ixid(key, "photo"))

    def track_download(self, base: str, identifier: str, ixid: str | None) -> tuple[int, dict[str, Any]]:
        """Count a download, which is what the endpoint exists for, and name the image to fetch."""
        photo = self.by_id.get(identifier)
        if photo is None:
            return 404, {"errors": ["Couldn't find Photo"]}
        if not ixid:
            return 401, {"errors": ["ixid is missing: trigger the photo's links.download_location as given"]}
        with self._lock:
            self.downloads[identifier] += 1
        return 200, {"url": self.image_url(base, photo, ixid=ixid, ixlib=IXLIB, fm="jpg")}

    # Image host, pages, dataset ---------------------------------------------------------------------

    def image(self, slug: str, width: int | None, image_format: str | None) -> Response:
        photo = self.by_slug.get(slug)
        if photo is None:
            return PlainTextResponse("Not Found", status_code=404)
        # imgix ignores values it does not know; a raw Unsplash original is a JPEG.
        pillow_format = IMAGE_FORMATS.get((image_format or "").lower(), "JPEG")
        data = self.library.encode(photo.number, width, pillow_format)
        with self._lock:
            self.image_requests += 1
        headers = {"Cache-Control": "public, max-age=31536000"}
        return Response(data, media_type=MEDIA_TYPES[pillow_format], headers=headers)

    def dataset_tsv(self, base: str) -> str:
        """The Lite Dataset's photos.tsv000 for every library photo: tab-separated, times in UTC without zone."""
        # Every row needs a size: wait for the background measurement instead of repeating its work.
        self.measured.wait(timeout=MEASURE_WAIT_S)
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
        writer.writerow(DATASET_COLUMNS)
        for photo in self.library.photos:
            identifier = photo_id(photo.number)
            width, height, _ = self.facts(photo.number)
            first_name, _, last_name = photo.author_name.partition(" ")
            submitted_at = photo.created_at.astimezone(UTC).replace(tzinfo=None)
            row = {
                "photo_id": identifier,
                "photo_url": f"{base}/photos/{identifier}",
                "photo_image_url": f"{base}/images/photo-{image_slug(photo)}",
                "photo_submitted_at": submitted_at.isoformat(" ", timespec="milliseconds"),
                "photo_featured": "t" if photo.number % 7 == 0 else "f",
                "photo_width": width,
                "photo_height": height,
                "photo_aspect_ratio": round(width / height, 2),
                "photo_description": description(photo),
                "photographer_username": photo.author_username,
                "photographer_first_name": first_name,
                "photographer_last_name": last_name,
                "stats_views": (photo.number * 7919) % 100000,
                "stats_downloads": (photo.number * 131) % 5000,
                "ai_description": alt_description(photo),
            }
            writer.writerow([row.get(column, "") for column in DATASET_COLUMNS])
        return buffer.getvalue()


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><title>{html.escape(title)} | Unsplash</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status_code,
    )


def create_router(library: PhotoLibrary) -> APIRouter:
    service = UnsplashService(library)
    threading.Thread(target=service.measure_all, name="unsplash-measure", daemon=True).start()
    router = APIRouter(tags=["unsplash"])

    def base_url(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/{PREFIX}"

    @router.get("/api/search/photos", summary="Search photos (api.unsplash.com/search/photos)")
    def search_photos(
        request: Request,
        query: str | None = None,
        page: int = 1,
        per_page: int = DEFAULT_PER_PAGE,
        order_by: str = "relevant",
    ) -> Response:
        return service.answer(
            request, lambda key: service.search(base_url(request), key, query, page, per_page, order_by)
        )

    @router.get("/api/photos/{identifier}", summary="Get a photo")
    def get_photo(request: Request, identifier: str) -> Response:
        return service.answer(request, lambda key: service.get_photo(base_url(request), key, identifier))

    @router.get("/api/photos/{identifier}/download", summary="Track a photo download")
    def track_download(request: Request, identifier: str, ixid: str | None = None) -> Response:
        return service.answer(request, lambda _key: service.track_download(base_url(request), identifier, ixid))

    @router.get("/images/photo-{slug}", summary="An image (images.unsplash.com), resized by w, encoded by fm")
    def image(slug: str, w: int | None = None, fm: str | None = None) -> Response:
        width = min(w, MAX_IMAGE_WIDTH) if w and w > 0 else None
        return service.image(slug, width, fm)

    @router.get("/photos/{identifier}", summary="A photo's page on unsplash.com")
    def photo_page(request: Request, identifier: str) -> Response:
        photo = service.by_id.get(identifier)
        if photo is None:
            return _page("Page not found", "", status_code=404)
        base = base_url(request)
        source = service.image_url(base, photo, fm="jpg", w=1080, ixlib=IXLIB)
        profile = f'<a href="{base}/@{photo.author_username}">{html.escape(photo.author_name)}</a>'
        return _page(f"Photo by {photo.author_name}", f'<img src="{html.escape(source)}"><p>Photo by {profile}</p>')

    @router.get("/photos/{identifier}/download", summary="The website's download button")
    def website_download(request: Request, identifier: str) -> Response:
        photo = service.by_id.get(identifier)
        if photo is None:
            return PlainTextResponse("Not Found", status_code=404)
        return RedirectResponse(service.image_url(base_url(request), photo, ixlib=IXLIB, fm="jpg"), status_code=302)

    @router.get("/@{username}", summary="A photographer's profile page")
    def profile_page(username: str) -> Response:
        photo = service.by_username.get(username)
        if photo is None:
            return _page("Page not found", "", status_code=404)
        return _page(photo.author_name, f"<p>@{html.escape(username)}</p>")

    @router.get("/s/photos/{query}", summary="The website's search page")
    def search_page(query: str) -> Response:
        return _page(f"{query} pictures", "<p>Photos load in the browser.</p>")

    @router.get("/search/photos", include_in_schema=False)
    def search_page_redirect(request: Request, query: str = "") -> Response:
        # A connection that names the website instead of the API host lands here, and gets a page, not JSON.
        return RedirectResponse(f"{base_url(request)}/s/photos/{quote(query)}", status_code=301)

    @router.get("/dataset/photos.tsv000", summary="photos.tsv000 of the Unsplash Lite Dataset")
    def dataset(request: Request) -> Response:
        return PlainTextResponse(service.dataset_tsv(base_url(request)), media_type="text/tab-separated-values")

    @router.post("/_admin/config", tags=["admin"], summary="Set the hourly request budget of every key")
    def configure(config: BudgetConfig) -> BudgetConfig:
        service.configure(config)
        return config

    @router.post("/_admin/reset", tags=["admin"], summary="Restore the default budget, with nothing spent")
    def reset() -> dict[str, int]:
        service.reset()
        return {"hourly_limit": service.hourly_limit}

    @router.get("/_admin/stats", tags=["admin"], summary="Downloads triggered per photo, requests served")
    def stats() -> dict[str, Any]:
        return service.stats()

    return router
