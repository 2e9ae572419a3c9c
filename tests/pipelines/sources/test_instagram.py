"""The Instagram connector against the sandbox process: Graph discovery for a daily window, reruns that
store nothing, the hashtag budget kept with a cached ledger, expired CDN URLs renewed, rate limits waited
out, and browser mode driving real headless Chromium through login walls, robots.txt and infinite scroll.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from pipelines.catalog import Catalog, FetchFailure, Sighting
from pipelines.http import HttpClient, HttpError
from pipelines.settings import Settings
from pipelines.sources import instagram
from pipelines.sources.instagram import InstagramConfig
from pipelines.sources.web import SourceUnavailable, Window, store_candidates
from pipelines.storage import FileStore
from sandbox.credentials import INSTAGRAM_ACCESS_TOKEN, INSTAGRAM_SESSION_COOKIE, INSTAGRAM_USER_ID
from sandbox.instagram import WEB_APP_ID


@pytest.fixture
def service(sandbox_service) -> str:
    """The Instagram stand-in, reset (budgets, clock, URL lifetime) before and after each test."""
    return sandbox_service("instagram")


@pytest.fixture
def config(service: str) -> InstagramConfig:
    return InstagramConfig(
        graph_url=f"{service}/graph/v21.0",
        access_token=INSTAGRAM_ACCESS_TOKEN,
        user_id=INSTAGRAM_USER_ID,
        web_url=service,
        session_cookie=INSTAGRAM_SESSION_COOKIE,
        robots_permission=True,
    )


@pytest.fixture
def http(config: InstagramConfig, sandbox_url: str, tmp_path: Path) -> HttpClient:
    sandbox_host = urlsplit(sandbox_url).netloc
    return instagram.client(config, Settings(home=tmp_path, http_allowed_hosts=[sandbox_host]))


def configure(service: str, **change: object) -> None:
    requests.post(f"{service}/_admin/config", json=change, timeout=5).raise_for_status()


def searches(service: str) -> int:
    return requests.get(f"{service}/_admin/stats", timeout=5).json()["hashtag_searches"]


def yesterday() -> Window:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(midnight - timedelta(days=1), midnight)


def run_just_after_midnight(service: str) -> None:
    """Put the service's clock at 01:00 today, when the daily run for yesterday happens."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    configure(service, now=(midnight + timedelta(hours=1)).isoformat())


def recent_images_in(service: str, tag: str, window: Window) -> set[str]:
    """What the service holds for `tag` in `window`, read directly from recent_media."""
    params = {"user_id": INSTAGRAM_USER_ID, "q": tag, "access_token": INSTAGRAM_ACCESS_TOKEN}
    tag_id = requests.get(f"{service}/graph/v21.0/ig_hashtag_search", params=params, timeout=5).json()["data"][0]["id"]
    params = {**params, "fields": "id,media_type,timestamp", "limit": 50}
    body = requests.get(f"{service}/graph/v21.0/{tag_id}/recent_media", params=params, timeout=5).json()
    assert "paging" not in body, "fewer than 50 posts a day per hashtag"
    return {
        item["id"]
        for item in body["data"]
        if item["media_type"] == "IMAGE" and instagram.parse_graph_time(item["timestamp"]) in window
    }


def test_config_from_an_airflow_style_connection_hides_its_secrets() -> None:
    connection = SimpleNamespace(
        host="graph.facebook.com",
        login=None,
        password="a-token",
        extra_dejson={"user_id": "17841400000000009", "session_token": "a-cookie", "robots_permission": "true"},
    )
    config = InstagramConfig.from_connection(connection)
    assert config.graph_url == "https://graph.facebook.com/v21.0"
    assert (config.access_token, config.user_id, config.session_cookie) == ("a-token", "17841400000000009", "a-cookie")
    assert config.robots_permission is True and config.web_url is None
    assert "a-token" not in repr(config) and "a-cookie" not in repr(config)


