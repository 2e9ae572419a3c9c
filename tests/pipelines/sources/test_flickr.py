"""The Flickr connector against the sandbox stand-in over real HTTP: discovery by window, tags, license
allow-list and limit; the 4,000-result limit beaten by splitting the window; storing with attribution;
the placeholder refused; rate limits and cut bodies survived; a bad key failing the source as a whole.
And against Flickr's own answers, replayed from `tests/captures/flickr/` (origins in its README): the license
table of `licenses.getInfo`, a search whose photos lack the original size, a bad key's text/plain error.
"""

from __future__ import annotations

import functools
import io
import json
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from pipelines.catalog import Catalog, FetchFailure, Sighting
from pipelines.catalog import Image as ImageRow
from pipelines.http import HttpClient
from pipelines.licenses import DEFAULT_ALLOWED, from_url
from pipelines.settings import Settings
from pipelines.sources import flickr
from pipelines.sources.web import Candidate, SourceUnavailable, Window, store_candidates
from pipelines.storage import FileStore
from sandbox.credentials import FLICKR_API_KEY
from sandbox.flickr import LICENSES, URL_EXTRAS, FlickrCatalogue
from sandbox.library import PhotoLibrary
from tests.replay import Answer, capture, replaying


@pytest.fixture
def config(sandbox_url: str) -> flickr.FlickrConfig:
    return flickr.FlickrConfig(rest_url=f"{sandbox_url}/flickr/services/rest/", api_key=FLICKR_API_KEY)


@pytest.fixture
def http(config: flickr.FlickrConfig, settings: Settings) -> HttpClient:
    return flickr.client(config, settings)


@functools.cache
def stand_in_catalogue(library: PhotoLibrary) -> FlickrCatalogue:
    """The stand-in's catalogue, built once: building one measures the library's photos."""
    return FlickrCatalogue(library)


def served(library: PhotoLibrary, photo_number: int) -> bool:
    """Whether the stand-in offers some size of the ladder for this photo (small originals, hidden ones not)."""
    catalogue = stand_in_catalogue(library)
    photo = catalogue.photos[photo_number]
    return any(catalogue.has_size(photo, URL_EXTRAS[size]) for size in flickr.SIZE_LADDER)


def days_before_anchor(library: PhotoLibrary, first: int, last: int) -> Window:
    """The window from `first` days before the anchor's midnight to `last` days before it."""
    midnight = datetime.combine(library.anchor, clock(), tzinfo=UTC)
    return Window(midnight - timedelta(days=first), midnight - timedelta(days=last))


def test_config_from_connection_and_derived_urls(sandbox_url: str) -> None:
    sandbox = flickr.FlickrConfig.from_connection(
        SimpleNamespace(host=f"{sandbox_url}/flickr/services/rest/", password="s3cret")
    )
    assert sandbox.web_url == f"{sandbox_url}/flickr"
    real = flickr.FlickrConfig.from_connection(SimpleNamespace(host="api.flickr.com/services/rest/", password="s3cret"))
    assert (real.rest_url, real.api_key) == ("https://api.flickr.com/services/rest/", "s3cret")
    assert real.web_url == "https://www.flickr.com"
    assert "s3cret" not in repr(real)  # the key stays out of logs
    with pytest.raises(ValueError, match="API key"):
        flickr.FlickrConfig.from_connection(SimpleNamespace(host="https://www.flickr.com/services/rest/", password=""))


def test_discover_respects_window_tags_licenses_and_limit(
    config: flickr.FlickrConfig, http: HttpClient, library: PhotoLibrary
) -> None:
    window = days_before_anchor(library, 12, 2)
    tags = ["cat", "coffee"]
    expected = [
        photo
        for photo in library.photos
        if {"cat", "coffee"} & set(photo.keywords)
        and photo.created_at in window
        and from_url(LICENSES[photo.license_id][1]) in DEFAULT_ALLOWED
        and served(library, photo.number)
    ]
    found = flickr.discover(config, http, window, tags, limit=1000)
    assert len(found) == len(expected) > 0 and len({candidate.source_id for candidate in found}) == len(found)
    assert sorted(datetime.fromisoformat(c.extra["uploaded_at"]) for c in found) == sorted(
        photo.created_at for photo in expected
    )
    assert [c.extra["uploaded_at"] for c in found] == sorted(c.extra["uploaded_at"] for c in found)  # oldest first
    assert {(c.license, c.license_text) for c in found} == {
        (from_url(LICENSES[photo.license_id][1]), LICENSES[photo.license_id][0]) for photo in expected
    }
    assert {c.author for c in found} == {photo.author_name for photo in expected}
    assert all(requests.get(c.url, timeout=10, allow_redirects=False).status_code == 200 for c in found[:10])
    first = found[0]
    assert first.source == "flickr"
    assert first.author_url is not None and first.page_url == f"{first.author_url}{first.source_id}/"
    assert requests.get(first.page_url, timeout=10).status_code == 200

    assert flickr.discover(config, http, window, tags, limit=3) == found[:3]
    only_cc0 = flickr.discover(config, http, window, tags, allowed=("CC0-1.0",), limit=1000)
    assert {(c.license, c.license_text) for c in only_cc0} == {("CC0-1.0", "Public Domain Dedication (CC0)")}
    assert len(only_cc0) == sum(photo.license_id == 9 for photo in expected)


