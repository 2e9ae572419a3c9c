"""Unsplash: photos from the API's search, or from the Unsplash Dataset TSV, with their attribution.

    config = UnsplashConfig.from_connection(BaseHook.get_connection("unsplash_default"))
    http = client(config, get_settings())
    candidates = discover(config, http, window, ["cat", "flower"], limit=200)
    store_candidates(candidates, lambda candidate: fetch(config, http, candidate), store, catalog, run_id)

The API's rules, kept here so no caller has to know them:
- Requests authenticate with `Authorization: Client-ID <access key>`. The header goes only to the API host,
  never to the image host or to a URL a response names elsewhere, and it never appears in logs.
- Search is ordered `latest`, so paging stops at the first photo older than the window: a daily run spends
  one or two requests per query out of the hourly budget (50 for demo applications, 5,000 in production).
- Each stored photo's `links.download_location` is requested exactly once, after its image arrived whole, so
  a photo that failed is not counted as downloaded and a rerun (which skips known photos) counts nothing.
- A rejected key (401), a spent budget (403 `Rate Limit Exceeded`) and an HTML page instead of JSON raise
  `SourceUnavailable`: retrying the task cannot help, and the message says what to do.

`discover_dataset_tsv` reads `photos.tsv000` of the Unsplash Dataset, the route Unsplash offers for machine
learning; its photos need no API key and no download trigger.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipelines.http import HttpClient, HttpError, HttpPolicy, UnexpectedContentType
from pipelines.licenses import UNSPLASH
from pipelines.settings import Settings
from pipelines.sources.contract import ConnectionLike, WebService
from pipelines.sources.web import Candidate, SourceUnavailable, Window, unique

logger = logging.getLogger(__name__)

SOURCE = "unsplash"
LICENSE_TEXT = "Unsplash License"
DEFAULT_IMAGE_WIDTH = 1080  # Unsplash's own "regular" size: ample for 256-pixel training crops
IMAGE_FORMAT = "jpg"  # imgix would otherwise pick by Accept header; one format keeps bytes reproducible
IMAGE_QUALITY = 85  # the quality Unsplash's own "full" URLs ask for
SEARCH_PAGE_SIZE = 30  # the API's maximum, so a window costs the fewest requests
MIN_INTERVAL_S = 0.1  # pacing between requests to one host; the hourly budget is the real limit
JSON_TYPES = ("application/json",)
RATE_LIMIT_EXCEEDED = "Rate Limit Exceeded"
DATASET_COLUMNS = frozenset({"photo_id", "photo_url", "photo_image_url", "photo_submitted_at"})


@dataclass(frozen=True)
class UnsplashConfig:
    """Where the API is and the key to call it with; `repr` leaves the key out so logs never show it."""

    api_url: str
    access_key: str = field(repr=False)
    image_width: int = DEFAULT_IMAGE_WIDTH

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_url", self.api_url.rstrip("/"))
        if not self.access_key:
            raise ValueError("an Unsplash access key is required (the connection's password)")
        if self.image_width < 1:
            raise ValueError(f"image_width must be positive, got {self.image_width}")

    @classmethod
    def from_connection(cls, connection: ConnectionLike) -> UnsplashConfig:
        """From a connection whose host is the API base URL (https://api.unsplash.com) and password the key.

        A host given without a scheme is taken as HTTPS; `image_width` may be set in the connection's extra.
        """
        host = (connection.host or "").strip()
        if not host:
            raise ValueError("the Unsplash connection has no host: set it to https://api.unsplash.com")
        if "://" not in host:
            host = f"https://{host}" + (f":{connection.port}" if connection.port else "")
        extra = getattr(connection, "extra_dejson", None) or {}
        return cls(
            api_url=host,
            access_key=connection.password or "",
            image_width=int(extra.get("image_width", DEFAULT_IMAGE_WIDTH)),
        )

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Client-ID {self.access_key}", "Accept-Version": "v1"}


def client(config: UnsplashConfig, settings: Settings) -> HttpClient:
    """The HTTP client for the API, the image host and dataset downloads.

    The key is not a session header: `fetch` and `discover` add it to API requests only, so image hosts
    and any other URL never receive it. `config` is taken anyway, so every connector's `client` is called
    the same way by the DAGs.
    """
    return HttpClient(HttpPolicy(allowed_hosts=frozenset(settings.http_allowed_hosts), min_interval_s=MIN_INTERVAL_S))


def _next_hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _under(url: str, base: str) -> bool:
    """Whether `url` is `base` or a path below it, on the same scheme, host and port."""
    parts, base_parts = urlsplit(url), urlsplit(base)
    same_host = (parts.scheme, parts.netloc.lower()) == (base_parts.scheme, base_parts.netloc.lower())
    return same_host and (parts.path == base_parts.path or parts.path.startswith(base_parts.path.rstrip("/") + "/"))


def api_get(config: UnsplashConfig, http: HttpClient, url: str, params: dict[str, Any] | None = None) -> Any:
    """GET an API URL with the key; the decoded JSON, or SourceUnavailable when the API refuses us as a whole."""
    if not _under(url, config.api_url):
        raise SourceUnavailable(f"refusing to send the Unsplash key to {urlsplit(url).netloc}: not {config.api_url}")
    try:
        fetched = http.request("GET", url, params=params, headers=config.auth_headers, expect=JSON_TYPES)
    except UnexpectedContentType as error:
        raise SourceUnavailable(
            f"Unsplash answered with something other than JSON ({error}); the connection's host must be the"
            f" API base URL (https://api.unsplash.com), not the website"
        ) from None
    except HttpError as error:
        if error.status == 401:
            raise SourceUnavailable(
                "Unsplash rejected the access key (HTTP 401): check the connection's password holds a valid"
                " Access Key of an Unsplash application"
            ) from None
        if error.status == 429 or (error.status == 403 and RATE_LIMIT_EXCEEDED in str(error)):
            # Users of the API report 403 "Rate Limit Exceeded"; its maintainers say 429: both mean the same.
            raise SourceUnavailable(
                f"Unsplash's hourly rate limit for this access key is spent (HTTP {error.status} Rate Limit"
                f" Exceeded): retry after {_next_hour():%Y-%m-%d %H:%M} UTC, or lower the queries or limit per run"
            ) from None
        if error.status == 403:
            raise SourceUnavailable(f"Unsplash refused access (HTTP 403): {error}") from None
        raise
    logger.debug(
        "Unsplash budget: %s of %s requests left this hour",
        fetched.headers.get("X-Ratelimit-Remaining"),
        fetched.headers.get("X-Ratelimit-Limit"),
    )
    try:
        return json.loads(fetched.content)
    except ValueError:
        raise SourceUnavailable(f"Unsplash answered {url} with a body that is not valid JSON") from None


def sized_image_url(url: str, width: int) -> str:
    """`url` on the image host asking for `width` pixels as JPEG; tracking parameters (ixid) are kept."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query) if name not in ("w", "fm", "q")]
    query += [("w", str(width)), ("fm", IMAGE_FORMAT), ("q", str(IMAGE_QUALITY))]
    return urlunsplit(parts._replace(query=urlencode(query)))


def parse_time(text: str) -> datetime:
    """An API or dataset timestamp as an aware datetime; the dataset's zoneless times are UTC."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _photo_candidate(config: UnsplashConfig, photo: dict[str, Any]) -> Candidate:
    user = photo.get("user") or {}
    return Candidate(
        source=SOURCE,
        source_id=photo["id"],
        url=sized_image_url(photo["urls"]["raw"], config.image_width),
        page_url=photo["links"].get("html"),
        author=user.get("name") or user.get("username"),
        author_url=(user.get("links") or {}).get("html"),
        license=UNSPLASH,
        license_text=LICENSE_TEXT,
        extra={"download_location": photo["links"]["download_location"]},
    )


def discover(
    config: UnsplashConfig, http: HttpClient, window: Window, queries: list[str], limit: int
) -> list[Candidate]:
    """Photos created in `window` that match any query, newest first per query, at most `limit` in all."""
    found: list[Candidate] = []
    for query in queries:
        page, requests_made = 1, 0
        while len(unique(found)) < limit:
            params = {"query": query, "page": page, "per_page": SEARCH_PAGE_SIZE, "order_by": "latest"}
            body = api_get(config, http, f"{config.api_url}/search/photos", params)
            requests_made += 1
            if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                raise SourceUnavailable("Unsplash search answered without a results list: its format changed")
            reached_older = False
            for photo in body["results"]:
                try:
                    created_at = parse_time(photo["created_at"])
                    if created_at < window.start:
                        reached_older = True  # newest first: everything after this is older still
                        break
                    if created_at in window:
                        found.append(_photo_candidate(config, photo))
                except (KeyError, TypeError, ValueError) as error:
                    raise SourceUnavailable(f"Unsplash search result lacks {error}: its format changed") from None
            if reached_older or not body["results"] or page >= int(body.get("total_pages") or 0):
                break
            page += 1
        logger.info("Unsplash query %r: %d requests, %d candidates so far", query, requests_made, len(found))
        if len(unique(found)) >= limit:
            break
    return unique(found)[: max(limit, 0)]


def fetch(config: UnsplashConfig, http: HttpClient, candidate: Candidate) -> bytes:
    """The photo's bytes; then, for API photos, the download trigger the API guidelines require.

    The trigger follows the image so that only photos that arrived whole are counted as downloaded.
    """
    image = http.get_image(candidate.url)
    download_location = candidate.extra.get("download_location")
    if download_location:
        api_get(config, http, download_location)
    return image.content


def _dataset_text(http: HttpClient, location: str | Path) -> str:
    text = str(location)
    if urlsplit(text).scheme in ("http", "https"):
        return http.request("GET", text).content.decode("utf-8-sig")
    return Path(text).expanduser().read_text(encoding="utf-8-sig")


def _dataset_candidate(row: dict[str, str], image_width: int) -> Candidate:
    username = row.get("photographer_username") or ""
    name = " ".join(part for part in (row.get("photographer_first_name"), row.get("photographer_last_name")) if part)
    # Profiles live beside photo pages on the website: https://unsplash.com/photos/<id> -> /@<username>.
    site = row["photo_url"].rsplit("/photos/", 1)[0]
    return Candidate(
        source=SOURCE,
        source_id=row["photo_id"],
        url=sized_image_url(row["photo_image_url"], image_width),
        page_url=row["photo_url"],
        author=name or username or None,
        author_url=f"{site}/@{username}" if username else None,
        license=UNSPLASH,
        license_text=LICENSE_TEXT,
    )


def discover_dataset_tsv(
    http: HttpClient,
    location: str | Path,
    window: Window,
    limit: int,
    image_width: int = DEFAULT_IMAGE_WIDTH,
) -> list[Candidate]:
    """Photos of an Unsplash Dataset `photos.tsv000` (a local path or a URL) submitted in `window`.

    The dataset's rows name no `download_location`, so `fetch` triggers nothing for them.
    """
    if not location:
        raise ValueError("no dataset TSV given: pass the path or URL of photos.tsv000")
    reader = csv.DictReader(io.StringIO(_dataset_text(http, location)), delimiter="\t")
    missing = DATASET_COLUMNS - set(reader.fieldnames or ())
    if missing:
        raise SourceUnavailable(f"{location} is not an Unsplash Dataset photos TSV: no {', '.join(sorted(missing))}")
    found = []
    for line, row in enumerate(reader, start=2):
        try:
            if parse_time(row["photo_submitted_at"]) in window:
                found.append(_dataset_candidate(row, image_width))
        except (TypeError, ValueError, AttributeError) as error:
            logger.warning("skipping line %d of %s: %s", line, location, error)
    candidates = unique(found)[: max(limit, 0)]
    logger.info("Unsplash dataset %s: %d photos in the window, %d kept", location, len(found), len(candidates))
    return candidates


def discover_for_run(
    config: UnsplashConfig, http: HttpClient, window: Window, params: Mapping[str, Any]
) -> list[Candidate]:
    """The run's photos: the API search (newest first), or with `mode` = dataset the Dataset TSV."""
    if params.get("mode") == "dataset":
        return discover_dataset_tsv(http, params["dataset_tsv"], window, params["limit"], config.image_width)
    return discover(config, http, window, params["queries"], params["limit"])


CONNECTOR = WebService(UnsplashConfig.from_connection, client, SOURCE, discover_for_run, fetch)
