"""The Instagram connector against the sandbox process: Graph discovery for a daily window, reruns that
store nothing, every photo of a carousel album, the hashtag budget kept with a cached ledger, expired CDN
URLs renewed, rate limits waited out, and browser mode driving real headless Chromium through login walls,
robots.txt and infinite scroll, reading posts from the page's own GraphQL JSON and, for posts that JSON does
not describe, from their post pages.

And against Instagram's own answers, from `tests/captures/instagram/` (origins in its README), so that the
connector is held to what the real service sends, not to what our stand-in makes of it:
- `graph_hashtag_recent_media_default_p1_trimmed.json` (a real recent_media page with an IMAGE, a
  CAROUSEL_ALBUM of two IMAGE children, and a VIDEO) and `graph_ig_hashtag_search.json`, served again over
  HTTP (`tests.replay`) to `discover_graph`;
- `web_graphql_hashtag_fastapi_2022_trimmed.json` (the web GraphQL hashtag object) to `parse_hashtag_json`;
- `web_profile_grid_row_2020.html` and `web_post_page_more_posts_tiles_2025.html` (rendered grid tiles) to
  `parse_tag_page`, and `web_post_page_fragments_2025.html` (a rendered post page) to `parse_post_page`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

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
from sandbox.instagram import HASHTAG_QUERY_HASH, VIEWER_USERNAME, WEB_APP_ID
from sandbox.library import AUTHORS
from tests.replay import Answer, capture, replaying

INSTAGRAM_WEB = "https://www.instagram.com"
CHILD_FIELDS = "id,media_type,media_url,permalink,timestamp"


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
    """What the service holds for `tag` in `window`, read directly from recent_media: the IMAGE posts and
    the IMAGE items of albums."""
    params = {"user_id": INSTAGRAM_USER_ID, "q": tag, "access_token": INSTAGRAM_ACCESS_TOKEN}
    tag_id = requests.get(f"{service}/graph/v21.0/ig_hashtag_search", params=params, timeout=5).json()["data"][0]["id"]
    params = {**params, "fields": f"id,media_type,timestamp,children{{{CHILD_FIELDS}}}", "limit": 50}
    body = requests.get(f"{service}/graph/v21.0/{tag_id}/recent_media", params=params, timeout=5).json()
    assert "paging" not in body, "fewer than 50 posts a day per hashtag"
    found = set()
    for item in body["data"]:
        if instagram.parse_graph_time(item["timestamp"]) not in window:
            continue
        items = item["children"]["data"] if item["media_type"] == "CAROUSEL_ALBUM" else [item]
        found |= {photo["id"] for photo in items if photo["media_type"] == "IMAGE"}
    return found


def web_posts(service: str, tag: str) -> list[dict]:
    """Every post of the hashtag page as the stand-in's web GraphQL JSON lists them, page by page."""
    nodes, after = [], None
    while True:
        variables = json.dumps({"tag_name": tag, "first": 12, "after": after})
        hashtag = requests.get(
            f"{service}/graphql/query/",
            params={"query_hash": HASHTAG_QUERY_HASH, "variables": variables},
            cookies={"sessionid": INSTAGRAM_SESSION_COOKIE},
            headers={"X-IG-App-ID": WEB_APP_ID},
            timeout=10,
        ).json()["data"]["hashtag"]
        media = hashtag["edge_hashtag_to_media"]
        nodes += [edge["node"] for edge in media["edges"]]
        if not media["page_info"]["has_next_page"]:
            return nodes
        after = media["page_info"]["end_cursor"]


def cdn_file(url: str) -> str:
    """Which CDN file a signed URL names (signatures and expiries differ from one answer to the next)."""
    return urlsplit(url).path


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
        assert candidate.page_url.startswith(f"{service}/p/")
        assert candidate.license is None and candidate.license_text == instagram.LICENSE_TEXT

    fetch = lambda candidate: instagram.fetch(config, http, candidate)  # noqa: E731
    counts = store_candidates(candidates, fetch, store, catalog, run_id="day-1")
    assert counts["stored"] == len(candidates) and counts.get("fetch_failed", 0) == 0
    with catalog.session() as session:
        sightings = session.scalars(select(Sighting).where(Sighting.source == "instagram")).all()
    assert {sighting.source_id for sighting in sightings} == expected
    assert all(sighting.page_url and sighting.license_text == instagram.LICENSE_TEXT for sighting in sightings)
    assert len(list(store.list("raw/"))) == len(candidates)

    rerun = instagram.discover_graph(config, http, window, ["cat", "coffee"], state_store=store)
    again = store_candidates(rerun, fetch, store, catalog, run_id="day-1-rerun")
    assert again.get("stored", 0) == 0 and again["already_known"] == len(candidates)