def test_graph_discovery_stores_yesterdays_photos_once(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore, catalog: Catalog
) -> None:
    run_just_after_midnight(service)
    window = yesterday()
    candidates = instagram.discover_graph(config, http, window, ["#cat", "coffee"], state_store=store)
    expected = recent_images_in(service, "cat", window) | recent_images_in(service, "coffee", window)
    assert len(candidates) >= 5 and {candidate.source_id for candidate in candidates} == expected
    for candidate in candidates:
        assert datetime.fromisoformat(candidate.extra["timestamp"]) in window
        assert candidate.page_url.startswith(f"{service}/p/") and candidate.license == instagram.LICENSE

    fetch = lambda candidate: instagram.fetch(config, http, candidate)  # noqa: E731
    counts = store_candidates(candidates, fetch, store, catalog, run_id="day-1")
    assert counts["stored"] == len(candidates) and counts.get("fetch_failed", 0) == 0
    with catalog.session() as session:
        sightings = session.scalars(select(Sighting).where(Sighting.source == "instagram")).all()
    assert {sighting.source_id for sighting in sightings} == expected
    assert all(sighting.page_url and sighting.license == instagram.LICENSE for sighting in sightings)
    assert len(list(store.list("raw/"))) == len(candidates)

    rerun = instagram.discover_graph(config, http, window, ["cat", "coffee"], state_store=store)
    again = store_candidates(rerun, fetch, store, catalog, run_id="day-1-rerun")
    assert again.get("stored", 0) == 0 and again["already_known"] == len(candidates)


def test_limit_and_top_media(service: str, config: InstagramConfig, http: HttpClient, store: FileStore) -> None:
    now = datetime.now(UTC)
    wide = Window(now - timedelta(days=30), now + timedelta(minutes=1))
    recent_only = instagram.discover_graph(config, http, wide, ["space"], state_store=store)
    with_top = instagram.discover_graph(config, http, wide, ["space"], state_store=store, include_top=True)
    assert len(with_top) > len(recent_only) > 3
    assert {candidate.extra["edge"] for candidate in with_top} == {"recent_media", "top_media"}
    assert len(instagram.discover_graph(config, http, wide, ["space"], limit=3, state_store=store)) == 3


def test_hashtag_ids_are_cached_so_reruns_spend_no_budget(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore
) -> None:
    window = Window(datetime.now(UTC) - timedelta(hours=24), datetime.now(UTC))
    instagram.discover_graph(config, http, window, ["cat", "flower"], state_store=store)
    assert searches(service) == 2
    ledger = json.loads(store.get(instagram.STATE_KEY))
    assert set(ledger["hashtag_ids"]) == {"cat", "flower"} and set(ledger["counted"][INSTAGRAM_USER_ID]) == {
        "cat",
        "flower",
    }
    instagram.discover_graph(config, http, window, ["flower", "cat"], state_store=store)
    assert searches(service) == 2, "cached ids: no ig_hashtag_search on the rerun"


def test_the_31st_hashtag_is_refused_before_asking(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore
) -> None:
    window = Window(datetime.now(UTC) - timedelta(hours=24), datetime.now(UTC))
    thirty = [f"budget{number:02d}" for number in range(30)]
    assert instagram.discover_graph(config, http, window, thirty, state_store=store) == []
    assert searches(service) == 30
    with pytest.raises(SourceUnavailable, match="30 unique hashtags per rolling 7 days") as refused:
        instagram.discover_graph(config, http, window, ["cat"], state_store=store)
    assert "cat" in str(refused.value)
    assert searches(service) == 30, "nothing was sent for the 31st"
    instagram.discover_graph(config, http, window, ["budget07"], state_store=store)  # already counted: allowed


def test_the_apis_own_refusal_is_a_clear_error(service: str, config: InstagramConfig, http: HttpClient) -> None:
    params = {"user_id": INSTAGRAM_USER_ID, "access_token": INSTAGRAM_ACCESS_TOKEN}
    for number in range(30):
        requests.get(f"{service}/graph/v21.0/ig_hashtag_search", params={**params, "q": f"x{number}"}, timeout=5)
    window = Window(datetime.now(UTC) - timedelta(hours=24), datetime.now(UTC))
    with pytest.raises(SourceUnavailable, match=r"code 24.*30 unique hashtags"):
        instagram.discover_graph(config, http, window, ["cat"])  # no ledger: only the API can say no


def test_a_refused_token_is_source_unavailable_and_never_shown(
    service: str, config: InstagramConfig, http: HttpClient
) -> None:
    bad = InstagramConfig(config.graph_url, "secret-but-wrong-token", config.user_id)
    window = Window(datetime.now(UTC) - timedelta(hours=24), datetime.now(UTC))
    with pytest.raises(instagram.AccessTokenRefused, match=r"code 190.*renew it") as refused:
        instagram.discover_graph(bad, http, window, ["cat"])
    assert "secret-but-wrong-token" not in str(refused.value)


