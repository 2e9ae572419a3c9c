"""Flickr: openly licensed photos uploaded in the run's window, found with `flickr.photos.search`.

Flickr's rules shape this module:
- Only licenses on the allow-list are collected. Flickr's own license table (`flickr.photos.licenses.getInfo`,
  read once per run) says which ids mean what: each license's URL maps to Colorflow's vocabulary
  (`pipelines.licenses`), and its name is kept as the source's words. The search asks for the allowed ids
  (`license=`), and every record is checked again, so a service that ignored the filter could not slip other
  photos in. No id is assumed: Flickr added ids for the CC 4.0 licenses in 2025, and the table tells them.
- Sizes come from a ladder: the search asks for every size URL from the original down (`url_o`, `url_k`,
  `url_h`, `url_l`, `url_c`, `url_z`, `url_m`) and takes the largest it answers; sizes over 1024 px exist
  only for large originals and owners may hide them, so none is ever built by hand.
- Failures arrive with HTTP 200 and `"stat": "fail"` (100 is a bad API key). They raise `SourceUnavailable`
  with Flickr's code and message, except the few codes Flickr documents as temporary.
- A search yields at most its first 4,000 results; later pages repeat earlier photos. A window whose
  `total` exceeds that is split in halves by upload date until every part fits, and each part is paged
  through on its own. Upload-date bounds are inclusive on Flickr, so records are also kept only when
  their upload time lies in the part's half-open window: a photo on a boundary is counted once.
- Numbers arrive as numbers or as strings (`total`, `license`, `dateupload`), and both are read.
- A deleted or hidden photo's image URL redirects to a "photo unavailable" placeholder served with
  HTTP 200. `fetch` refuses it, so the photo is recorded as a fetch failure instead of stored.

Attribution is kept with every photo: owner name, photo page, photostream and license name. In
production the connection's host is https://www.flickr.com/services/rest/ and photos come from
https://live.staticflickr.com; in the sandbox both live under the sandbox host's `/flickr`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipelines.http import HttpClient, HttpError, HttpPolicy, UnexpectedContentType, redact_url
from pipelines.licenses import DEFAULT_ALLOWED, from_url
from pipelines.settings import Settings, get_settings
from pipelines.sources.contract import WebService
from pipelines.sources.web import Candidate, SourceUnavailable, Window, unique

logger = logging.getLogger(__name__)

SOURCE = "flickr"
DEFAULT_LIMIT = 500
SEARCH_RESULT_LIMIT = 4000  # Flickr answers at most the first 4,000 results of a search
PER_PAGE = 500  # Flickr's maximum, so a 4,000-result part takes 8 calls
# Flickr allows 3,600 calls an hour per key. A run makes tens of search calls (500 photos each), so a quarter
# second between calls keeps it far under that while image downloads, on another host, are paced apart.
MIN_INTERVAL_S = 0.25
# Largest first: the original, 2048, 1600, 1024, 800, 640 and 500 px on the longest side (Flickr's URL docs).
SIZE_LADDER = ("url_o", "url_k", "url_h", "url_l", "url_c", "url_z", "url_m")
# license and date_upload make the client-side checks possible.
EXTRAS = ("license", "date_upload", "owner_name", *SIZE_LADDER)
# The smallest window still worth splitting: one second holds what one unix timestamp can tell apart.
SMALLEST_PART = timedelta(seconds=1)
# Answers come as application/json, but errors such as a bad key as text/plain (a real answer of 2012 does).
JSON_TYPES = ("application/json", "text/plain")
# Codes Flickr documents as temporary ("service currently unavailable", "write operation failed"): worth a retry.
TEMPORARY_ERRORS = frozenset({105, 106})
PLACEHOLDER_MARK = "photo_unavailable"  # the placeholder's file name on Flickr's image hosts


@dataclass(frozen=True)
class FlickrConfig:
    """Where the REST endpoint is and the key to call it with (never logged: repr leaves it out)."""

    rest_url: str
    api_key: str = field(repr=False)

    @classmethod
    def from_connection(cls, connection: Any) -> FlickrConfig:
        """From an Airflow connection (or anything with `.host` and `.password`): host = REST URL, password = key."""
        rest_url = (connection.host or "").strip()
        if not rest_url:
            raise ValueError("the Flickr connection needs host = the REST endpoint URL")
        if "://" not in rest_url:
            rest_url = f"https://{rest_url}"
        if not connection.password:
            raise ValueError("the Flickr connection needs password = the API key")
        return cls(rest_url=rest_url, api_key=connection.password)

    @property
    def web_url(self) -> str:
        """The site that photo pages live on: www.flickr.com for the real API, the REST URL's base otherwise."""
        parts = urlsplit(self.rest_url)
        base_path = parts.path.split("/services/", 1)[0].rstrip("/")
        host = (parts.hostname or "").lower()
        if host == "flickr.com" or host.endswith(".flickr.com"):
            return "https://www.flickr.com"
        return urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))