def test_graph_mode_keeps_every_photo_of_an_album(
    service: str, config: InstagramConfig, http: HttpClient, store: FileStore, catalog: Catalog
) -> None:
    """Albums have no media_url of their own: each IMAGE item is a photo, with its own id and still-renewable
    URL; the album itself and its VIDEO items are not."""
    configure(service, url_ttl_s=0)  # every URL discovery sees has already expired
    now = datetime.now(UTC)
    wide = Window(now - timedelta(days=30), now + timedelta(minutes=1))
    candidates = instagram.discover_graph(config, http, wide, ["space"], state_store=store, include_top=True)
    params = {"user_id": INSTAGRAM_USER_ID, "access_token": INSTAGRAM_ACCESS_TOKEN, "limit": 50}
    tag_id = requests.get(f"{service}/graph/v21.0/ig_hashtag_search", params={**params, "q": "space"}, timeout=5)
    fields = f"id,media_type,children{{{CHILD_FIELDS}}}"
    top = requests.get(
        f"{service}/graph/v21.0/{tag_id.json()['data'][0]['id']}/top_media",
        params={**params, "fields": fields},
        timeout=5,
    ).json()["data"]
    albums = {item["id"]: item["children"]["data"] for item in top if item["media_type"] == "CAROUSEL_ALBUM"}
    assert albums, "the stand-in serves albums"
    by_id = {candidate.source_id: candidate for candidate in candidates}
    for album_id, items in albums.items():
        assert album_id not in by_id
        assert {item["media_type"] for item in items} == {"IMAGE", "VIDEO"}
        for item in items:
            assert (item["id"] in by_id) == (item["media_type"] == "IMAGE")
        for item in (item for item in items if item["media_type"] == "IMAGE"):
            photo = by_id[item["id"]]
            assert photo.extra["album_id"] == album_id and photo.page_url == item["permalink"]
            assert photo.extra["timestamp"] == instagram.parse_graph_time(item["timestamp"]).isoformat()

    configure(service, url_ttl_s=3600)
    in_albums = [candidate for candidate in candidates if candidate.extra.get("album_id")]
    fetch = lambda candidate: instagram.fetch(config, http, candidate)  # noqa: E731
    counts = store_candidates(in_albums, fetch, store, catalog, run_id="albums")
    assert counts["stored"] == len(in_albums) and counts.get("fetch_failed", 0) == 0


def graph_replay(requests_seen: list[dict[str, str]]) -> object:
    """The real Graph answers: ig_hashtag_search, then the real recent_media page, whose items carry the
    `timestamp` field the capture's request did not ask for (the one change, so that the window can apply;
    children have none, so they must take their album's); asked for the page after it, an empty page."""
    page = json.loads(capture("instagram/graph_hashtag_recent_media_default_p1_trimmed.json"))
    for item in page["data"]:
        item["timestamp"] = "2020-02-13T13:54:20+0000"  # the time the first item's shortcode, B8gmxFzAYXB, encodes

    def answer(path: str, query: dict[str, str]) -> Answer:
        requests_seen.append({"path": path, **query})
        if path.endswith("/ig_hashtag_search"):
            return Answer(capture("instagram/graph_ig_hashtag_search.json"))
        if query.get("after"):
            return Answer(b'{"data": []}')
        return Answer(json.dumps(page).encode())

    return answer