def test_a_crowded_day_is_split_until_every_photo_is_reachable(
    config: flickr.FlickrConfig, http: HttpClient, library: PhotoLibrary
) -> None:
    """4,600 photos in one day: one search reaches only 4,000, so the window must be halved (discovery only)."""
    found = flickr.discover(config, http, days_before_anchor(library, 1, 0), ["crowd"], limit=10_000)
    crowd = stand_in_catalogue(library).photos[len(library.photos) :]
    offered = sum(served(library, photo.number) for photo in crowd)
    assert len(found) == len({candidate.source_id for candidate in found}) == offered > 4000


def test_store_with_attribution_and_a_rerun_stores_nothing(
    config: flickr.FlickrConfig, http: HttpClient, library: PhotoLibrary, catalog: Catalog, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "lake")
    found = flickr.discover(config, http, days_before_anchor(library, 30, 0), ["temple"], limit=4)
    assert len(found) == 4

    counts = store_candidates(found, lambda c: flickr.fetch(config, http, c), store, catalog, "run-1")
    assert (counts["stored"], counts["objects_written"], counts.get("fetch_failed", 0)) == (4, 4, 0)
    with catalog.session() as session:
        sightings = session.scalars(select(Sighting).order_by(Sighting.source_id)).all()
        keys = session.scalars(select(ImageRow.raw_key)).all()
    by_id = {candidate.source_id: candidate for candidate in found}
    assert sorted(by_id) == [sighting.source_id for sighting in sightings]
    for sighting in sightings:
        candidate = by_id[sighting.source_id]
        assert (sighting.source, sighting.author, sighting.license) == ("flickr", candidate.author, candidate.license)
        assert sighting.license in DEFAULT_ALLOWED and sighting.license_text == candidate.license_text
        assert sighting.page_url == candidate.page_url
    assert all(Image.open(io.BytesIO(store.get(key))).format == "JPEG" for key in keys)

    again = store_candidates(found, lambda c: flickr.fetch(config, http, c), store, catalog, "run-2")
    assert (again.get("stored", 0), again["already_known"]) == (0, 4)
    assert catalog.count(Sighting) == 4


def test_the_unavailable_placeholder_is_a_fetch_failure(
    config: flickr.FlickrConfig, http: HttpClient, library: PhotoLibrary, catalog: Catalog, tmp_path: Path
) -> None:
    """A deleted photo's URL ends at a real PNG with HTTP 200; it must be recorded as lost, not stored."""
    store = FileStore(tmp_path / "lake")
    real = flickr.discover(config, http, days_before_anchor(library, 30, 0), ["rocket"], limit=1)[0]
    secret = real.url.rsplit("/", 1)[1].split("_")[1]
    gone = Candidate(**{**real.to_xcom(), "url": real.url.replace(secret, "0" * len(secret))})

    counts = store_candidates([gone], lambda c: flickr.fetch(config, http, c), store, catalog, "run-1")
    assert counts["fetch_failed"] == 1 and counts.get("stored", 0) == 0
    with catalog.session() as session:
        failure = session.scalars(select(FetchFailure)).one()
    assert (failure.source, failure.source_id) == ("flickr", real.source_id) and "placeholder" in failure.reason
    assert catalog.count(ImageRow) == 0 and list(store.list("raw/")) == []


def test_rate_limited_search_waits_and_succeeds(
    config: flickr.FlickrConfig, http: HttpClient, library: PhotoLibrary, faults
) -> None:
    window = days_before_anchor(library, 30, 0)
    expected = flickr.discover(config, http, window, ["flower"], limit=50)
    faults(path_prefix="/flickr/services/rest", kind="429", retry_after=1)
    started = time.monotonic()
    assert flickr.discover(config, http, window, ["flower"], limit=50) == expected
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured


def test_a_truncated_image_is_fetched_again_whole(
    config: flickr.FlickrConfig, http: HttpClient, library: PhotoLibrary, faults
) -> None:
    candidate = flickr.discover(config, http, days_before_anchor(library, 30, 0), ["galaxy"], limit=1)[0]
    whole = requests.get(candidate.url, timeout=10).content
    faults(path_prefix="/flickr/live", kind="truncate")
    assert flickr.fetch(config, http, candidate) == whole
    Image.open(io.BytesIO(whole)).load()


def test_a_bad_key_makes_the_source_unavailable(sandbox_url: str, http: HttpClient, library: PhotoLibrary) -> None:
    """Flickr says 'Invalid API Key' with HTTP 200; the key itself must not appear in the error."""
    config = flickr.FlickrConfig(rest_url=f"{sandbox_url}/flickr/services/rest/", api_key="leaked-secret-key")
    with pytest.raises(SourceUnavailable, match="error 100: Invalid API Key") as raised:
        flickr.discover(config, http, days_before_anchor(library, 3, 0), ["cat"])
    assert "leaked-secret-key" not in str(raised.value)


