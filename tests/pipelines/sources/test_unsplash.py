"""The Unsplash connector against the sandbox stand-in, a real server process; nothing is mocked.

Expected photos come from the sandbox's own photo library (keywords and creation times), so the tests
say which photos a window holds without asking the API that is under test.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pipelines.catalog import Catalog, FetchFailure, Sighting
from pipelines.http import HttpClient, host_key
from pipelines.licenses import UNSPLASH
from pipelines.settings import Settings
from pipelines.sources.unsplash import (
    SOURCE,
    UnsplashConfig,
    client,
    discover,
    discover_dataset_tsv,
    fetch,
)
from pipelines.sources.web import SourceUnavailable, Window, store_candidates
from pipelines.storage import FileStore
from sandbox.credentials import UNSPLASH_ACCESS_KEY
from sandbox.library import PhotoLibrary
from sandbox.unsplash import photo_id
from tests.replay import Answer, capture, replaying

Faults = Callable[..., None]
LIBRARY = PhotoLibrary()
MIDNIGHT = datetime.combine(LIBRARY.anchor, datetime.min.time(), UTC)


def days_ago(first: int, last: int) -> Window:
    """The whole days from `first` to `last` days before the library's anchor (today), oldest first."""
    return Window(MIDNIGHT - timedelta(days=last), MIDNIGHT - timedelta(days=first - 1))


def expected_ids(window: Window, keyword: str) -> list[str]:
    """Ids of the library photos tagged `keyword` and created in `window`, newest first."""
    return [photo_id(photo.number) for photo in LIBRARY.search(keyword) if photo.created_at in window]


@pytest.fixture
def config(sandbox_url: str) -> UnsplashConfig:
    return UnsplashConfig(api_url=f"{sandbox_url}/unsplash/api", access_key=UNSPLASH_ACCESS_KEY)


@pytest.fixture
def http(config: UnsplashConfig, settings: Settings) -> HttpClient:
    """The connector's own client with short backoff, so fault tests retry in milliseconds, not seconds."""
    return HttpClient(replace(client(config, settings).policy, backoff_s=0.02))


@pytest.fixture
def admin(sandbox_service) -> str:
    """The stand-in's admin URL; the budget is restored after the test, whatever the test set."""
    return f"{sandbox_service('unsplash')}/_admin"


def stats(sandbox_url: str) -> dict:
    return requests.get(f"{sandbox_url}/unsplash/_admin/stats", timeout=5).json()


def test_config_from_a_connection_keeps_the_key_out_of_repr() -> None:
    connection = SimpleNamespace(
        host="https://api.unsplash.com/", port=None, password="secret-key", extra_dejson={"image_width": 640}
    )
    config = UnsplashConfig.from_connection(connection)
    assert (config.api_url, config.access_key, config.image_width) == ("https://api.unsplash.com", "secret-key", 640)
    assert "secret-key" not in repr(config)
    bare = SimpleNamespace(host="api.unsplash.com", port=None, password="k")
    assert UnsplashConfig.from_connection(bare).api_url == "https://api.unsplash.com"
    with pytest.raises(ValueError, match="access key"):
        UnsplashConfig.from_connection(SimpleNamespace(host="api.unsplash.com", port=None, password=""))


def test_the_client_sends_no_key_by_itself(config: UnsplashConfig, settings: Settings, sandbox_url: str) -> None:
    """The key travels per API request only, so image hosts and redirects never receive it."""
    policy = client(config, settings).policy
    assert "Authorization" not in policy.headers and UNSPLASH_ACCESS_KEY not in repr(policy)
    assert host_key(sandbox_url) in policy.allowed_hosts


def test_discover_keeps_the_window_and_pages_only_as_far_as_it(
    config: UnsplashConfig, http: HttpClient, sandbox_url: str
) -> None:
    """Three days hold 36 photos; with a newer day before them they span two pages of 30, and the second
    page also reaches older photos, so discovery stops there: two requests."""
    window = days_ago(2, 4)
    before = stats(sandbox_url)["api_requests"]
    found = discover(config, http, window, ["color"], limit=100)
    assert [candidate.source_id for candidate in found] == expected_ids(window, "color")
    assert len(found) == 36
    assert stats(sandbox_url)["api_requests"] - before == 2


def test_discover_cuts_at_the_limit_and_skips_queries_it_no_longer_needs(
    config: UnsplashConfig, http: HttpClient, sandbox_url: str
) -> None:
    window = days_ago(1, 20)
    before = stats(sandbox_url)["api_requests"]
    found = discover(config, http, window, ["cat", "space"], limit=5)
    assert [candidate.source_id for candidate in found] == expected_ids(window, "cat")[:5]
    assert stats(sandbox_url)["api_requests"] - before == 1