def test_a_real_album_page_gives_each_image_of_the_album(tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []
    with replaying(graph_replay(seen)) as base:
        config = InstagramConfig(graph_url=f"{base}/v4.0", access_token="a-token", user_id="17841406338772941")
        http = instagram.client(config, Settings(home=tmp_path, http_allowed_hosts=[base.removeprefix("http://")]))
        window = Window(datetime(2020, 2, 13, tzinfo=UTC), datetime(2020, 2, 14, tzinfo=UTC))
        candidates = instagram.discover_graph(config, http, window, ["love"])
    assert "children{" in seen[1]["fields"], "the albums' items are asked for with the page"
    assert [(candidate.source_id, candidate.page_url) for candidate in candidates] == [
        ("17867556367624464", "https://www.instagram.com/p/B8gmxFzAYXB/"),  # the IMAGE post
        ("17863963342662955", "https://www.instagram.com/p/B8gmxDZl6Fg/"),  # the album's two IMAGE children
        ("17932837453354011", "https://www.instagram.com/p/B8gmxDZFkTQ/"),
    ]  # and not the album 17860934086698706 (no media_url) nor the VIDEO 18043202131234956
    first_child = candidates[1]
    assert first_child.url.startswith("https://scontent.xx.fbcdn.net/v/t51.2885-15/84337244_229909561363444_")
    assert first_child.extra["album_id"] == "17860934086698706"
    assert first_child.extra["timestamp"] == "2020-02-13T13:54:20+00:00", "the album's time"
    assert all(candidate.license_text == instagram.LICENSE_TEXT for candidate in candidates)


def test_graph_photos_of_real_items_and_own_media_children() -> None:
    """`/{id}/children` of own media (2021 capture) gives items with their own time, which they keep."""
    children = json.loads(capture("instagram/graph_media_children.json"))
    album = {"id": "1", "media_type": "CAROUSEL_ALBUM", "permalink": "p", "timestamp": "t", "children": children}
    photos = instagram.graph_photos(album)
    assert [(photo["id"], photo["timestamp"], photo["permalink"]) for photo in photos] == [
        ("17924318443748703", "2021-08-19T09:00:21+0000", "https://www.instagram.com/p/CSwAtwOBwh-/"),
        ("18248754847048313", "2021-08-19T09:00:21+0000", "https://www.instagram.com/p/CSwAtwPB1po/"),
    ]
    page = json.loads(capture("instagram/graph_hashtag_recent_media_default_p1_trimmed.json"))
    assert [len(instagram.graph_photos(item)) for item in page["data"]] == [1, 2, 0]


def test_the_real_web_graphql_hashtag_json_describes_its_posts() -> None:
    hashtag = json.loads(capture("instagram/web_graphql_hashtag_fastapi_2022_trimmed.json"))
    for body in (hashtag, {"data": hashtag, "status": "ok"}):
        posts = instagram.parse_hashtag_json(body)
        assert [(post.media_id, post.shortcode, post.typename, post.top) for post in posts] == [
            ("2733195775381994284", "CXuQxOdPfss", "GraphImage", False),
            ("2739649071265759166", "CYFMFCmBj--", "GraphSidecar", True),
        ]
    image, album = posts
    assert image.taken_at == datetime(2021, 12, 20, 23, 19, 8, tzinfo=UTC)
    assert image.owner_id == "48524230227" and not image.is_video
    assert image.display_url.startswith("https://scontent-mct1-1.cdninstagram.com/v/t51.2885-15/269695568_")
    assert "s1080x1080" in image.display_url, "the full-size URL, not a thumbnail"
    assert album.taken_at == datetime(2021, 12, 29, 21, 0, 41, tzinfo=UTC) and album.owner_id == "45027269431"
    assert [instagram.media_id_of(post.shortcode) for post in posts] == [post.media_id for post in posts]
    assert instagram.parse_hashtag_json({"data": {"user": {}}}) == [] == instagram.parse_hashtag_json([1])


def test_real_grid_tiles_give_shortcodes_and_images_but_no_times() -> None:
    tiles_2020 = instagram.parse_tag_page(capture("instagram/web_profile_grid_row_2020.html").decode(), INSTAGRAM_WEB)
    assert [tile.shortcode for tile in tiles_2020] == [
        "CBctEw2lFwFmYLqzHRmje49-ikdEO-b_19yju40",
        "B_FmQEyFy3emqlOhZcRJQybnJ3PQIFmcakb3XA0",
        "BtSqm9YFreKh2tgcxlLcATy9H1sOcA2mEpSuWE0",
    ]
    assert all(tile.username is None for tile in tiles_2020)
    assert tiles_2020[1].image_url.startswith("https://instagram.fpat3-2.fna.fbcdn.net/v/t51.2885-15/sh0.08/e35/")
    # Long (private-post) shortcodes: their first 11 characters are the media id, whose time bits (ms since
    # Instagram's epoch, above 23 bits) fall on the day the tile's alt text names: "on April 17, 2020".
    posted_ms = (int(instagram.media_id_of(tiles_2020[1].shortcode)) >> 23) + 1314220021721
    assert datetime.fromtimestamp(posted_ms / 1000, UTC).date().isoformat() == "2020-04-17"

    tiles_2025 = instagram.parse_tag_page(
        capture("instagram/web_post_page_more_posts_tiles_2025.html").decode(), INSTAGRAM_WEB
    )
    assert [(tile.shortcode, tile.username) for tile in tiles_2025] == [
        ("DJVwaYbT3VC", "ririnn.ri"),
        ("DMuNBgpTh2e", "ririnn.ri"),
    ]
    cache_key = parse_qs(urlsplit(tiles_2025[0].image_url).query)["ig_cache_key"][0]
    assert base64.b64decode(unquote(cache_key).split(".")[0]).decode() == instagram.media_id_of("DJVwaYbT3VC")


def test_a_real_post_page_gives_the_posts_time_owner_and_photo() -> None:
    page = capture("instagram/web_post_page_fragments_2025.html").decode()
    post = instagram.parse_post_page(page, INSTAGRAM_WEB, "DNYNXb4z8J0")
    assert post.taken_at == datetime(2025, 8, 15, 14, 1, 23, tzinfo=UTC), "the permalink's time, not the caption's"
    assert post.owner == "ririnn.ri" and not post.is_video
    assert post.image_url.startswith("https://scontent-tpe1-1.cdninstagram.com/v/t51.2885-15/534309751_")
    assert instagram.parse_post_page("<html><body></body></html>", INSTAGRAM_WEB, "x") == instagram.PostPage(
        None, None, None, False
    )


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
    assert instagram.parse_tag_page(answer.text, service) == []


def test_the_browser_reads_posts_from_the_pages_json_and_post_pages(
    service: str,
    config: InstagramConfig,
    http: HttpClient,
    store: FileStore,
    catalog: Catalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tiles carry no time or owner: those come from the GraphQL JSON the page fetched as it scrolled, and
    for the first page, which the page carries inside itself, from each post's page."""
    nodes = {node["shortcode"]: node for node in web_posts(service, "cat")}
    photos = {code: node for code, node in nodes.items() if not node["is_video"]}
    assert len(nodes) > 24, "more than two pages: the browser has to scroll"
    assert any(node["__typename"] == "GraphSidecar" for node in photos.values())

    now = datetime.now(UTC)
    window = Window(now - timedelta(days=10), now + timedelta(minutes=1))
    with caplog.at_level(logging.DEBUG):
        candidates = instagram.discover_browser(config, http, window, ["cat"])
    assert INSTAGRAM_SESSION_COOKIE not in caplog.text, "the cookie is never logged"

    assert {candidate.page_url for candidate in candidates} == {f"{service}/p/{code}/" for code in photos}
    read_from = {candidate.extra["read_from"] for candidate in candidates}
    assert read_from == {"graphql", "post_page"}, "the JSON for most, post pages for the first page"
    usernames = {username for _, username in AUTHORS}
    for candidate in candidates:
        node = photos[candidate.page_url.removeprefix(f"{service}/p/").strip("/")]
        assert candidate.source_id == node["id"]
        assert candidate.extra["timestamp"] == datetime.fromtimestamp(node["taken_at_timestamp"], UTC).isoformat()
        assert cdn_file(candidate.url) == cdn_file(node["display_url"]), "full size; an album's cover"
        if candidate.extra["read_from"] == "graphql":
            assert candidate.extra["owner_id"] == node["owner"]["id"] and candidate.author is None
        else:
            assert candidate.author in usernames, "the post page's owner, not the viewer's profile link"
    assert VIEWER_USERNAME not in usernames

    fetch = lambda candidate: instagram.fetch(config, http, candidate)  # noqa: E731
    assert store_candidates(candidates[:3], fetch, store, catalog, run_id="browser")["stored"] == 3


def test_the_browser_stops_at_posts_older_than_the_window(
    service: str, config: InstagramConfig, http: HttpClient
) -> None:
    run_just_after_midnight(service)
    window = yesterday()
    nodes = web_posts(service, "cat")
    # The browser gets the first page inside the hashtag page itself, and fetches only the pages after it.
    pages_after_the_first = requests.get(f"{service}/_admin/stats", timeout=5).json()["graphql_pages"] - 1
    requests.post(f"{service}/_admin/reset", timeout=5).raise_for_status()
    run_just_after_midnight(service)
    expected = {
        node["id"]
        for node in nodes
        if not node["is_video"] and datetime.fromtimestamp(node["taken_at_timestamp"], UTC) in window
    }
    assert expected and pages_after_the_first > 1

    candidates = instagram.discover_browser(config, http, window, ["cat"])
    assert {candidate.source_id for candidate in candidates} == expected
    assert requests.get(f"{service}/_admin/stats", timeout=5).json()["graphql_pages"] < pages_after_the_first


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