def test_records_are_checked_again_on_our_side(config: flickr.FlickrConfig) -> None:
    """Whatever the service returns, only allowed licenses uploaded inside the window become candidates, and
    numbers are read whether they come as strings or numbers."""
    part = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    inside = int(part.start.timestamp()) + 60
    record = {"id": "53000000001", "owner": "1@N05", "license": "9", "url_z": "https://live.staticflickr.com/7/a_z.jpg"}
    allowed = {9: flickr.FlickrLicense("Public Domain Dedication (CC0)", "CC0-1.0")}
    kept = flickr.to_candidate(config, {**record, "dateupload": str(inside)}, part, allowed)
    assert kept is not None and (kept.license, kept.license_text) == ("CC0-1.0", "Public Domain Dedication (CC0)")
    assert kept.author == "1@N05" and kept.url == record["url_z"]
    assert flickr.to_candidate(config, {**record, "license": 9, "dateupload": inside}, part, allowed) == kept
    assert flickr.to_candidate(config, {**record, "license": "2", "dateupload": inside}, part, allowed) is None
    at_end = int(part.end.timestamp())  # Flickr's max_upload_date is inclusive, the window is not
    assert flickr.to_candidate(config, {**record, "dateupload": at_end}, part, allowed) is None
    no_size = {key: value for key, value in record.items() if not key.startswith("url_")}
    assert flickr.to_candidate(config, {**no_size, "dateupload": inside}, part, allowed) is None, "never a built URL"
    with pytest.raises(SourceUnavailable, match="format changed"):
        flickr.to_candidate(config, record, part, allowed)
    assert flickr.as_int("4600") == flickr.as_int(4600) == 4600


def flickr_replay(getinfo: str, search: str | None = None) -> Answer:
    """Answers of the real REST endpoint, chosen by `method` as Flickr does."""

    def answer(path: str, query: dict[str, str]) -> Answer:
        if query.get("method") == "flickr.photos.licenses.getInfo":
            return Answer(capture(getinfo))
        return Answer(capture(search)) if search else Answer(b"{}", status=404)

    return answer


def replay_client(base: str, tmp_path: Path) -> tuple[flickr.FlickrConfig, HttpClient]:
    config = flickr.FlickrConfig(rest_url=f"{base}/services/rest/", api_key=FLICKR_API_KEY)
    return config, flickr.client(config, Settings(home=tmp_path, http_allowed_hosts=[base.removeprefix("http://")]))


def test_flickrs_own_license_table_names_every_license(tmp_path: Path) -> None:
    """The real getInfo answer of 2012 (ids as strings, escaped URLs): each id means the term its URL names;
    "No known copyright restrictions" (The Commons) and US government works are the public domain."""
    with replaying(flickr_replay("flickr/licenses_getInfo.2012-05-06.flickrie.json")) as base:
        table = flickr.license_table(*replay_client(base, tmp_path))
    assert {license_id: row.term for license_id, row in table.items()} == {
        0: None,
        1: "CC-BY-NC-SA-2.0",
        2: "CC-BY-NC-2.0",
        3: "CC-BY-NC-ND-2.0",
        4: "CC-BY-2.0",
        5: "CC-BY-SA-2.0",
        6: "CC-BY-ND-2.0",
        7: "public-domain-mark",
        8: "public-domain-mark",
    }
    assert table[4].name == "Attribution License" and table[0].name == "All Rights Reserved"


def test_a_real_search_without_originals_takes_the_largest_size_it_lists(tmp_path: Path) -> None:
    """A real search answer (2020) lists url_t, url_s, url_m and url_l but no url_o: the connector takes
    url_l as Flickr gave it, and keeps only the photos under an allowed license."""
    search = "flickr/photos_search.2020-02-10.openverse.trimmed.json"
    records = {record["id"]: record for record in json.loads(capture(search))["photos"]["photo"]}
    window = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    with replaying(flickr_replay("flickr/licenses_getInfo.2012-05-06.flickrie.json", search)) as base:
        config, http = replay_client(base, tmp_path)
        found = flickr.discover(config, http, window, ["nature"], allowed=(*DEFAULT_ALLOWED, "CC-BY-NC-SA-2.0"))
    assert {candidate.source_id for candidate in found} == set(records)
    for candidate in found:
        record = records[candidate.source_id]
        assert candidate.url == next(record[size] for size in flickr.SIZE_LADDER if record.get(size))


def test_a_real_bad_key_answer_in_text_plain_names_flickrs_error(tmp_path: Path) -> None:
    """Flickr answered a bad key with HTTP 200, text/plain and `stat: fail` (2012): the error's code and
    message reach the operator, not a complaint about the content type."""

    def refuse(path: str, query: dict[str, str]) -> Answer:
        return Answer(
            capture("flickr/error_100_invalid_api_key.2012-05-07.flickrie.json"),
            content_type="text/plain; charset=utf-8",
        )

    with replaying(refuse) as base, pytest.raises(SourceUnavailable, match="error 100: Invalid API Key"):
        flickr.license_table(*replay_client(base, tmp_path))
