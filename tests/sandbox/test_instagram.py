"""The Instagram stand-in behaves like the real service where connectors depend on it: Graph API hashtag
search with its 30-hashtag budget, cursor paging, carousel albums and their children, Graph error objects,
signed CDN URLs that expire, a login wall, robots.txt, a hashtag page whose posts exist only after
JavaScript has run, its web GraphQL JSON, and post pages.

Where a real answer was captured (`tests/captures/instagram/`, origins in its README), the stand-in's answer
is held to its shape: `graph_hashtag_recent_media_default_p1_trimmed.json` for albums and their children,
`web_graphql_hashtag_fastapi_2022_trimmed.json` for the web JSON, `web_post_page_more_posts_tiles_2025.html`
for tiles and `web_post_page_fragments_2025.html` for post pages.

All requests go over HTTP to the sandbox process (`sandbox_url`); nothing is mocked.
"""

from __future__ import annotations

import io
import json
import urllib.robotparser
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from bs4 import BeautifulSoup
from PIL import Image

from sandbox.credentials import INSTAGRAM_ACCESS_TOKEN, INSTAGRAM_SESSION_COOKIE, INSTAGRAM_USER_ID
from sandbox.instagram import HASHTAG_QUERY_HASH, INSTAGRAM_EPOCH_MS, VIEWER_USERNAME, WEB_APP_ID, shortcode_of
from tests.replay import capture

FIELDS = "id,media_type,media_url,permalink,caption,timestamp"
# The fields the real album capture was requested with (its README).
CAPTURE_FIELDS = (
    "caption,children{id,media_type,media_url,permalink},comments_count,id,like_count,media_type,media_url,permalink"
)


@pytest.fixture
def instagram(sandbox_service) -> str:
    """The stand-in's base URL, with budgets, clock and URL lifetime reset before and after the test."""
    return sandbox_service("instagram")


def graph(base: str, path: str, **params: object) -> requests.Response:
    params.setdefault("access_token", INSTAGRAM_ACCESS_TOKEN)
    return requests.get(f"{base}/graph/v21.0/{path}", params=params, timeout=10)


def search(base: str, tag: str) -> requests.Response:
    return graph(base, "ig_hashtag_search", user_id=INSTAGRAM_USER_ID, q=tag)


def hashtag(base: str, tag: str) -> str:
    answer = search(base, tag)
    answer.raise_for_status()
    return answer.json()["data"][0]["id"]


def all_pages(base: str, tag_id: str, edge: str, limit: int) -> tuple[list[dict], int]:
    """Every item of an edge, read with `paging.cursors.after`, and the number of pages it took."""
    items, after, pages = [], None, 0
    while True:
        params = {"user_id": INSTAGRAM_USER_ID, "fields": FIELDS, "limit": limit, **({"after": after} if after else {})}
        body = graph(base, f"{tag_id}/{edge}", **params).json()
        items += body["data"]
        pages += 1
        if "paging" not in body:
            return items, pages
        assert body["paging"]["next"]
        after = body["paging"]["cursors"]["after"]


def graph_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


def web_graphql(base: str, tag: str, after: str | None = None, **headers: str) -> requests.Response:
    variables = json.dumps({"tag_name": tag, "first": 12, "after": after})
    return requests.get(
        f"{base}/graphql/query/",
        params={"query_hash": HASHTAG_QUERY_HASH, "variables": variables},
        cookies={"sessionid": INSTAGRAM_SESSION_COOKIE},
        headers={"X-IG-App-ID": WEB_APP_ID, **headers},
        timeout=10,
    )