def client(config: FlickrConfig, settings: Settings) -> HttpClient:
    """An HTTP client paced for Flickr, that may reach the allow-listed (sandbox) hosts."""
    return HttpClient(HttpPolicy(allowed_hosts=frozenset(settings.http_allowed_hosts), min_interval_s=MIN_INTERVAL_S))


def as_int(value: Any) -> int:
    """A number Flickr sent as a number or as a string."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int):
        return value
    return int(str(value).strip())


def call(config: FlickrConfig, http: HttpClient, method: str, **params: Any) -> dict[str, Any]:
    """One REST call in JSON; `stat: fail` (which comes with HTTP 200) raises instead of returning."""
    query = {"method": method, "api_key": config.api_key, "format": "json", "nojsoncallback": 1, **params}
    try:
        body = json.loads(http.request("GET", config.rest_url, params=query, expect=JSON_TYPES).content)
    except (UnexpectedContentType, ValueError) as error:
        raise SourceUnavailable(f"Flickr answered {method} with something other than JSON: {error}") from None
    if not isinstance(body, dict) or "stat" not in body:
        raise SourceUnavailable(f"Flickr's answer to {method} has no stat field: the response format changed")
    if body["stat"] != "ok":
        code, message = body.get("code"), body.get("message", "no message")
        if str(code).strip() in {str(temporary) for temporary in TEMPORARY_ERRORS}:
            raise HttpError(f"Flickr {method} failed for now: error {code}: {message}")
        raise SourceUnavailable(f"Flickr refused {method}: error {code}: {message}")
    return body


def _unix(moment: datetime, round_up: bool = False) -> int:
    seconds = moment.timestamp()
    return math.ceil(seconds) if round_up else math.floor(seconds)


@dataclass(frozen=True)
class FlickrLicense:
    """One row of Flickr's license table: its name, and the term of Colorflow's vocabulary its URL means."""

    name: str
    term: str | None


def license_table(config: FlickrConfig, http: HttpClient) -> dict[int, FlickrLicense]:
    """Flickr's licenses by id, from `flickr.photos.licenses.getInfo` (ids come as strings or numbers)."""
    body = call(config, http, "flickr.photos.licenses.getInfo")
    try:
        rows = body["licenses"]["license"]
        return {as_int(row["id"]): FlickrLicense(str(row["name"]), from_url(row.get("url"))) for row in rows}
    except (KeyError, TypeError, ValueError):
        raise SourceUnavailable("Flickr's license table lacks licenses.license[id, name]: the format changed") from None


@dataclass(frozen=True)
class _Query:
    tags: tuple[str, ...]
    licenses: dict[int, FlickrLicense]  # the allowed ones


def _search_page(config: FlickrConfig, http: HttpClient, query: _Query, part: Window, page: int) -> dict[str, Any]:
    body = call(
        config,
        http,
        "flickr.photos.search",
        tags=",".join(query.tags),
        tag_mode="any",
        license=",".join(str(license_id) for license_id in sorted(query.licenses)),
        # Both bounds are inclusive on Flickr; the half-open window is enforced on each record.
        min_upload_date=_unix(part.start),
        max_upload_date=_unix(part.end, round_up=True),
        media="photos",
        extras=",".join(EXTRAS),
        # Oldest first: photos uploaded while we page land at the end instead of shifting earlier pages.
        sort="date-posted-asc",
        per_page=PER_PAGE,
        page=page,
    )
    photos = body.get("photos")
    try:
        return {"total": as_int(photos["total"]), "pages": as_int(photos["pages"]), "photo": list(photos["photo"])}
    except (KeyError, TypeError, ValueError):
        raise SourceUnavailable(
            "Flickr's search answer lacks total, pages or photo: the response format changed"
        ) from None


def _parts(config: FlickrConfig, http: HttpClient, query: _Query, window: Window) -> Iterator[tuple[Window, dict]]:
    """Parts of `window` that each hold at most 4,000 results, oldest first, with each part's first page."""
    first = _search_page(config, http, query, window, page=1)
    total = first["total"]
    if total > SEARCH_RESULT_LIMIT and window.end - window.start > SMALLEST_PART:
        logger.info("%d results between %s and %s: splitting the window", total, window.start, window.end)
        for half in window.halves():
            yield from _parts(config, http, query, half)
        return
    if total > SEARCH_RESULT_LIMIT:
        logger.warning(
            "%d results in one second (%s): only the first %d are reachable", total, window.start, SEARCH_RESULT_LIMIT
        )
    yield window, first