def test_candidates_carry_attribution_and_the_download_location(config: UnsplashConfig, http: HttpClient) -> None:
    candidate = discover(config, http, days_ago(1, 10), ["coffee"], limit=1)[0]
    photo = next(photo for photo in LIBRARY.photos if photo_id(photo.number) == candidate.source_id)
    assert candidate.source == SOURCE and candidate.license == UNSPLASH
    assert candidate.author == photo.author_name
    assert candidate.author_url.endswith(f"/unsplash/@{photo.author_username}")
    assert candidate.page_url.endswith(f"/unsplash/photos/{candidate.source_id}")
    query = parse_qs(urlsplit(candidate.url).query)
    assert (query["w"], query["fm"], query["q"]) == (["1080"], ["jpg"], ["85"]) and query["ixid"]
    assert candidate.extra["download_location"].startswith(f"{config.api_url}/photos/{candidate.source_id}/download")


def test_stored_photos_are_attributed_and_each_download_triggered_once(
    config: UnsplashConfig, http: HttpClient, lake: tuple[FileStore, Catalog], sandbox_url: str
) -> None:
    """A rerun finds every photo known: nothing is fetched again and no download is counted twice."""
    store, catalog = lake
    candidates = discover(config, http, days_ago(1, 5), ["temple"], limit=3)
    assert len(candidates) == 3
    before = stats(sandbox_url)

    counts = store_candidates(candidates, lambda c: fetch(config, http, c), store, catalog, run_id="run-1")
    assert counts["stored"] == 3 and counts["objects_written"] == 3
    after = stats(sandbox_url)
    ids = {candidate.source_id for candidate in candidates}
    changed = {key for key, count in after["downloads"].items() if count != before["downloads"].get(key, 0)}
    assert changed == ids
    assert all(after["downloads"][key] == before["downloads"].get(key, 0) + 1 for key in ids)
    assert catalog.count(Sighting, source=SOURCE, license=UNSPLASH) == 3
    for candidate in candidates:
        assert catalog.count(Sighting, source_id=candidate.source_id, author=candidate.author) == 1

    again = store_candidates(candidates, lambda c: fetch(config, http, c), store, catalog, run_id="run-2")
    assert again.get("stored", 0) == 0 and again["already_known"] == 3
    assert stats(sandbox_url)["downloads"] == after["downloads"]
    assert len(list(store.list("raw/"))) == 3


def test_a_429_on_search_is_waited_out(config: UnsplashConfig, http: HttpClient, faults: Faults) -> None:
    """The HTTP client honours Retry-After (1 s) and then succeeds with the same answer."""
    window = days_ago(1, 3)
    faults(path_prefix="/unsplash/api/search", kind="429", retry_after=1)
    started = time.monotonic()
    found = discover(config, http, window, ["flower"], limit=10)
    assert time.monotonic() - started >= 0.9
    assert [candidate.source_id for candidate in found] == expected_ids(window, "flower")[:10]


def test_an_image_cut_short_once_is_fetched_again_and_stored_whole(
    config: UnsplashConfig, http: HttpClient, lake: tuple[FileStore, Catalog], faults: Faults, sandbox_url: str
) -> None:
    store, catalog = lake
    candidate = discover(config, http, days_ago(1, 5), ["rocket"], limit=1)[0]
    faults(path_prefix="/unsplash/images", kind="truncate", times=1)
    counts = store_candidates([candidate], lambda c: fetch(config, http, c), store, catalog, run_id="run-1")
    assert counts["stored"] == 1
    assert requests.get(f"{sandbox_url}/_faults", timeout=5).json() == []  # the cut did happen
    (key,) = store.list("raw/")
    whole = requests.get(candidate.url, timeout=30).content
    assert hashlib.sha256(store.get(key)).hexdigest() == hashlib.sha256(whole).hexdigest()


def test_an_image_always_cut_short_is_a_fetch_failure_and_not_counted_as_downloaded(
    config: UnsplashConfig, http: HttpClient, lake: tuple[FileStore, Catalog], faults: Faults, sandbox_url: str
) -> None:
    """The download trigger follows the image, so a photo that never arrived is not reported as downloaded."""
    store, catalog = lake
    candidate = discover(config, http, days_ago(1, 5), ["motorcycle"], limit=1)[0]
    before = stats(sandbox_url)["downloads"]
    faults(path_prefix="/unsplash/images", kind="truncate", times=10)
    counts = store_candidates([candidate], lambda c: fetch(config, http, c), store, catalog, run_id="run-1")
    assert counts["fetch_failed"] == 1 and counts.get("stored", 0) == 0
    assert list(store.list("raw/")) == []
    assert catalog.count(FetchFailure, source=SOURCE, source_id=candidate.source_id) == 1
    assert stats(sandbox_url)["downloads"] == before


def test_the_key_goes_to_no_host_but_the_api(config: UnsplashConfig, http: HttpClient, sandbox_url: str) -> None:
    """A download_location naming another host (a tampered XCom, a hostile answer) is refused, not called."""
    candidate = discover(config, http, days_ago(1, 5), ["galaxy"], limit=1)[0]
    elsewhere = replace(candidate, extra={"download_location": "http://localhost:9/photos/x/download?ixid=y"})
    with pytest.raises(SourceUnavailable, match="refusing to send the Unsplash key to localhost:9"):
        fetch(config, http, elsewhere)