def shape(value: object) -> object:
    """The keys of a JSON value, nested, without its values: what two answers must share to look alike."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_hashtag_search_gives_a_static_17_digit_id(instagram: str) -> None:
    first, again = hashtag(instagram, "cat"), hashtag(instagram, "#Cat")
    assert first == again and len(first) == 17 and first.isdigit()
    assert hashtag(instagram, "coffee") != first
    assert graph(instagram, first, fields="id,name").json() == {"id": first, "name": "cat"}


def test_recent_media_pages_with_cursors_and_covers_only_the_last_24_hours(instagram: str) -> None:
    tag_id = hashtag(instagram, "space")
    items, pages = all_pages(instagram, tag_id, "recent_media", limit=5)
    assert pages > 1 and len(items) > 5
    assert len({item["id"] for item in items}) == len(items)
    now = datetime.now(UTC)
    times = [graph_time(item["timestamp"]) for item in items]
    assert all(now - timedelta(hours=24, minutes=1) <= moment <= now for moment in times)
    assert times == sorted(times, reverse=True)
    for item in items:
        album = item["media_type"] == "CAROUSEL_ALBUM"
        assert set(item) == set(FIELDS.split(",")) - ({"media_url"} if album else set())
        assert "#space" in item["caption"] and item["media_type"] in ("IMAGE", "VIDEO", "CAROUSEL_ALBUM")


def test_paging_next_is_a_working_url_with_the_same_query(instagram: str) -> None:
    tag_id = hashtag(instagram, "photo")
    first = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, fields="id", limit=3).json()
    following = requests.get(first["paging"]["next"], timeout=10).json()
    query = parse_qs(urlsplit(first["paging"]["next"]).query)
    assert query["after"] == [first["paging"]["cursors"]["after"]] and query["fields"] == ["id"]
    assert len(following["data"]) == 3
    assert not {item["id"] for item in following["data"]} & {item["id"] for item in first["data"]}


def test_top_media_is_deterministic_and_reaches_older_posts(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    top, _ = all_pages(instagram, tag_id, "top_media", limit=50)
    again, _ = all_pages(instagram, tag_id, "top_media", limit=7)
    recent, _ = all_pages(instagram, tag_id, "recent_media", limit=50)
    assert [item["id"] for item in top] == [item["id"] for item in again]
    assert len(top) > len(recent)
    assert {item["media_type"] for item in top} == {"IMAGE", "VIDEO", "CAROUSEL_ALBUM"}
    assert min(graph_time(item["timestamp"]) for item in top) < datetime.now(UTC) - timedelta(days=2)


def test_token_errors_are_graph_error_objects(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    missing = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, access_token="")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 104
    wrong = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, access_token="not-the-token")
    error = wrong.json()["error"]
    assert wrong.status_code == 400
    assert error["type"] == "OAuthException" and error["code"] == 190 and error["fbtrace_id"]
    assert "Invalid OAuth access token" in error["message"]
    assert "invalid_token" in wrong.headers["WWW-Authenticate"]
    by_header = requests.get(
        f"{instagram}/graph/v21.0/{tag_id}",
        headers={"Authorization": f"Bearer {INSTAGRAM_ACCESS_TOKEN}"},
        params={"fields": "id,name"},
        timeout=10,
    )
    assert by_header.json()["name"] == "cat"


def test_hashtag_media_refuse_the_username_field_and_unknown_ids(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    answer = graph(instagram, f"{tag_id}/recent_media", user_id=INSTAGRAM_USER_ID, fields="id,username")
    assert answer.status_code == 400 and answer.json()["error"]["code"] == 100
    unknown = graph(instagram, "17899999999999999/recent_media", user_id=INSTAGRAM_USER_ID).json()["error"]
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33)


def test_the_31st_unique_hashtag_in_7_days_is_refused(instagram: str) -> None:
    for number in range(30):
        assert search(instagram, f"budget{number:02d}").status_code == 200
    assert search(instagram, "budget00").status_code == 200, "a hashtag already queried this week is free"
    refused = search(instagram, "onemore")
    error = refused.json()["error"]
    assert refused.status_code == 400 and error["type"] == "OAuthException"
    assert (error["code"], error["error_subcode"]) == (24, 2207034)
    assert "30 unique hashtags" in error["message"]
    listed = graph(instagram, f"{INSTAGRAM_USER_ID}/recently_searched_hashtags").json()["data"]
    assert len(listed) == 30
    # The budget is a rolling 7 days: a week later the old hashtags no longer count.
    later = datetime.now(UTC) + timedelta(days=7, minutes=1)
    requests.post(f"{instagram}/_admin/config", json={"now": later.isoformat()}, timeout=5).raise_for_status()
    assert search(instagram, "onemore").status_code == 200


def test_cdn_urls_are_signed_and_expire(instagram: str) -> None:
    tag_id = hashtag(instagram, "coffee")
    image = next(item for item in all_pages(instagram, tag_id, "top_media", 50)[0] if item["media_type"] == "IMAGE")
    fetched = requests.get(image["media_url"], timeout=10)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(fetched.content)).format == "JPEG"
    expiry = int(parse_qs(urlsplit(image["media_url"]).query)["oe"][0], 16)
    assert 3500 < expiry - datetime.now(UTC).timestamp() <= 3600

    tampered = image["media_url"].replace("oh=", "oh=0")
    assert (requests.get(tampered, timeout=10).status_code, requests.get(tampered, timeout=10).text) == (
        403,
        "Bad URL hash",
    )

    requests.post(f"{instagram}/_admin/config", json={"url_ttl_s": 0}, timeout=5).raise_for_status()
    stale = graph(instagram, image["id"], fields="media_url").json()["media_url"]
    expired = requests.get(stale, timeout=10)
    assert (expired.status_code, expired.text) == (403, "URL signature expired")

    requests.post(f"{instagram}/_admin/config", json={"url_ttl_s": 3600}, timeout=5).raise_for_status()
    fresh = graph(instagram, image["id"], fields="media_url").json()["media_url"]
    assert requests.get(fresh, timeout=10).content == fetched.content


def test_hashtag_pages_are_behind_a_login_wall(instagram: str) -> None:
    page = f"{instagram}/explore/tags/cat/"
    for cookies in ({}, {"sessionid": "someone-elses-session"}):
        answer = requests.get(page, cookies=cookies, allow_redirects=False, timeout=10)
        assert answer.status_code == 302
        location = urlsplit(answer.headers["Location"])
        assert location.path == "/instagram/accounts/login/"
        assert parse_qs(location.query)["next"] == ["/instagram/explore/tags/cat/"]
    login = requests.get(page, timeout=10)
    assert login.status_code == 200 and "/accounts/login/" in login.url
    assert BeautifulSoup(login.text, "html.parser").find("input", attrs={"name": "password"}) is not None
    params = {"query_hash": HASHTAG_QUERY_HASH, "variables": json.dumps({"tag_name": "cat", "first": 12})}
    api = requests.get(f"{instagram}/graphql/query/", params=params, headers={"X-IG-App-ID": WEB_APP_ID}, timeout=10)
    assert api.status_code == 401 and api.json()["require_login"] is True


def test_robots_txt_admits_named_search_engines_only(instagram: str) -> None:
    answer = requests.get(f"{instagram}/robots.txt", timeout=10)
    assert answer.headers["Content-Type"].startswith("text/plain")
    rules = urllib.robotparser.RobotFileParser()
    rules.parse(answer.text.splitlines())
    assert rules.can_fetch("Googlebot", "https://www.instagram.com/p/abc/")
    assert not rules.can_fetch("Googlebot", "https://www.instagram.com/explore/tags/cat/")
    assert not rules.can_fetch("ColorflowBot/0.1", "https://www.instagram.com/p/abc/")
    assert not rules.can_fetch("AnyOtherBot", "https://www.instagram.com/")


def web_nodes(base: str, tag: str) -> list[dict]:
    """Every post of the hashtag's "most recent" list, read page by page with `end_cursor`."""
    nodes, after = [], None
    while True:
        media = web_graphql(base, tag, after).json()["data"]["hashtag"]["edge_hashtag_to_media"]
        nodes += [edge["node"] for edge in media["edges"]]
        if not media["page_info"]["has_next_page"]:
            assert media["page_info"]["end_cursor"] is None
            return nodes
        after = media["page_info"]["end_cursor"]