def _records(config: FlickrConfig, http: HttpClient, query: _Query, part: Window, first: dict) -> Iterator[dict]:
    """Every record of one part, page by page, never asking for a page past the 4,000th result."""
    pages = min(first["pages"], math.ceil(SEARCH_RESULT_LIMIT / PER_PAGE))
    yield from first["photo"]
    for page in range(2, pages + 1):
        photos = _search_page(config, http, query, part, page)
        if not photos["photo"]:
            return
        yield from photos["photo"]


def largest_size(record: dict[str, Any]) -> str | None:
    """The URL of the largest size the search answered for this photo, if any."""
    return next((record[size] for size in SIZE_LADDER if record.get(size)), None)


def to_candidate(
    config: FlickrConfig, record: dict[str, Any], part: Window, licenses: dict[int, FlickrLicense]
) -> Candidate | None:
    """The record as a candidate, or None when its license or upload time falls outside what was asked, or
    Flickr answered no size of it."""
    try:
        photo_id, owner = str(record["id"]), str(record["owner"])
        license_id, uploaded = as_int(record["license"]), as_int(record["dateupload"])
    except (KeyError, TypeError, ValueError) as error:
        raise SourceUnavailable(
            f"a Flickr search record has no readable id, owner, license or dateupload ({error!r}):"
            " the response format changed"
        ) from None
    if license_id not in licenses:
        logger.debug("skipping %s: license %s is not allowed", photo_id, license_id)
        return None
    uploaded_at = datetime.fromtimestamp(uploaded, UTC)
    if uploaded_at not in part:
        return None
    url = largest_size(record)
    if url is None:
        logger.warning("skipping %s: Flickr answered none of the sizes %s", photo_id, ", ".join(SIZE_LADDER))
        return None
    return Candidate(
        source=SOURCE,
        source_id=photo_id,
        url=url,
        page_url=f"{config.web_url}/photos/{owner}/{photo_id}/",
        author=record.get("ownername") or owner,
        author_url=f"{config.web_url}/photos/{owner}/",
        license=licenses[license_id].term,
        license_text=licenses[license_id].name,
        extra={"uploaded_at": uploaded_at.isoformat(), "license_id": license_id, "title": record.get("title", "")},
    )


def discover(
    config: FlickrConfig,
    http: HttpClient,
    window: Window,
    tags: Sequence[str],
    allowed: Iterable[str] = DEFAULT_ALLOWED,
    limit: int = DEFAULT_LIMIT,
) -> list[Candidate]:
    """Photos with any of `tags`, under a license whose term is `allowed`, uploaded in `window`: oldest first,
    at most `limit`."""
    if not tags:
        raise ValueError("Flickr discovery needs at least one tag (Flickr refuses parameterless searches)")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    wanted = set(allowed)
    table = license_table(config, http)
    licenses = {license_id: row for license_id, row in table.items() if row.term in wanted}
    if not licenses:
        raise SourceUnavailable(f"none of Flickr's licenses is allowed ({', '.join(sorted(wanted))})")
    query = _Query(tags=tuple(tags), licenses=licenses)
    found: list[Candidate] = []
    # Parts come lazily, oldest first: once `limit` photos are in hand, later parts are never searched.
    for part, first in _parts(config, http, query, window):
        for record in _records(config, http, query, part, first):
            candidate = to_candidate(config, record, part, query.licenses)
            if candidate is not None:
                found.append(candidate)
        found = unique(found)
        if len(found) >= limit:
            break
    logger.info("Flickr: %d candidates for %s in %s to %s", len(found), ", ".join(tags), window.start, window.end)
    return found[:limit]


def is_unavailable_placeholder(final_url: str) -> bool:
    """True when an image request ended at Flickr's "photo unavailable" placeholder instead of the photo."""
    return PLACEHOLDER_MARK in urlsplit(final_url).path.lower()


def fetch(config: FlickrConfig, http: HttpClient, candidate: Candidate) -> bytes:
    """The photo's bytes; HttpError when Flickr redirected to its placeholder (photo deleted or hidden)."""
    fetched = http.get_image(candidate.url)
    if is_unavailable_placeholder(fetched.url):
        raise HttpError(
            f"{redact_url(candidate.url)}: Flickr redirected to its photo unavailable placeholder"
            f" ({redact_url(fetched.url)}): the photo was deleted or is no longer public"
        )
    return fetched.content


def discover_for_run(
    config: FlickrConfig, http: HttpClient, window: Window, params: Mapping[str, Any]
) -> list[Candidate]:
    """The run's photos: any of its `tags`, under its `licenses` (terms; default: the quality stage's
    allow-list), uploaded in the window."""
    allowed = params.get("licenses") or get_settings().quality.license_allow_list
    return discover(config, http, window, params["tags"], allowed, params["limit"])


CONNECTOR = WebService(FlickrConfig.from_connection, client, SOURCE, discover_for_run, fetch)