def test_expired_urls_are_renewed_through_the_graph_api(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore, catalog: Catalog
) -> None:
    configure(service, url_ttl_s=0)  # every URL discovery sees has already expired
    window = Window(datetime.now(UTC) - timedelta(hours=24), datetime.now(UTC))
    candidates = instagram.discover_graph(config, http, window, ["coffee"], state_store=store)
    assert candidates
    with pytest.raises(HttpError, match="URL signature expired") as expired:
        http.get_image(candidates[0].url)
    assert expired.value.status == 403

    fetch = lambda candidate: instagram.fetch(config, http, candidate)  # noqa: E731
    # While the service still signs for zero seconds, the renewed URL fails too: recorded, not raised.
    counts = store_candidates(candidates[:2], fetch, store, catalog, run_id="expired")
    assert counts["fetch_failed"] == 2
    assert catalog.count(FetchFailure, source="instagram", run_id="expired") == 2

    configure(service, url_ttl_s=3600)
    counts = store_candidates(candidates, fetch, store, catalog, run_id="renewed")
    assert counts["stored"] == len(candidates) and counts.get("fetch_failed", 0) == 0


def test_rate_limits_are_waited_out(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore, faults
) -> None:
    faults(path_prefix="/instagram/graph", kind="429", retry_after=1, times=2)
    window = Window(datetime.now(UTC) - timedelta(hours=24), datetime.now(UTC))
    started = time.monotonic()
    candidates = instagram.discover_graph(config, http, window, ["cat"], state_store=store)
    assert time.monotonic() - started >= 2.0
    assert candidates


def test_a_plain_fetch_of_the_page_finds_no_photos(service: str, config: InstagramConfig) -> None:
    page = f"{service}/explore/tags/cat/"
    answer = requests.get(page, cookies={"sessionid": INSTAGRAM_SESSION_COOKIE}, allow_redirects=False, timeout=10)
    assert answer.status_code == 200
    assert instagram.parse_tag_page(answer.text, page) == []


def test_the_browser_finds_every_photo_of_a_hashtag(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore, catalog: Catalog
) -> None:
    held, max_id = [], None
    while True:
        params = {"tag_name": "cat", **({"max_id": max_id} if max_id else {})}
        body = requests.get(
            f"{service}/api/v1/tags/web_info/",
            params=params,
            cookies={"sessionid": INSTAGRAM_SESSION_COOKIE},
            headers={"X-IG-App-ID": WEB_APP_ID},
            timeout=10,
        ).json()["data"]["recent"]
        held += body["items"]
        if not body["more_available"]:
            break
        max_id = body["next_max_id"]
    photos = {item["id"]: item["user"]["username"] for item in held if item["media_type"] == 1}
    assert len(held) > 24, "more than two pages: the browser has to scroll"

    now = datetime.now(UTC)
    window = Window(now - timedelta(days=10), now + timedelta(minutes=1))
    candidates = instagram.discover_browser(config, http, window, ["cat"])
    assert {candidate.source_id: candidate.author for candidate in candidates} == photos
    assert all(candidate.page_url.startswith(f"{service}/p/") for candidate in candidates)

    fetch = lambda candidate: instagram.fetch(config, http, candidate)  # noqa: E731
    assert store_candidates(candidates[:3], fetch, store, catalog, run_id="browser")["stored"] == 3


def test_browser_without_a_session_cookie_meets_the_login_wall(config: InstagramConfig, http: HttpClient) -> None:
    window = Window(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    no_cookie = InstagramConfig(config.graph_url, config.access_token, config.user_id, web_url=config.web_url)
    with pytest.raises(SourceUnavailable, match=r"login wall.*session cookie"):
        instagram.discover_browser(no_cookie, http, window, ["cat"])
    logged_out = InstagramConfig(
        config.graph_url,
        config.access_token,
        config.user_id,
        web_url=config.web_url,
        session_cookie="an-expired-session",
        robots_permission=True,
    )
    with pytest.raises(SourceUnavailable, match=r"login wall.*redirected to the login page") as refused:
        instagram.discover_browser(logged_out, http, window, ["cat"])
    assert "an-expired-session" not in str(refused.value)


def test_browser_honours_robots_txt_without_recorded_permission(config: InstagramConfig, http: HttpClient) -> None:
    window = Window(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
    no_permission = InstagramConfig(
        config.graph_url,
        config.access_token,
        config.user_id,
        web_url=config.web_url,
        session_cookie=config.session_cookie,
        robots_permission=False,
    )
    with pytest.raises(SourceUnavailable, match=r"robots\.txt disallows.*robots_permission"):
        instagram.discover_browser(no_permission, http, window, ["cat"])