def test_a_plain_fetch_of_a_hashtag_page_shows_no_photos(instagram: str) -> None:
    cookies = {"sessionid": INSTAGRAM_SESSION_COOKIE}
    page = requests.get(f"{instagram}/explore/tags/cat/", cookies=cookies, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select('a[href*="/p/"]') == []
    assert [image for image in soup.find_all("img") if not image.find_parent("template")] == []
    assert soup.select_one("[data-grid=recent]") is not None, "the empty grid the JavaScript fills"
    assert soup.select_one("[role=progressbar]") is not None
    # The first page rides inside the page, as `window._sharedData` did on the real one.
    script = next(found.string for found in soup.find_all("script") if "_sharedData =" in (found.string or ""))
    shared = json.loads(script.strip().removeprefix("window._sharedData = ").removesuffix(";"))
    inside = shared["entry_data"]["TagPage"][0]["graphql"]["hashtag"]
    fetched = web_graphql(instagram, "cat").json()["data"]["hashtag"]
    for edge_name in ("edge_hashtag_to_media", "edge_hashtag_to_top_posts"):
        ids = [[edge["node"]["id"] for edge in hashtag[edge_name]["edges"]] for hashtag in (inside, fetched)]
        assert ids[0] == ids[1] and ids[0]


def test_tiles_are_marked_up_like_real_ones(instagram: str) -> None:
    real = BeautifulSoup(capture("instagram/web_post_page_more_posts_tiles_2025.html").decode(), "html.parser")
    cookies = {"sessionid": INSTAGRAM_SESSION_COOKIE}
    page = requests.get(f"{instagram}/explore/tags/cat/", cookies=cookies, timeout=10).text
    tile = BeautifulSoup(page, "html.parser").select_one("template[data-tile]")
    for selector in ("a[href] > div._aagu > div._aagv > img[alt][src][crossorigin]", 'a svg[aria-label="Carousel"]'):
        assert real.select(selector) and tile.select(selector), selector
    for attribute in ("data-timestamp", "data-owner", "data-media-id", "datetime"):
        assert not tile.select(f"[{attribute}]"), "a real tile has no time, owner or id"


def test_the_web_graphql_json_has_the_real_shape_and_pages_with_end_cursor(instagram: str) -> None:
    real = json.loads(capture("instagram/web_graphql_hashtag_fastapi_2022_trimmed.json"))["hashtag"]
    real_nodes = {
        edge["node"]["__typename"]: edge["node"]
        for edge_name in ("edge_hashtag_to_media", "edge_hashtag_to_top_posts")
        for edge in real[edge_name]["edges"]
    }
    answer = web_graphql(instagram, "cat").json()
    hashtag = answer["data"]["hashtag"]
    assert answer["status"] == "ok" and set(hashtag) == set(real)
    for edge_name in ("edge_hashtag_to_media", "edge_hashtag_to_top_posts"):
        ours = {key: value for key, value in hashtag[edge_name].items() if key != "edges"}
        theirs = {key: value for key, value in real[edge_name].items() if key != "edges"}
        assert shape(ours) == shape(theirs)
    assert len(hashtag["edge_hashtag_to_top_posts"]["edges"]) == 9

    nodes = web_nodes(instagram, "cat")
    assert len(nodes) > 24 and len(nodes) == hashtag["edge_hashtag_to_media"]["count"]
    assert len({node["id"] for node in nodes}) == len(nodes)
    assert {node["__typename"] for node in nodes} == {"GraphImage", "GraphVideo", "GraphSidecar"}
    for node in nodes:
        assert set(node) == set(real_nodes.get(node["__typename"], real_nodes["GraphImage"]))
        assert node["is_video"] == (node["__typename"] == "GraphVideo")
        assert shortcode_of(int(node["id"])) == node["shortcode"], "the shortcode is the id in base 64"
        posted_ms = (int(node["id"]) >> 23) + INSTAGRAM_EPOCH_MS
        assert posted_ms // 1000 == node["taken_at_timestamp"], "the id carries the posting time, as real ids do"
        assert set(node["owner"]) == {"id"} and node["owner"]["id"].isdigit()
        assert [size["config_width"] for size in node["thumbnail_resources"]] == [150, 240, 320, 480, 640]
    times = [node["taken_at_timestamp"] for node in nodes]
    assert times == sorted(times, reverse=True), "most recent first"

    image = next(node for node in nodes if node["__typename"] == "GraphImage")
    full = Image.open(io.BytesIO(requests.get(image["display_url"], timeout=10).content))
    small = Image.open(io.BytesIO(requests.get(image["thumbnail_resources"][0]["src"], timeout=10).content))
    assert (full.width, full.height) == (image["dimensions"]["width"], image["dimensions"]["height"])
    assert small.width == 150
    assert web_graphql(instagram, "cat", **{"X-IG-App-ID": "1"}).status_code == 400


def test_albums_come_with_their_children_in_the_real_shape(instagram: str) -> None:
    capture_page = json.loads(capture("instagram/graph_hashtag_recent_media_default_p1_trimmed.json"))
    real = {item["media_type"]: item for item in capture_page["data"]}
    tag_id = hashtag(instagram, "space")
    params = {"user_id": INSTAGRAM_USER_ID, "fields": CAPTURE_FIELDS, "limit": 50}
    items = graph(instagram, f"{tag_id}/top_media", **params).json()["data"]
    for item in items:
        assert shape(item) == shape(real[item["media_type"]]), f"a {item['media_type']} as the capture shows one"
    albums = [item for item in items if item["media_type"] == "CAROUSEL_ALBUM"]
    children = [child for album in albums for child in album["children"]["data"]]
    assert albums and {child["media_type"] for child in children} == {"IMAGE", "VIDEO"}
    for album in albums:
        paths = {urlsplit(child["permalink"]).path for child in album["children"]["data"]}
        assert len(paths) == len(album["children"]["data"]) and urlsplit(album["permalink"]).path not in paths
    video = next(child for child in children if child["media_type"] == "VIDEO")
    assert urlsplit(video["media_url"]).path.endswith(".mp4")
    image = next(child for child in children if child["media_type"] == "IMAGE")
    assert requests.get(image["media_url"], timeout=10).headers["Content-Type"] == "image/jpeg"

    timed = graph(instagram, f"{tag_id}/top_media", **{**params, "fields": "timestamp,children{id,timestamp}"})
    album = next(item for item in timed.json()["data"] if "children" in item)
    assert {child["timestamp"] for child in album["children"]["data"]} == {album["timestamp"]}
    only_ids = graph(instagram, f"{tag_id}/top_media", **{**params, "fields": "id,children"}).json()["data"]
    assert all(set(child) == {"id"} for item in only_ids for child in item.get("children", {}).get("data", []))
    refused = graph(instagram, f"{tag_id}/top_media", **{**params, "fields": "children{id,username}"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 100

    # An album's item is a node of its own: an expired URL is renewed by asking for it.
    requests.post(f"{instagram}/_admin/config", json={"url_ttl_s": 0}, timeout=5).raise_for_status()
    stale = graph(instagram, image["id"], fields="media_url").json()["media_url"]
    assert requests.get(stale, timeout=10).text == "URL signature expired"
    requests.post(f"{instagram}/_admin/config", json={"url_ttl_s": 3600}, timeout=5).raise_for_status()
    fresh = graph(instagram, image["id"], fields="id,media_url").json()
    assert fresh["id"] == image["id"] and requests.get(fresh["media_url"], timeout=10).status_code == 200
    assert "media_url" not in graph(instagram, albums[0]["id"], fields="id,media_url").json()


def post_page(base: str, node: dict) -> BeautifulSoup:
    answer = requests.get(f"{base}/p/{node['shortcode']}/", timeout=10)
    assert answer.status_code == 200
    return BeautifulSoup(answer.text, "html.parser")


def test_post_pages_are_marked_up_like_the_real_one(instagram: str) -> None:
    real = BeautifulSoup(capture("instagram/web_post_page_fragments_2025.html").decode(), "html.parser")
    nodes = {node["__typename"]: node for node in web_nodes(instagram, "space")}
    image = nodes["GraphImage"]
    page = post_page(instagram, image)
    for selector in ("div._aagu > div._aagv > img[alt][src][crossorigin]", "a[href] time[datetime]"):
        assert real.select(selector) and page.select(selector), selector
    owner = page.select_one("article a[href]")["href"].strip("/").split("/")[-1]
    assert owner != VIEWER_USERNAME and page.select_one(f'nav a[href$="/{VIEWER_USERNAME}/"]') is not None
    posted = datetime.fromtimestamp(image["taken_at_timestamp"], UTC)
    permalink_time = page.select_one(f'a[href$="/{owner}/p/{image["shortcode"]}/"] time[datetime]')["datetime"]
    assert permalink_time == posted.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "like 2025-08-15T14:01:23.000Z"
    caption_time = page.select("time[datetime]")[0]["datetime"]
    assert caption_time == (posted + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert urlsplit(page.select_one("div._aagv img")["src"]).path == urlsplit(image["display_url"]).path
    assert requests.get(f"{instagram}/{owner}/p/{image['shortcode']}/", timeout=10).status_code == 200
    assert requests.get(f"{instagram}/someone_else/p/{image['shortcode']}/", timeout=10).status_code == 404

    album = post_page(instagram, nodes["GraphSidecar"])
    assert album.select_one("div._aagv img, video").name == "img", "the cover first"
    assert album.select_one("video") is not None and len(album.select("div._aagv img")) == 2
    assert post_page(instagram, nodes["GraphVideo"]).select_one("div._aagv img, video").name == "video"


def test_posts_not_yet_published_are_nowhere(instagram: str) -> None:
    tag_id = hashtag(instagram, "cat")
    before, _ = all_pages(instagram, tag_id, "top_media", 50)
    earlier = datetime.now(UTC) - timedelta(days=2)
    requests.post(f"{instagram}/_admin/config", json={"now": earlier.isoformat()}, timeout=5).raise_for_status()
    after, _ = all_pages(instagram, tag_id, "top_media", 50)
    assert 0 < len(after) < len(before)
    assert all(graph_time(item["timestamp"]) <= earlier + timedelta(seconds=5) for item in after)
    newest = max(before, key=lambda item: graph_time(item["timestamp"]))
    assert graph(instagram, newest["id"], fields="id").json()["error"]["code"] == 100