def test_a_rejected_key_makes_the_source_unavailable(sandbox_url: str, http: HttpClient) -> None:
    config = UnsplashConfig(api_url=f"{sandbox_url}/unsplash/api", access_key="not-the-key")
    with pytest.raises(SourceUnavailable, match="rejected the access key") as raised:
        discover(config, http, days_ago(1, 2), ["cat"], limit=1)
    assert "not-the-key" not in str(raised.value)


def test_a_spent_budget_makes_the_source_unavailable_and_says_when_to_retry(
    config: UnsplashConfig, http: HttpClient, admin: str
) -> None:
    requests.post(f"{admin}/config", json={"hourly_limit": 0}, timeout=5).raise_for_status()
    with pytest.raises(SourceUnavailable, match=r"rate limit .* retry after \d{4}-\d\d-\d\d \d\d:00 UTC"):
        discover(config, http, days_ago(1, 2), ["cat"], limit=1)


def test_a_spent_budget_answered_with_429_is_the_same_rate_limit(
    config: UnsplashConfig, http: HttpClient, admin: str
) -> None:
    """Unsplash's maintainers say a rate-limited key gets 429 (users see 403 Rate Limit Exceeded): either way
    the source is unavailable until the next hour, not a photo's failure to retry forever."""
    requests.post(f"{admin}/config", json={"hourly_limit": 0, "refusal_status": 429}, timeout=5).raise_for_status()
    with pytest.raises(SourceUnavailable, match=r"HTTP 429 Rate Limit Exceeded.* retry after"):
        discover(config, http, days_ago(1, 2), ["cat"], limit=1)


def test_a_real_search_answer_becomes_attributed_candidates(tmp_path: Path) -> None:
    """`GET /search/photos?query=blue` as Unsplash answered it in 2019, headers included (pyunsplash's
    test resource, see tests/captures/unsplash/README.md), replayed through the connector."""
    captured = json.loads(capture("unsplash/search_photos_query_blue.pyunsplash.json"))
    headers = {name: value for name, value in captured["headers"].items() if name.lower().startswith("x-ratelimit")}

    def answer(path: str, query: dict[str, str]) -> Answer:
        body = captured["body"] if query.get("page") == "1" else {**captured["body"], "results": []}
        return Answer(json.dumps(body).encode(), headers=headers)

    with replaying(answer) as base:
        config = UnsplashConfig(api_url=base, access_key=UNSPLASH_ACCESS_KEY)
        http = client(config, Settings(home=tmp_path, http_allowed_hosts=[base.removeprefix("http://")]))
        everything = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
        found = discover(config, http, everything, ["blue"], limit=100)

    results = captured["body"]["results"]
    assert [candidate.source_id for candidate in found] == [photo["id"] for photo in results]
    for candidate, photo in zip(found, results, strict=True):
        assert candidate.url.startswith(photo["urls"]["raw"].split("?")[0]) and "w=" in candidate.url
        assert (candidate.page_url, candidate.author_url) == (photo["links"]["html"], photo["user"]["links"]["html"])
        assert candidate.author == photo["user"]["name"]
        assert candidate.extra["download_location"] == photo["links"]["download_location"]
        assert (candidate.license, candidate.license_text) == ("Unsplash", "Unsplash License")


def test_the_website_instead_of_the_api_makes_the_source_unavailable(sandbox_url: str, http: HttpClient) -> None:
    """A connection whose host names unsplash.com, not api.unsplash.com, gets HTML pages back."""
    config = UnsplashConfig(api_url=f"{sandbox_url}/unsplash", access_key=UNSPLASH_ACCESS_KEY)
    with pytest.raises(SourceUnavailable, match="other than JSON"):
        discover(config, http, days_ago(1, 2), ["cat"], limit=1)


def test_dataset_tsv_from_a_url_or_a_file_needs_no_download_trigger(
    config: UnsplashConfig, http: HttpClient, sandbox_url: str, tmp_path: Path
) -> None:
    window = days_ago(3, 3)
    url = f"{sandbox_url}/unsplash/dataset/photos.tsv000"
    found = discover_dataset_tsv(http, url, window, limit=100)
    assert sorted(candidate.source_id for candidate in found) == sorted(expected_ids(window, "color"))
    assert found[0].license == UNSPLASH and found[0].author and found[0].extra == {}
    assert found[0].author_url.startswith(f"{sandbox_url}/unsplash/@")

    local = tmp_path / "photos.tsv000"
    local.write_bytes(requests.get(url, timeout=60).content)
    assert discover_dataset_tsv(http, local, window, limit=2) == found[:2]

    before = stats(sandbox_url)["downloads"]
    assert fetch(config, http, found[0])[:2] == b"\xff\xd8"  # a JPEG
    assert stats(sandbox_url)["downloads"] == before

    not_a_dataset = tmp_path / "other.tsv"
    not_a_dataset.write_text("id\turl\n1\thttp://example.com\n")
    with pytest.raises(SourceUnavailable, match="not an Unsplash Dataset"):
        discover_dataset_tsv(http, not_a_dataset, window, limit=1)
